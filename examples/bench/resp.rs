//! Baseline G: a publisher connection written by hand over a tokio `TcpStream`, with the same
//! callers as B'' (a fresh envelope encoded for each publish, 16 in flight, each waiting for its
//! reply). One task writes whatever commands the callers queued since its last write in one
//! `write_all`; another reads the `:N` replies and answers the callers in order. It measures what
//! the publish path would cost without redis-rs's multiplexed connection, as an experiment: it
//! has no reconnects, no TLS, no timeouts.

use std::time::Instant;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

/// A command's bytes and where its reply goes.
type Request = (Vec<u8>, oneshot::Sender<i64>);

/// `PUBLISH channel payload` in RESP.
fn publish_command(channel: &str, payload: &[u8]) -> Vec<u8> {
    let mut cmd = Vec::with_capacity(payload.len() + channel.len() + 48);
    cmd.extend_from_slice(b"*3\r\n$7\r\nPUBLISH\r\n");
    for part in [channel.as_bytes(), payload] {
        cmd.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
        cmd.extend_from_slice(part);
        cmd.extend_from_slice(b"\r\n");
    }
    cmd
}

/// Writes every queued command in one write per wake-up; hands the reply slots to the reader in
/// the order the commands went out.
async fn writer(
    mut out: tokio::net::tcp::OwnedWriteHalf,
    mut requests: mpsc::UnboundedReceiver<Request>,
    replies: mpsc::UnboundedSender<oneshot::Sender<i64>>,
) -> anyhow::Result<()> {
    let mut buf = Vec::with_capacity(64 * 1024);
    while let Some((cmd, reply)) = requests.recv().await {
        buf.extend_from_slice(&cmd);
        replies.send(reply)?;
        while let Ok((cmd, reply)) = requests.try_recv() {
            buf.extend_from_slice(&cmd);
            replies.send(reply)?;
        }
        out.write_all(&buf).await?;
        buf.clear();
    }
    Ok(())
}

/// Reads `:N\r\n` replies and answers the waiting callers in order.
async fn reader(
    input: tokio::net::tcp::OwnedReadHalf,
    mut replies: mpsc::UnboundedReceiver<oneshot::Sender<i64>>,
) -> anyhow::Result<()> {
    let mut input = BufReader::with_capacity(64 * 1024, input);
    let mut line = String::new();
    while let Some(reply) = replies.recv().await {
        line.clear();
        if input.read_line(&mut line).await? == 0 {
            bail!("the server closed the connection");
        }
        let n = line
            .strip_prefix(':')
            .and_then(|n| n.trim_end().parse().ok())
            .with_context(|| format!("unexpected reply {line:?}"))?;
        let _ = reply.send(n);
    }
    Ok(())
}

/// Publishes `n` payloads, `payload(seq)` each, `in_flight` at a time, through the hand-written
/// connection to `127.0.0.1:port`; returns publishes per second.
pub(crate) async fn publish<P: AsRef<[u8]>>(
    port: u16,
    channel: &str,
    n: u64,
    in_flight: usize,
    payload: impl Fn(u64) -> P,
) -> anyhow::Result<f64> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.set_nodelay(true)?;
    let (input, out) = stream.into_split();
    let (requests, queued) = mpsc::unbounded_channel();
    let (slots, waiting) = mpsc::unbounded_channel();
    let writing = tokio::spawn(writer(out, queued, slots));
    let reading = tokio::spawn(reader(input, waiting));
    let started = Instant::now();
    let answered = futures_util::stream::iter(0..n)
        .map(|seq| {
            let (reply, answer) = oneshot::channel();
            let sent = requests.send((publish_command(channel, payload(seq).as_ref()), reply));
            async move { sent.is_ok() && answer.await.is_ok() }
        })
        .buffer_unordered(in_flight)
        .fold(0u64, |done, ok| async move { done + u64::from(ok) })
        .await;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    drop(requests);
    writing.await??;
    reading.await??;
    if answered < n {
        bail!(
            "{} of {n} hand-written publishes were not answered",
            n - answered
        );
    }
    Ok(rate)
}
