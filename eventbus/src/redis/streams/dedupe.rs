//! Handled event ids for de-duplication: one key per group and id,
//! `eventbus:dedupe:<group>:<event id>`, set with `SET … PX <window>` and read with `EXISTS`.

use std::time::Duration;

use std::sync::Arc;

use crate::redis::shared::Shared;
use crate::transport::{BoxFuture, DedupeStore, TransportError};

/// The prefix of de-duplication keys: `eventbus:dedupe:<group>:<event id>`.
pub const DEDUPE_PREFIX: &str = "eventbus:dedupe:";

fn dedupe_key(scope: &str, id: &str) -> String {
    format!("{DEDUPE_PREFIX}{scope}:{id}")
}

/// The de-duplication records of a transport.
pub(crate) struct Dedupe {
    pub(crate) shared: Arc<Shared>,
}

impl DedupeStore for Dedupe {
    fn seen<'a>(
        &'a self,
        scope: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<bool, TransportError>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("EXISTS");
            cmd.arg(dedupe_key(scope, id));
            let s = &self.shared;
            let n: u64 = s
                .command(
                    "checking for a handled event",
                    &cmd,
                    s.options.publish_deadline,
                )
                .await?;
            Ok(n > 0)
        })
    }

    fn record<'a>(
        &'a self,
        scope: &'a str,
        id: &'a str,
        window: Duration,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("SET");
            let ms = window.as_millis().clamp(1, u64::MAX as u128) as u64;
            cmd.arg(dedupe_key(scope, id)).arg(1).arg("PX").arg(ms);
            let s = &self.shared;
            s.command::<()>(
                "recording a handled event",
                &cmd,
                s.options.publish_deadline,
            )
            .await
        })
    }
}
