//! A throwaway `redis-server` on a free loopback port, for tests, examples and benchmarks.
//!
//! ```no_run
//! use eventbus_suite::redis_server::RedisServer;
//!
//! let Some(server) = RedisServer::builder().password("s3cret").start_or_skip() else {
//!     return; // redis-server is not installed (and CI is not set)
//! };
//! assert_eq!(server.cli(&["PING"]), "PONG");
//! let url = server.url_with_password(); // redis://:s3cret@127.0.0.1:PORT
//! ```
//!
//! Each server gets its own port and temporary directory (log, socket), and its own TLS
//! material unless it shares one with other servers (`tls_shared`). It is started with
//! `--save '' --appendonly no`, and is killed when the value is dropped, also when the test
//! panics. Servers of parallel tests never share a port.

use std::fmt;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::tls_material::TlsMaterial;

/// How to install the server, said when it is missing.
const INSTALL_HINT: &str = "redis-server is not installed: install it with \
     `apt-get install redis-server` (Debian/Ubuntu) or `brew install redis` (macOS), \
     or run `scripts/test.sh`, which installs it";

/// Options for a [`RedisServer`]; start it with [`start`](Self::start) or
/// [`start_or_skip`](Self::start_or_skip).
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct RedisServerBuilder {
    password: Option<String>,
    acl_users: Vec<(String, String, String)>,
    tls: bool,
    tls_material: Option<Arc<TlsMaterial>>,
    unix_socket: bool,
    args: Vec<String>,
    bus_port: bool,
}

impl RedisServerBuilder {
    /// Requires this password of the default user (`requirepass`).
    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_owned());
        self
    }

    /// Adds an ACL user with full rights (`user NAME on >PASS ~* &* +@all`).
    pub fn acl_user(self, name: &str, password: &str) -> Self {
        self.acl_user_with(name, password, "~* &* +@all")
    }

    /// Adds an ACL user with the given rules (space-separated, as after `ACL SETUSER NAME on
    /// >PASS`).
    pub fn acl_user_with(mut self, name: &str, password: &str, rules: &str) -> Self {
        self.acl_users
            .push((name.to_owned(), password.to_owned(), rules.to_owned()));
        self
    }

    /// Serves TLS only (no plain-text port), with a certificate authority, a server certificate
    /// for `127.0.0.1`/`localhost` and a client certificate generated with `openssl` into the
    /// server's temporary directory. Client certificates are optional (`tls-auth-clients
    /// optional`), and verified when presented.
    pub fn tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// Serves TLS only, with certificates of a [`TlsMaterial`] shared with other servers: the
    /// nodes of one deployment trust each other, and clients need one authority for all.
    pub fn tls_shared(mut self, material: &Arc<TlsMaterial>) -> Self {
        self.tls = true;
        self.tls_material = Some(material.clone());
        self
    }

    /// Also listens on a Unix socket in the server's temporary directory.
    pub fn unix_socket(mut self, on: bool) -> Self {
        self.unix_socket = on;
        self
    }

    /// Passes an extra option, such as
    /// `.arg("--client-output-buffer-limit", "pubsub 1mb 512kb 10")`.
    pub fn arg(mut self, name: &str, value: &str) -> Self {
        self.args.push(name.to_owned());
        self.args.push(value.to_owned());
        self
    }

    /// Passes extra words as they are, such as `.args(&["--replicaof", "127.0.0.1", "6379"])`.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// Picks a port whose cluster bus port (port + 10000) is free too, and below 55000, for a
    /// `--cluster-enabled yes` node.
    pub fn cluster_bus_port(mut self, on: bool) -> Self {
        self.bus_port = on;
        self
    }

    /// Starts the server; `None` (after printing how to install it) when redis-server is
    /// missing.
    ///
    /// # Panics
    ///
    /// When redis-server is missing and the `CI` environment variable is `true`: in CI a
    /// missing server is a failure, not a skip. Also when the server does not start.
    pub fn start_or_skip(self) -> Option<RedisServer> {
        if !installed() {
            skip_missing_server(crate::in_ci());
            return None;
        }
        Some(self.start())
    }

    /// Starts the server.
    ///
    /// # Panics
    ///
    /// When redis-server is missing or does not start.
    #[track_caller]
    pub fn start(mut self) -> RedisServer {
        assert!(installed(), "{INSTALL_HINT}");
        let mut dir = TempDir::new();
        if self.tls && self.tls_material.is_none() {
            self.tls_material = Some(Arc::new(TlsMaterial::generate()));
        }
        let mut last = String::new();
        for _ in 0..20 {
            let port = if self.bus_port {
                free_port_with_bus()
            } else {
                free_port()
            };
            let mut server = RedisServer {
                port,
                child: None,
                options: self.clone(),
                dir,
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(why) => {
                    last = why;
                    dir = std::mem::replace(&mut server.dir, TempDir::placeholder());
                    // `server` is dropped here; its placeholder directory removes nothing.
                }
            }
        }
        panic!("redis-server did not start: {last}");
    }
}

/// A running redis-server, killed on drop.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    options: RedisServerBuilder,
    dir: TempDir,
}

impl fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisServer")
            .field("port", &self.port)
            .field("pid", &self.pid())
            .field("tls", &self.options.tls)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

/// Says that redis-server is missing: a failure in CI, a message on stderr otherwise.
pub(crate) fn skip_missing_server(ci: bool) {
    assert!(
        !ci,
        "{INSTALL_HINT} (CI is set, so this is a failure, not a skip)"
    );
    eprintln!("skipping: {INSTALL_HINT}");
}

pub(crate) fn installed() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A free loopback port, preferably below the kernel's ephemeral range: no outgoing
/// connection and no `bind(0)` of another process can take it while a test restarts its server,
/// and a client reconnecting to a stopped server cannot connect to itself through it.
pub(crate) fn free_port() -> u16 {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(0);
    const FLOOR: u32 = 10_000;
    if low > FLOOR + 1_000 {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ (u64::from(std::process::id()) << 32)
            ^ SEQ
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut x = seed | 1;
        for _ in 0..100 {
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
            let port = FLOOR + (r >> 33) as u32 % (low - FLOOR);
            if let Ok(port) = u16::try_from(port)
                && TcpListener::bind(("127.0.0.1", port)).is_ok()
            {
                return port;
            }
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0 for a free port");
    listener
        .local_addr()
        .expect("the local address of a bound listener")
        .port()
}

/// A free loopback port below 55000 whose port + 10000 (a cluster node's bus port) is free too.
pub(crate) fn free_port_with_bus() -> u16 {
    for _ in 0..200 {
        let port = free_port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("found no free loopback port P below 55000 with P + 10000 free as well");
}

impl RedisServer {
    /// Starts a plain server with default options; `None` when redis-server is missing and `CI`
    /// is not set (see [`RedisServerBuilder::start_or_skip`]).
    pub fn start_or_skip() -> Option<RedisServer> {
        Self::builder().start_or_skip()
    }

    /// Starts a plain server with default options.
    ///
    /// # Panics
    ///
    /// When redis-server is missing or does not start.
    #[track_caller]
    pub fn start() -> RedisServer {
        Self::builder().start()
    }

    /// Options for a server: password, ACL users, TLS, extra arguments.
    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder::default()
    }

    fn spawn(&mut self) -> Result<(), String> {
        let o = &self.options;
        let dir = self.dir.path();
        let port = self.port.to_string();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .args(["--protected-mode", "no"])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"));
        if let Some(tls) = &o.tls_material {
            cmd.args(tls.server_args(self.port));
        } else {
            cmd.args(["--port", &port]);
        }
        if o.unix_socket {
            cmd.arg("--unixsocket")
                .arg(self.unix_socket_path())
                .args(["--unixsocketperm", "700"]);
        }
        if let Some(pw) = &o.password {
            cmd.args(["--requirepass", pw]);
        }
        for (name, pass, rules) in &o.acl_users {
            cmd.args(["--user", name, "on", &format!(">{pass}")])
                .args(rules.split_whitespace());
        }
        cmd.args(&o.args);
        let stderr = std::fs::File::create(dir.join("stderr.log"))
            .map_err(|e| format!("could not create the server's stderr log: {e}"))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr));
        let child = cmd
            .spawn()
            .map_err(|e| format!("could not run redis-server: {e}"))?;
        self.child = Some(child);
        self.wait_ready()
    }

    /// Waits until the server answers PING (at most 10 s); on failure kills it and says why.
    fn wait_ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                let stderr =
                    std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default();
                return Err(format!(
                    "redis-server exited with {status} on port {}: {}{}",
                    self.port,
                    stderr.trim(),
                    tail(&self.log())
                ));
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && self.try_cli(&["PING"]).is_ok_and(|out| out == "PONG")
            {
                // Make sure the server that answers is ours, not another test's that took the
                // port first (ours then fails to bind and exits).
                let pid = self.pid().unwrap_or(0);
                if served_by(&self.try_cli(&["INFO", "server"]).unwrap_or_default(), pid) {
                    return Ok(());
                }
                if started.elapsed() > Duration::from_millis(500) {
                    self.stop();
                    return Err(format!(
                        "port {} is served by another redis-server (not pid {pid})",
                        self.port
                    ));
                }
            }
            if started.elapsed() > Duration::from_secs(10) {
                self.stop();
                return Err(format!(
                    "redis-server on port {} did not answer PING within 10s{}",
                    self.port,
                    tail(&self.log())
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id, while the server runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `redis://127.0.0.1:PORT` (`rediss://` for a TLS server), without credentials.
    pub fn url(&self) -> String {
        let scheme = if self.options.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The URL with the default user's password: `redis://:PASSWORD@127.0.0.1:PORT`, or
    /// [`url`](Self::url) when the server has none.
    pub fn url_with_password(&self) -> String {
        match &self.options.password {
            Some(pw) => {
                let scheme = if self.options.tls { "rediss" } else { "redis" };
                format!("{scheme}://:{pw}@127.0.0.1:{}", self.port)
            }
            None => self.url(),
        }
    }

    /// The URL of an ACL user: `redis://USER:PASSWORD@127.0.0.1:PORT`.
    pub fn url_for_user(&self, user: &str, password: &str) -> String {
        let scheme = if self.options.tls { "rediss" } else { "redis" };
        format!("{scheme}://{user}:{password}@127.0.0.1:{}", self.port)
    }

    /// The Unix socket's path (listened on only with [`RedisServerBuilder::unix_socket`]).
    pub fn unix_socket_path(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// `redis+unix:///path/to/redis.sock`.
    pub fn unix_url(&self) -> String {
        format!("redis+unix://{}", self.unix_socket_path().display())
    }

    /// The TLS material (TLS servers).
    ///
    /// # Panics
    ///
    /// When the server does not serve TLS.
    #[track_caller]
    pub fn tls_material(&self) -> &TlsMaterial {
        self.options
            .tls_material
            .as_deref()
            .expect("the server has no TLS material")
    }

    /// The certificate authority's certificate, PEM (TLS servers).
    pub fn ca_cert_pem(&self) -> Vec<u8> {
        self.tls_material().ca_cert_pem()
    }

    /// A client certificate signed by the server's authority, PEM (TLS servers).
    pub fn client_cert_pem(&self) -> Vec<u8> {
        self.tls_material().client_cert_pem()
    }

    /// The client certificate's private key, PEM (TLS servers).
    pub fn client_key_pem(&self) -> Vec<u8> {
        self.tls_material().client_key_pem()
    }

    fn try_cli(&self, args: &[&str]) -> Result<String, String> {
        let o = &self.options;
        let out = cli_command(self.port, o.password.as_deref(), o.tls_material.as_deref())
            .args(args)
            .output()
            .map_err(|e| format!("could not run redis-cli: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "redis-cli {args:?} failed with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Runs `redis-cli ARGS...` against the server (with its password and TLS material) and
    /// returns what it printed, trimmed.
    ///
    /// # Panics
    ///
    /// When redis-cli cannot be run or exits with an error.
    #[track_caller]
    pub fn cli(&self, args: &[&str]) -> String {
        match self.try_cli(args) {
            Ok(out) => out,
            Err(why) => panic!("{why}"),
        }
    }

    /// The `CLIENT LIST` lines of the clients connected to the server, without the redis-cli
    /// connection that asks (and earlier ones still closing, whose last command was also
    /// `CLIENT LIST`).
    ///
    /// A redis-cli connection of another earlier call can linger for a moment after the call
    /// returned: wait for the count you expect with a deadline rather than asserting it at once.
    #[track_caller]
    pub fn clients(&self) -> Vec<String> {
        client_lines(&self.cli(&["CLIENT", "LIST"]))
    }

    /// The `CLIENT LIST TYPE pubsub` lines: the connections in subscribed state (redis-cli
    /// calls are never among them).
    #[track_caller]
    pub fn pubsub_clients(&self) -> Vec<String> {
        client_lines(&self.cli(&["CLIENT", "LIST", "TYPE", "pubsub"]))
    }

    /// How often the server ran a command since it started (`INFO commandstats`), such as
    /// `"ping"` or `"client|list"`; 0 for a command it never ran.
    #[track_caller]
    pub fn command_calls(&self, command: &str) -> u64 {
        let stats = self.cli(&["INFO", "commandstats"]);
        let prefix = format!("cmdstat_{}:calls=", command.to_lowercase());
        stats
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix.as_str()))
            .map(|rest| {
                let calls = rest.split(',').next().unwrap_or_default();
                calls
                    .parse()
                    .unwrap_or_else(|e| panic!("bad call count {calls:?} in {stats}: {e}"))
            })
            .unwrap_or(0)
    }

    /// Kills the server at once (SIGKILL): no clean shutdown, connections just die.
    pub fn kill(&mut self) {
        self.stop();
    }

    /// Starts the server again on the same port with the same options (killing it first if it
    /// still runs). Data is not kept.
    ///
    /// # Panics
    ///
    /// When it does not come back within about 10 s (another process took the port, say).
    #[track_caller]
    pub fn restart(&mut self) {
        self.stop();
        let mut last = String::new();
        for _ in 0..50 {
            match self.spawn() {
                Ok(()) => return,
                Err(why) => last = why,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("redis-server did not restart on port {}: {last}", self.port);
    }

    fn signal(&self, signal: &str) {
        let pid = self.pid().expect("the server is not running");
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("could not run `kill`");
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    /// Stops the process (SIGSTOP): connections stay open but nothing answers, as with a hung
    /// server or a network path that silently drops packets.
    pub fn pause_process(&self) {
        self.signal("-STOP");
    }

    /// Resumes a process stopped with [`pause_process`](Self::pause_process) (SIGCONT).
    pub fn resume_process(&self) {
        self.signal("-CONT");
    }

    /// Whether the process runs (it was not killed).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether `INFO server` output comes from the process `pid`: the server on a port is ours,
/// not another test's that took the port first.
pub(crate) fn served_by(info: &str, pid: u32) -> bool {
    info.lines()
        .any(|l| l.trim() == format!("process_id:{pid}"))
}

/// Polls `check` every 50 ms until it holds.
///
/// # Panics
///
/// When it does not hold within `within`; the message says what was awaited.
#[track_caller]
pub fn wait_until(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < within,
            "gave up waiting for {what} after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `redis-cli -h 127.0.0.1 -p PORT`, with a password and TLS material when given; the
/// command's arguments follow.
pub(crate) fn cli_command(port: u16, password: Option<&str>, tls: Option<&TlsMaterial>) -> Command {
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()]);
    if let Some(pw) = password {
        cmd.args(["-a", pw, "--no-auth-warning"]);
    }
    if let Some(tls) = tls {
        cmd.args(tls.cli_args());
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs `redis-cli -p PORT ARGS...` against a plain server on 127.0.0.1 (or a sentinel) and
/// returns what it printed, trimmed; an error when redis-cli fails or the reply is an error.
pub fn cli_on(port: u16, args: &[&str]) -> Result<String, String> {
    cli_on_with(port, None, None, args)
}

/// [`cli_on`] with a password and TLS material when given.
pub fn cli_on_with(
    port: u16,
    password: Option<&str>,
    tls: Option<&TlsMaterial>,
    args: &[&str],
) -> Result<String, String> {
    let out = cli_command(port, password, tls)
        .args(args)
        .output()
        .map_err(|e| format!("could not run redis-cli: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || text.starts_with("ERR") || text.starts_with("Could not connect") {
        return Err(format!(
            "redis-cli -p {port} {args:?} failed with {}: {text} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(text)
}

/// The lines of a `CLIENT LIST` reply, without those whose last command was `CLIENT LIST`.
fn client_lines(list: &str) -> Vec<String> {
    list.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && client_field(l, "cmd") != Some("client|list"))
        .map(str::to_owned)
        .collect()
}

/// A field of one `CLIENT LIST` line, such as `client_field(line, "sub")`.
pub fn client_field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let start = lines.len().saturating_sub(15);
    if lines.is_empty() {
        String::new()
    } else {
        format!("\n--- redis.log (tail) ---\n{}", lines[start..].join("\n"))
    }
}

/// A temporary directory, removed on drop.
pub(crate) struct TempDir(Option<PathBuf>);

impl TempDir {
    pub(crate) fn new() -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "eventbus-redis-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("creating a temporary directory");
        TempDir(Some(path))
    }

    fn placeholder() -> TempDir {
        TempDir(None)
    }

    pub(crate) fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new("/nonexistent"))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "CI is set, so this is a failure, not a skip")]
    fn a_missing_server_fails_in_ci() {
        skip_missing_server(true);
    }

    #[test]
    fn a_missing_server_is_skipped_outside_ci() {
        skip_missing_server(false);
    }

    #[test]
    fn client_lines_leave_out_the_asking_cli() {
        let list = "id=6 addr=127.0.0.1:1 name= flags=N sub=0 cmd=ping user=default\n\
                    id=8 addr=127.0.0.1:2 name= flags=P sub=21 cmd=subscribe user=default\n\
                    id=9 addr=127.0.0.1:3 name= flags=N sub=0 cmd=client|list user=default\n";
        let lines = client_lines(list);
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert_eq!(client_field(&lines[0], "id"), Some("6"));
        assert_eq!(client_field(&lines[1], "sub"), Some("21"));
        assert_eq!(client_field(&lines[1], "psub"), None);
    }
}
