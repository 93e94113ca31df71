//! TLS material for test servers: a certificate authority, a server certificate for
//! `127.0.0.1`/`localhost` and a client certificate, made with `openssl` into a temporary
//! directory removed on drop.
//!
//! One set serves every node of a deployment whose nodes must trust each other (a cluster's
//! bus, replication, sentinels talking to data nodes): share it with
//! [`RedisServerBuilder::tls_shared`](crate::redis_server::RedisServerBuilder::tls_shared).
//!
//! ```no_run
//! use eventbus_suite::tls_material::TlsMaterial;
//!
//! let tls = TlsMaterial::generate();
//! let ca = tls.ca_cert_pem(); // for RedisOptions::tls_root_certificate
//! ```

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::redis_server::TempDir;

/// A certificate authority with a server and a client certificate it signed.
pub struct TlsMaterial {
    dir: TempDir,
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("dir", &self.dir.path())
            .finish()
    }
}

impl TlsMaterial {
    /// Makes a fresh authority and its two certificates.
    ///
    /// # Panics
    ///
    /// When `openssl` is missing or fails.
    #[track_caller]
    pub fn generate() -> TlsMaterial {
        let dir = TempDir::new();
        make_certificates(dir.path());
        TlsMaterial { dir }
    }

    /// The path of one of the files: `ca.crt`, `server.crt`, `server.key`, `client.crt`,
    /// `client.key`.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The certificate authority's certificate, PEM.
    pub fn ca_cert_pem(&self) -> Vec<u8> {
        self.read("ca.crt")
    }

    /// The client certificate, PEM.
    pub fn client_cert_pem(&self) -> Vec<u8> {
        self.read("client.crt")
    }

    /// The client certificate's private key, PEM.
    pub fn client_key_pem(&self) -> Vec<u8> {
        self.read("client.key")
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.file(name)).unwrap_or_else(|e| panic!("reading {name}: {e}"))
    }

    /// The `redis-server` options of a TLS-only server on `port`: its certificate, the client
    /// certificate it shows when it connects out (replication, cluster bus, sentinels), the
    /// authority, and client certificates optional (verified when presented).
    pub fn server_args(&self, port: u16) -> Vec<OsString> {
        self.directives(port)
            .into_iter()
            .flat_map(|(name, value)| [format!("--{name}").into(), value])
            .collect()
    }

    /// The same options as lines of a configuration file (sentinel.conf).
    pub fn conf_lines(&self, port: u16) -> String {
        self.directives(port)
            .into_iter()
            .map(|(name, value)| format!("{name} {}\n", value.to_string_lossy()))
            .collect()
    }

    fn directives(&self, port: u16) -> Vec<(&'static str, OsString)> {
        let file = |name: &str| self.file(name).into_os_string();
        vec![
            ("port", "0".into()),
            ("tls-port", port.to_string().into()),
            ("tls-cert-file", file("server.crt")),
            ("tls-key-file", file("server.key")),
            ("tls-client-cert-file", file("client.crt")),
            ("tls-client-key-file", file("client.key")),
            ("tls-ca-cert-file", file("ca.crt")),
            ("tls-auth-clients", "optional".into()),
        ]
    }

    /// The `redis-cli` options to reach a server of this authority, with the client
    /// certificate.
    pub fn cli_args(&self) -> Vec<OsString> {
        vec![
            "--tls".into(),
            "--cacert".into(),
            self.file("ca.crt").into(),
            "--cert".into(),
            self.file("client.crt").into(),
            "--key".into(),
            self.file("client.key").into(),
        ]
    }
}

/// Makes a certificate authority, a server certificate (127.0.0.1, localhost) and a client
/// certificate with `openssl`.
fn make_certificates(dir: &Path) {
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text).expect("writing a certificate extension file");
    };
    write(
        "server.ext",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    );
    write(
        "client.ext",
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
         extendedKeyUsage=clientAuth\n",
    );
    write(
        "ca.ext",
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier=hash\n",
    );
    openssl(dir, &["genrsa", "-out", "ca.key", "2048"]);
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            "ca.key",
            "-subj",
            "/CN=eventbus test CA",
            "-out",
            "ca.csr",
        ],
    );
    openssl(
        dir,
        &[
            "x509", "-req", "-in", "ca.csr", "-signkey", "ca.key", "-days", "2", "-sha256",
            "-extfile", "ca.ext", "-out", "ca.crt",
        ],
    );
    for who in ["server", "client"] {
        sign(dir, who);
    }
}

/// A key and a certificate for `who`, signed by the authority.
fn sign(dir: &Path, who: &str) {
    let (key, csr, crt, ext) = (
        format!("{who}.key"),
        format!("{who}.csr"),
        format!("{who}.crt"),
        format!("{who}.ext"),
    );
    openssl(dir, &["genrsa", "-out", &key, "2048"]);
    let subject = format!("/CN=eventbus test {who}");
    openssl(
        dir,
        &["req", "-new", "-key", &key, "-subj", &subject, "-out", &csr],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-sha256",
            "-extfile",
            &ext,
            "-out",
            &crt,
        ],
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("TLS tests need `openssl` on the PATH: {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
