//! The layers only point down (`docs/architecture.md`): a test that reads
//! each layer's sources and refuses an import of a layer above it, so the
//! rule holds as if the layers were crates.

use std::path::Path;

/// Each layer (a folder of `src/`) and the layers above it, which it must
/// not use.
const RULES: &[(&str, &[&str])] = &[
    (
        "engineio",
        &["engine", "shard", "server", "relay", "app", "metrics"],
    ),
    (
        "http",
        &["engine", "shard", "server", "relay", "app", "metrics"],
    ),
    (
        "ws",
        &["engine", "shard", "server", "relay", "app", "metrics"],
    ),
    (
        "socketio",
        &["engine", "shard", "server", "relay", "app", "metrics"],
    ),
    ("auth", &["engine", "shard", "server", "relay", "app"]),
    (
        "redis",
        &["engine", "shard", "server", "relay", "app", "metrics"],
    ),
    ("engine", &["shard", "server", "relay", "app", "admin_ui"]),
    ("shard", &["server", "relay", "app", "admin_ui"]),
    ("server", &["relay", "app", "admin_ui"]),
    ("relay", &["app", "admin_ui"]),
    ("admin_ui", &["relay", "app"]),
];

fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).expect("a source folder") {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("a source file");
            out.push((path.display().to_string(), text));
        }
    }
}

#[test]
fn no_layer_uses_a_layer_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut broken = Vec::new();
    for (layer, above) in RULES {
        let mut files = Vec::new();
        sources(&src.join(layer), &mut files);
        assert!(!files.is_empty(), "no sources in src/{layer}");
        for (path, text) in &files {
            for upper in *above {
                let import = format!("crate::{upper}::");
                let glob = format!("crate::{upper};");
                if text.contains(&import) || text.contains(&glob) {
                    broken.push(format!("{path} uses crate::{upper}"));
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "layers pointing up:\n{}",
        broken.join("\n")
    );
}
