//! Keeps the entries this process holds (queued for or running in a handler) its own.
//!
//! An entry's idle time on the server counts from its delivery; a consumer claims entries
//! idle on others for `claim_idle`. A consumer that read a batch (up to 256 entries) and works
//! through it slowly would otherwise lose the last ones to a live peer, which runs them too,
//! and every such claim raises the entry's delivery count toward `max_deliveries`. So every
//! `claim_idle / 3` the held entries this consumer still owns are claimed to itself again with
//! `XCLAIM ... JUSTID`, which resets their idle time without raising their delivery count (in
//! one Lua script that first checks each entry's owner, so an entry another consumer claimed
//! meanwhile is not taken back). Only the entries of a consumer that stopped running (its
//! process died or hangs) go idle and are claimed.
//!
//! The same task sweeps the group's expired consumers (`consumers.rs`) every half expiry, and
//! once its group was left and nothing is held any more, deletes this consumer when it owns
//! nothing pending.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::redis::shared::Shared;
use crate::redis::streams::acker::Acker;
use crate::redis::streams::consumers;
use crate::transport::{ErrorKind, GroupSpec};

/// The most ids in one keep-alive script.
const MAX_IDS: usize = 512;
/// How often a group that was left checks whether it still holds entries.
const LEFT_POLL: Duration = Duration::from_millis(50);

/// Claims the held entries that `ARGV[2]` still owns in group `ARGV[1]` on stream `KEYS[1]` to
/// it again (`ARGV[3..]` are the ids), resetting their idle time; returns how many.
const TOUCH: &str = r"
local mine = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then mine[#mine + 1] = ARGV[i] end
end
if #mine == 0 then return 0 end
mine[#mine + 1] = 'JUSTID'
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(mine))
return #mine - 1
";

/// The keep-alive of one joined group.
pub(super) struct KeepAlive {
    pub(super) shared: Arc<Shared>,
    pub(super) acker: Arc<Acker>,
    pub(super) spec: GroupSpec,
    /// Cancelled when the group is left.
    pub(super) left: CancellationToken,
}

/// How often held entries are kept fresh: a third of `claim_idle`.
pub(super) fn period(claim_idle: Duration) -> Duration {
    (claim_idle / 3).max(Duration::from_millis(10))
}

impl KeepAlive {
    /// Runs until the transport closes, or until the group was left and holds nothing.
    pub(super) async fn run(self) {
        let every = period(self.spec.claim_idle);
        let sweep_every = (self.spec.expiry() / 2).max(Duration::from_millis(100));
        let (mut next_touch, mut next_sweep) = (Instant::now() + every, Instant::now());
        loop {
            let left = self.left.is_cancelled();
            if left && self.acker.held().is_empty() {
                break;
            }
            let wake = if left {
                Instant::now() + LEFT_POLL
            } else {
                next_touch.min(next_sweep)
            };
            tokio::select! {
                _ = tokio::time::sleep_until(wake.min(next_touch)) => {}
                _ = self.left.cancelled(), if !left => {}
            }
            let now = Instant::now();
            if now >= next_touch {
                next_touch = now + every;
                self.touch().await;
            }
            if !left && now >= next_sweep {
                next_sweep = now + sweep_every;
                self.sweep().await;
            }
        }
        self.retire().await;
    }

    /// Resets the idle time of the held entries this consumer still owns.
    async fn touch(&self) {
        let held = self.acker.held();
        for ids in held.chunks(MAX_IDS) {
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(TOUCH)
                .arg(1)
                .arg(&self.spec.stream)
                .arg(&self.spec.group)
                .arg(&self.spec.consumer)
                .arg(ids);
            let wait = self.shared.options.response_timeout;
            let touched = self
                .shared
                .command::<i64>("keeping held entries", &cmd, wait)
                .await;
            match touched {
                Ok(_) => {}
                // A refusal lasts: said loudly, since peers will claim what this consumer holds.
                Err(e) if e.kind() == ErrorKind::Auth => tracing::warn!(
                    error = %e, group = %self.spec.group,
                    "keeping held entries failed: other consumers may claim and run them again"
                ),
                Err(e) => {
                    tracing::debug!(error = %e, group = %self.spec.group, "keeping held entries failed")
                }
            }
        }
    }

    async fn sweep(&self) {
        match consumers::sweep(&self.shared, &self.spec).await {
            Ok(deleted) if !deleted.is_empty() => {
                tracing::info!(group = %self.spec.group, ?deleted, "deleted expired consumers");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, group = %self.spec.group, "sweeping consumers failed");
            }
        }
    }

    /// Deletes this consumer once the group was left, when it owns nothing pending.
    pub(super) async fn retire(&self) {
        if !self.left.is_cancelled() {
            return;
        }
        retire(&self.shared, &self.spec).await;
    }
}

/// Deletes the consumer of `spec` when it owns nothing pending.
pub(super) async fn retire(shared: &Shared, spec: &GroupSpec) {
    match consumers::leave(shared, spec).await {
        Ok(deleted) => tracing::debug!(group = %spec.group, deleted, "consumer left its group"),
        Err(e) => tracing::debug!(error = %e, group = %spec.group, "deleting a consumer failed"),
    }
}
