//! A test kit for services' own tests: the service's bus on a private in-process hub, a
//! record of what it published, events injected as if from other services, and
//! [`settle`](TestBus::settle), which waits until all the work is done, so tests need no
//! sleeps.
//!
//! ```
//! use eventbus::testing::TestBus;
//! use eventbus::{Event, EventBus};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Serialize, Deserialize, Event)]
//! #[event(name = "order_placed")]
//! struct OrderPlaced { order_id: u64, total: f64 }
//!
//! #[derive(Debug, Serialize, Deserialize, Event)]
//! #[event(name = "invoice_sent")]
//! struct InvoiceSent { order_id: u64 }
//!
//! async fn bill(order: OrderPlaced, bus: EventBus) -> anyhow::Result<()> {
//!     anyhow::ensure!(order.total > 0.0, "nothing to bill for order {}", order.order_id);
//!     bus.publish(InvoiceSent { order_id: order.order_id }).await?;
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let kit = TestBus::start(EventBus::builder().service("billing").handler(bill)).await.unwrap();
//! kit.inject(eventbus::Envelope::new(OrderPlaced { order_id: 7, total: 9.5 })).await;
//! kit.inject(eventbus::Envelope::new(OrderPlaced { order_id: 8, total: 0.0 })).await;
//!
//! let settled = kit.settle().await;
//! eventbus::assert_published!(kit, InvoiceSent { order_id: 7 });
//! assert_eq!(kit.published::<InvoiceSent>().len(), 1);
//! assert_eq!(settled.failures.len(), 1, "{settled}");
//! assert!(settled.to_string().contains("nothing to bill for order 8"));
//! kit.shutdown().await;
//! # }
//! ```

mod recorder;
mod settled;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::bus::{EventBus, EventBusBuilder, PublishReceipt};
use crate::envelope::Envelope;
use crate::error::{ConnectError, Failure};
use crate::event::Event;
use crate::sync::lock;
use crate::transport::Transport;

pub use recorder::Published;
pub use settled::Settled;

/// How long [`TestBus::settle`] waits by default.
const SETTLE_WITHIN: Duration = Duration::from_secs(10);

/// A service's bus under test, on a private `memory://` hub of its own.
#[derive(Debug)]
pub struct TestBus {
    bus: EventBus,
    /// Another bus on the same hub: what it publishes reaches the service as from outside.
    outside: EventBus,
    log: recorder::Log,
    failures: Arc<Mutex<Vec<Failure>>>,
    /// How many failures earlier settles returned.
    reported: AtomicU64,
}

fn private_hub() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("memory://eventbus-test-{}-{n}", std::process::id())
}

impl TestBus {
    /// Connects the service's bus (built by `builder`, with its handlers, state and hooks) to
    /// a private in-process hub, recording what it publishes and every failure it reports.
    pub async fn start(builder: EventBusBuilder) -> Result<TestBus, ConnectError> {
        let url = private_hub();
        let log = recorder::Log::default();
        let failures: Arc<Mutex<Vec<Failure>>> = Arc::default();
        let noted = failures.clone();
        let log2 = log.clone();
        let hub = url.clone();
        let bus = builder
            .also_on_error(move |f| lock(&noted).push(f.clone()))
            .connect_with(move |inbound| async move {
                let inner = crate::transport::memory::connect(&hub, inbound)?;
                let recorder: Arc<dyn Transport> =
                    Arc::new(recorder::Recorder { inner, log: log2 });
                Ok(recorder)
            })
            .await?;
        let outside = EventBus::builder().service("test").connect(&url).await?;
        Ok(TestBus {
            bus,
            outside,
            log,
            failures,
            reported: AtomicU64::new(0),
        })
    }

    /// The service's bus: publish, subscribe and query it as the service does.
    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    /// Delivers `envelope` to the service as if another service had published it: its id,
    /// source (`test` when empty), correlation id and time are kept. Not recorded as
    /// published by the service.
    ///
    /// # Panics
    ///
    /// When the envelope cannot be published (its data does not encode).
    pub async fn inject<E: Event>(&self, envelope: Envelope<E>) -> PublishReceipt {
        match self.outside.publish_envelope(envelope).await {
            Ok(receipt) => receipt,
            Err(e) => panic!("injecting a `{}` failed: {e}", E::TYPE),
        }
    }

    /// Waits until the service's bus is idle (every handler queue empty, no run in flight, no
    /// durable entry new or pending), then returns the failures reported since the last
    /// settle: handler errors, panics and timeouts with the handler and event, decode
    /// failures. An attempt that failed and was tried again is not a failure there; it is in
    /// [`Settled::attempts`].
    ///
    /// # Panics
    ///
    /// When the bus is still busy after 10 s, saying with what.
    pub async fn settle(&self) -> Settled {
        self.settle_within(SETTLE_WITHIN).await
    }

    /// [`settle`](Self::settle) with another limit.
    ///
    /// # Panics
    ///
    /// When the bus is still busy after `within`, saying with what.
    pub async fn settle_within(&self, within: Duration) -> Settled {
        let deadline = tokio::time::Instant::now() + within;
        // Idle twice in a row, a moment apart: a handler's publish may be on its way.
        let mut quiet = 0;
        while quiet < 2 {
            match self.bus.busy().await {
                None => quiet += 1,
                Some(what) if tokio::time::Instant::now() >= deadline => {
                    panic!("the bus was still busy after {within:?}: {what}")
                }
                Some(_) => quiet = 0,
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let all = lock(&self.failures).clone();
        let from = self.reported.swap(all.len() as u64, Ordering::AcqRel) as usize;
        Settled::of(all.into_iter().skip(from).collect())
    }

    /// Every failure reported since the start, failed attempts that were tried again included.
    pub fn failures(&self) -> Vec<Failure> {
        lock(&self.failures).clone()
    }

    /// Every event of type `E` the service published (or appended, for a durable type), in
    /// order, decoded.
    ///
    /// # Panics
    ///
    /// When a recorded message of that type does not decode as `E`.
    pub fn published<E: Event>(&self) -> Vec<Envelope<E>> {
        self.published_raw()
            .into_iter()
            .filter_map(|p| {
                let raw = crate::RawEnvelope::parse(&p.payload).ok()?;
                (raw.event_type() == E::TYPE).then(|| match raw.decode::<E>() {
                    Ok(envelope) => envelope,
                    Err(e) => panic!("a published `{}` does not decode: {e}", E::TYPE),
                })
            })
            .collect()
    }

    /// Every message the service sent, in order, as bytes on their channel.
    pub fn published_raw(&self) -> Vec<Published> {
        lock(&self.log).clone()
    }

    /// Shuts both buses down.
    pub async fn shutdown(self) {
        let _ = self.outside.shutdown().await;
        let _ = self.bus.shutdown().await;
    }
}

/// Asserts that the service under a [`TestBus`] published an event matching a pattern, such
/// as `OrderShipped { order_id: 7, .. }`, optionally with a guard (`if total > 10.0`). On
/// failure it lists what of that type was published. The event type needs `Debug`.
///
/// ```
/// # use eventbus::{Event, EventBus, testing::TestBus};
/// # #[derive(Debug, serde::Serialize, serde::Deserialize, Event)]
/// # #[event(name = "order_shipped")]
/// # struct OrderShipped { order_id: u64, weight: f64 }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let kit = TestBus::start(EventBus::builder()).await.unwrap();
/// kit.bus().publish(OrderShipped { order_id: 7, weight: 2.5 }).await.unwrap();
/// eventbus::assert_published!(kit, OrderShipped { order_id: 7, .. });
/// eventbus::assert_published!(kit, OrderShipped { weight, .. } if *weight > 2.0);
/// # }
/// ```
#[macro_export]
macro_rules! assert_published {
    ($kit:expr, $($ty:ident)::+ { $($fields:tt)* } $(if $guard:expr)?) => {{
        let published = $kit.published::<$($ty)::+>();
        let found = published.iter().any(|e| {
            #[allow(unused_variables)]
            let matched = matches!(e.data(), $($ty)::+ { $($fields)* } $(if $guard)?);
            matched
        });
        if !found {
            panic!(
                "no published `{}` matches `{}`; published: {:#?}",
                <$($ty)::+ as $crate::Event>::TYPE,
                stringify!($($ty)::+ { $($fields)* } $(if $guard)?),
                published.iter().map(|e| e.data()).collect::<::std::vec::Vec<_>>()
            );
        }
    }};
}
