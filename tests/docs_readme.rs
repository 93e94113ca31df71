//! The README's example is `examples/readme.rs`, and so is the crate docs' first example: the
//! example is compiled and run by `cargo test` (as an example and as a doc test), and this test
//! fails when the README's or the crate docs' copy differs from it.

use std::path::Path;

/// The marker line right before the copied code block, in the README and in the crate docs.
const MARKER: &str = "<!-- examples/readme.rs -->";

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", full.display()))
        .replace("\r\n", "\n")
}

/// The example's code: the file without its leading `//!` comment and the blank line after it.
fn example() -> String {
    let file = read("examples/readme.rs");
    let code: Vec<&str> = file
        .lines()
        .skip_while(|l| l.starts_with("//!"))
        .skip_while(|l| l.is_empty())
        .collect();
    code.join("\n").trim_end().to_owned()
}

/// The body of the fenced code block that follows the marker in `path`.
fn block_after_marker(path: &str) -> String {
    let text = read(path);
    let mut lines = text.lines().skip_while(|l| l.trim() != MARKER).skip(1);
    match lines.next() {
        Some(fence) if fence.starts_with("```") => {}
        other => panic!("{path}: expected a code block right after `{MARKER}`, found {other:?}"),
    }
    let body: Vec<&str> = lines.take_while(|l| !l.starts_with("```")).collect();
    body.join("\n").trim_end().to_owned()
}

fn assert_same(path: &str) {
    let (copy, example) = (block_after_marker(path), example());
    if copy != example {
        let first = copy
            .lines()
            .zip(example.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| copy.lines().count().min(example.lines().count()));
        panic!(
            "the example in {path} differs from examples/readme.rs, first at line {} of the \
             code:\n  {path}: {:?}\n  examples/readme.rs: {:?}\ncopy the example's code \
             (without its //! header) into {path}",
            first + 1,
            copy.lines().nth(first),
            example.lines().nth(first),
        );
    }
}

#[test]
fn the_readme_shows_examples_readme_rs() {
    assert_same("README.md");
}

#[test]
fn the_crate_docs_show_examples_readme_rs() {
    assert_same("eventbus/src/docs/crate.md");
}
