//! `eventbus dlq purge TYPE [ID...]`: deletes dead letters without replaying them (`DEL` of
//! the type's stream, or `XDEL` of the ids given).

use eventbus::EventBus;
use serde_json::json;

use super::ActionArgs;
use super::letters::{fetch, key};
use crate::confirm::confirm;
use crate::exit::CliError;
use crate::session::{Session, connect};

/// Runs `dlq purge`.
pub(super) async fn run(url: &str, args: ActionArgs) -> Result<(), CliError> {
    let session = connect(url, EventBus::builder()).await?;
    let result = purge(&session, &args).await;
    session.close().await;
    let purged = result?;
    if args.json {
        println!("{}", json!({"type": args.event_type, "purged": purged}));
    } else {
        println!("purged {purged} dead letters of type {}", args.event_type);
    }
    Ok(())
}

async fn purge(session: &Session, args: &ActionArgs) -> Result<u64, CliError> {
    for id in &args.entry_ids {
        fetch(session, &args.event_type, id).await?;
    }
    let count = match args.entry_ids.len() {
        0 => length(session, &args.event_type).await?,
        n => n as u64,
    };
    if count == 0 {
        return Ok(0);
    }
    let what = if args.entry_ids.is_empty() {
        "all "
    } else {
        ""
    };
    let question = format!(
        "Delete {what}{count} dead letters of type {} for good?",
        args.event_type
    );
    confirm(&question, args.yes)?;
    delete(session, args).await
}

async fn length(session: &Session, event_type: &str) -> Result<u64, CliError> {
    let mut conn = session.raw().await?;
    redis::cmd("XLEN")
        .arg(key(event_type))
        .query_async(&mut conn)
        .await
        .map_err(|e| session.command_error("XLEN", &e))
}

/// Deletes the ids given, or the whole stream; returns how many letters went.
async fn delete(session: &Session, args: &ActionArgs) -> Result<u64, CliError> {
    let mut conn = session.raw().await?;
    let stream = key(&args.event_type);
    if args.entry_ids.is_empty() {
        let count = length(session, &args.event_type).await?;
        redis::cmd("DEL")
            .arg(&stream)
            .query_async::<u64>(&mut conn)
            .await
            .map_err(|e| session.command_error("DEL", &e))?;
        return Ok(count);
    }
    redis::cmd("XDEL")
        .arg(&stream)
        .arg(&args.entry_ids)
        .query_async(&mut conn)
        .await
        .map_err(|e| session.command_error("XDEL", &e))
}
