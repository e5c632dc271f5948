//! Writes the fuzz corpora's seeds into `fuzz/corpus/<target>/`, made by
//! the real code (`shoal::fuzzing::seeds`): gossip packets from a real
//! exchange, plain and sealed; requests signed by the real signer; routes;
//! and, for the config target, every config in the README's YAML blocks and
//! in the `shoal.yaml` ConfigMaps under deploy/. Run from the repository:
//!
//! ```text
//! cargo run --example fuzz_seeds --features fuzzing
//! ```
//!
//! then minimise each corpus with `cargo fuzz cmin` (see `.ci/fuzz.sh`).

use std::fs;
use std::path::Path;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut configs = Vec::new();
    let readme = fs::read_to_string(root.join("README.md"))?;
    for (index, block) in fenced_yaml(&readme).into_iter().enumerate() {
        configs.push((format!("readme-{index}"), block));
    }
    let mut deploy: Vec<_> = fs::read_dir(root.join("deploy"))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    deploy.sort();
    for path in deploy {
        let stem = path
            .file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        for (index, block) in config_maps(&fs::read_to_string(&path)?)
            .into_iter()
            .enumerate()
        {
            configs.push((format!("deploy-{stem}-{index}"), block));
        }
    }
    for seed in shoal::fuzzing::seeds(&configs) {
        let dir = root.join("fuzz/corpus").join(seed.target);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(&seed.name), &seed.bytes)?;
        println!("{}/{} ({} bytes)", seed.target, seed.name, seed.bytes.len());
    }
    Ok(())
}

/// The bodies of the ```yaml blocks of a Markdown text.
fn fenced_yaml(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start()) {
            (None, fence) if fence.starts_with("```yaml") => current = Some(String::new()),
            (Some(_), fence) if fence.starts_with("```") => blocks.extend(current.take()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// The `shoal.yaml: |` block scalars of a manifest, unindented.
fn config_maps(manifest: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut lines = manifest.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() != "shoal.yaml: |" {
            continue;
        }
        let key_indent = line.len() - line.trim_start().len();
        let mut block = String::new();
        let mut indent = None;
        while let Some(next) = lines.peek() {
            let this_indent = next.len() - next.trim_start().len();
            if !next.trim().is_empty() && this_indent <= key_indent {
                break;
            }
            if !next.trim().is_empty() {
                let strip = *indent.get_or_insert(this_indent);
                block.push_str(next.get(strip.min(next.len())..).unwrap_or(""));
            }
            block.push('\n');
            lines.next();
        }
        blocks.push(block);
    }
    blocks
}
