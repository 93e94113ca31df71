//! Running at scale: the same handlers on a Redis Cluster. Broadcast events travel as sharded
//! pub/sub (`SPUBLISH`/`SSUBSCRIBE` on the node that owns the channel's slot), durable ones on
//! a stream stored on its key's node. User code is the same as on one server: only the URL
//! changes.
//!
//! ```text
//! cargo run --example cluster                 # starts a throwaway 6-node cluster (needs redis-server)
//! REDIS_URL=redis+cluster://10.0.0.1:7000,10.0.0.2:7000/ cargo run --example cluster
//! ```
//!
//! The same code runs behind Sentinel with `REDIS_URL=redis+sentinel://h1:26379,h2:26379/mymaster`.

use std::time::Duration;

use anyhow::Context;
use eventbus::{Event, EventBus};
use eventbus_suite::cluster::RedisCluster;
use eventbus_suite::{Seen, connect};
use serde::{Deserialize, Serialize};

/// A broadcast event: every subscribed instance gets it.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "price_changed")]
struct PriceChanged {
    sku: String,
    cents: u64,
}

/// A durable event: one instance of each service handles it, at least once.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "order_placed", durable)]
struct OrderPlaced {
    order_id: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (url, local) = match std::env::var("REDIS_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            println!("starting a throwaway cluster (3 primaries, 3 replicas)...");
            let cluster = RedisCluster::start_or_skip()
                .context("redis-server is not installed; set REDIS_URL=redis+cluster://...")?;
            (cluster.url(), Some(cluster))
        }
    };
    println!("connecting to {}", eventbus::transport::redact_url(&url));
    if let Some(cluster) = &local {
        for channel in ["events:price_changed", "events:order_placed"] {
            println!(
                "{channel} lives on the node at port {}",
                cluster.owner_of(channel)
            );
        }
    }

    let (prices, orders) = (Seen::new(), Seen::new());
    let (p, o) = (prices.clone(), orders.clone());
    let billing = EventBus::builder()
        .service("billing")
        .handler(move |e: PriceChanged| {
            let p = p.clone();
            async move {
                println!("billing: {} now costs {} cents", e.sku, e.cents);
                p.push(e.cents);
            }
        })
        .handler(move |e: OrderPlaced| {
            let o = o.clone();
            async move {
                println!("billing: charging order {}", e.order_id);
                o.push(e.order_id);
            }
        });
    let billing = connect(billing, &url).await?;
    billing.ready(Duration::from_secs(10)).await?;
    let shop = connect(EventBus::builder().service("shop"), &url).await?;

    for (i, sku) in ["tea", "coffee", "cocoa"].into_iter().enumerate() {
        let cents = 250 + 50 * i as u64;
        let receipt = shop
            .publish(PriceChanged {
                sku: sku.into(),
                cents,
            })
            .await?;
        println!(
            "shop: price of {sku} sent to {} subscriber(s)",
            receipt.receivers
        );
    }
    for order_id in 1..=3 {
        let receipt = shop.publish(OrderPlaced { order_id }).await?;
        println!(
            "shop: order {order_id} stored as entry {:?}",
            receipt.entry_id
        );
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while (prices.len() < 3 || orders.len() < 3) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "sharded channels: {:?}",
        shop.channels(None).await.unwrap_or_default()
    );
    shop.shutdown().await?;
    billing.shutdown().await?;
    anyhow::ensure!(
        prices.len() == 3 && orders.len() == 3,
        "not everything arrived"
    );
    println!("done: 3 prices and 3 orders handled");
    Ok(())
}
