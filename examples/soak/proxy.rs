//! A fault-injecting TCP proxy between the services and Redis: it forwards bytes both ways,
//! delays every chunk by a settable amount, and cuts every open connection on demand.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The lowest and highest port tried: below the kernel's ephemeral range and below 55000.
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// What the fault schedule changes while the proxy runs.
#[derive(Debug)]
struct Control {
    delay_ms: AtomicU64,
    cuts: watch::Sender<u64>,
    connections: AtomicU64,
}

/// The running proxy; stops accepting when dropped.
#[derive(Debug)]
pub(crate) struct Proxy {
    port: u16,
    control: Arc<Control>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `127.0.0.1:upstream`.
    pub(crate) async fn start(upstream: u16, seed: u64) -> std::io::Result<Proxy> {
        let listener = bind(seed).await?;
        let port = listener.local_addr()?.port();
        let control = Arc::new(Control {
            delay_ms: AtomicU64::new(0),
            cuts: watch::channel(0).0,
            connections: AtomicU64::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, upstream, control.clone()));
        Ok(Proxy {
            port,
            control,
            accept,
        })
    }

    /// The port the services connect to.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Delays every chunk forwarded from now on by `delay` (zero: none).
    pub(crate) fn set_delay(&self, delay: Duration) {
        let ms = delay.as_millis().min(u128::from(u64::MAX)) as u64;
        self.control.delay_ms.store(ms, Ordering::Relaxed);
    }

    /// Closes every open connection, both sides, at once.
    pub(crate) fn cut_all(&self) {
        self.control.cuts.send_modify(|n| *n += 1);
    }

    /// How many connections the proxy accepted so far.
    pub(crate) fn connections(&self) -> u64 {
        self.control.connections.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut_all();
    }
}

async fn bind(seed: u64) -> std::io::Result<TcpListener> {
    let span = u64::from(PORTS.end - PORTS.start);
    let mut last = None;
    for i in 0..200u64 {
        let port = PORTS.start
            + ((seed.wrapping_mul(7919) + i * 104_729 + u64::from(std::process::id())) % span)
                as u16;
        match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free port")))
}

async fn accept_loop(listener: TcpListener, upstream: u16, control: Arc<Control>) {
    while let Ok((client, _)) = listener.accept().await {
        control.connections.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(forward(client, upstream, control.clone()));
    }
}

/// Forwards one connection until either side closes or the connections are cut.
async fn forward(client: TcpStream, upstream: u16, control: Arc<Control>) {
    let mut cuts = control.cuts.subscribe();
    cuts.mark_unchanged();
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        _ = pipe(client_read, server_write, &control) => {}
        _ = pipe(server_read, client_write, &control) => {}
        _ = cuts.changed() => {}
    }
}

async fn pipe(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    control: &Control,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        let delay = control.delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        to.write_all(&buf[..n]).await?;
    }
}
