//! Consumers do not pile up in a group: a worker that stops cleanly deletes its consumer, and
//! the consumers of killed workers are deleted by a live one once they expire.

use std::time::{Duration, Instant};

use eventbus::EventBus;
use eventbus_suite::redis_server::RedisServer;
use eventbus_suite::wait_for;

mod durable_worker;
use durable_worker::{OrderPlaced, Worker};

const EXPIRY: Duration = Duration::from_secs(3);

/// Not a test: the worker process the tests start (see `durable_worker`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_process() {
    durable_worker::run_if_asked().await;
}

async fn worker(url: &str) -> Worker {
    durable_worker::start(url, 500, 0, 3000).await
}

/// The group's consumers (`XINFO CONSUMERS`), by name.
fn consumers(server: &RedisServer) -> Vec<String> {
    let out = server.cli(&[
        "XINFO",
        "CONSUMERS",
        "events:order_placed",
        "billing:charge",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0] == "name")
        .map(|w| w[1].to_owned())
        .collect()
}

/// 20 restarts of a worker, every other one stopped cleanly and the others killed with
/// `kill -9`, beside a worker that lives throughout; consumer expiry 3 s. A worker that stopped
/// cleanly is gone from the group at once; at any time the group holds the live consumers and
/// the killed ones younger than 1.5 × the expiry; in the end only the live one, and none once
/// it stopped too. (A consumer appears in the group with its first read entry, so each worker
/// is given orders until it has read one.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_workers_leave_no_consumers_behind() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let url = server.url();
    let publisher = EventBus::builder()
        .service("shop")
        .connect(&url)
        .await
        .unwrap();
    let live = worker(&url).await;
    let mut killed: Vec<Instant> = Vec::new();
    let mut order_id = 0;
    for i in 0..20 {
        let mut w = worker(&url).await;
        let name = w.tag();
        // A consumer appears in the group with its first read entry.
        while !consumers(&server).iter().any(|c| c.contains(&name)) {
            assert!(order_id < 1000, "{:?}", consumers(&server));
            let order = OrderPlaced {
                order_id,
                total: 1.0,
            };
            publisher.publish(order).await.unwrap();
            order_id += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if i % 2 == 0 {
            w.stop().await;
            let names = consumers(&server);
            assert!(!names.iter().any(|c| c.contains(&name)), "{names:?}");
        } else {
            w.child.kill().await.unwrap();
            killed.push(Instant::now());
        }
        let recent = killed
            .iter()
            .filter(|t| t.elapsed() < EXPIRY * 3 / 2 + Duration::from_secs(1))
            .count();
        let names = consumers(&server);
        assert!(
            names.len() <= 1 + recent,
            "{recent} recently killed: {names:?}"
        );
    }
    let only_live = || consumers(&server).iter().all(|c| c.contains(&live.tag()));
    assert!(
        wait_for(EXPIRY * 3, only_live).await,
        "{:?}",
        consumers(&server)
    );
    live.stop().await;
    assert!(consumers(&server).is_empty(), "{:?}", consumers(&server));
    publisher.shutdown().await.unwrap();
}
