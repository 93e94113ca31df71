//! A throwaway PostgreSQL server for the tests: a fresh cluster (`initdb`) in a temporary
//! directory, started with `pg_ctl` on a free loopback port, with `fsync` on so that a crash
//! test sees what a real server keeps, and stopped (its directory removed) on drop.
//!
//! PostgreSQL refuses to run as root: when the tests run as root, every server command runs as
//! the `postgres` OS user (`runuser -u postgres --`), which the Debian package creates. Clients
//! connect over TCP as the database superuser `postgres`, trusted on loopback.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::redis_server::{TempDir, free_port};

const INSTALL_HINT: &str = "PostgreSQL is not installed: `apt-get install postgresql` \
    (scripts/test.sh installs it)";

/// A running PostgreSQL server, stopped on drop.
pub struct Postgres {
    port: u16,
    bin: PathBuf,
    as_postgres: bool,
    dir: TempDir,
}

impl fmt::Debug for Postgres {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Postgres")
            .field("port", &self.port)
            .field("data", &self.data())
            .finish_non_exhaustive()
    }
}

impl Postgres {
    /// Starts a server; `None` (after saying how to install it) when PostgreSQL is missing.
    ///
    /// # Panics
    ///
    /// When PostgreSQL is missing and `CI` is `true` (in CI a missing server is a failure, not
    /// a skip), or when the server does not start.
    pub fn start_or_skip() -> Option<Postgres> {
        let Some(bin) = bin_dir() else {
            assert!(
                !crate::in_ci(),
                "{INSTALL_HINT} (CI is set, so this is a failure, not a skip)"
            );
            eprintln!("skipping: {INSTALL_HINT}");
            return None;
        };
        Some(Self::start_in(bin))
    }

    #[track_caller]
    fn start_in(bin: PathBuf) -> Postgres {
        let as_postgres = running_as_root();
        let dir = TempDir::new();
        if as_postgres {
            let owner = run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path()));
            assert!(owner.status.success(), "chown: {}", text(&owner));
        }
        let mut server = Postgres {
            port: free_port(),
            bin,
            as_postgres,
            dir,
        };
        server.init();
        let mut last = String::new();
        for _ in 0..5 {
            match server.try_start() {
                Ok(()) => return server,
                Err(why) => last = why,
            }
            server.port = free_port();
        }
        panic!("PostgreSQL did not start: {last}");
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of the `postgres` database, as sqlx and libpq take it.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The postmaster's process id, from its pid file.
    pub fn pid(&self) -> Option<u32> {
        let pid_file = std::fs::read_to_string(self.data().join("postmaster.pid")).ok()?;
        pid_file.lines().next()?.trim().parse().ok()
    }

    /// Runs `sql` with `psql` and returns what it printed, unaligned and without headers.
    ///
    /// # Panics
    ///
    /// When `psql` fails.
    #[track_caller]
    pub fn psql(&self, sql: &str) -> String {
        self.try_psql(sql)
            .unwrap_or_else(|e| panic!("psql -c {sql:?} failed: {e}"))
    }

    /// Runs `sql` with `psql`; its error output when it fails.
    pub fn try_psql(&self, sql: &str) -> Result<String, String> {
        let out = run(Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
            ])
            .args(["-p", &self.port.to_string(), "-d", "postgres", "-c", sql]));
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
        } else {
            Err(text(&out))
        }
    }

    /// Kills the postmaster with SIGKILL, as a crash would: its backends exit when they notice.
    pub fn kill(&self) {
        if let Some(pid) = self.pid() {
            let _ = run(Command::new("kill").args(["-9", &pid.to_string()]));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.ready() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again on the same port and data, after [`kill`](Self::kill) or
    /// [`stop`](Self::stop): crash recovery replays what was committed.
    ///
    /// # Panics
    ///
    /// When it does not start.
    #[track_caller]
    pub fn restart(&self) {
        // A killed postmaster leaves its pid file and backends behind for a moment.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.try_start() {
                Ok(()) => return,
                Err(why) => last = why,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("PostgreSQL did not start again: {last}");
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`).
    pub fn stop(&self) {
        let mut cmd = self.server_command("pg_ctl");
        cmd.arg("stop")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w"]);
        let _ = run(&mut cmd);
    }

    /// Whether the server accepts connections.
    pub fn ready(&self) -> bool {
        run(Command::new(self.bin.join("pg_isready")).args([
            "-q",
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
        ]))
        .status
        .success()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn init(&self) {
        let mut cmd = self.server_command("initdb");
        cmd.arg("-D").arg(self.data());
        cmd.args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-instructions",
        ]);
        let out = run(&mut cmd);
        assert!(out.status.success(), "initdb failed: {}", text(&out));
    }

    fn try_start(&self) -> Result<(), String> {
        let settings = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=100",
            self.port,
            self.dir.path().display()
        );
        let mut cmd = self.server_command("pg_ctl");
        cmd.arg("start")
            .arg("-D")
            .arg(self.data())
            .args(["-w", "-t", "30", "-o", &settings]);
        cmd.arg("-l").arg(self.dir.path().join("postgres.log"));
        let out = run(&mut cmd);
        if out.status.success() && self.ready() {
            return Ok(());
        }
        let log = std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default();
        Err(format!("{}\n{log}", text(&out)))
    }

    /// `name` from the server's bin directory, as the `postgres` OS user when the tests run as
    /// root.
    fn server_command(&self, name: &str) -> Command {
        let program = self.bin.join(name);
        if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The directory of PostgreSQL's server programs: the newest `/usr/lib/postgresql/N/bin` (where
/// Debian puts them), else the directory of an `initdb` on the `PATH`.
fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .find(|dir| dir.join("initdb").exists())
        .map(|dir| std::fs::canonicalize(dir.join("initdb")).unwrap_or(dir.join("initdb")))
        .and_then(|initdb| initdb.parent().map(Path::to_path_buf))
}

fn running_as_root() -> bool {
    let out = run(Command::new("id").arg("-u"));
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
