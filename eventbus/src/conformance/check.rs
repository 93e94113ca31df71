//! What a behaviour uses to check and to clean up: the reason it stopped, `ensure!`, a
//! collector of what handlers saw, waiting with a deadline, and the lab that connects buses
//! and shuts them all down afterwards.

use std::fmt::Display;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::bus::{EventBus, EventBusBuilder};
use crate::sync::lock;

use super::deployment::Deployment;

/// How long a behaviour waits for what it expects (an event to arrive, a bus to be ready).
pub(super) const WAIT: Duration = Duration::from_secs(15);

/// Why a behaviour stopped before its end.
#[derive(Debug)]
pub(super) enum Stop {
    /// An expectation did not hold: what was expected and what happened.
    Failed(String),
    /// The behaviour does not apply to this deployment after all.
    Skipped(String),
}

/// The result of a behaviour's body.
pub(super) type Check = Result<(), Stop>;

/// Stops the behaviour with a failure unless `$cond` holds.
macro_rules! ensure {
    ($cond:expr, $($why:tt)+) => {
        if !$cond {
            return Err($crate::conformance::check::Stop::Failed(format!($($why)+)));
        }
    };
}
pub(super) use ensure;

/// Turns an error into a failure that says what the behaviour was doing.
pub(super) trait Context<T> {
    /// The value, or a failure "`doing`: error: its causes".
    fn context(self, doing: &str) -> Result<T, Stop>;
}

impl<T, E: std::error::Error> Context<T> for Result<T, E> {
    fn context(self, doing: &str) -> Result<T, Stop> {
        self.map_err(|e| Stop::Failed(format!("{doing}: {}", chain(&e))))
    }
}

/// An error with its causes, `error: cause: cause`.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.ends_with(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

/// Collects what handlers saw.
#[derive(Debug)]
pub(super) struct Seen<T> {
    items: Arc<Mutex<Vec<T>>>,
}

impl<T> Clone for Seen<T> {
    fn clone(&self) -> Self {
        Seen {
            items: self.items.clone(),
        }
    }
}

impl<T: Clone> Seen<T> {
    pub(super) fn new() -> Self {
        Seen {
            items: Arc::default(),
        }
    }

    pub(super) fn push(&self, item: T) {
        lock(&self.items).push(item);
    }

    pub(super) fn len(&self) -> usize {
        lock(&self.items).len()
    }

    pub(super) fn snapshot(&self) -> Vec<T> {
        lock(&self.items).clone()
    }
}

/// Polls `check` every 5 ms until it holds or [`WAIT`] passes; returns whether it held.
pub(super) async fn wait_for(mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if check() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Where a behaviour runs: connects buses through the deployment and remembers them, so that
/// every bus is shut down after the behaviour, whether it passed or not.
pub(super) struct Lab<'d> {
    deployment: &'d mut dyn Deployment,
    buses: Vec<EventBus>,
}

impl<'d> Lab<'d> {
    pub(super) fn new(deployment: &'d mut dyn Deployment) -> Self {
        Lab {
            deployment,
            buses: Vec::new(),
        }
    }

    /// Connects a bus built by `builder`.
    pub(super) async fn connect(&mut self, builder: EventBusBuilder) -> Result<EventBus, Stop> {
        let bus = self
            .deployment
            .connect(builder)
            .await
            .context("connecting a bus")?;
        self.buses.push(bus.clone());
        Ok(bus)
    }

    /// Connects a bus built by `builder` and waits until its topics are subscribed.
    pub(super) async fn ready(&mut self, builder: EventBusBuilder) -> Result<EventBus, Stop> {
        let bus = self.connect(builder).await?;
        bus.ready(WAIT)
            .await
            .context("waiting for a bus to be ready")?;
        Ok(bus)
    }

    /// Takes the server that serves `channel` away and brings service back; skips the
    /// behaviour when the deployment cannot.
    pub(super) async fn restart(&mut self, channel: &str) -> Check {
        match self.deployment.restart(channel) {
            Some(restart) => restart
                .await
                .map_err(|e| Stop::Failed(format!("restarting the server: {}", chain(e.as_ref())))),
            None => Err(Stop::Skipped(
                "the deployment cannot restart its server (`Deployment::restart` is `None`)"
                    .to_owned(),
            )),
        }
    }

    /// Shuts down every bus the behaviour connected (a second shutdown of a bus is harmless).
    pub(super) async fn close(self) {
        for bus in self.buses {
            let _ = tokio::time::timeout(WAIT, bus.shutdown()).await;
        }
    }
}

/// `what` as a failure message, for `ok_or_else`.
pub(super) fn failed(what: impl Display) -> Stop {
    Stop::Failed(what.to_string())
}
