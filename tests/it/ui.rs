//! Compile-time errors of `#[task]`, checked with trybuild against the files in `tests/ui`.
//!
//! Regenerate the expected `.stderr` files with
//! `TRYBUILD=overwrite cargo test -p taskflow-tests --test it ui`, then read them.

#[test]
fn compile_fail() {
    let t = trybuild::TestCases::new();
    t.compile_fail(concat!(env!("CARGO_MANIFEST_DIR"), "/ui/fail/*.rs"));
}

#[test]
fn compile_pass() {
    let t = trybuild::TestCases::new();
    t.pass(concat!(env!("CARGO_MANIFEST_DIR"), "/ui/pass/*.rs"));
}
