//! Redis ACL refusals (`NOPERM`): which permission is missing and how to grant it.
//!
//! The least a bus needs, for a user `orders` (pub/sub types on `events:*`, durable types'
//! streams, dead letters and de-duplication records under `eventbus:*`):
//!
//! ```text
//! ACL SETUSER orders on >secret resetchannels &events:* resetkeys ~events:* ~eventbus:* -@all
//!   +@connection +publish +subscribe +psubscribe +unsubscribe +punsubscribe +pubsub
//!   +xadd +xreadgroup +xack +xautoclaim +xclaim +xpending +xgroup +xinfo +xrange +xdel +set
//!   +exists +eval +evalsha +script|load +time +spublish +sadd +smembers +zadd +zrem +zrange
//!   +zrangebyscore +zcard +hset +hget +hmget +hdel
//! ```
//!
//! `+xclaim` and `+eval` keep a consumer's held entries alive and remove consumers that left
//! (small Lua scripts of `XPENDING`, `XCLAIM`, `XINFO` and `XGROUP` on the stream's key).
//! The rest from `+evalsha` on are scheduled delivery's: its scripts (`EVALSHA`, loaded with
//! `SCRIPT LOAD`) keep scheduled events in sorted sets and hashes under `eventbus:schedule:*`
//! and send them with `XADD`, `PUBLISH` or `SPUBLISH`; the set `eventbus:schedules` lists the
//! queues.

use redis::RedisError;

/// The ACL line `docs/deployment.md` documents ("Least privilege"), without the user's name
/// and password.
pub const LEAST_PRIVILEGE: &str = "resetchannels &events:* resetkeys ~events:* ~eventbus:* -@all \
    +@connection +publish +subscribe +psubscribe +unsubscribe +punsubscribe +pubsub +xadd \
    +xreadgroup +xack +xautoclaim +xclaim +xpending +xgroup +xinfo +xrange +xdel +set +exists \
    +eval +evalsha +script|load +time +spublish +sadd +smembers +zadd +zrem +zrange +zrangebyscore \
    +zcard +hset +hget +hmget +hdel";

/// The ACL category a command the bus sends belongs to.
fn category(command: &str) -> &'static str {
    match command {
        "publish" | "spublish" | "subscribe" | "psubscribe" | "unsubscribe" | "punsubscribe"
        | "pubsub" => "@pubsub",
        c if c.starts_with('x') => "@stream",
        "set" => "@string",
        "exists" => "@keyspace",
        "eval" | "evalsha" | "script" => "@scripting",
        "sadd" | "smembers" => "@set",
        c if c.starts_with('z') => "@sortedset",
        c if c.starts_with('h') => "@hash",
        _ => "@connection",
    }
}

/// Whether `e` is a permission refusal.
pub(crate) fn is_refusal(e: &RedisError) -> bool {
    e.code() == Some("NOPERM")
}

/// What the refusal `e` says is missing and how to grant it; `None` for other errors.
pub(crate) fn missing_permission(e: &RedisError) -> Option<String> {
    is_refusal(e).then(|| hint(&e.to_string()))
}

/// The hint for a refusal's text.
fn hint(text: &str) -> String {
    let text = text.to_ascii_lowercase();
    if text.contains("access") && text.contains("channel") {
        return "the Redis user may not use this channel: grant the bus's channels with \
                `ACL SETUSER <user> &events:*` (and any other channel it uses)"
            .to_owned();
    }
    if text.contains("access") && text.contains("key") {
        return "the Redis user may not use this key: grant the bus's keys with \
                `ACL SETUSER <user> ~events:* ~eventbus:*`"
            .to_owned();
    }
    let command = text
        .split('\'')
        .nth(1)
        .map(|c| c.split('|').next().unwrap_or(c).to_owned())
        .unwrap_or_else(|| "?".to_owned());
    format!(
        "the Redis user may not run {} (ACL category {}): grant it with \
         `ACL SETUSER <user> +{command}` or `+{}`",
        command.to_ascii_uppercase(),
        category(&command),
        category(&command),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_command_and_its_category() {
        let h = hint("NOPERM User orders has no permissions to run the 'xadd' command");
        assert!(h.contains("may not run XADD (ACL category @stream)"), "{h}");
        assert!(h.contains("+xadd"), "{h}");
        let h = hint("NOPERM this user has no permissions to run the 'pubsub|numsub' command");
        assert!(h.contains("PUBSUB (ACL category @pubsub)"), "{h}");
    }

    #[test]
    fn refusals_of_keys_and_channels_say_which_pattern_to_grant() {
        let key = hint("NOPERM No permissions to access a key");
        let keys = hint("NoPerm: this user has no permissions to access one of the keys used");
        assert_eq!(key, keys);
        assert!(key.contains("~events:* ~eventbus:*"), "{key}");
        let chan = hint("NoPerm: this user has no permissions to access one of the channels used");
        assert!(chan.contains("&events:*"), "{chan}");
    }
}
