//! Routing on shared topics, handler names, custom transports and extractors.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use eventbus::transport::{BoxFuture, Capabilities, Inbound, Transport, TransportError};
use eventbus::{
    ConnectErrorKind, Envelope, Event, EventBus, Failure, FromContext, HandlerContext,
    QueryErrorKind, StateMapView, Topic,
};
use eventbus_suite::{Seen, TestEnv, on_both_transports, wait_for};
use serde::{Deserialize, Serialize};

const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "order_created", channel = "orders:{id}")]
struct OrderCreated {
    id: u64,
    total: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "order_cancelled", channel = "orders:{id}")]
struct OrderCancelled {
    id: u64,
    reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "price_set", channel = "prices")]
struct PriceV1 {
    cents: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "price_set", channel = "prices", version = 2)]
struct PriceV2 {
    amount: String,
    currency: String,
}

/// Types that share a channel, and versions of one type, each reach their own handler; the
/// others' envelopes are skipped, never reported as decode failures.
async fn shared_topics_route_by_type_and_version(env: TestEnv) {
    let failures = Seen::<String>::new();
    let (created, cancelled, v1, v2) = (Seen::new(), Seen::new(), Seen::new(), Seen::new());
    let f = failures.clone();
    let (c1, c2, p1, p2) = (created.clone(), cancelled.clone(), v1.clone(), v2.clone());
    let bus = EventBus::builder()
        .on_error(move |e: &Failure| f.push(e.to_string()))
        .handler(move |e: OrderCreated| {
            let c1 = c1.clone();
            async move { c1.push(e.id) }
        })
        .handler(move |e: OrderCancelled| {
            let c2 = c2.clone();
            async move { c2.push(e.reason) }
        })
        .handler(move |e: PriceV1| {
            let p1 = p1.clone();
            async move { p1.push(e.cents) }
        })
        .handler(move |e: PriceV2| {
            let p2 = p2.clone();
            async move { p2.push(e.currency) }
        })
        .connect(&env.url)
        .await
        .unwrap();
    bus.ready(WAIT).await.unwrap();
    for id in 0..5 {
        bus.publish(OrderCreated { id, total: 10 }).await.unwrap();
        bus.publish(OrderCancelled {
            id,
            reason: format!("r{id}"),
        })
        .await
        .unwrap();
    }
    bus.publish(PriceV1 { cents: 250 }).await.unwrap();
    bus.publish(PriceV2 {
        amount: "2.50".into(),
        currency: "EUR".into(),
    })
    .await
    .unwrap();
    assert!(wait_for(WAIT, || created.len() == 5 && cancelled.len() == 5).await);
    assert!(wait_for(WAIT, || v1.len() == 1 && v2.len() == 1).await);
    assert_eq!(created.snapshot(), vec![0, 1, 2, 3, 4]);
    assert_eq!(v1.snapshot(), vec![250]);
    assert_eq!(v2.snapshot(), vec!["EUR".to_owned()]);
    let m = bus.metrics();
    assert!(
        failures.is_empty(),
        "no false decode failures: {:?}",
        failures.snapshot()
    );
    assert_eq!(m.decode_errors, 0, "{m:#?}");
    let skipped: u64 = m.handlers.iter().map(|h| h.skipped).sum();
    assert_eq!(
        skipped,
        5 + 5 + 1 + 1,
        "each handler skipped the other's envelopes: {m:#?}"
    );
    bus.shutdown().await.unwrap();
}

/// Closures are named after the fn they are written in and the event they take.
async fn closures_have_readable_names(env: TestEnv) {
    let bus = EventBus::builder()
        .handler(|_: OrderCreated| async {})
        .handler_on(
            Topic::pattern("orders:*"),
            |_: Envelope<serde_json::Value>| async {},
        )
        .connect(&env.url)
        .await
        .unwrap();
    let names: Vec<String> = bus.metrics().handlers.into_iter().map(|h| h.name).collect();
    assert_eq!(
        names,
        vec![
            "runtime_routing::closures_have_readable_names::{closure}(order_created)",
            "runtime_routing::closures_have_readable_names::{closure}(*)",
        ]
    );
    bus.shutdown().await.unwrap();
}

on_both_transports!(
    shared_topics_route_by_type_and_version,
    closures_have_readable_names
);

/// A set-up mistake is a `Config` error from `connect`, naming the line it was made on.
#[tokio::test]
async fn set_up_mistakes_are_connect_errors() {
    let err = EventBus::builder()
        .handler(|_: Envelope<serde_json::Value>| async {})
        .connect("memory://")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ConnectErrorKind::Config, "{err}");
    assert!(err.to_string().contains("needs a topic"), "{err}");
    assert!(err.to_string().contains("runtime_routing.rs:"), "{err}");
}

/// A transport of one's own: the in-process one, counting publishes, with no dead-letter
/// store and no pub/sub queries.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn Transport>,
    published: Arc<AtomicU64>,
}

impl Transport for Counting {
    fn capabilities(&self) -> Capabilities {
        // Pub/sub only: durable delivery (append, join) is not passed on.
        Capabilities::pubsub()
    }
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        payload: Bytes,
    ) -> BoxFuture<'a, Result<u64, TransportError>> {
        self.published.fetch_add(1, Ordering::Relaxed);
        self.inner.publish(channel, payload)
    }
    fn subscribe<'a>(&'a self, topics: &'a [Topic]) -> BoxFuture<'a, Result<(), TransportError>> {
        self.inner.subscribe(topics)
    }
    fn unsubscribe<'a>(&'a self, topics: &'a [Topic]) -> BoxFuture<'a, Result<(), TransportError>> {
        self.inner.unsubscribe(topics)
    }
    fn ready(&self, within: Duration) -> BoxFuture<'_, Result<(), TransportError>> {
        self.inner.ready(within)
    }
    fn ping(&self) -> BoxFuture<'_, Result<Duration, TransportError>> {
        self.inner.ping()
    }
    fn close(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        self.inner.close()
    }
}

/// The tenant of the service, made from the state: an extractor of one's own.
#[derive(Debug, Clone, PartialEq)]
struct Tenant(String);

impl FromContext for Tenant {
    fn from_context(ctx: &HandlerContext) -> Result<Self, String> {
        ctx.state::<String>()
            .map(Tenant)
            .ok_or_else(|| "no tenant".to_owned())
    }
    fn check(state: &StateMapView<'_>) -> Result<(), String> {
        if state.contains::<String>() {
            Ok(())
        } else {
            Err("no tenant given".to_owned())
        }
    }
}

#[tokio::test]
async fn a_transport_and_an_extractor_of_ones_own() {
    let published = Arc::new(AtomicU64::new(0));
    let seen = Seen::new();
    let s = seen.clone();
    let p = published.clone();
    let bus = EventBus::builder()
        .state("acme".to_owned())
        .handler(move |e: OrderCreated, tenant: Tenant| {
            let s = s.clone();
            async move { s.push((tenant, e.id)) }
        })
        .connect_with(move |inbound: Arc<dyn Inbound>| async move {
            let inner = eventbus::transport::memory::connect("memory://", inbound)?;
            Ok::<Arc<dyn Transport>, TransportError>(Arc::new(Counting {
                inner,
                published: p,
            }))
        })
        .await
        .unwrap();
    assert_eq!(bus.capabilities(), Capabilities::pubsub());
    bus.publish(OrderCreated { id: 7, total: 1 }).await.unwrap();
    assert!(wait_for(WAIT, || seen.len() == 1).await);
    assert_eq!(seen.snapshot(), vec![(Tenant("acme".into()), 7)]);
    assert_eq!(published.load(Ordering::Relaxed), 1);
    let err = bus.dead_letters("order_created", 10).await.unwrap_err();
    assert_eq!(err.kind(), QueryErrorKind::Unsupported, "{err}");
    let err = bus.channels(None).await.unwrap_err();
    assert_eq!(err.kind(), QueryErrorKind::Unsupported, "{err}");
    bus.shutdown().await.unwrap();

    let err = EventBus::builder()
        .handler(|_: OrderCreated, _: Tenant| async {})
        .connect("memory://")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ConnectErrorKind::Config);
    assert!(err.to_string().contains("no tenant given"), "{err}");
}

/// How often each of the two types below was decoded.
static CLONEABLE_DECODES: AtomicU64 = AtomicU64::new(0);
static OPAQUE_DECODES: AtomicU64 = AtomicU64::new(0);

/// The data of both types, as decoded.
#[derive(Deserialize)]
struct Amount {
    cents: u64,
}

/// Decodes an `Amount`, counting the decode in `count`.
fn counted<'de, D: serde::Deserializer<'de>>(d: D, count: &AtomicU64) -> Result<u64, D::Error> {
    count.fetch_add(1, Ordering::SeqCst);
    Ok(Amount::deserialize(d)?.cents)
}

#[derive(Debug, Clone, PartialEq, Serialize, Event)]
#[event(name = "cloneable_amount")]
struct Cloneable {
    cents: u64,
}

impl<'de> Deserialize<'de> for Cloneable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let cents = counted(d, &CLONEABLE_DECODES)?;
        Ok(Cloneable { cents })
    }
}

#[derive(Debug, PartialEq, Serialize, Event)]
#[event(name = "opaque_amount")]
struct Opaque {
    cents: u64,
}

impl<'de> Deserialize<'de> for Opaque {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let cents = counted(d, &OPAQUE_DECODES)?;
        Ok(Opaque { cents })
    }
}

/// Several handlers of one type share one decode when the type is `Clone` (each further
/// handler gets a copy); a type that is not `Clone` is decoded for each handler. Every handler
/// gets the event either way, and envelope handlers get the attributes too.
#[tokio::test]
async fn a_clone_type_is_decoded_once_for_all_its_handlers() {
    let (cloned, opaque, envelopes) = (Seen::new(), Seen::new(), Seen::new());
    let mut builder = EventBus::builder();
    for _ in 0..3 {
        let (c, o) = (cloned.clone(), opaque.clone());
        builder = builder
            .handler(move |e: Cloneable| {
                let c = c.clone();
                async move { c.push(e.cents) }
            })
            .handler(move |e: Opaque| {
                let o = o.clone();
                async move { o.push(e.cents) }
            });
    }
    for _ in 0..2 {
        let seen = envelopes.clone();
        builder = builder.handler(move |e: Envelope<Cloneable>| {
            let seen = seen.clone();
            async move { seen.push((e.source().to_owned(), e.data().cents)) }
        });
    }
    let bus = builder
        .service("amounts")
        .connect("memory://")
        .await
        .unwrap();
    bus.publish(Cloneable { cents: 7 }).await.unwrap();
    bus.publish(Opaque { cents: 9 }).await.unwrap();
    assert!(
        wait_for(WAIT, || cloned.len() == 3
            && opaque.len() == 3
            && envelopes.len() == 2)
        .await,
        "{} + {} + {} delivered",
        cloned.len(),
        opaque.len(),
        envelopes.len()
    );
    assert_eq!(cloned.snapshot(), vec![7, 7, 7]);
    assert_eq!(opaque.snapshot(), vec![9, 9, 9]);
    assert_eq!(
        envelopes.snapshot(),
        vec![("amounts".to_owned(), 7), ("amounts".to_owned(), 7)]
    );
    // One decode for the three data handlers and one for the two envelope handlers.
    assert_eq!(CLONEABLE_DECODES.load(Ordering::SeqCst), 2);
    // The router's decode, then one per handler that could not take the shared value itself
    // (only the last to take it can, and only once the router let go of it).
    let opaque_decodes = OPAQUE_DECODES.load(Ordering::SeqCst);
    assert!((3..=4).contains(&opaque_decodes), "{opaque_decodes}");
    bus.shutdown().await.unwrap();
}
