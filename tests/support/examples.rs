//! The examples' binaries, for tests that run them as separate processes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;

/// The path of the built example `name`, built on first use with `cargo build --example`
/// into the target directory of the running test binary (a no-op after `cargo test`, which
/// builds the examples anyway).
///
/// # Panics
///
/// When the build fails; its output is in the message.
pub fn example_binary(name: &str) -> PathBuf {
    example_binary_with(name, &[])
}

/// [`example_binary`] for an example that needs `features` of the suite (its
/// `required-features`), built with them.
///
/// # Panics
///
/// When the build fails; its output is in the message.
pub fn example_binary_with(name: &str, features: &[&str]) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    // This binary is <target>/<profile>/deps/<name>-<hash>.
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in <target>/<profile>/deps")
        .to_path_buf();
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !built.iter().any(|n| n == name) {
        build(&profile_dir, name, features);
        built.push(name.to_owned());
    }
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.is_file(),
        "example binary {} is missing",
        path.display()
    );
    path
}

fn build(profile_dir: &Path, name: &str, features: &[&str]) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let mut command = std::process::Command::new(cargo);
    command
        .args(["build", "--quiet", "--example", name, "--manifest-path"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(profile_dir.parent().expect("<target>/<profile>"));
    if !features.is_empty() {
        command.arg("--features").arg(features.join(","));
    }
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            command.arg("--release");
        }
        Some(profile) => {
            command.args(["--profile", profile]);
        }
    }
    let output = command
        .stdin(Stdio::null())
        .output()
        .expect("run cargo to build an example");
    assert!(
        output.status.success(),
        "building example {name} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}
