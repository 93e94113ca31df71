//! The Lua scripts of scheduled delivery. Each runs on the server as one step, reads the
//! server's clock (`TIME`) where it needs the time, and touches only keys of one queue (one
//! hash tag), so on a cluster it runs on the node serving the queue's slot.

use std::sync::LazyLock;

use redis::Script;

/// The server's time in milliseconds, as the first lines of a script.
const NOW: &str = "
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

/// `KEYS`: the queue's sorted set and hash. `ARGV`: id, `after` or `at`, milliseconds (a
/// delay, or a time since the epoch), the record. Stores the record under the id (replacing
/// one waiting), due at the server's now plus the delay or at the given time. Returns the due
/// time and the server's now.
pub(crate) static SCHEDULE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW}
local due = tonumber(ARGV[3])
if ARGV[2] == 'after' then due = now + due end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
redis.call('ZADD', KEYS[1], string.format('%d', due), ARGV[1])
return {{due, now}}"
    ))
});

/// `KEYS`: the retry queue's sorted set and hash, and the stream the entry is pending on.
/// `ARGV`: id, delay in milliseconds, the record, the group, the entry id. Stores the record
/// due at the server's now plus the delay and acknowledges the entry, in one step.
pub(crate) static DEFER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW}
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[1], string.format('%d', now + tonumber(ARGV[2])), ARGV[1])
redis.call('XACK', KEYS[3], ARGV[4], ARGV[5])
return 1"
    ))
});

/// `KEYS`: the queue's sorted set and hash. `ARGV`: id. Removes the message when it waits:
/// 1, else 0.
pub(crate) static CANCEL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('HDEL', KEYS[2], ARGV[1])
  return 1
end
return 0",
    )
});

/// `KEYS`: the queue's sorted set and hash. `ARGV`: the most messages to move. Sends each
/// message due by the server's now, the first due first, and removes it, in one step: a
/// message is sent once however many movers run. A message whose target holds another kind
/// of key (`WRONGTYPE`), or whose record is not one this crate wrote, is set aside in the hash
/// `<set>:failed` with the error; any other refusal (out of memory, a read-only replica) stops
/// the round with the message left waiting. Returns the server's now, the next due time (-1: none), the lateness of each
/// message sent in milliseconds, how many were set aside, the refusal ('' when none), and how
/// many messages wait.
pub(crate) static MOVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW}
local function parts(rec)
  local out, pos = {{}}, 1
  while pos <= #rec do
    local colon = string.find(rec, ':', pos, true)
    if not colon then return nil end
    local len = tonumber(string.sub(rec, pos, colon - 1))
    if not len or colon + len > #rec then return nil end
    out[#out + 1] = string.sub(rec, colon + 1, colon + len)
    pos = colon + len + 1
  end
  if #out < 5 or (out[3] == 'A' and not tonumber(out[4])) then return nil end
  return out
end
local function send(p)
  if not p then
    return {{err = 'MALFORMED record: not one this version of eventbus wrote'}}
  end
  if p[1] == 'a' then
    local args = {{'XADD', p[2]}}
    if p[3] == 'L' then
      args[#args + 1] = 'MAXLEN'; args[#args + 1] = '~'; args[#args + 1] = p[4]
    elseif p[3] == 'A' then
      args[#args + 1] = 'MINID'; args[#args + 1] = '~'
      args[#args + 1] = string.format('%d-0', math.max(0, now - tonumber(p[4])))
    end
    args[#args + 1] = '*'
    for i = 5, #p do args[#args + 1] = p[i] end
    return redis.pcall(unpack(args))
  elseif p[1] == 's' then
    return redis.pcall('SPUBLISH', p[2], p[5])
  end
  return redis.pcall('PUBLISH', p[2], p[5])
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[1]))
local late, aside, refused = {{}}, 0, ''
for i = 1, #due, 2 do
  local id = due[i]
  local rec = redis.call('HGET', KEYS[2], id)
  if rec then
    local sent = send(parts(rec))
    if type(sent) == 'table' and sent.err then
      local code = string.sub(sent.err, 1, 9)
      if code ~= 'WRONGTYPE' and code ~= 'MALFORMED' then
        refused = sent.err
        break
      end
      redis.call('HSET', KEYS[1] .. ':failed', id, sent.err .. '\\n' .. rec)
      aside = aside + 1
    else
      late[#late + 1] = now - tonumber(due[i + 1])
    end
  end
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
end
local next_due = -1
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if first[2] then next_due = tonumber(first[2]) end
return {{now, next_due, late, aside, refused, redis.call('ZCARD', KEYS[1])}}"
    ))
});
