//! `eventbus groups list [TYPE...] [--stream KEY...]`.

use std::fmt::Write;

use eventbus::EventBus;
use redis::aio::MultiplexedConnection;
use redis::streams::StreamInfoGroup;

use super::ListArgs;
use super::info::{groups, lag, stream_key, to_json};
use crate::commands::scan::stream_keys;
use crate::commands::tail::topics::{PREFIX, is_glob};
use crate::exit::CliError;
use crate::session::{Session, connect};
use crate::style::Palette;

/// A stream and its groups.
type Listing = Vec<(String, Vec<StreamInfoGroup>)>;

/// Runs `groups list`.
pub(super) async fn run(url: &str, args: ListArgs) -> Result<(), CliError> {
    let session = connect(url, EventBus::builder()).await?;
    let listing = list(&session, &args).await;
    session.close().await;
    let listing = listing?;
    if args.json {
        for (key, groups) in &listing {
            for g in groups {
                println!("{}", to_json(key, g));
            }
        }
    } else {
        print!("{}", table(&listing));
    }
    Ok(())
}

async fn list(session: &Session, args: &ListArgs) -> Result<Listing, CliError> {
    let mut conn = session.raw().await?;
    let keys = keys(session, &mut conn, args).await?;
    let mut listing = Vec::with_capacity(keys.len());
    for key in keys {
        let groups = groups(session, &mut conn, &key).await?;
        listing.push((key, groups));
    }
    Ok(listing)
}

/// The streams to list: those named (globs matched with SCAN), or every `events:*`.
async fn keys(
    session: &Session,
    conn: &mut MultiplexedConnection,
    args: &ListArgs,
) -> Result<Vec<String>, CliError> {
    let mut globs: Vec<String> = args
        .types
        .iter()
        .map(|t| stream_key(t))
        .filter(|k| is_glob(k))
        .collect();
    if args.types.is_empty() && args.keys.is_empty() {
        globs.push(format!("{PREFIX}*"));
    }
    let mut keys: Vec<String> = args.types.iter().map(|t| stream_key(t)).collect();
    keys.retain(|k| !is_glob(k));
    keys.extend(args.keys.iter().cloned());
    for glob in globs {
        let found = stream_keys(conn, &glob)
            .await
            .map_err(|e| session.command_error("SCAN", &e))?;
        keys.extend(found);
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}

fn table(listing: &Listing) -> String {
    let p = Palette::new(crate::terminal::colour());
    if listing.is_empty() {
        return "no streams\n".to_owned();
    }
    let names = listing
        .iter()
        .flat_map(|(_, gs)| gs.iter().map(|g| g.name.len()));
    let group_width = names.max().unwrap_or(0).max(5);
    let stream_width = listing
        .iter()
        .map(|(k, _)| k.len())
        .max()
        .unwrap_or(0)
        .max(6);
    let mut out = String::new();
    let header = format!(
        "{:<stream_width$}  {:<group_width$}  {:>9} {:>8} {:>6}  last delivered",
        "stream", "group", "consumers", "pending", "lag"
    );
    let _ = writeln!(out, "{}", p.dim(&header));
    for (key, groups) in listing {
        if groups.is_empty() {
            let _ = writeln!(out, "{key:<stream_width$}  (no groups)");
        }
        for g in groups {
            let _ = writeln!(
                out,
                "{key:<stream_width$}  {:<group_width$}  {:>9} {:>8} {:>6}  {}",
                g.name,
                g.consumers,
                g.pending,
                lag(g),
                g.last_delivered_id
            );
        }
    }
    out
}
