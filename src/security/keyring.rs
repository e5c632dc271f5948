//! The keyring: an ordered list of 32-byte keys read from a file, and the
//! watcher that re-reads the file when it changes.
//!
//! The file holds one base64 key a line (standard alphabet, padding
//! optional); blank lines and lines starting with `#` are skipped. The first
//! key seals and signs; every key opens and verifies.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::KeyInit;
use base64::Engine;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Length of every key, in bytes.
pub(crate) const KEY_LEN: usize = 32;
/// How often [`spawn_watch`] re-reads the keyring file.
pub(crate) const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// Standard base64 that takes keys with or without their `=` padding.
const KEY_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What is wrong with a keyring file's text.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    #[error("line {line}: the key is not base64 ({detail})")]
    NotBase64 { line: usize, detail: String },
    #[error(
        "line {line}: the key is {len} bytes long, keys are 32 bytes \
         (make one with `head -c 32 /dev/urandom | base64`)"
    )]
    WrongLength { line: usize, len: usize },
    #[error(
        "the keyring holds no keys: write one base64 32-byte key a line \
         (blank lines and # comments are skipped)"
    )]
    NoKeys,
}

/// Why a keyring file could not be loaded.
#[derive(Debug, Error)]
pub enum KeyringError {
    #[error("cannot read the keyring file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("keyring file {}: {problem}", path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        problem: ParseError,
    },
}

/// One key with its AES-GCM and HMAC states prepared once.
#[derive(Clone)]
pub(super) struct Key {
    bytes: [u8; KEY_LEN],
    pub(super) cipher: Aes256Gcm,
    pub(super) mac: Hmac<Sha256>,
}

impl Key {
    fn new(bytes: [u8; KEY_LEN]) -> Self {
        Self {
            bytes,
            cipher: Aes256Gcm::new(&bytes.into()),
            mac: <Hmac<Sha256> as Mac>::new_from_slice(&bytes)
                .expect("HMAC takes keys of any length"),
        }
    }

    /// A short public name for the key: the first 4 bytes of its SHA-256,
    /// in hex. Safe to log; two nodes with the same fingerprint list hold
    /// the same keys.
    fn fingerprint(&self) -> String {
        hex::encode(&Sha256::digest(self.bytes)[..4])
    }
}

/// An ordered, non-empty list of keys: the first seals and signs, every one
/// opens and verifies, so a new key can be rolled out before it is used.
///
/// Never prints its keys: `Debug` shows fingerprints only.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<Key>,
}

impl Keyring {
    /// A keyring of `keys`, the first being the one that seals and signs.
    pub fn new(keys: impl IntoIterator<Item = [u8; KEY_LEN]>) -> Result<Self, ParseError> {
        let keys: Vec<Key> = keys.into_iter().map(Key::new).collect();
        if keys.is_empty() {
            return Err(ParseError::NoKeys);
        }
        Ok(Self { keys })
    }

    /// Parses a keyring file's text.
    pub(crate) fn parse(text: &str) -> Result<Self, ParseError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut keys = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line_no = index + 1;
            let entry = line.trim();
            if entry.is_empty() || entry.starts_with('#') {
                continue;
            }
            keys.push(decode_key(entry, line_no)?);
        }
        Self::new(keys)
    }

    /// Reads and parses a keyring file.
    pub(crate) fn load(path: &Path) -> Result<Self, KeyringError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyringError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|problem| KeyringError::Invalid {
            path: path.to_owned(),
            problem,
        })
    }

    /// The key that seals and signs.
    pub(super) fn primary(&self) -> &Key {
        &self.keys[0]
    }

    /// Every key, the primary first.
    pub(super) fn keys(&self) -> &[Key] {
        &self.keys
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The keys' fingerprints, primary first, comma-separated: for logs.
    pub(crate) fn fingerprints(&self) -> String {
        self.keys
            .iter()
            .map(Key::fingerprint)
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl PartialEq for Keyring {
    fn eq(&self, other: &Self) -> bool {
        self.keys.len() == other.keys.len()
            && self
                .keys
                .iter()
                .zip(&other.keys)
                .all(|(a, b)| a.bytes == b.bytes)
    }
}

impl Eq for Keyring {}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("fingerprints", &self.fingerprints())
            .finish()
    }
}

fn decode_key(entry: &str, line: usize) -> Result<[u8; KEY_LEN], ParseError> {
    let bytes = KEY_BASE64.decode(entry).map_err(|error| {
        let mut detail = error.to_string();
        if entry.contains(['-', '_']) {
            detail.push_str("; it looks like base64url, use the standard alphabet (+ and /)");
        }
        ParseError::NotBase64 { line, detail }
    })?;
    <[u8; KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| ParseError::WrongLength {
        line,
        len: bytes.len(),
    })
}

/// Re-reads a keyring file and publishes its keys when they change.
///
/// The file is read by path every time, never watched with inotify: a
/// Kubernetes Secret volume swaps a `..data` symlink, which inotify on the
/// file itself does not see. A missing or invalid file keeps the previous
/// keyring and logs one warning per distinct problem.
pub(crate) struct KeyringWatch {
    path: PathBuf,
    publish: watch::Sender<Arc<Keyring>>,
    /// The text last parsed, valid or not: unchanged text is not re-parsed.
    last_text: Option<String>,
    /// The problem last warned about, so that it is not repeated every tick.
    last_problem: Option<String>,
}

impl KeyringWatch {
    /// A watch of `path` starting from `initial` (normally what
    /// [`Keyring::load`] just read from the same path).
    pub(crate) fn new(path: PathBuf, initial: Keyring) -> (Self, watch::Receiver<Arc<Keyring>>) {
        let (publish, receiver) = watch::channel(Arc::new(initial));
        let watch = Self {
            path,
            publish,
            last_text: None,
            last_problem: None,
        };
        (watch, receiver)
    }

    /// Takes in one reading of the file; publishes a keyring that differs
    /// from the current one. Returns whether it published.
    pub(crate) fn apply(&mut self, read: io::Result<String>) -> bool {
        let text = match read {
            Ok(text) => text,
            Err(error) => {
                self.problem(format!("cannot read the keyring file: {error}"));
                // Read again in full once the file is back.
                self.last_text = None;
                return false;
            }
        };
        if self.last_text.as_deref() == Some(text.as_str()) {
            return false;
        }
        let parsed = Keyring::parse(&text);
        self.last_text = Some(text);
        match parsed {
            Ok(keyring) => {
                self.last_problem = None;
                let changed = self.publish.send_if_modified(|current| {
                    if **current == keyring {
                        false
                    } else {
                        *current = Arc::new(keyring);
                        true
                    }
                });
                if changed {
                    let current = self.publish.borrow();
                    info!(
                        path = %self.path.display(),
                        keys = current.len(),
                        fingerprints = %current.fingerprints(),
                        "keyring reloaded"
                    );
                }
                changed
            }
            Err(problem) => {
                self.problem(problem.to_string());
                false
            }
        }
    }

    fn problem(&mut self, problem: String) {
        if self.last_problem.as_deref() != Some(problem.as_str()) {
            warn!(
                path = %self.path.display(),
                error = %problem,
                "keyring reload failed, keeping the previous keys"
            );
            self.last_problem = Some(problem);
        }
    }

    /// Re-reads the file every `interval` until `shutdown` is cancelled or
    /// every receiver is gone.
    pub(crate) async fn run(mut self, interval: Duration, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The first tick is immediate; the caller has just read the file.
        ticks.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.publish.closed() => return,
                _ = ticks.tick() => {
                    let read = tokio::fs::read_to_string(&self.path).await;
                    self.apply(read);
                }
            }
        }
    }
}

/// Watches `path` on a task of its own (every [`WATCH_INTERVAL`]), starting
/// from `initial`, until `shutdown` is cancelled or every receiver is gone.
/// Must be called within a tokio runtime.
pub(crate) fn spawn_watch(
    path: PathBuf,
    initial: Keyring,
    shutdown: CancellationToken,
) -> watch::Receiver<Arc<Keyring>> {
    let (watch, receiver) = KeyringWatch::new(path, initial);
    tokio::spawn(watch.run(WATCH_INTERVAL, shutdown));
    receiver
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE};

    use super::*;

    fn key(byte: u8) -> [u8; KEY_LEN] {
        [byte; KEY_LEN]
    }

    fn line(byte: u8) -> String {
        STANDARD.encode(key(byte))
    }

    #[test]
    fn parses_keys_in_order_skipping_blanks_and_comments() {
        let text = format!(
            "# rotated 2024-05-01\n\n  {}  \r\n\t# the old one\n{}\n",
            line(1),
            STANDARD_NO_PAD.encode(key(2))
        );
        let keyring = Keyring::parse(&text).expect("valid keyring");
        assert_eq!(keyring, Keyring::new([key(1), key(2)]).expect("keys"));
        assert_eq!(keyring.len(), 2);
        assert_eq!(keyring.primary().bytes, key(1));
    }

    #[test]
    fn tolerates_a_byte_order_mark() {
        let text = format!("\u{feff}{}\n", line(7));
        assert_eq!(
            Keyring::parse(&text).expect("valid"),
            Keyring::new([key(7)]).expect("keys")
        );
    }

    #[test]
    fn errors_name_the_line_and_the_problem() {
        let text = format!("# header\n{}\nnot base64!\n", line(1));
        let error = Keyring::parse(&text).expect_err("bad line");
        assert!(
            matches!(error, ParseError::NotBase64 { line: 3, .. }),
            "{error:?}"
        );
        assert!(
            error
                .to_string()
                .starts_with("line 3: the key is not base64")
        );

        let short = STANDARD.encode([0u8; 16]);
        let error = Keyring::parse(&format!("\n{short}")).expect_err("short key");
        assert_eq!(error, ParseError::WrongLength { line: 2, len: 16 });
        assert!(
            error
                .to_string()
                .contains("16 bytes long, keys are 32 bytes")
        );

        let long = STANDARD.encode([0u8; 48]);
        let error = Keyring::parse(&long).expect_err("long key");
        assert_eq!(error, ParseError::WrongLength { line: 1, len: 48 });

        let url_safe = URL_SAFE.encode([0xfb; KEY_LEN]);
        let error = Keyring::parse(&url_safe).expect_err("base64url");
        assert!(error.to_string().contains("base64url"), "{error}");
    }

    #[test]
    fn a_file_without_keys_is_an_error() {
        for text in ["", "\n\n", "# only a comment\n   \n"] {
            assert_eq!(Keyring::parse(text), Err(ParseError::NoKeys));
        }
        assert!(Keyring::new([]).is_err());
    }

    #[test]
    fn debug_shows_fingerprints_not_keys() {
        let keyring = Keyring::new([key(1), key(2)]).expect("keys");
        let shown = format!("{keyring:?}");
        assert!(shown.contains(&keyring.fingerprints()), "{shown}");
        assert!(!shown.contains(&line(1)) && !shown.contains("1, 1, 1"));
        assert_eq!(keyring.fingerprints().len(), 8 + 1 + 8);
    }

    #[test]
    fn a_fingerprint_is_the_start_of_the_keys_sha256_in_lowercase_hex() {
        let keyring = Keyring::new([key(1), key(2)]).expect("keys");
        assert_eq!(keyring.fingerprints(), "72cd6e84,75877bb4");
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keyring");
        let error = Keyring::load(&path).expect_err("missing");
        assert!(error.to_string().contains("cannot read the keyring file"));
        assert!(error.to_string().contains("keyring"));

        std::fs::write(&path, "x\n").expect("write");
        let error = Keyring::load(&path).expect_err("invalid");
        assert!(
            error.to_string().contains("line 1: the key is not base64"),
            "{error}"
        );

        std::fs::write(&path, format!("{}\n", line(3))).expect("write");
        assert_eq!(
            Keyring::load(&path).expect("valid"),
            Keyring::new([key(3)]).expect("keys")
        );
    }

    #[test]
    fn the_watch_publishes_changes_and_keeps_keys_through_bad_files() {
        let initial = Keyring::new([key(1)]).expect("keys");
        let (mut watch, receiver) = KeyringWatch::new(PathBuf::from("keyring"), initial.clone());

        // The same keys (a comment added) publish nothing.
        assert!(!watch.apply(Ok(format!("# same\n{}\n", line(1)))));
        // A rotation publishes.
        assert!(watch.apply(Ok(format!("{}\n{}\n", line(2), line(1)))));
        let rotated = Keyring::new([key(2), key(1)]).expect("keys");
        assert_eq!(**receiver.borrow(), rotated);
        // Unchanged text is not even parsed again.
        assert!(!watch.apply(Ok(format!("{}\n{}\n", line(2), line(1)))));
        // Missing, garbled or empty files keep the previous keys.
        assert!(!watch.apply(Err(io::Error::from(io::ErrorKind::NotFound))));
        assert!(!watch.apply(Ok("garbage\n".to_owned())));
        assert!(!watch.apply(Ok(String::new())));
        assert_eq!(**receiver.borrow(), rotated);
        // And the next good file is taken.
        assert!(watch.apply(Ok(format!("{}\n", line(2)))));
        assert_eq!(**receiver.borrow(), Keyring::new([key(2)]).expect("keys"));
    }

    #[tokio::test]
    async fn the_watch_follows_the_file_through_a_symlink_swap() {
        // The layout of a Kubernetes Secret volume: keyring -> ..data/keyring,
        // ..data -> a timestamped directory that is replaced on update.
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let write_version = |name: &str, byte: u8| {
            let version = root.join(name);
            std::fs::create_dir(&version).expect("mkdir");
            let mut file = std::fs::File::create(version.join("keyring")).expect("create");
            writeln!(file, "{}", line(byte)).expect("write");
        };
        write_version("..v1", 1);
        std::os::unix::fs::symlink("..v1", root.join("..data")).expect("symlink");
        std::os::unix::fs::symlink("..data/keyring", root.join("keyring")).expect("symlink");

        let path = root.join("keyring");
        let initial = Keyring::load(&path).expect("initial");
        let shutdown = CancellationToken::new();
        let (watch, mut receiver) = KeyringWatch::new(path, initial);
        let task = tokio::spawn(watch.run(Duration::from_millis(20), shutdown.clone()));

        write_version("..v2", 2);
        std::os::unix::fs::symlink("..v2", root.join("..data_tmp")).expect("symlink");
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).expect("swap");

        tokio::time::timeout(Duration::from_secs(10), receiver.changed())
            .await
            .expect("reloaded in time")
            .expect("watch alive");
        assert_eq!(**receiver.borrow(), Keyring::new([key(2)]).expect("keys"));

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("stops on shutdown")
            .expect("task ok");
    }
}
