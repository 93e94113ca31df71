//! A durable handler's consumer group is named stably (never from the fn's path): a deploy that
//! moves the handler to another module loses nothing and handles nothing twice; two handlers of
//! one bus in one group are a `Config` error; a group of the service that no handler reads but
//! that holds entries is reported at start-up. Against a real redis-server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventbus::{
    ConnectErrorKind, DurableOptions, Event, EventBus, Failure, HandlerOptions, SubscribeErrorKind,
};
use eventbus_suite::redis_server::RedisServer;
use eventbus_suite::{Seen, wait_for};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "order_placed", durable)]
struct OrderPlaced {
    order_id: u64,
}

const LIMIT: Duration = Duration::from_secs(60);

/// How often each order was handled, by which version of the service.
#[derive(Clone, Default)]
struct Tally(Arc<Mutex<HashMap<u64, Vec<&'static str>>>>);

impl Tally {
    fn record(&self, id: u64, by: &'static str) {
        self.0.lock().unwrap().entry(id).or_default().push(by);
    }
    fn distinct(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    fn runs(&self) -> usize {
        self.0.lock().unwrap().values().map(Vec::len).sum()
    }
    fn by(&self, version: &str) -> usize {
        let all = self.0.lock().unwrap();
        all.values().flatten().filter(|v| **v == version).count()
    }
}

/// Version 1 of the billing service: its handler lives in module `a`.
mod a {
    use super::{OrderPlaced, Tally};
    use eventbus::State;

    pub(super) async fn charge(order: OrderPlaced, State(tally): State<Tally>) {
        tally.record(order.order_id, "v1");
    }
}

/// Version 2: the same handler, moved to module `b`.
mod b {
    use super::{OrderPlaced, Tally};
    use eventbus::State;

    pub(super) async fn charge(order: OrderPlaced, State(tally): State<Tally>) {
        tally.record(order.order_id, "v2");
    }
}

async fn publish(url: &str, ids: std::ops::Range<u64>) {
    let orders = EventBus::builder()
        .service("orders")
        .connect(url)
        .await
        .unwrap();
    for order_id in ids {
        orders.publish(OrderPlaced { order_id }).await.unwrap();
    }
    orders.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_that_moves_the_handler_loses_nothing_and_doubles_nothing() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let url = server.url();
    let tally = Tally::default();
    let v1 = EventBus::builder()
        .service("billing")
        .state(tally.clone())
        .handler(a::charge)
        .connect(&url)
        .await
        .unwrap();
    v1.ready(LIMIT).await.unwrap();
    v1.shutdown().await.unwrap();

    // Stop-the-world: published while billing is down.
    publish(&url, 0..1000).await;
    let v2 = EventBus::builder()
        .service("billing")
        .state(tally.clone())
        .handler(b::charge)
        .connect(&url)
        .await
        .unwrap();
    assert!(
        wait_for(LIMIT, || tally.distinct() == 1000).await,
        "v2 handled {} of the 1000 orders published while billing was down",
        tally.distinct()
    );
    assert_eq!(
        v2.health().orphaned_groups,
        vec![],
        "no group was left behind"
    );

    // Rolling: v1 comes back beside v2, and both share the work.
    let v1 = EventBus::builder()
        .service("billing")
        .state(tally.clone())
        .handler(a::charge)
        .connect(&url)
        .await
        .unwrap();
    v1.ready(LIMIT).await.unwrap();
    publish(&url, 1000..1600).await;
    assert!(
        wait_for(LIMIT, || tally.distinct() == 1600).await,
        "{}",
        tally.distinct()
    );
    v1.shutdown().await.unwrap();
    v2.shutdown().await.unwrap();
    assert_eq!(tally.runs(), 1600, "every order charged once");
    assert!(tally.by("v2") >= 1000, "v2 handled the backlog");
    let groups = server.cli(&["XINFO", "GROUPS", "events:order_placed"]);
    assert!(groups.contains("billing:order_placed"), "{groups}");
    assert!(
        !groups.contains("charge"),
        "no group named after a fn: {groups}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handlers_in_one_group_are_a_config_error() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let err = EventBus::builder()
        .service("billing")
        .handler(|_: OrderPlaced| async {})
        .handler(|_: OrderPlaced| async {})
        .connect(&server.url())
        .await
        .expect_err("two handlers of order_placed in billing:order_placed");
    assert_eq!(err.kind(), ConnectErrorKind::Config, "{err}");
    assert!(err.to_string().contains("`billing:order_placed`"), "{err}");

    // Named apart, each has its own group.
    let bus = EventBus::builder()
        .service("billing")
        .handler_with(
            HandlerOptions::new().name("charge"),
            |_: OrderPlaced| async {},
        )
        .handler_with(
            HandlerOptions::new().name("receipt"),
            |_: OrderPlaced| async {},
        )
        .connect(&server.url())
        .await
        .unwrap();
    let err = bus
        .subscribe_with(
            HandlerOptions::new().durable(DurableOptions::new().group("billing:charge")),
            |_: OrderPlaced| async {},
        )
        .await
        .expect_err("a third handler in billing:charge");
    assert_eq!(err.kind(), SubscribeErrorKind::Config, "{err}");
    assert!(err.to_string().contains("`billing:charge`"), "{err}");
    bus.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_nobody_reads_is_reported_at_start_up() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let url = server.url();
    // The group of an earlier version, named after its handler, with work waiting.
    let old = EventBus::builder()
        .service("billing")
        .handler_with(
            HandlerOptions::new().name("old_charge"),
            |_: OrderPlaced| async {},
        )
        .connect(&url)
        .await
        .unwrap();
    old.ready(LIMIT).await.unwrap();
    old.shutdown().await.unwrap();
    publish(&url, 0..50).await;
    // Another service's group is none of billing's business.
    server.cli(&[
        "XGROUP",
        "CREATE",
        "events:order_placed",
        "mail:welcome",
        "0",
    ]);

    let reported = Seen::new();
    let r = reported.clone();
    let bus = EventBus::builder()
        .service("billing")
        .on_error(move |f| {
            if let Failure::OrphanedGroup(o) = f {
                r.push((o.group.clone(), f.to_string()));
            }
        })
        .handler(|_: OrderPlaced| async {})
        .connect(&url)
        .await
        .unwrap();
    let reports = reported.snapshot();
    assert_eq!(reports.len(), 1, "{reports:?}");
    let (group, message) = &reports[0];
    assert_eq!(group, "billing:old_charge");
    assert!(
        message.contains(
            "eventbus groups move events:order_placed billing:old_charge billing:order_placed"
        ),
        "{message}"
    );
    assert!(message.contains("50 unread"), "{message}");
    let health = bus.health();
    assert_eq!(health.orphaned_groups.len(), 1, "{health:?}");
    assert_eq!(health.orphaned_groups[0].lag, Some(50));
    assert_eq!(bus.metrics().orphaned_groups, 1);
    bus.shutdown().await.unwrap();
}
