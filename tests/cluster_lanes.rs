//! Redis Cluster publish lanes: a publisher reached without TLS carries its `SPUBLISH`es on a
//! connection of its own to each primary, named `eventbus-publish`, and when one is killed the
//! publishes of its slots go through the cluster connection until a new lane is open; none is
//! lost or sent twice. These tests look at the lanes from the nodes' side.
//!
//! Skipped (with a message) when redis-server is not installed, unless `CI=true`.

use std::collections::BTreeMap;
use std::time::Duration;

use eventbus::EventBus;
use eventbus::redis::RedisOptions;
use eventbus_suite::cluster::RedisCluster;
use eventbus_suite::redis_server::{RedisServer, client_field};
use eventbus_suite::{bounded, wait_for};

const WAIT: Duration = Duration::from_secs(10);
const N: u64 = 100;

/// One channel served by each primary: `lanes:<i>` for the first `i` whose slot it serves.
fn channel_per_primary(cluster: &RedisCluster) -> BTreeMap<u16, String> {
    let mut channels = BTreeMap::new();
    let primaries = cluster.primary_ports().len();
    for i in 0.. {
        let channel = format!("lanes:{i}");
        channels
            .entry(cluster.owner_of(&channel))
            .or_insert(channel);
        if channels.len() == primaries {
            return channels;
        }
    }
    unreachable!()
}

/// The `CLIENT LIST` lines of the connections named `eventbus-publish` on `node`.
fn lanes(node: &RedisServer) -> Vec<String> {
    node.clients()
        .into_iter()
        .filter(|c| client_field(c, "name") == Some("eventbus-publish"))
        .collect()
}

/// `N` sharded publishes on `channel`, all at once; every one must succeed.
async fn publish_n(bus: &EventBus, channel: &str) {
    let all = (0..N).map(|n| bus.publish_raw_sharded(channel, n.to_string()));
    for receipt in futures_util::future::join_all(all).await {
        receipt.expect("publish");
    }
}

/// A publishing bus with no watchdog, so that the last command on each lane is a publish.
async fn publisher(url: &str) -> EventBus {
    EventBus::builder()
        .service("lanes")
        .redis_options(RedisOptions::new().watchdog_interval(None))
        .connect(url)
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_primary_gets_its_slots_publishes_on_a_lane() {
    let Some(cluster) = RedisCluster::start_or_skip() else {
        return;
    };
    let url = cluster.url();
    bounded(async {
        let bus = publisher(&url).await;
        let channels = channel_per_primary(&cluster);
        for (port, channel) in &channels {
            let node = cluster.node(*port);
            let before = node.command_calls("spublish");
            publish_n(&bus, channel).await;
            assert_eq!(node.command_calls("spublish") - before, N, "{channel}");
            let open = lanes(node);
            assert_eq!(
                open.len(),
                1,
                "one lane on the node serving {channel}: {open:?}"
            );
            assert_eq!(client_field(&open[0], "cmd"), Some("spublish"), "{open:?}");
        }
        for port in cluster.ports() {
            if !channels.contains_key(&port) {
                assert!(
                    lanes(cluster.node(port)).is_empty(),
                    "no lane to replica {port}"
                );
            }
        }
        bus.shutdown().await.unwrap();
        for port in channels.keys() {
            let node = cluster.node(*port);
            assert!(
                wait_for(WAIT, || lanes(node).is_empty()).await,
                "shutdown closes the lane to {port}"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_lane_is_replaced_and_nothing_is_sent_twice() {
    let Some(cluster) = RedisCluster::start_or_skip() else {
        return;
    };
    let url = cluster.url();
    bounded(async {
        let bus = publisher(&url).await;
        let (port, channel) = channel_per_primary(&cluster).pop_first().unwrap();
        let node = cluster.node(port);
        publish_n(&bus, &channel).await;
        let killed = lanes(node).pop().expect("a lane");
        let id = client_field(&killed, "id").unwrap().to_owned();
        assert_eq!(node.cli(&["CLIENT", "KILL", "ID", &id]), "1");

        // The first publishes after the kill find the lane closed and go through the cluster
        // connection; each reaches the node once.
        let before = node.command_calls("spublish");
        publish_n(&bus, &channel).await;
        assert_eq!(node.command_calls("spublish") - before, N);

        // A new lane is opened (the map is read again at most once a second) and carries
        // the publishes from then on.
        let replaced = || {
            let open = lanes(node);
            open.len() == 1 && client_field(&open[0], "id") != Some(id.as_str())
        };
        assert!(wait_for(WAIT, replaced).await, "{:?}", lanes(node));
        let before = node.command_calls("spublish");
        publish_n(&bus, &channel).await;
        assert_eq!(node.command_calls("spublish") - before, N);
        let open = lanes(node);
        assert_eq!(client_field(&open[0], "cmd"), Some("spublish"), "{open:?}");
        bus.shutdown().await.unwrap();
    })
    .await;
}
