//! Keyring files, as `--keyring` reads them.

use std::path::{Path, PathBuf};

use base64::Engine;

/// Writes a keyring file `name` in `dir` of `keys` (32 bytes each, every
/// byte the given one): the first seals and signs, every one opens.
pub fn keyring_file(dir: &Path, name: &str, keys: &[u8]) -> PathBuf {
    let text: String = keys
        .iter()
        .map(|&b| {
            format!(
                "{}\n",
                base64::engine::general_purpose::STANDARD.encode([b; 32])
            )
        })
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write the keyring");
    path
}
