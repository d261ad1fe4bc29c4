//! THREAT-MODEL.md names, for each attack, the test that shows its defence as `file::test_name`. Every
//! such name not marked † (on a branch not merged yet) must be a test function in that file, so that a
//! renamed or deleted test cannot leave the threat model pointing at nothing.

use std::path::{Path, PathBuf};

/// The marker of a test on a branch not merged yet.
const PENDING_MARK: char = '†';

/// A test reference in the threat model: the file, the function, and whether it is marked pending.
#[derive(Debug, PartialEq)]
struct Reference {
    file: String,
    test: String,
    pending: bool,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").to_owned()
}

/// Every `` `path.rs::name` `` in `text`, with whether `†` precedes it (after blanks).
fn references(text: &str) -> Vec<Reference> {
    let mut out = Vec::new();
    let parts: Vec<&str> = text.split('`').collect();
    // Odd parts are inside backticks; the part before each is what precedes it.
    for i in (1..parts.len()).step_by(2) {
        let Some((file, test)) = parts[i].split_once(".rs::") else { continue };
        let is_name = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "_/.-".contains(c));
        if !is_name(file) || !is_name(test) {
            continue;
        }
        let pending = parts[i - 1].trim_end().ends_with(PENDING_MARK);
        out.push(Reference { file: format!("{file}.rs"), test: test.to_owned(), pending });
    }
    out
}

/// Whether `source` defines a function `name` (a test or a property).
fn defines(source: &str, name: &str) -> bool {
    source.contains(&format!("fn {name}("))
}

#[test]
fn every_test_the_threat_model_names_exists() {
    let text = std::fs::read_to_string(root().join("THREAT-MODEL.md")).expect("THREAT-MODEL.md at the top level");
    let refs = references(&text);
    assert!(refs.len() >= 50, "only {} test references found: is the format still `file::test`?", refs.len());
    let mut missing = Vec::new();
    for r in refs.iter().filter(|r| !r.pending) {
        let source = std::fs::read_to_string(root().join(&r.file)).unwrap_or_default();
        if !defines(&source, &r.test) {
            missing.push(format!("{}::{}", r.file, r.test));
        }
    }
    assert!(missing.is_empty(), "THREAT-MODEL.md names tests that do not exist: {missing:#?}");
}

#[test]
fn references_are_read_with_their_mark() {
    let text = "a `tests/x.rs::one`, † `proto-core/src/y.rs::two_2`; `not a ref` `SOURCE_MAX` `z.rs::`";
    assert_eq!(
        references(text),
        vec![
            Reference { file: "tests/x.rs".into(), test: "one".into(), pending: false },
            Reference { file: "proto-core/src/y.rs".into(), test: "two_2".into(), pending: true },
        ]
    );
    assert!(defines("#[test]\nfn one() {}", "one"));
    assert!(!defines("fn one_more() {}", "one"));
}
