//! House rules checked over the source tree: every Rust file opens with a
//! `//!` line naming its concept, library code prints only in `app/` (the
//! CLI) and `context.rs` (the stderr sink), and no test is ignored without a
//! reason.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if !path.ends_with("target") && !path.ends_with("ui") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn sources() -> Vec<PathBuf> {
    let root = workspace();
    let mut files = Vec::new();
    for dir in ["taskflow/src", "taskflow-core/src", "taskflow-macros/src", "taskflow-web/src", "examples", "tests"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 20, "the walk found the sources: {files:?}");
    files
}

#[test]
fn every_file_opens_with_a_module_doc() {
    let offenders: Vec<_> = sources()
        .into_iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or_default();
            !(first.starts_with("//!") || first.starts_with("#![doc"))
        })
        .collect();
    assert!(offenders.is_empty(), "files without a leading `//!` line: {offenders:?}");
}

#[test]
fn library_code_does_not_print() {
    let root = workspace();
    let mut files = Vec::new();
    rust_files(&root.join("taskflow/src"), &mut files);
    rust_files(&root.join("taskflow-core/src"), &mut files);
    rust_files(&root.join("taskflow-macros/src"), &mut files);
    let offenders: Vec<_> = files
        .into_iter()
        .filter(|path| !path.components().any(|c| c.as_os_str() == "app") && !path.ends_with("context.rs"))
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            ["println!(", "print!(", "eprintln!(", "dbg!("].iter().any(|m| text.contains(m))
        })
        .collect();
    assert!(offenders.is_empty(), "library files that print: {offenders:?}");
}

#[test]
fn ignored_tests_say_why() {
    let offenders: Vec<_> = sources()
        .into_iter()
        .filter(|path| std::fs::read_to_string(path).unwrap().lines().any(|l| l.trim() == "#[ignore]"))
        .collect();
    assert!(offenders.is_empty(), "`#[ignore]` without a reason: {offenders:?}");
}
