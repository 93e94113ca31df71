//! The transport conformance suite: one list of behaviours every transport must show, for
//! transports written inside this crate and outside it alike (feature `conformance`).
//!
//! A [`Transport`](crate::transport::Transport) is done when this suite passes on it. The
//! crate's own tests run it against the in-process transport, Redis pub/sub and Streams, Redis
//! behind Sentinel and a Redis Cluster; a transport of your own runs it from a test of its own.
//!
//! # What it checks
//!
//! Each [`Behaviour`] is a short end-to-end scenario on real buses: events reach a handler on
//! another bus once each, intact and in order; every subscribed bus gets every event and the
//! publish receipt counts them; patterns and keyed events reach exactly their handlers; raw
//! payloads arrive byte for byte; failing, panicking and hanging handlers affect no other
//! handler; unsubscribing stops delivery; undecodable messages are reported and skipped;
//! shutdown drains, then refuses to publish; a bus reconnects after its server restarts;
//! instances of a service share a durable consumer group. [`Behaviour::ALL`] lists them,
//! and each variant's documentation says what it expects.
//!
//! # Capabilities decide what applies
//!
//! The suite asks the transport for its [`Capabilities`] (through
//! [`EventBus::capabilities`]) and runs only the behaviours they call for, as Watermill's
//! `TestPubSub` reads its features struct: the pattern behaviours need
//! [`patterns`](Capabilities::patterns), the durable one [`acks`](Capabilities::acks), the
//! reconnect one [`reconnects`](Capabilities::reconnects) and a deployment that can restart
//! its server ([`Deployment::restart`]). The others apply to every transport. A behaviour that
//! does not apply is reported as [`Outcome::Skipped`] with the reason, never as passed.
//!
//! # Running it from your own test
//!
//! The suite connects its buses through a [`Deployment`]: anything that connects an
//! [`EventBusBuilder`](crate::EventBusBuilder) to one shared world, so that what one bus publishes reaches the others.
//! A closure `Fn(EventBusBuilder) -> impl Future<Output = Result<EventBus, ConnectError>>` is
//! one; implement the trait on a type of your own to offer [`Deployment::restart`] too.
//!
//! ```
//! use std::sync::Arc;
//!
//! use eventbus::transport::{Inbound, Transport, TransportError};
//! use eventbus::{EventBus, EventBusBuilder, conformance};
//!
//! // #[tokio::test(flavor = "multi_thread")]
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! async fn my_transport_conforms() {
//!     // Every bus of the suite must reach the others: here, one named in-process hub.
//!     // Your own transport goes where `memory::connect` is.
//!     let report = conformance::run(|builder: EventBusBuilder| {
//!         builder.connect_with(|inbound: Arc<dyn Inbound>| async move {
//!             let transport = eventbus::transport::memory::connect("memory://conformance-doc", inbound)?;
//!             Ok::<Arc<dyn Transport>, TransportError>(transport)
//!         })
//!     })
//!     .await;
//!     println!("{report}");
//!     report.assert_passed(); // panics naming every behaviour that failed
//! }
//! # fn main() { my_transport_conforms() }
//! ```
//!
//! [`run`] runs every behaviour in turn on one deployment and returns a [`Report`]. To see
//! each behaviour as a test of its own (a fresh deployment each, failures reported apart),
//! call [`Behaviour::run`] from one `#[tokio::test]` per behaviour:
//!
//! ```
//! # use eventbus::conformance::{Behaviour, Deployment};
//! # async fn fresh_deployment() -> impl Deployment {
//! #     |b: eventbus::EventBusBuilder| b.connect("memory://one-behaviour")
//! # }
//! // #[tokio::test(flavor = "multi_thread")]
//! async fn fan_out_to_every_subscriber() {
//!     Behaviour::FanOutToEverySubscriber
//!         .run(fresh_deployment().await)
//!         .await
//!         .assert_passed();
//! }
//! ```
//!
//! Run the suite on a multi-threaded runtime (`#[tokio::test(flavor = "multi_thread")]`):
//! a deployment's restart may block while a server comes back. Each behaviour waits at most
//! 15 s for what it expects and fails after two minutes in all. The behaviours use the
//! channels `conf:*`, `conf:user:*:alerts` and the stream `events:conf_task` (consumer groups
//! `conf:work`, `conf:later`, `conf:flaky`, `conf:other`): give the suite a server, or a
//! database, of its own.
//!
//! The runner shuts down every bus a behaviour connected when the behaviour ends, passed or
//! not, so one failure does not disturb the behaviours after it.

mod behaviours;
mod check;
mod deployment;
mod time;

pub use deployment::Deployment;

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;

use crate::bus::EventBus;
use crate::transport::Capabilities;

use check::{Check, Context, Lab, Stop};

/// How long one behaviour may take in all, setting up and cleaning up included.
const BEHAVIOUR_LIMIT: Duration = Duration::from_secs(120);

/// One behaviour of the suite. [`ALL`](Self::ALL) lists them in the order [`run`] runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Behaviour {
    /// 500 events from one bus reach a handler on another, each once, intact and in order.
    DeliveryOnceInOrder,
    /// Two subscribed buses both get an event, and its publish receipt counts 2 receivers.
    FanOutToEverySubscriber,
    /// A handler on the pattern `conf:*` gets the raw payloads of `conf:a` and `conf:c`, not
    /// of `other:b`. Needs [`Capabilities::patterns`].
    PatternsMatchOnlyTheirChannels,
    /// Keyed events reach the handler of their type (a pattern) and the handler of one key
    /// (a channel) and no other; an event with a fixed channel on the same bus still arrives.
    /// Needs [`Capabilities::patterns`].
    KeyedEventsReachTheirHandlers,
    /// Raw payloads, published classic and sharded, reach a `Message` handler byte for byte,
    /// each once, each publish counting one receiver.
    RawChannelsCarryBytes,
    /// A failing, a panicking and a hanging handler of a type leave its healthy handler alone;
    /// each is counted in the metrics, and later events still reach all four.
    FailuresAreIsolated,
    /// After `Subscription::unsubscribe`, a publish counts no receiver and nothing more
    /// reaches the handler.
    UnsubscribeStopsDelivery,
    /// A payload that is not JSON and an envelope with bad data are each reported as a
    /// decode failure and dropped; the valid event after them arrives.
    BadInputIsReportedAndSkipped,
    /// Shutdown lets 50 queued events finish and reports none unprocessed; a publish after it
    /// fails with `PublishErrorKind::Closed`.
    ShutdownDrainsThenRefuses,
    /// After the server restarts, the bus reports `ConnectionEvent::Resubscribed`, is ready
    /// again and delivers. Needs [`Capabilities::reconnects`] and [`Deployment::restart`].
    ReconnectsAfterAServerRestart,
    /// Two instances of a service share a consumer group: 200 durable events, each handled
    /// once between them, each publish returning an entry id. Needs [`Capabilities::acks`].
    DurableGroupsShareTheWork,
    /// A pub/sub and a durable event published 300 ms ahead arrive once each, not before
    /// 300 ms have passed; a third one, cancelled, never arrives, and cancelling it again
    /// says it is gone. Needs [`Capabilities::schedule`] (and `acks` for the durable one).
    ScheduledEventsArriveWhenDue,
    /// A durable handler whose first attempt fails on each of 20 entries, with one delayed
    /// retry of 200 ms, handles each once on its return; another group of the stream gets each
    /// once and never a retry. Needs [`Capabilities::acks`] and [`Capabilities::schedule`].
    DelayedRetriesComeBackToTheirGroup,
}

impl Behaviour {
    /// Every behaviour, in the order [`run`] runs them.
    pub const ALL: &'static [Behaviour] = &[
        Behaviour::DeliveryOnceInOrder,
        Behaviour::FanOutToEverySubscriber,
        Behaviour::PatternsMatchOnlyTheirChannels,
        Behaviour::KeyedEventsReachTheirHandlers,
        Behaviour::RawChannelsCarryBytes,
        Behaviour::FailuresAreIsolated,
        Behaviour::UnsubscribeStopsDelivery,
        Behaviour::BadInputIsReportedAndSkipped,
        Behaviour::ShutdownDrainsThenRefuses,
        Behaviour::ReconnectsAfterAServerRestart,
        Behaviour::DurableGroupsShareTheWork,
        Behaviour::ScheduledEventsArriveWhenDue,
        Behaviour::DelayedRetriesComeBackToTheirGroup,
    ];

    /// The behaviour's name in snake case (`"fan_out_to_every_subscriber"`), as reports and
    /// test names show it.
    pub const fn name(self) -> &'static str {
        match self {
            Behaviour::DeliveryOnceInOrder => "delivery_once_in_order",
            Behaviour::FanOutToEverySubscriber => "fan_out_to_every_subscriber",
            Behaviour::PatternsMatchOnlyTheirChannels => "patterns_match_only_their_channels",
            Behaviour::KeyedEventsReachTheirHandlers => "keyed_events_reach_their_handlers",
            Behaviour::RawChannelsCarryBytes => "raw_channels_carry_bytes",
            Behaviour::FailuresAreIsolated => "failures_are_isolated",
            Behaviour::UnsubscribeStopsDelivery => "unsubscribe_stops_delivery",
            Behaviour::BadInputIsReportedAndSkipped => "bad_input_is_reported_and_skipped",
            Behaviour::ShutdownDrainsThenRefuses => "shutdown_drains_then_refuses",
            Behaviour::ReconnectsAfterAServerRestart => "reconnects_after_a_server_restart",
            Behaviour::DurableGroupsShareTheWork => "durable_groups_share_the_work",
            Behaviour::ScheduledEventsArriveWhenDue => "scheduled_events_arrive_when_due",
            Behaviour::DelayedRetriesComeBackToTheirGroup => {
                "delayed_retries_come_back_to_their_group"
            }
        }
    }

    /// Why the behaviour does not apply to a transport with `capabilities`, or `None` when it
    /// does. ([`ReconnectsAfterAServerRestart`](Self::ReconnectsAfterAServerRestart) also
    /// needs a deployment that can restart; that is known only when it runs.)
    pub fn not_applicable(self, capabilities: Capabilities) -> Option<&'static str> {
        match self {
            Behaviour::PatternsMatchOnlyTheirChannels
            | Behaviour::KeyedEventsReachTheirHandlers
                if !capabilities.patterns =>
            {
                Some("the transport offers no patterns (`Capabilities::patterns` is false)")
            }
            Behaviour::ReconnectsAfterAServerRestart if !capabilities.reconnects => {
                Some("the transport does not reconnect (`Capabilities::reconnects` is false)")
            }
            Behaviour::DurableGroupsShareTheWork if !capabilities.acks => {
                Some("the transport offers no durable delivery (`Capabilities::acks` is false)")
            }
            Behaviour::ScheduledEventsArriveWhenDue if !capabilities.schedule => {
                Some("the transport keeps no schedule (`Capabilities::schedule` is false)")
            }
            Behaviour::DelayedRetriesComeBackToTheirGroup
                if !(capabilities.acks && capabilities.schedule) =>
            {
                Some(
                    "delayed retries need durable delivery and a schedule \
                     (`Capabilities::acks` and `Capabilities::schedule`)",
                )
            }
            _ => None,
        }
    }

    /// Runs this behaviour alone on `deployment` (after asking it for its capabilities) and
    /// reports on it.
    pub async fn run(self, deployment: impl Deployment) -> Report {
        run_these(deployment, &[self]).await
    }

    async fn body(self, lab: &mut Lab<'_>) -> Check {
        use behaviours as b;
        match self {
            Behaviour::DeliveryOnceInOrder => b::delivery_once_in_order(lab).await,
            Behaviour::FanOutToEverySubscriber => b::fan_out_to_every_subscriber(lab).await,
            Behaviour::PatternsMatchOnlyTheirChannels => {
                b::patterns_match_only_their_channels(lab).await
            }
            Behaviour::KeyedEventsReachTheirHandlers => {
                b::keyed_events_reach_their_handlers(lab).await
            }
            Behaviour::RawChannelsCarryBytes => b::raw_channels_carry_bytes(lab).await,
            Behaviour::FailuresAreIsolated => b::failures_are_isolated(lab).await,
            Behaviour::UnsubscribeStopsDelivery => b::unsubscribe_stops_delivery(lab).await,
            Behaviour::BadInputIsReportedAndSkipped => {
                b::bad_input_is_reported_and_skipped(lab).await
            }
            Behaviour::ShutdownDrainsThenRefuses => b::shutdown_drains_then_refuses(lab).await,
            Behaviour::ReconnectsAfterAServerRestart => {
                b::reconnects_after_a_server_restart(lab).await
            }
            Behaviour::DurableGroupsShareTheWork => b::durable_groups_share_the_work(lab).await,
            Behaviour::ScheduledEventsArriveWhenDue => {
                time::scheduled_events_arrive_when_due(lab).await
            }
            Behaviour::DelayedRetriesComeBackToTheirGroup => {
                time::delayed_retries_come_back_to_their_group(lab).await
            }
        }
    }
}

impl fmt::Display for Behaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// How one behaviour went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every expectation held.
    Passed,
    /// The behaviour does not apply: why (a capability the transport lacks, a deployment that
    /// cannot restart).
    Skipped(String),
    /// An expectation did not hold, or the behaviour panicked or ran out of time: what was
    /// expected and what happened.
    Failed(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Passed => f.write_str("passed"),
            Outcome::Skipped(why) => write!(f, "skipped: {why}"),
            Outcome::Failed(why) => write!(f, "FAILED: {why}"),
        }
    }
}

/// What a run of the suite found: the transport's capabilities and each behaviour's
/// [`Outcome`], in the order they ran. Its `Display` is a table, one line per behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    capabilities: Option<Capabilities>,
    outcomes: Vec<(Behaviour, Outcome)>,
}

impl Report {
    /// The capabilities the transport reported; `None` when no bus could connect to ask.
    pub fn capabilities(&self) -> Option<Capabilities> {
        self.capabilities
    }

    /// Each behaviour that ran, with its outcome.
    pub fn outcomes(&self) -> &[(Behaviour, Outcome)] {
        &self.outcomes
    }

    /// The outcome of `behaviour`, if it ran.
    pub fn outcome(&self, behaviour: Behaviour) -> Option<&Outcome> {
        self.outcomes
            .iter()
            .find(|(b, _)| *b == behaviour)
            .map(|(_, o)| o)
    }

    /// The behaviours that failed, with what happened.
    pub fn failures(&self) -> impl Iterator<Item = (Behaviour, &str)> {
        self.outcomes.iter().filter_map(|(b, o)| match o {
            Outcome::Failed(why) => Some((*b, why.as_str())),
            _ => None,
        })
    }

    /// Whether no behaviour failed (skipped ones do not count as failures).
    pub fn passed(&self) -> bool {
        self.failures().next().is_none()
    }

    /// Panics unless every behaviour passed or was skipped; the message names each behaviour
    /// that failed and says what happened, followed by the whole report.
    ///
    /// # Panics
    ///
    /// When a behaviour failed.
    #[track_caller]
    pub fn assert_passed(&self) {
        if self.passed() {
            return;
        }
        let failed: Vec<String> = self
            .failures()
            .map(|(b, why)| format!("  {b}: {why}"))
            .collect();
        panic!(
            "transport conformance: {} of {} behaviour(s) failed\n{}\n\n{self}",
            failed.len(),
            self.outcomes.len(),
            failed.join("\n")
        );
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count =
            |want: fn(&Outcome) -> bool| self.outcomes.iter().filter(|(_, o)| want(o)).count();
        let passed = count(|o| matches!(o, Outcome::Passed));
        let skipped = count(|o| matches!(o, Outcome::Skipped(_)));
        let failed = count(|o| matches!(o, Outcome::Failed(_)));
        write!(
            f,
            "conformance: {passed} passed, {skipped} skipped, {failed} failed"
        )?;
        if let Some(c) = self.capabilities {
            write!(
                f,
                " (capabilities: patterns {}, acks {}, sharded {}, replay {}, reconnects {})",
                c.patterns, c.acks, c.sharded, c.replay, c.reconnects
            )?;
        }
        for (behaviour, outcome) in &self.outcomes {
            write!(f, "\n  {behaviour:<36} {outcome}")?;
        }
        Ok(())
    }
}

/// Runs every behaviour ([`Behaviour::ALL`]) in turn on `deployment`, those its transport's
/// capabilities call for, and reports on each. Never panics on a failed behaviour: call
/// [`Report::assert_passed`] for that.
///
/// The behaviours share the deployment one after the other; each one's buses are shut down
/// before the next starts. See the [module documentation](self) for an example.
pub async fn run(deployment: impl Deployment) -> Report {
    run_these(deployment, Behaviour::ALL).await
}

async fn run_these(mut deployment: impl Deployment, behaviours: &[Behaviour]) -> Report {
    let deployment: &mut dyn Deployment = &mut deployment;
    let capabilities = match probe(deployment).await {
        Ok(capabilities) => capabilities,
        Err(why) => {
            let why = format!("no bus could connect to ask the transport's capabilities: {why}");
            return Report {
                capabilities: None,
                outcomes: behaviours
                    .iter()
                    .map(|b| (*b, Outcome::Failed(why.clone())))
                    .collect(),
            };
        }
    };
    let mut outcomes = Vec::with_capacity(behaviours.len());
    for &behaviour in behaviours {
        let outcome = match behaviour.not_applicable(capabilities) {
            Some(why) => Outcome::Skipped(why.to_owned()),
            None => run_one(behaviour, deployment).await,
        };
        outcomes.push((behaviour, outcome));
    }
    Report {
        capabilities: Some(capabilities),
        outcomes,
    }
}

/// The transport's capabilities, asked of a bus with no handlers.
async fn probe(deployment: &mut dyn Deployment) -> Result<Capabilities, String> {
    let bus = deployment
        .connect(EventBus::builder())
        .await
        .context("connecting")
        .map_err(message)?;
    let capabilities = bus.capabilities();
    let _ = bus.shutdown().await;
    Ok(capabilities)
}

/// Runs one behaviour within [`BEHAVIOUR_LIMIT`], a panic in it a failure, then shuts down
/// the buses it connected.
async fn run_one(behaviour: Behaviour, deployment: &mut dyn Deployment) -> Outcome {
    let mut lab = Lab::new(deployment);
    let body = AssertUnwindSafe(behaviour.body(&mut lab)).catch_unwind();
    let outcome = match tokio::time::timeout(BEHAVIOUR_LIMIT, body).await {
        Ok(Ok(Ok(()))) => Outcome::Passed,
        Ok(Ok(Err(Stop::Failed(why)))) => Outcome::Failed(why),
        Ok(Ok(Err(Stop::Skipped(why)))) => Outcome::Skipped(why),
        Ok(Err(panic)) => Outcome::Failed(format!("panicked: {}", panic_message(&*panic))),
        Err(_) => Outcome::Failed(format!("did not finish within {BEHAVIOUR_LIMIT:?}")),
    };
    lab.close().await;
    outcome
}

fn message(stop: Stop) -> String {
    match stop {
        Stop::Failed(why) | Stop::Skipped(why) => why,
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "a panic with a non-text payload"
    }
}
