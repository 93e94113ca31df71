//! Compile-fail tests for `#[derive(Event)]` and `#[eventbus::handler]` (`handler_*.rs`): one
//! mistake per file in `tests/ui/`, with the exact compiler output in the `.stderr` beside it.
//!
//! Regenerate the expected output with `TRYBUILD=overwrite cargo test --test derive_ui`, then
//! read every changed `.stderr`: each message must say what is wrong, what is accepted, and
//! point at the offending token.

#[test]
fn derive_ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
