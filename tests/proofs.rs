//! proofs/ names the tests that check each claim; this test fails when a named test is missing.

use std::fs;
use std::path::Path;

/// Every `` `path.rs::name` `` reference in a proofs/*.md file.
fn references() -> Vec<(String, String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut refs = Vec::new();
    for entry in fs::read_dir(root.join("proofs")).expect("proofs/ exists") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            let text = fs::read_to_string(&path).unwrap();
            for span in text.split('`').skip(1).step_by(2) {
                if let Some((file, name)) = span.split_once(".rs::") {
                    let doc = path.file_name().unwrap().to_string_lossy().into_owned();
                    refs.push((doc, format!("{file}.rs"), name.to_string()));
                }
            }
        }
    }
    refs
}

#[test]
fn every_test_named_in_proofs_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let refs = references();
    assert!(refs.len() >= 10, "proofs/ names only {} tests", refs.len());
    let mut missing = Vec::new();
    for (doc, file, name) in &refs {
        let ok = fs::read_to_string(root.join(file)).is_ok_and(|src| {
            name.chars().all(|c| c.is_alphanumeric() || c == '_')
                && src.contains(&format!("fn {name}("))
        });
        if !ok {
            missing.push(format!("{doc}: {file}::{name}"));
        }
    }
    assert!(
        missing.is_empty(),
        "proofs name tests that do not exist:\n{}",
        missing.join("\n")
    );
}

#[test]
fn proofs_index_lists_every_proof() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let index = fs::read_to_string(root.join("proofs/README.md")).unwrap();
    for entry in fs::read_dir(root.join("proofs")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") && name != "README.md" {
            assert!(
                index.contains(&format!("({name})")),
                "proofs/README.md does not link {name}"
            );
        }
    }
}
