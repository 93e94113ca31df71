//! The publish path: one per deployment, one encoder.
//!
//! A publish (`PUBLISH`, `SPUBLISH` on a cluster), a durable append (`XADD`) and the pipelines
//! of `publish_all` / durable batches are all [`encode::Command`]s, sent by
//! [`Shared::lane_send`](crate::redis::shared::Shared::lane_send) from the caller's own task:
//! no task sits between the caller and the connection. The caller takes an in-flight permit
//! (waiting for one up to the [publish deadline](crate::redis::RedisOptions::publish_deadline)
//! when all [`max_in_flight`](crate::redis::RedisOptions::max_in_flight) are taken), waits up
//! to the same deadline for the connection to be up, and sends again on the new connection
//! when the one it used closed under it. Which connection carries it depends on the
//! deployment, and nothing else does:
//!
//! - a single server reached without TLS (also the primary behind Sentinel): the **publish
//!   lane** (`conn/lane.rs`). The caller writes its command's RESP straight into the buffer
//!   the lane's writer sends next, so callers that arrive together go out in one write, and
//!   the lane's reader answers each caller. The lane bounds the wait for replies itself (one
//!   timer for the lane, moved on at most once per response timeout), so a publish sets no
//!   timer of its own;
//! - a single server over TLS: redis-rs's multiplexed connection, one command per publish
//!   (a pipeline per `publish_all` chunk), each bounded by a timer. The lane does not speak TLS
//!   yet: it would need a rustls configuration built from the options' certificates the way
//!   redis-rs builds its own (`create_rustls_config` is private to redis-rs);
//! - a cluster reached without TLS: the publish lane to the primary serving the command's
//!   slot (`cluster/lanes.rs`), redis-rs's cluster connection for what the lanes cannot carry
//!   (a redirection, a lane lost, no lane yet); over TLS, the cluster connection alone.
//!
//! Measured in one session on the 2-core VM (`bench --publish-rows`, three rounds of each
//! variant interleaved, medians of each run's ratio to its own baselines; the machine was
//! shared, load average 4-7, so the spread is wide):
//!
//! | variant | publish / G | publish / B'' | CPU per event / B | p50 one in flight / C p50 |
//! |---|---|---|---|---|
//! | callers on the lane, the lane bounding the wait (this) | 0.76 (0.74-0.92) | 0.93 | 1.42× (1.36-1.42) | 1.67× |
//! | callers on redis-rs's multiplexed connection, a timer each | 0.77 (0.66-0.79) | 0.92 | 1.52× (1.52-1.56) | 2.00× |
//! | the batcher task in front of the lane (before) | 0.81 (0.76-0.82) | 0.82 | 1.50× (1.33-1.51) | 2.11× |
//!
//! In an earlier session (load 5-7) a timer per publish on the lane cost a third of the rate
//! (0.52 of G against 0.82) and redis-rs's connection 0.65 of G with 1.59× B's CPU. Throughput
//! did not tell the three apart beyond the noise; the lane keeps the lowest CPU per event and
//! the lowest latency with one event in flight, and it is the one path that reads its replies
//! by hand and bounds the wait without a timer per publish.

pub(crate) mod encode;
pub(crate) mod many;
pub(crate) mod publisher;
