//! The crate's layering, checked on its source: imports point down the
//! layout in `src/lib.rs` (never up, never sideways between the service and
//! peer faces), and each external crate appears only where the design puts
//! it. Test code is left out: a unit test may reach for anything.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The layers, top first. A module may import only modules of later layers.
const LAYERS: &[&[&str]] = &[
    &["node", "fuzzing"],
    &["http", "peer"],
    &["wire"],
    &["loader"],
    &["membership", "discovery"],
    &["cache"],
    &[
        "ring",
        "config",
        "metrics",
        "security",
        "error_kind",
        "error_chain",
    ],
];

/// Where each external crate may be named: path prefixes under `src/`.
const CRATE_HOMES: &[(&str, &[&str])] = &[
    ("foca", &["membership/"]),
    ("kube", &["discovery/kubernetes/"]),
    ("k8s_openapi", &["discovery/kubernetes/"]),
    ("hickory_resolver", &["discovery/resolver.rs"]),
    ("moka", &["cache/"]),
    ("prometheus", &["metrics.rs"]),
    ("axum", &["http/", "peer/", "wire/", "node/"]),
    // config parses origin URLs with reqwest's URL type.
    ("reqwest", &["peer/", "loader.rs", "node/", "config/"]),
    // Connections are served, bounded, in one place; rlimit raises the
    // open-file limit there too. The peer client is hyper's own pooled one
    // (HTTP/2 between peers, without reqwest's layers: issue 11).
    ("hyper", &["node/serve.rs", "peer/"]),
    ("hyper_util", &["node/serve.rs", "peer/"]),
    ("rlimit", &["node/fd_limit.rs"]),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A file's code lines with their numbers, without comments and without
/// its inline test module (wherever it stands: skipped to its closing brace).
fn code_lines(path: &Path) -> Vec<(usize, String)> {
    if path.file_name().is_some_and(|n| n == "tests.rs") {
        return Vec::new();
    }
    let text = std::fs::read_to_string(path).expect("read a source file");
    let mut lines = Vec::new();
    let mut after_cfg_test = false;
    // Open braces of the test module being skipped; `None`: not in one.
    let mut in_tests: Option<usize> = None;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(depth) = in_tests {
            let opened = depth + line.matches('{').count();
            let closed = line.matches('}').count();
            in_tests = (opened > closed).then(|| opened - closed);
            continue;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        if after_cfg_test && trimmed.starts_with("mod tests") {
            // `mod tests;` lives in a file of its own (left out above).
            let opened = line.matches('{').count();
            let closed = line.matches('}').count();
            in_tests = (opened > closed).then(|| opened - closed);
            after_cfg_test = false;
            continue;
        }
        after_cfg_test = trimmed.starts_with("#[cfg(test)]");
        if !after_cfg_test {
            lines.push((index + 1, line.to_owned()));
        }
    }
    lines
}

/// The top-level modules `line` names as `crate::NAME`.
fn crate_modules(line: &str) -> BTreeSet<String> {
    line.match_indices("crate::")
        .filter(|(at, _)| {
            // Not `some_crate::`, just `crate::`.
            line[..*at]
                .chars()
                .last()
                .is_none_or(|c| !c.is_alphanumeric() && c != '_')
        })
        .filter_map(|(at, _)| {
            let rest = &line[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

fn names_crate(line: &str, krate: &str) -> bool {
    line.match_indices(krate).any(|(at, _)| {
        let before = line[..at].chars().last();
        let after = &line[at + krate.len()..];
        before.is_none_or(|c| !c.is_alphanumeric() && c != '_' && c != ':')
            && (after.starts_with("::") || after.starts_with(';') || after.starts_with(" as "))
    })
}

#[test]
fn imports_point_down_the_layers_and_crates_stay_home() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src");
        let relative_text = relative.to_string_lossy().replace('\\', "/");
        let module = relative_text
            .split('/')
            .next()
            .expect("a path")
            .trim_end_matches(".rs")
            .to_owned();
        if module == "lib" || module == "main" {
            continue;
        }
        let layer = layer_of(&module)
            .unwrap_or_else(|| panic!("module `{module}` is not in LAYERS: place it"));
        for (number, line) in code_lines(file) {
            for used in crate_modules(&line) {
                if used == module {
                    continue;
                }
                match layer_of(&used) {
                    Some(used_layer) if used_layer > layer => {}
                    _ => wrong.push(format!(
                        "{relative_text}:{number}: `{module}` imports `{used}`, which is not below it"
                    )),
                }
            }
            for (krate, homes) in CRATE_HOMES {
                if names_crate(&line, krate) && !homes.iter().any(|h| relative_text.starts_with(h))
                {
                    wrong.push(format!(
                        "{relative_text}:{number}: `{krate}` belongs in {homes:?} only"
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

#[test]
fn the_checker_sees_what_it_must() {
    assert_eq!(
        crate_modules("use crate::cache::{Group, Groups}; my_crate::x; crate::ring::Ring"),
        BTreeSet::from(["cache".to_owned(), "ring".to_owned()])
    );
    assert!(names_crate("use axum::Router;", "axum"));
    assert!(names_crate("    let x = foca::Foca::new();", "foca"));
    assert!(!names_crate("use crate::kube_like::x;", "kube"));
    assert!(!names_crate("discovery::kubernetes::watch", "kube"));
    assert!(layer_of("http") < layer_of("wire"));
    assert_eq!(
        layer_of("http"),
        layer_of("peer"),
        "the faces share a layer"
    );
}
