//! The outbox part of `monitor`, read from PostgreSQL when `--postgres` is given: rows waiting
//! and for how long, rows set aside, the active relay, and the relay's rate between two looks.

use std::fmt::Write;
use std::time::Instant;

use eventbus::Outbox;
use eventbus::postgres::OutboxStatus;
use serde_json::{Value, json};

use crate::exit::{CliError, Code, chain};
use crate::style::Palette;

/// The outbox being watched, and the previous look (for the rate).
pub(super) struct OutboxWatch {
    outbox: Outbox,
    last: Option<(Instant, u64)>,
}

/// One look at the outbox.
#[derive(Debug)]
pub(super) struct OutboxView {
    status: OutboxStatus,
    /// Rows removed a second since the previous look.
    relayed_per_s: Option<f64>,
}

impl OutboxWatch {
    /// Connects to PostgreSQL at `url`, the outbox's tables under `prefix` (in `schema`).
    pub(super) async fn connect(
        url: &str,
        prefix: &str,
        schema: Option<&str>,
    ) -> Result<Self, CliError> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| {
                CliError::new(
                    Code::Connect,
                    format!("could not connect to PostgreSQL: {e}"),
                )
            })?;
        let mut outbox = Outbox::postgres(pool).table_prefix(prefix);
        if let Some(schema) = schema {
            outbox = outbox.schema(schema);
        }
        Ok(OutboxWatch { outbox, last: None })
    }

    /// Reads the outbox now.
    pub(super) async fn look(&mut self) -> Result<OutboxView, CliError> {
        let status = self
            .outbox
            .status()
            .await
            .map_err(|e| CliError::failed(chain(&e)))?;
        let now = Instant::now();
        let relayed_per_s = self.last.map(|(then, removed)| {
            status.removed.saturating_sub(removed) as f64 / (now - then).as_secs_f64().max(1e-3)
        });
        self.last = Some((now, status.removed));
        Ok(OutboxView {
            status,
            relayed_per_s,
        })
    }
}

impl OutboxView {
    pub(super) fn to_json(&self) -> Value {
        let s = &self.status;
        json!({
            "depth": s.depth,
            "oldest_age_ms": s.oldest_age.map(|a| a.as_millis() as u64),
            "poisoned": s.poisoned,
            "relay_holder": s.holder,
            "relayed_per_s": self.relayed_per_s,
        })
    }

    pub(super) fn text(&self, out: &mut String, p: Palette) {
        let s = &self.status;
        let _ = writeln!(out, "\n{}", p.title("outbox (PostgreSQL)"));
        let age = s
            .oldest_age
            .map_or_else(|| "-".to_owned(), |a| format!("{:.1} s", a.as_secs_f64()));
        let rate = self
            .relayed_per_s
            .map_or_else(|| "-".to_owned(), |r| format!("{r:.0}/s"));
        let holder = s.holder.as_deref().unwrap_or("none");
        let _ = writeln!(
            out,
            "  waiting {}  oldest {age}  relayed {rate}  set aside {}  relay held by {holder}",
            s.depth, s.poisoned
        );
    }
}
