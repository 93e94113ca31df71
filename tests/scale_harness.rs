//! The Sentinel and Cluster test harnesses themselves: they start, answer, fail over and
//! stop.

use std::time::Duration;

use eventbus_suite::cluster::RedisCluster;
use eventbus_suite::sentinel::SentinelSet;

#[test]
fn a_sentinel_set_fails_over_when_its_primary_dies() {
    let Some(mut set) = SentinelSet::start_or_skip() else {
        return;
    };
    assert!(set.url().starts_with("redis+sentinel://127.0.0.1:"));
    let old = set.kill_master();
    let new = set.wait_failover(&old, Duration::from_secs(30));
    assert_ne!(old, new);
}

#[test]
fn a_cluster_serves_every_slot_and_promotes_a_replica() {
    let Some(mut cluster) = RedisCluster::start_or_skip() else {
        return;
    };
    assert_eq!(cluster.primary_ports().len(), 3);
    let owner = cluster.owner_of("events:user_created");
    assert!(cluster.primary_ports().contains(&owner));
    cluster.kill_node(owner);
    cluster.wait_promoted(owner, Duration::from_secs(30));
    assert_ne!(cluster.owner_of("events:user_created"), owner);
}
