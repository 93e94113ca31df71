//! `eventbus groups delete STREAM GROUP`: XGROUP DESTROY, after asking.

use eventbus::EventBus;
use serde_json::json;

use super::DeleteArgs;
use super::info::{group, lag, missing, stream_key};
use crate::confirm::confirm;
use crate::exit::CliError;
use crate::session::{Session, connect};

/// Runs `groups delete`.
pub(super) async fn run(url: &str, args: DeleteArgs) -> Result<(), CliError> {
    let key = stream_key(&args.stream);
    let session = connect(url, EventBus::builder()).await?;
    let dropped = delete(&session, &key, &args).await;
    session.close().await;
    let dropped = dropped?;
    let name = &args.group;
    if args.json {
        let receipt = json!({"stream": key, "deleted": name, "dropped_pending": dropped});
        println!("{receipt}");
    } else {
        println!("deleted consumer group {name} on {key} ({dropped} pending entries dropped)");
    }
    Ok(())
}

/// Destroys the group; returns how many pending entries it had.
async fn delete(session: &Session, key: &str, args: &DeleteArgs) -> Result<usize, CliError> {
    let mut conn = session.raw().await?;
    let g = group(session, &mut conn, key, &args.group).await?;
    let question = format!(
        "Destroy consumer group {} on {key} ({} consumers, {} pending entries, lag {})?",
        g.name,
        g.consumers,
        g.pending,
        lag(&g)
    );
    confirm(&question, args.yes)?;
    let destroyed: u64 = redis::cmd("XGROUP")
        .arg("DESTROY")
        .arg(key)
        .arg(&args.group)
        .query_async(&mut conn)
        .await
        .map_err(|e| session.command_error("XGROUP DESTROY", &e))?;
    if destroyed == 0 {
        return Err(missing(key, &args.group));
    }
    Ok(g.pending)
}
