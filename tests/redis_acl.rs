//! Least privilege: the bus works with a Redis ACL user allowed only what the ACL of `docs/deployment.md`
//! line grants (`eventbus::redis::LEAST_PRIVILEGE`), and a missing permission is an error
//! that names the command and the ACL category to grant, or the key or channel pattern.

use std::time::Duration;

use eventbus::redis::LEAST_PRIVILEGE;
use eventbus::{DurableOptions, Event, EventBus, HandlerOptions, RetryPolicy};
use eventbus_suite::redis_server::RedisServer;
use eventbus_suite::{Seen, poll_until, wait_for};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "stock_changed")]
struct StockChanged {
    sku: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "order_paid", durable)]
struct OrderPaid {
    order_id: u64,
}

const WAIT: Duration = Duration::from_secs(10);

fn server_with(name: &str, rules: &str) -> Option<RedisServer> {
    RedisServer::builder()
        .acl_user_with(name, "pw", rules)
        .start_or_skip()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_works_with_the_least_privilege_user() {
    let Some(server) = server_with("shop", LEAST_PRIVILEGE) else {
        return;
    };
    let url = server.url_for_user("shop", "pw");
    let (stock, paid) = (Seen::new(), Seen::new());
    let (stock2, paid2) = (stock.clone(), paid.clone());
    let bus = EventBus::builder()
        .service("shop")
        .handler(move |e: StockChanged| {
            let stock = stock2.clone();
            async move { stock.push(e.sku) }
        })
        .handler_with(
            HandlerOptions::new()
                .name("ship")
                .dedupe(Duration::from_secs(60))
                .retry(RetryPolicy::never())
                // Short, so that held entries are kept alive and consumers swept meanwhile.
                .durable(DurableOptions::new().claim_idle(Duration::from_millis(300))),
            move |e: OrderPaid| {
                let paid = paid2.clone();
                async move {
                    if e.order_id == 12 {
                        tokio::time::sleep(Duration::from_millis(800)).await;
                    }
                    paid.push(e.order_id);
                    anyhow::ensure!(e.order_id != 13, "unlucky order");
                    Ok(())
                }
            },
        )
        .connect(&url)
        .await
        .unwrap();
    bus.ready(WAIT).await.unwrap();
    bus.publish(StockChanged { sku: 1 }).await.unwrap();
    for order_id in [12, 13] {
        bus.publish(OrderPaid { order_id }).await.unwrap();
    }
    assert!(wait_for(WAIT, || stock.len() == 1 && paid.len() == 2).await);
    bus.ping().await.unwrap();
    assert!(bus.numsub(&["events:stock_changed"]).await.unwrap()[0].1 >= 1);
    let letters = loop_until_letters(&bus).await;
    assert_eq!(letters.len(), 1, "the failed order is a dead letter");
    bus.replay_dead_letter(&letters[0]).await.unwrap();
    assert!(wait_for(WAIT, || paid.len() == 3).await);
    // Scheduled delivery: scheduled, listed, cancelled, and one sent by the mover.
    let later = bus
        .publish_after(OrderPaid { order_id: 14 }, Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(
        bus.scheduled("events:order_paid", 10).await.unwrap().len(),
        1
    );
    assert!(bus.cancel_scheduled(later.schedule_id()).await.unwrap());
    bus.publish_after(StockChanged { sku: 2 }, Duration::from_millis(10))
        .await
        .unwrap();
    assert!(
        wait_for(WAIT, || stock.len() == 2).await,
        "the scheduled event arrives"
    );
    let groups = bus.groups().await.unwrap();
    assert_eq!(groups[0].group, "shop:ship");
    assert!(bus.metrics().handler("ship").unwrap().group.is_some() || !groups.is_empty());
    assert_eq!(
        bus.metrics().handler("ship").unwrap().claimed,
        0,
        "held entries kept alive"
    );
    bus.shutdown().await.unwrap();
    let denied = server.cli(&["ACL", "LOG"]);
    assert!(
        denied.trim().is_empty(),
        "the server denied the bus: {denied}"
    );
}

async fn loop_until_letters(bus: &EventBus) -> Vec<eventbus::DeadLetter> {
    poll_until(
        WAIT,
        || async { bus.dead_letters("order_paid", 10).await.unwrap() },
        |letters| !letters.is_empty(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_command_is_named_with_its_category() {
    let without_xadd = LEAST_PRIVILEGE.replace(" +xadd", "");
    let Some(server) = server_with("shop", &without_xadd) else {
        return;
    };
    let bus = EventBus::builder()
        .connect(&server.url_for_user("shop", "pw"))
        .await
        .unwrap();
    let err = bus.publish(OrderPaid { order_id: 1 }).await.unwrap_err();
    assert_eq!(err.kind(), eventbus::PublishErrorKind::Auth, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("may not run XADD (ACL category @stream)") && text.contains("+xadd"),
        "{text}"
    );
    bus.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_channel_and_key_patterns_are_named() {
    let no_channels = LEAST_PRIVILEGE.replace(" &events:*", "");
    let Some(server) = server_with("shop", &no_channels) else {
        return;
    };
    let err = EventBus::builder()
        .handler(|_: StockChanged| async {})
        .connect(&server.url_for_user("shop", "pw"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), eventbus::ConnectErrorKind::Auth, "{err}");
    let chain = format!(
        "{err}: {:?}",
        std::error::Error::source(&err).map(|s| s.to_string())
    );
    assert!(err.to_string().contains("&events:*"), "{chain}");

    let no_keys = LEAST_PRIVILEGE.replace(" ~events:*", "");
    let Some(server) = server_with("shop", &no_keys) else {
        return;
    };
    let err = EventBus::builder()
        .handler(|_: OrderPaid| async {})
        .connect(&server.url_for_user("shop", "pw"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), eventbus::ConnectErrorKind::Auth, "{err}");
    assert!(err.to_string().contains("~events:* ~eventbus:*"), "{err}");
}
