//! A Python virtual environment with redis-py, for the interoperability tests.
//!
//! The venv lives at `<workspace>/target/pyvenv` (override with `EVENTBUS_PYVENV`) and holds
//! redis-py [`REDIS_PY_VERSION`]. It is created on first use (`python3 -m venv`, then
//! `pip install redis==REDIS_PY_VERSION`), once per process; test binaries running in parallel
//! each build in a private temporary directory and rename it into place, so the first one to
//! finish wins and the others use its venv. `scripts/python-env.sh` (run by `scripts/test.sh`)
//! creates the same venv beforehand:
//!
//! ```text
//! python3 -m venv target/pyvenv && target/pyvenv/bin/python -m pip install redis==5.2.1
//! ```
//!
//! `PYTHON3` names the interpreter that creates it (default: `python3` on the `PATH`).
//!
//! When python3 or pip is missing or fails, [`python_with_redis`] prints why and returns `None`
//! (the test skips), or panics when `CI=true`, where a skipped interop test would hide a gap.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The redis-py version the interop tests run against.
pub const REDIS_PY_VERSION: &str = "5.2.1";

/// The venv's directory: `$EVENTBUS_PYVENV`, or `target/pyvenv` under the workspace root.
pub fn venv_dir() -> PathBuf {
    match std::env::var_os("EVENTBUS_PYVENV") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyvenv"),
    }
}

/// The directory of the Python scripts the tests run (`tests/python`).
pub fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python")
}

/// Runs `tests/python/peer.py` with the venv's interpreter; stdout piped, killed on drop.
pub fn peer(python: &Path, args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(python)
        .arg(scripts_dir().join("peer.py"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the Python peer")
}

/// Waits for the child to finish (at most 30 s) and returns its stdout lines, asserting it
/// exited successfully.
pub async fn finish_peer(child: tokio::process::Child) -> Vec<String> {
    let output = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the Python peer finished within 30 s")
        .expect("wait for the Python peer");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "the Python peer failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout.lines().map(str::to_owned).collect()
}

/// The venv's interpreter, with redis-py installed; `None` (after a message on stderr) when it
/// cannot be had and `CI` is not set.
///
/// # Panics
///
/// When the venv cannot be created and `CI=true`.
pub fn python_with_redis() -> Option<PathBuf> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PYTHON.get_or_init(|| ensure_venv(&venv_dir())) {
        Ok(python) => Some(python.clone()),
        Err(why) => {
            if crate::in_ci() {
                panic!("CI=true: the Python interop tests need a venv with redis-py: {why}");
            }
            eprintln!("skipping: no Python with redis-py ({why})");
            None
        }
    }
}

fn interpreter(venv: &Path) -> PathBuf {
    venv.join("bin/python")
}

/// Whether `venv` holds a working interpreter with the pinned redis-py.
fn usable(venv: &Path) -> bool {
    let check = format!(
        "import sys, redis; sys.exit(0 if redis.__version__ == {REDIS_PY_VERSION:?} else 1)"
    );
    Command::new(interpreter(venv))
        .args(["-c", &check])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run(what: &str, command: &mut Command) -> Result<(), String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: could not run {:?}: {e}", command.get_program()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn ensure_venv(venv: &Path) -> Result<PathBuf, String> {
    if usable(venv) {
        return Ok(interpreter(venv));
    }
    let parent = venv
        .parent()
        .ok_or_else(|| format!("{} has no parent directory", venv.display()))?;
    std::fs::create_dir_all(parent)
        .map_err(|e| format!("could not create {}: {e}", parent.display()))?;
    // Built aside and renamed into place: a rename onto an existing venv fails, so parallel
    // builders cannot clash, and a half-built venv is never seen at the final path.
    let name = venv
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("pyvenv");
    let staging = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let built = build_venv(&staging);
    if let Err(why) = built {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(why);
    }
    if usable(venv) {
        // Another process finished first.
        let _ = std::fs::remove_dir_all(&staging);
        return Ok(interpreter(venv));
    }
    // A venv at the final path that is not usable (older redis-py, broken) is replaced.
    if venv.exists() {
        let _ = std::fs::remove_dir_all(venv);
    }
    if let Err(e) = std::fs::rename(&staging, venv) {
        let _ = std::fs::remove_dir_all(&staging);
        if !usable(venv) {
            return Err(format!(
                "could not move the venv to {}: {e}",
                venv.display()
            ));
        }
    }
    if usable(venv) {
        Ok(interpreter(venv))
    } else {
        Err(format!(
            "the venv at {} does not import redis {REDIS_PY_VERSION}",
            venv.display()
        ))
    }
}

fn build_venv(dir: &Path) -> Result<(), String> {
    let python3 = std::env::var_os("PYTHON3").unwrap_or_else(|| "python3".into());
    run(
        "python3 -m venv",
        Command::new(&python3).arg("-m").arg("venv").arg(dir),
    )?;
    run(
        "pip install redis",
        Command::new(interpreter(dir)).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            &format!("redis=={REDIS_PY_VERSION}"),
        ]),
    )
}
