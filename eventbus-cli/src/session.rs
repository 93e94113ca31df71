//! A connection to the server: the bus (URL checks, publishing, subscriptions, dead letters),
//! its transport (durable appends) and a plain Redis connection for what the bus does not
//! offer (stream reads, `SCAN`, `XINFO`, deleting dead letters).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventbus::redis::RedisOptions;
use eventbus::transport::{Transport, redact_url};
use eventbus::{ConnectError, ConnectErrorKind, EventBus, EventBusBuilder};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError};

use crate::exit::{CliError, Code, chain};

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The envelope `source` of what the tool publishes unless `--source` says otherwise.
pub(crate) const SERVICE: &str = "eventbus-cli";

/// The root certificate(s) given with `--tls-ca-cert`.
static TLS_ROOT: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();

/// Trusts the PEM root certificate(s) in `path` for `rediss://` servers, instead of the
/// system's roots.
pub(crate) fn trust_root_certificate(path: &std::path::Path) -> Result<(), CliError> {
    let pem = std::fs::read(path).map_err(|e| {
        CliError::new(
            Code::Usage,
            format!("cannot read --tls-ca-cert {}: {e}", path.display()),
        )
    })?;
    let _ = TLS_ROOT.set(pem);
    Ok(())
}

/// The plain client for `url`, trusting the `--tls-ca-cert` roots when given.
fn client(url: &str) -> Result<Client, RedisError> {
    #[cfg(feature = "tls")]
    if let Some(pem) = TLS_ROOT.get() {
        let certs = redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.clone()),
        };
        return Client::build_with_tls(url, certs);
    }
    Client::open(url)
}

/// One connection to the server, through the bus.
pub(crate) struct Session {
    /// The bus, publish-only unless handlers were given to [`connect`].
    pub(crate) bus: EventBus,
    /// The bus's transport, for appending to streams.
    pub(crate) transport: Arc<dyn Transport>,
    client: Client,
    /// The URL without its password, for messages.
    pub(crate) shown_url: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("url", &self.shown_url)
            .finish()
    }
}

/// Connects a bus built from `builder` to `url`, checking the URL as the bus does.
pub(crate) async fn connect(url: &str, builder: EventBusBuilder) -> Result<Session, CliError> {
    let shown_url = redact_url(url);
    // The tool only looks: it leaves moving scheduled events to the services' buses.
    let mut options = RedisOptions::new()
        .connect_timeout(CONNECT_TIMEOUT)
        .schedule_poll_interval(None);
    if let Some(pem) = TLS_ROOT.get() {
        options = options.tls_root_certificate(pem.clone());
    }
    let held = Arc::new(Mutex::new(None));
    let keep = held.clone();
    let owned = url.to_owned();
    let bus = builder
        .service(SERVICE)
        .redis_options(options.clone())
        .connect_with(move |inbound| async move {
            let transport = eventbus::redis::connect(&owned, inbound, &options).await?;
            *keep.lock().unwrap_or_else(|e| e.into_inner()) = Some(transport.clone());
            Ok(transport)
        })
        .await
        .map_err(|e| connect_error(&shown_url, &e))?;
    let transport = held.lock().unwrap_or_else(|e| e.into_inner()).take();
    let transport = transport.ok_or_else(|| CliError::failed("the transport was not kept"))?;
    let client = client(url)
        .map_err(|e| CliError::new(Code::Connect, format!("invalid URL {shown_url}: {e}")))?;
    Ok(Session {
        bus,
        transport,
        client,
        shown_url,
    })
}

/// The message and exit code of a failed connection.
fn connect_error(shown_url: &str, e: &ConnectError) -> CliError {
    let what = match e.kind() {
        ConnectErrorKind::InvalidUrl => "invalid URL",
        ConnectErrorKind::Auth => "credentials refused by",
        _ => "cannot connect to",
    };
    CliError::new(Code::Connect, format!("{what} {shown_url}: {}", chain(e)))
}

impl Session {
    /// A plain connection of its own (commands may block on it, as `XREAD BLOCK` does).
    pub(crate) async fn raw(&self) -> Result<MultiplexedConnection, CliError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(None);
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| {
                CliError::new(
                    Code::Connect,
                    format!("cannot connect to {}: {}", self.shown_url, e.detail_text()),
                )
            })
    }

    /// The error of a command that failed on the plain connection.
    pub(crate) fn command_error(&self, what: &str, e: &RedisError) -> CliError {
        CliError::failed(format!(
            "{what} failed on {}: {}",
            self.shown_url,
            e.detail_text()
        ))
    }

    /// Shuts the bus down.
    pub(crate) async fn close(self) {
        let _ = self.bus.shutdown().await;
    }
}

/// What a redis-rs error says, without anything of the URL it was made from.
trait DetailText {
    fn detail_text(&self) -> String;
}

impl DetailText for RedisError {
    fn detail_text(&self) -> String {
        match self.code() {
            Some(code) => format!("{code}: {}", self.detail().unwrap_or_default()),
            None => self.to_string(),
        }
    }
}
