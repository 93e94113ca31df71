//! The subscriber: one pub/sub connection per bus for every channel and pattern, made on the
//! first subscription. Its supervisor task drains the message stream into the bus, pings it,
//! and on loss reconnects and subscribes again to everything the bus holds.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedMutexGuard, watch};

use crate::Topic;
use crate::redis::conn::link::{self, Link};
use crate::redis::conn::open::Found;
use crate::redis::errors;
use crate::redis::pubsub::connection::{self, Sink, Source};
use crate::redis::shared::Shared;
use crate::sync::lock;
use crate::transport::{ConnectionEvent, ErrorKind, TransportError};

pub(crate) const ROLE: &str = "subscriber";

/// The channels and patterns the bus wants, whether or not the connection is up.
#[derive(Default)]
pub(crate) struct Desired {
    pub(crate) channels: BTreeSet<String>,
    pub(crate) patterns: BTreeSet<String>,
}

impl Desired {
    fn lists(&self) -> (Vec<String>, Vec<String>) {
        (
            self.channels.iter().cloned().collect(),
            self.patterns.iter().cloned().collect(),
        )
    }
}

pub(crate) struct Subscriber {
    pub(crate) link: watch::Sender<Link<Sink>>,
    pub(crate) desired: Mutex<Desired>,
    /// Serialises changes of the subscription set: a subscribe, an unsubscribe and a
    /// resubscription after reconnect never interleave, so the server sees them in order.
    ops: Arc<tokio::sync::Mutex<()>>,
    started: AtomicBool,
}

fn split(topics: &[Topic]) -> (Vec<String>, Vec<String>) {
    let mut channels = Vec::new();
    let mut patterns = Vec::new();
    for t in topics {
        match t {
            Topic::Channel(c) => channels.push(c.clone()),
            Topic::Pattern(p) => patterns.push(p.clone()),
        }
    }
    (channels, patterns)
}

#[derive(Clone, Copy)]
enum Op {
    Subscribe,
    Unsubscribe,
}

/// Sends (P)SUBSCRIBE or (P)UNSUBSCRIBE for the given lists and waits for the confirmations.
async fn send(
    sink: &mut Sink,
    op: Op,
    channels: &[String],
    patterns: &[String],
) -> redis::RedisResult<()> {
    match op {
        Op::Subscribe => {
            if !channels.is_empty() {
                sink.subscribe(channels).await?;
            }
            if !patterns.is_empty() {
                sink.psubscribe(patterns).await?;
            }
        }
        Op::Unsubscribe => {
            if !channels.is_empty() {
                sink.unsubscribe(channels).await?;
            }
            if !patterns.is_empty() {
                sink.punsubscribe(patterns).await?;
            }
        }
    }
    Ok(())
}

impl Subscriber {
    pub(crate) fn new() -> Self {
        Subscriber {
            link: watch::Sender::new(Link::Idle),
            desired: Mutex::default(),
            ops: Arc::new(tokio::sync::Mutex::new(())),
            started: AtomicBool::new(false),
        }
    }

    /// Waits until the subscriber is connected with every held topic subscribed, and no
    /// subscription change is under way; see [`Transport::ready`](crate::transport::Transport::ready).
    pub(crate) async fn ready(
        &self,
        shared: &Shared,
        within: Duration,
    ) -> Result<(), TransportError> {
        shared.check_open()?;
        if !self.started.load(Ordering::Acquire) || self.held() == 0 {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + within;
        let mut rx = self.link.subscribe();
        let up = tokio::time::timeout_at(
            deadline,
            rx.wait_for(|l| matches!(l, Link::Up { .. } | Link::Closed)),
        )
        .await
        .map(|l| l.map(|l| matches!(*l, Link::Up { .. })));
        match up {
            Ok(Ok(true)) => {}
            Ok(_) => return Err(closed()),
            Err(_) => {
                let cause = match &*self.link.borrow() {
                    Link::Down { cause, .. } => format!(": {cause}"),
                    _ => String::new(),
                };
                return Err(TransportError::new(
                    ErrorKind::Disconnected,
                    format!(
                        "not ready: the subscriber connection to Redis at {} is not up after \
                         {within:?}{cause}",
                        shared.target.addr
                    ),
                ));
            }
        }
        // A subscribe under way returns once the server confirmed it.
        match tokio::time::timeout_at(deadline, self.ops.lock()).await {
            Ok(_) => Ok(()),
            Err(_) => Err(TransportError::new(
                ErrorKind::Timeout,
                format!("not ready: a subscription change was still unconfirmed after {within:?}"),
            )),
        }
    }

    /// The number of channels and patterns held.
    pub(crate) fn held(&self) -> usize {
        let d = lock(&self.desired);
        d.channels.len() + d.patterns.len()
    }

    /// Subscribes; see [`Transport::subscribe`](crate::transport::Transport::subscribe).
    ///
    /// The topics are recorded first. When the connection is down they are subscribed on
    /// reconnect (and the `Resubscribed` event says so); this returns `Ok` then.
    pub(crate) async fn subscribe(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        topics: &[Topic],
    ) -> Result<(), TransportError> {
        shared.check_open()?;
        if topics.is_empty() {
            return Ok(());
        }
        self.start(shared);
        self.first_connection(shared).await;
        let _guard = self.ops.lock().await;
        let (channels, patterns) = split(topics);
        {
            let mut d = lock(&self.desired);
            d.channels.extend(channels.iter().cloned());
            d.patterns.extend(patterns.iter().cloned());
        }
        let (mut sink, epoch) = match self.current(shared) {
            Ok(up) => up,
            // Down for now: recorded, subscribed on reconnect.
            Err(None) => return Ok(()),
            Err(Some(e)) => {
                self.forget(&channels, &patterns);
                return Err(e);
            }
        };
        let rt = shared.options.response_timeout;
        match tokio::time::timeout(rt, send(&mut sink, Op::Subscribe, &channels, &patterns)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if errors::is_connection_error(&e) => {
                // Recorded: the supervisor subscribes again once it has reconnected.
                link::mark_down(&self.link, epoch, format!("SUBSCRIBE failed: {e}"));
                Ok(())
            }
            Ok(Err(e)) => {
                self.forget(&channels, &patterns);
                Err(errors::command_error(&shared.target.addr, "subscribing", e))
            }
            Err(_) => {
                let cause = format!("SUBSCRIBE got no answer within {rt:?}");
                link::mark_down(&self.link, epoch, cause);
                Ok(())
            }
        }
    }

    /// Waits for the first connection's first attempt, so a bus subscribed at start-up
    /// receives what is published right after `connect` returns.
    async fn first_connection(&self, shared: &Shared) {
        let first_wait = shared.options.connect_timeout + shared.options.response_timeout * 2;
        let mut rx = self.link.subscribe();
        let connecting = rx.wait_for(|l| !matches!(l, Link::Idle | Link::Connecting));
        let _ = tokio::time::timeout(first_wait, connecting).await;
    }

    /// The connection to subscribe on now; `Err(None)` while it is down (the topics are
    /// subscribed on reconnect), `Err(Some(_))` when it is closed or reconnecting gave up.
    fn current(&self, shared: &Shared) -> Result<(Sink, u64), Option<TransportError>> {
        match &*self.link.borrow() {
            Link::Up { conn, epoch } => Ok((conn.clone(), *epoch)),
            Link::Closed => Err(Some(closed())),
            Link::Down {
                cause,
                gave_up: true,
            } => Err(Some(TransportError::new(
                ErrorKind::Disconnected,
                format!(
                    "subscribing failed: the subscriber connection to Redis at {} is lost and \
                     reconnecting gave up: {cause}",
                    shared.target.addr
                ),
            ))),
            _ => Err(None),
        }
    }

    /// Unsubscribes; forgets the topics even when the connection is down.
    pub(crate) async fn unsubscribe(
        &self,
        shared: &Arc<Shared>,
        topics: &[Topic],
    ) -> Result<(), TransportError> {
        if topics.is_empty() || !self.started.load(Ordering::Acquire) {
            return Ok(());
        }
        let _guard = self.ops.lock().await;
        let (channels, patterns) = split(topics);
        self.forget(&channels, &patterns);
        let (mut sink, epoch) = match &*self.link.borrow() {
            Link::Up { conn, epoch } => (conn.clone(), *epoch),
            _ => return Ok(()),
        };
        let rt = shared.options.response_timeout;
        match tokio::time::timeout(rt, send(&mut sink, Op::Unsubscribe, &channels, &patterns)).await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if errors::is_connection_error(&e) => {
                link::mark_down(&self.link, epoch, format!("UNSUBSCRIBE failed: {e}"));
                Ok(())
            }
            Ok(Err(e)) => Err(errors::command_error(
                &shared.target.addr,
                "unsubscribing",
                e,
            )),
            Err(_) => {
                link::mark_down(
                    &self.link,
                    epoch,
                    format!("UNSUBSCRIBE got no answer within {rt:?}"),
                );
                Ok(())
            }
        }
    }

    /// Removes topics from the set held.
    fn forget(&self, channels: &[String], patterns: &[String]) {
        let mut d = lock(&self.desired);
        for c in channels {
            d.channels.remove(c);
        }
        for p in patterns {
            d.patterns.remove(p);
        }
    }

    /// Unsubscribes from everything, politely and briefly, before the connection is dropped.
    pub(crate) async fn unsubscribe_all(&self, timeout: Duration) {
        let sink = match &*self.link.borrow() {
            Link::Up { conn, .. } => Some(conn.clone()),
            _ => None,
        };
        let Some(mut sink) = sink else { return };
        let (channels, patterns) = lock(&self.desired).lists();
        let _ = tokio::time::timeout(
            timeout,
            send(&mut sink, Op::Unsubscribe, &channels, &patterns),
        )
        .await;
    }

    /// Marks the connection closed (the transport is closing).
    pub(crate) fn close(&self) {
        self.link.send_replace(Link::Closed);
    }

    /// Starts the supervisor on the first subscription.
    fn start(self: &Arc<Self>, shared: &Arc<Shared>) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        link::set(&self.link, Link::Connecting);
        shared.spawn(supervise(shared.clone(), self.clone()));
    }
}

fn closed() -> TransportError {
    TransportError::new(ErrorKind::Closed, "the Redis transport is closed")
}

/// A fresh connection, subscribed to everything held, with the subscription lock still held
/// so that no change slips in before the link says it is up.
struct Opened {
    sink: Sink,
    source: Source,
    _guard: OwnedMutexGuard<()>,
    topics: usize,
}

async fn open(shared: &Shared, sub: &Subscriber) -> Result<Opened, TransportError> {
    let options = &shared.options;
    let target = &shared.target;
    let timed_out = |d| {
        errors::connect_error(
            &target.addr,
            std::io::Error::from(std::io::ErrorKind::TimedOut).into(),
            d,
        )
    };
    let connect = async {
        let client = target
            .subscriber_client(options)
            .await
            .map_err(Found::Not)?;
        connection::open(&client, &shared.inbound, shared.tasks())
            .await
            .map_err(Found::Failed)
    };
    let (mut sink, source) = match tokio::time::timeout(options.connect_timeout, connect).await {
        Ok(Ok(opened)) => opened,
        Ok(Err(Found::Not(e))) => return Err(e),
        Ok(Err(Found::Failed(e))) => {
            return Err(errors::connect_error(
                &target.addr,
                e,
                options.connect_timeout,
            ));
        }
        Err(_) => return Err(timed_out(options.connect_timeout)),
    };
    let rt = options.response_timeout;
    link::ping_within(rt, sink.ping())
        .await
        .map_err(|e| e.connect_error(&target.addr, options.connect_timeout))?;
    let guard = sub.ops.clone().lock_owned().await;
    let (channels, patterns) = lock(&sub.desired).lists();
    match tokio::time::timeout(rt, send(&mut sink, Op::Subscribe, &channels, &patterns)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(errors::command_error(&target.addr, "subscribing again", e)),
        Err(_) => return Err(errors::timeout_error(&target.addr, "subscribing again", rt)),
    }
    Ok(Opened {
        sink,
        source,
        _guard: guard,
        topics: channels.len() + patterns.len(),
    })
}

async fn supervise(shared: Arc<Shared>, sub: Arc<Subscriber>) {
    let mut epoch = 0u64;
    let mut ever_connected = false;
    loop {
        let Some((opened, attempts)) = shared
            .reconnect(ROLE, &sub.link, || open(&shared, &sub))
            .await
        else {
            return;
        };
        epoch += 1;
        let Opened {
            sink,
            source,
            _guard,
            topics,
        } = opened;
        // Reported before the link is up, so that whoever waits for it (`ready`) finds the
        // connection's health up too.
        if ever_connected {
            shared.inbound.connection(ConnectionEvent::Reconnected {
                role: ROLE,
                attempts,
            });
            shared
                .inbound
                .connection(ConnectionEvent::Resubscribed { topics });
        } else {
            ever_connected = true;
            shared
                .inbound
                .connection(ConnectionEvent::Connected { role: ROLE });
        }
        link::set(
            &sub.link,
            Link::Up {
                conn: sink.clone(),
                epoch,
            },
        );
        drop(_guard);
        let Some(cause) = connected(&shared, &sub, epoch, sink, source).await else {
            return;
        };
        link::set(
            &sub.link,
            Link::Down {
                cause: Arc::from(cause.as_str()),
                gave_up: false,
            },
        );
        shared
            .inbound
            .connection(ConnectionEvent::Disconnected { role: ROLE, cause });
    }
}

/// Runs while connection `epoch` is up: the messages go to the bus, and the watchdog pings. Returns why
/// the connection was lost, or `None` on close.
async fn connected(
    shared: &Shared,
    sub: &Subscriber,
    epoch: u64,
    mut sink: Sink,
    source: Source,
) -> Option<String> {
    let options = &shared.options;
    let reader = source.run(&*shared.inbound);
    let watchdog = async {
        loop {
            link::tick(options.watchdog_interval).await;
            let rt = options.response_timeout;
            if let Err(e) = link::ping_within(rt, sink.ping()).await {
                return e.watchdog_cause();
            }
        }
    };
    let mut rx = sub.link.subscribe();
    let reported = async {
        link::wait_down(&mut rx, epoch)
            .await
            .map(|cause| cause.to_string())
    };
    tokio::select! {
        _ = shared.cancel.cancelled() => None,
        cause = reader => Some(cause),
        cause = watchdog => Some(cause),
        cause = reported => cause,
    }
}
