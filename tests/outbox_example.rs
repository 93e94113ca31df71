//! `cargo run --example outbox` in the suite: two services on a throwaway PostgreSQL and
//! redis-server, every committed order charged once, a duplicate skipped by the inbox.

use std::process::Command;

use eventbus_suite::examples::example_binary;
use eventbus_suite::postgres::Postgres;
use eventbus_suite::redis_server::RedisServer;

#[test]
fn the_outbox_example_charges_each_committed_order_once() {
    // The example starts its own servers; these only check both are installed.
    if RedisServer::start_or_skip().is_none() || Postgres::start_or_skip().is_none() {
        return;
    }
    let out = Command::new(example_binary("outbox"))
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .output()
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the example failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("placed 16 orders (4 rolled back)"),
        "{stdout}"
    );
    assert!(stdout.contains("skipped by billing's inbox"), "{stdout}");
    assert!(
        stdout.contains("orders: 16, charges: 16, payments heard by orders: 16"),
        "{stdout}"
    );
    assert_eq!(stdout.matches("the active one").count(), 1, "{stdout}");
}
