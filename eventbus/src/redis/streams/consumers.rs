//! The consumers of a group: a consumer that leaves deletes itself, and a live member deletes
//! consumers left behind by processes that died.
//!
//! Each process start adds a consumer (`host-pid-n`) to every group it reads for. Deleting a
//! consumer with `XGROUP DELCONSUMER` drops the entries it owns from the group's pending list,
//! so a consumer is deleted only when it owns nothing pending: both deletions below check that
//! and delete in one Lua script, atomically. A consumer that leaves while it still owns
//! entries (read and not started at shutdown) stays until a live member has claimed them (after
//! `claim_idle`) and it has been idle past the group's consumer expiry; then the sweep deletes
//! it. Deleting a live consumer that owns nothing is harmless: its next read creates it again.

use std::time::Duration;

use redis::Value;

use crate::redis::shared::Shared;
use crate::redis::streams::reply;
use crate::transport::{GroupSpec, TransportError};

/// Deletes the consumer `ARGV[2]` of group `ARGV[1]` on stream `KEYS[1]` when it owns no pending
/// entry. Returns 1 when it was deleted.
const DELETE_IF_EMPTY: &str = r"
local owned = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #owned > 0 then return 0 end
return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2]) and 1
";

/// Deletes every consumer of group `ARGV[1]` on stream `KEYS[1]`, except `ARGV[2]`, that owns
/// no pending entry and has been idle for `ARGV[3]` ms at least. Returns the deleted names.
const SWEEP: &str = r"
local deleted = {}
for _, row in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local c = {}
  for i = 1, #row, 2 do c[row[i]] = row[i + 1] end
  if c['name'] ~= ARGV[2] and tonumber(c['pending']) == 0
     and tonumber(c['idle']) >= tonumber(ARGV[3]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], c['name'])
    deleted[#deleted + 1] = c['name']
  end
end
return deleted
";

fn script(source: &str, spec: &GroupSpec) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(source)
        .arg(1)
        .arg(&spec.stream)
        .arg(&spec.group)
        .arg(&spec.consumer);
    cmd
}

/// Deletes this process's consumer of the group when it owns nothing pending; returns whether
/// it did.
pub(super) async fn leave(shared: &Shared, spec: &GroupSpec) -> Result<bool, TransportError> {
    let cmd = script(DELETE_IF_EMPTY, spec);
    let wait = shared.options.response_timeout;
    let deleted: i64 = shared
        .command("deleting a consumer that left", &cmd, wait)
        .await?;
    Ok(deleted == 1)
}

/// Deletes the group's consumers, this one aside, that own nothing pending and have been idle
/// past the group's consumer expiry; returns their names.
pub(super) async fn sweep(
    shared: &Shared,
    spec: &GroupSpec,
) -> Result<Vec<String>, TransportError> {
    let mut cmd = script(SWEEP, spec);
    cmd.arg(millis(spec.expiry()));
    let wait = shared.options.response_timeout;
    let deleted: Value = shared
        .command("deleting expired consumers", &cmd, wait)
        .await?;
    Ok(match deleted {
        Value::Array(names) => names.iter().filter_map(reply::text).collect(),
        _ => Vec::new(),
    })
}

/// A duration in whole milliseconds, as Redis takes them.
pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
