//! `eventbus groups move STREAM OLD NEW`: NEW at OLD's last-delivered id, then OLD destroyed.

use eventbus::EventBus;
use redis::streams::StreamInfoGroup;
use serde_json::json;

use super::MoveArgs;
use super::info::{groups, missing, stream_key};
use crate::confirm::confirm;
use crate::exit::{CliError, Code};
use crate::session::{Session, connect};

/// Moves atomically, after checking that OLD is still where it was when the user was asked.
/// KEYS[1]: the stream; ARGV: OLD, NEW, OLD's last-delivered id and pending count as checked,
/// `1` when NEW may exist. Answers `{"moved"}`, `{"missing"}`, `{"exists"}` or `{"changed"}`.
const MOVE_SCRIPT: &str = r"
local old, new
for _, fields in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local g = {}
  for i = 1, #fields, 2 do g[fields[i]] = fields[i + 1] end
  if g['name'] == ARGV[1] then old = g end
  if g['name'] == ARGV[2] then new = g end
end
if not old then return {'missing'} end
if old['last-delivered-id'] ~= ARGV[3] or tostring(old['pending']) ~= ARGV[4] then
  return {'changed'}
end
if new and ARGV[5] ~= '1' then return {'exists'} end
local position = {KEYS[1], ARGV[2], old['last-delivered-id']}
if old['entries-read'] then
  table.insert(position, 'ENTRIESREAD')
  table.insert(position, tostring(old['entries-read']))
end
redis.call('XGROUP', new and 'SETID' or 'CREATE', unpack(position))
redis.call('XGROUP', 'DESTROY', KEYS[1], ARGV[1])
return {'moved'}
";

/// What a move did.
#[derive(Debug)]
struct Moved {
    /// OLD's last-delivered id, now NEW's.
    position: String,
    /// OLD's pending entries, not carried over (0 without `--force`).
    dropped: usize,
    /// Whether NEW existed (its position was set).
    replaced: bool,
}

/// Runs `groups move`.
pub(super) async fn run(url: &str, args: MoveArgs) -> Result<(), CliError> {
    if args.old == args.new {
        return Err(CliError::usage(format!(
            "OLD and NEW are the same group: {}",
            args.old
        )));
    }
    let key = stream_key(&args.stream);
    let session = connect(url, EventBus::builder()).await?;
    let moved = move_group(&session, &key, &args).await;
    session.close().await;
    let m = moved?;
    let (old, new) = (&args.old, &args.new);
    if args.json {
        let receipt = json!({"stream": key, "from": old, "to": new,
            "last_delivered_id": m.position, "dropped_pending": m.dropped,
            "new_existed": m.replaced});
        println!("{receipt}");
        return Ok(());
    }
    let mut line = format!(
        "moved consumer group {old} to {new} on {key} at {}; {old} destroyed",
        m.position
    );
    if m.replaced {
        line.push_str(&format!("; {new} existed: its position was set"));
    }
    if m.dropped > 0 {
        line.push_str(&format!("; {} pending entries dropped", m.dropped));
    }
    println!("{line}");
    Ok(())
}

async fn move_group(session: &Session, key: &str, args: &MoveArgs) -> Result<Moved, CliError> {
    let mut conn = session.raw().await?;
    let groups = groups(session, &mut conn, key).await?;
    let old = groups.iter().find(|g| g.name == args.old);
    let old = old.ok_or_else(|| missing(key, &args.old))?;
    let new = groups.iter().find(|g| g.name == args.new);
    check(key, args, old, new)?;
    confirm(&question(key, args, old, new.is_some()), args.yes)?;
    let answer: Vec<String> = redis::cmd("EVAL")
        .arg(MOVE_SCRIPT)
        .arg(1)
        .arg(key)
        .arg(&args.old)
        .arg(&args.new)
        .arg(&old.last_delivered_id)
        .arg(old.pending)
        .arg(if args.force { "1" } else { "0" })
        .query_async(&mut conn)
        .await
        .map_err(|e| session.command_error("moving the group (EVAL)", &e))?;
    match answer.first().map(String::as_str) {
        Some("moved") => Ok(Moved {
            position: old.last_delivered_id.clone(),
            dropped: old.pending,
            replaced: new.is_some(),
        }),
        Some("missing") => Err(missing(key, &args.old)),
        Some("exists") => Err(exists(key, args, None)),
        _ => Err(CliError::new(
            Code::Conflict,
            format!(
                "the group {} on {key} read or acknowledged entries meanwhile: nothing was \
                 done; stop its consumers and run the command again",
                args.old
            ),
        )),
    }
}

/// Refuses (exit 7) a NEW that exists or an OLD with pending entries, unless `--force`.
fn check(
    key: &str,
    args: &MoveArgs,
    old: &StreamInfoGroup,
    new: Option<&StreamInfoGroup>,
) -> Result<(), CliError> {
    if args.force {
        return Ok(());
    }
    if new.is_some() {
        return Err(exists(key, args, new));
    }
    if old.pending > 0 {
        return Err(CliError::new(
            Code::Conflict,
            format!(
                "the group {old_name} on {key} has {n} pending entries (delivered to a \
                 consumer, never acknowledged); {new} would start after them and never deliver \
                 them: nothing was done. See them with `eventbus groups show {key} {old_name}`; \
                 let {old_name}'s consumers acknowledge them, or pass --force to drop them",
                old_name = args.old,
                n = old.pending,
                new = args.new,
            ),
        ));
    }
    Ok(())
}

/// The refusal of a NEW that exists (exit 7).
fn exists(key: &str, args: &MoveArgs, new: Option<&StreamInfoGroup>) -> CliError {
    let state = new.map_or_else(String::new, |g| {
        format!(
            " (last delivered {}, {} pending)",
            g.last_delivered_id, g.pending
        )
    });
    CliError::new(
        Code::Conflict,
        format!(
            "the group {new} already exists on {key}{state}: nothing was done. Pass --force \
             to set its position to {old}'s (keeping its consumers and pending entries), or \
             delete it first with `eventbus groups delete {key} {new}`",
            new = args.new,
            old = args.old,
        ),
    )
}

fn question(key: &str, args: &MoveArgs, old: &StreamInfoGroup, replace: bool) -> String {
    let (from, to) = (&args.old, &args.new);
    let mut q = format!(
        "Move consumer group {from} on {key} to {to} at {}",
        old.last_delivered_id
    );
    if replace {
        q.push_str(&format!(" (setting the existing {to}'s position)"));
    }
    if old.pending > 0 {
        q.push_str(&format!(", dropping its {} pending entries,", old.pending));
    }
    q.push_str(&format!(" and destroy {from}?"));
    q
}
