//! Consumer groups: how a durable handler reads its event type's stream.

use std::time::Duration;

use crate::options::StartFrom;

/// A consumer group a durable handler reads for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupSpec {
    /// The stream: the event type's channel (`events:order_placed`).
    pub stream: String,
    /// The group: one per handler, shared by every instance of the service.
    pub group: String,
    /// This process's consumer name within the group, unique per process.
    pub consumer: String,
    /// Where a new group starts.
    pub start: StartFrom,
    /// How long an entry may stay pending on another consumer before this one claims it.
    pub claim_idle: Duration,
    /// How long a consumer of the group that owns no pending entry may stay idle before a live
    /// member deletes it (a consumer left by a process that died); `None` for the default,
    /// [`GroupSpec::DEFAULT_CONSUMER_EXPIRY`] or 10 × `claim_idle`, whichever is longer.
    pub consumer_expiry: Option<Duration>,
    /// Whether the group's handler hands failed entries off for later (delayed retries): the
    /// transport then also reads, for this group only, the entries that come back.
    pub delayed_retries: bool,
}

impl GroupSpec {
    /// A group `group` on `stream`, read as `consumer`, new entries only, claiming entries idle
    /// for 30 s.
    pub fn new(
        stream: impl Into<String>,
        group: impl Into<String>,
        consumer: impl Into<String>,
    ) -> Self {
        GroupSpec {
            stream: stream.into(),
            group: group.into(),
            consumer: consumer.into(),
            start: StartFrom::New,
            claim_idle: Duration::from_secs(30),
            consumer_expiry: None,
            delayed_retries: false,
        }
    }

    /// Whether the group's handler hands failed entries off for later.
    pub fn delayed_retries(mut self, on: bool) -> Self {
        self.delayed_retries = on;
        self
    }

    /// The shortest default consumer expiry: 5 minutes.
    pub const DEFAULT_CONSUMER_EXPIRY: Duration = Duration::from_secs(300);

    /// How long an idle consumer that owns nothing pending is kept: the one set, or
    /// [`DEFAULT_CONSUMER_EXPIRY`](Self::DEFAULT_CONSUMER_EXPIRY) or 10 × `claim_idle`,
    /// whichever is longer.
    pub fn expiry(&self) -> Duration {
        self.consumer_expiry.unwrap_or_else(|| {
            Self::DEFAULT_CONSUMER_EXPIRY.max(self.claim_idle.saturating_mul(10))
        })
    }

    /// How long an idle consumer that owns nothing pending is kept before a live member of the
    /// group deletes it.
    pub fn consumer_expiry(mut self, expiry: Duration) -> Self {
        self.consumer_expiry = Some(expiry);
        self
    }

    /// Where a new group starts.
    pub fn start(mut self, start: StartFrom) -> Self {
        self.start = start;
        self
    }

    /// How long an entry may stay pending on another consumer before it is claimed.
    pub fn claim_idle(mut self, idle: Duration) -> Self {
        self.claim_idle = idle;
        self
    }
}

/// A consumer group's state on the server (`XINFO GROUPS`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupStatus {
    /// The stream key.
    pub stream: String,
    /// The group's name.
    pub group: String,
    /// Consumers known to the group (live or not).
    pub consumers: u64,
    /// Entries delivered to a consumer and not acknowledged yet.
    pub pending: u64,
    /// Entries in the stream not yet delivered to the group; `None` when the server cannot
    /// tell (after entries were deleted in the middle of the stream).
    pub lag: Option<u64>,
    /// The id of the last entry delivered to the group.
    pub last_delivered: String,
}

impl GroupStatus {
    /// A status with the given counts.
    pub fn new(
        stream: impl Into<String>,
        group: impl Into<String>,
        consumers: u64,
        pending: u64,
        lag: Option<u64>,
        last_delivered: impl Into<String>,
    ) -> Self {
        GroupStatus {
            stream: stream.into(),
            group: group.into(),
            consumers,
            pending,
            lag,
            last_delivered: last_delivered.into(),
        }
    }
}
