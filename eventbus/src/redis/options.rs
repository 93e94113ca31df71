//! [`RedisOptions`]: timeouts, reconnect backoff, watchdog and TLS material.

use std::fmt;
use std::time::Duration;

use crate::options::MAX_DURATION;
use crate::redis::StreamRetention;

/// The most commands (publishes included) awaiting an answer at once: the most permits a
/// tokio semaphore holds.
pub(crate) const MAX_IN_FLIGHT: usize = tokio::sync::Semaphore::MAX_PERMITS;

/// The shortest first reconnect delay: a zero delay would retry in a busy loop.
const MIN_BACKOFF: Duration = Duration::from_millis(1);

/// The largest `MAXLEN` Redis accepts (a signed 64-bit count).
const MAX_STREAM_LEN: usize = i64::MAX as usize;

/// Options of the Redis transport: timeouts, reconnect backoff, the watchdog, dead letters and
/// TLS material. Pass them with
/// [`EventBusBuilder::redis_options`](crate::EventBusBuilder::redis_options).
///
/// ```
/// use std::time::Duration;
/// use eventbus::redis::RedisOptions;
///
/// let options = RedisOptions::new()
///     .connect_timeout(Duration::from_secs(2))
///     .publish_deadline(Duration::from_secs(10))
///     .reconnect_backoff(Duration::from_millis(50), Duration::from_secs(2))
///     .max_reconnect_attempts(Some(100));
/// // The values in effect, after clamping; TLS keys are never shown.
/// let shown = format!("{options:?}");
/// assert!(shown.contains("publish_deadline: 10s"));
/// ```
///
/// | option | default |
/// |---|---|
/// | [`connect_timeout`](Self::connect_timeout) | 3 s |
/// | [`response_timeout`](Self::response_timeout) | 3 s |
/// | [`publish_deadline`](Self::publish_deadline) | 5 s |
/// | [`reconnect_backoff`](Self::reconnect_backoff) | 100 ms doubling up to 5 s |
/// | [`reconnect_jitter`](Self::reconnect_jitter) | 0.5 |
/// | [`max_reconnect_attempts`](Self::max_reconnect_attempts) | `None`: retry forever |
/// | [`watchdog_interval`](Self::watchdog_interval) | 1 s |
/// | [`dead_letter_max_len`](Self::dead_letter_max_len) | about 10 000 entries per event type |
/// | [`max_in_flight`](Self::max_in_flight) | 1000 |
/// | [`stream_retention`](Self::stream_retention) | about 1 000 000 entries per durable type |
/// | [`subscribe_on_replica`](Self::subscribe_on_replica) | `false`: subscribe on the primary |
/// | [`schedule_poll_interval`](Self::schedule_poll_interval) | 250 ms |
///
/// Every duration is clamped to one year, which is "no limit" in practice (so `Duration::MAX`
/// is accepted and means that). The few values that cannot mean anything useful (a zero
/// connect or response timeout or publish deadline, `max_reconnect_attempts(Some(0))`,
/// `dead_letter_max_len(Some(0))`, empty TLS material) make
/// [`connect`](crate::EventBusBuilder::connect) fail with
/// [`ErrorKind::Config`](crate::transport::ErrorKind::Config), naming every one of them. Each
/// option's documentation gives its bounds.
///
/// # Reading the values
///
/// `RedisOptions` is a by-value builder with setters only, as `async_nats::ConnectOptions` and
/// `reqwest::ClientBuilder` are: each method named after an option sets it, and there are no
/// getters to collide with those names. The values in effect (after clamping) are shown by the
/// `Debug` output, which never shows TLS keys.
#[derive(Clone)]
#[non_exhaustive]
#[must_use]
pub struct RedisOptions {
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) publish_deadline: Duration,
    pub(crate) backoff_initial: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) jitter: f64,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) watchdog_interval: Option<Duration>,
    pub(crate) dead_letter_max_len: Option<usize>,
    pub(crate) max_in_flight: usize,
    pub(crate) stream_retention: StreamRetention,
    pub(crate) tls_root_certificate: Option<Vec<u8>>,
    pub(crate) tls_client_certificate: Option<(Vec<u8>, Vec<u8>)>,
    pub(crate) subscribe_on_replica: bool,
    pub(crate) schedule_poll: Option<Duration>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            connect_timeout: Duration::from_secs(3),
            response_timeout: Duration::from_secs(3),
            publish_deadline: Duration::from_secs(5),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            jitter: 0.5,
            max_attempts: None,
            watchdog_interval: Some(Duration::from_secs(1)),
            dead_letter_max_len: Some(10_000),
            max_in_flight: 1000,
            stream_retention: StreamRetention::default(),
            tls_root_certificate: None,
            tls_client_certificate: None,
            subscribe_on_replica: false,
            schedule_poll: Some(Duration::from_millis(250)),
        }
    }
}

impl fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisOptions")
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("publish_deadline", &self.publish_deadline)
            .field("backoff_initial", &self.backoff_initial)
            .field("backoff_max", &self.backoff_max)
            .field("jitter", &self.jitter)
            .field("max_attempts", &self.max_attempts)
            .field("watchdog_interval", &self.watchdog_interval)
            .field("dead_letter_max_len", &self.dead_letter_max_len)
            .field("max_in_flight", &self.max_in_flight)
            .field("stream_retention", &self.stream_retention)
            .field("tls_root_certificate", &self.tls_root_certificate.is_some())
            .field(
                "tls_client_certificate",
                &self.tls_client_certificate.is_some(),
            )
            .field("subscribe_on_replica", &self.subscribe_on_replica)
            .field("schedule_poll", &self.schedule_poll)
            .finish()
    }
}

impl RedisOptions {
    /// The defaults (see the table above).
    pub fn new() -> Self {
        Self::default()
    }

    /// Places the subscriber connection on a replica instead of the primary (default `false`),
    /// to take the fan-out of messages off the primary: replicas receive every published
    /// message through replication and deliver it to their own subscribers.
    ///
    /// Behind Sentinel (`redis+sentinel://`) the subscriber asks the sentinels for the
    /// replicas and connects to a random one, again on every reconnect; with no replica
    /// available it subscribes on the primary. On a cluster (`redis+cluster://`) and a single
    /// server (`redis://`) the option changes nothing yet: sharded subscriptions stay on each
    /// shard's primary. Publishing and durable streams always use the primary.
    pub fn subscribe_on_replica(mut self, on: bool) -> Self {
        self.subscribe_on_replica = on;
        self
    }

    /// How long establishing a connection may take, TCP and TLS handshake and authentication
    /// included (default 3 s). [`connect`](crate::EventBusBuilder::connect) fails after it with
    /// [`ErrorKind::Timeout`](crate::transport::ErrorKind::Timeout).
    ///
    /// Longer than one year counts as one year; zero is refused by `connect` (a
    /// [`Config`](crate::transport::ErrorKind::Config) error), since no connection could ever be
    /// made.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout.min(MAX_DURATION);
        self
    }

    /// How long the server may take to answer a command (default 3 s). Every command is bounded by
    /// it: a publish that gets no answer in time fails with
    /// [`ErrorKind::Timeout`](crate::transport::ErrorKind::Timeout), and a watchdog `PING` that
    /// gets none marks the connection dead.
    ///
    /// Longer than one year counts as one year; zero is refused by `connect` (a
    /// [`Config`](crate::transport::ErrorKind::Config) error), since no command could ever be
    /// answered.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout.min(MAX_DURATION);
        self
    }

    /// How long a publish (or a query) may wait before it is sent (default 5 s): for a lost
    /// connection to come back (then it fails with
    /// [`ErrorKind::Disconnected`](crate::transport::ErrorKind::Disconnected)), and for its turn
    /// when [`max_in_flight`](Self::max_in_flight) commands already await their answer (then it
    /// fails with [`ErrorKind::Timeout`](crate::transport::ErrorKind::Timeout)).
    ///
    /// A publish returns at the latest after this deadline plus the
    /// [`response_timeout`](Self::response_timeout) of its last try; one that waited in the queue
    /// past its deadline is not sent. Longer than one year counts as one year. Zero is refused by
    /// `connect` (a [`Config`](crate::transport::ErrorKind::Config) error), since every publish
    /// waits a little in the queue: for "fail fast", use a few milliseconds.
    pub fn publish_deadline(mut self, deadline: Duration) -> Self {
        self.publish_deadline = deadline.min(MAX_DURATION);
        self
    }

    /// The reconnect backoff: the first retry waits `initial`, each further one twice as long,
    /// up to `max` (default 100 ms to 5 s). The first reconnect attempt after a loss is made at
    /// once.
    ///
    /// `initial` is at least 1 ms (zero would reconnect in a busy loop) and both are at most
    /// one year; a `max` below `initial` counts as `initial`.
    pub fn reconnect_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial.clamp(MIN_BACKOFF, MAX_DURATION);
        self.backoff_max = max.min(MAX_DURATION).max(self.backoff_initial);
        self
    }

    /// The share of each backoff delay that is randomised, from 0.0 (none) to 1.0 (anywhere
    /// between zero and the full delay); default 0.5. Jitter keeps many services from
    /// reconnecting in lock step after a server restart. Values outside 0..=1 are clamped.
    pub fn reconnect_jitter(mut self, jitter: f64) -> Self {
        self.jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        self
    }

    /// How many reconnect attempts are made after a loss before giving up (`None`, the default:
    /// retry forever). A connection that gave up stays down: publishes fail at once with
    /// [`ErrorKind::Disconnected`](crate::transport::ErrorKind::Disconnected).
    ///
    /// `Some(0)` is refused by `connect` (a [`Config`](crate::transport::ErrorKind::Config) error):
    /// the subscriber connects through the same loop, so at least one attempt is needed.
    pub fn max_reconnect_attempts(mut self, attempts: Option<u32>) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// How often each connection is checked with a `PING` (default 1 s; `None` turns the
    /// watchdog off). A `PING` unanswered within the
    /// [`response_timeout`](Self::response_timeout) marks the connection dead and starts a
    /// reconnect: this is how a half-open connection (a paused server, a dropped network path)
    /// is noticed, since no error ever arrives on it.
    ///
    /// `Some(Duration::ZERO)` also turns the watchdog off; longer than one year counts as one
    /// year.
    pub fn watchdog_interval(mut self, interval: Option<Duration>) -> Self {
        self.watchdog_interval = interval
            .filter(|d| !d.is_zero())
            .map(|d| d.min(MAX_DURATION));
        self
    }

    /// The approximate length at which each dead-letter stream is trimmed
    /// (`XADD ... MAXLEN ~ n`); `None` keeps every entry. Default: about 10 000.
    ///
    /// Values above what Redis accepts (`i64::MAX`) keep every entry, like `None`. `Some(0)` is
    /// refused by `connect` (a [`Config`](crate::transport::ErrorKind::Config) error), since it
    /// would keep none: turn dead letters off per handler with
    /// [`HandlerOptions::dead_letter`](crate::HandlerOptions::dead_letter) instead.
    pub fn dead_letter_max_len(mut self, max_len: Option<usize>) -> Self {
        self.dead_letter_max_len = max_len.filter(|&n| n <= MAX_STREAM_LEN);
        self
    }

    /// How often this bus's mover of scheduled events looks at every schedule queue on the
    /// server, at least (default 250 ms; clamped to 10 ms – 1 h). It also wakes when the next
    /// due time it knows of comes, and when this bus schedules an event due sooner, so this
    /// bounds the lateness of an event scheduled by *another* process for sooner than anything
    /// this mover knew of. `None`: this bus runs no mover (another bus must, or scheduled
    /// events wait).
    pub fn schedule_poll_interval(mut self, every: Option<Duration>) -> Self {
        self.schedule_poll =
            every.map(|d| d.clamp(Duration::from_millis(10), Duration::from_secs(3600)));
        self
    }

    /// How many commands (publishes included) may await their answer on the publisher
    /// connection at once (default 1000). Further ones wait their turn, within the
    /// [`publish_deadline`](Self::publish_deadline); only then does the
    /// [`response_timeout`](Self::response_timeout) start. This keeps a burst of publishes
    /// pipelined without letting the last of them time out merely for waiting behind the
    /// others.
    ///
    /// It also bounds memory: at most this many publishes wait in the publish queue besides
    /// those on the wire. A publish that finds the queue full waits for room (the caller feels
    /// the backpressure) up to the publish deadline, then fails with
    /// [`ErrorKind::Timeout`](crate::transport::ErrorKind::Timeout).
    ///
    /// Zero counts as 1; the most is `tokio::sync::Semaphore::MAX_PERMITS` (`usize::MAX >> 3`),
    /// and larger values count as that.
    pub fn max_in_flight(mut self, commands: usize) -> Self {
        self.max_in_flight = commands.clamp(1, MAX_IN_FLIGHT);
        self
    }

    /// How durable types' streams are trimmed on append (default: about 1 000 000 entries
    /// each). A length or age of zero is refused by `connect` with a
    /// [`Config`](crate::transport::ErrorKind::Config) error.
    pub fn stream_retention(mut self, retention: StreamRetention) -> Self {
        self.stream_retention = retention;
        self
    }

    /// The root certificate(s), PEM-encoded, that a `rediss://` server's certificate must chain to,
    /// instead of the system's roots: for `rediss+sentinel://` the sentinels' and the data nodes',
    /// for `rediss+cluster://` every node's. Needs the `tls` feature; without it `rediss` URLs are
    /// refused with [`ErrorKind::InvalidUrl`](crate::transport::ErrorKind::InvalidUrl).
    pub fn tls_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_root_certificate = Some(pem.into());
        self
    }

    /// A client certificate and its private key, both PEM-encoded, for servers that require
    /// mutual TLS (`tls-auth-clients yes`); shown to every server of the deployment (sentinels,
    /// data nodes, cluster nodes). Needs the `tls` feature.
    pub fn tls_client_certificate(
        mut self,
        certificate_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls_client_certificate = Some((certificate_pem.into(), key_pem.into()));
        self
    }

    /// The problems these options hold that the setters cannot clamp away, all of them in one
    /// message; `connect` refuses them with a [`Config`](crate::transport::ErrorKind::Config)
    /// error.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.connect_timeout.is_zero() {
            problems.push("a connect timeout of zero would never connect");
        }
        if self.response_timeout.is_zero() {
            problems.push("a response timeout of zero would fail every command");
        }
        if self.publish_deadline.is_zero() {
            problems.push("a publish deadline of zero would fail every publish that is queued");
        }
        if self.max_attempts == Some(0) {
            problems.push(
                "max_reconnect_attempts(Some(0)) would never connect the subscriber: use \
                 Some(1) or more, or None to retry forever",
            );
        }
        if self.dead_letter_max_len == Some(0) {
            problems.push(
                "dead_letter_max_len(Some(0)) would keep no dead letters: turn them off with \
                 HandlerOptions::dead_letter(false) instead",
            );
        }
        problems.extend(self.stream_retention.problem());
        if self
            .tls_root_certificate
            .as_ref()
            .is_some_and(|c| c.is_empty())
        {
            problems.push("the TLS root certificate is empty");
        }
        let client = self.tls_client_certificate.as_ref();
        if client.is_some_and(|(cert, key)| cert.is_empty() || key.is_empty()) {
            problems.push("the TLS client certificate or its key is empty");
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// The delay before reconnect attempt `retry` (1 for the first retry after the immediate
    /// attempt), with jitter applied.
    pub(crate) fn backoff_delay(&self, retry: u32) -> Duration {
        let exp = retry.saturating_sub(1).min(31);
        let base = self
            .backoff_initial
            .saturating_mul(1u32 << exp)
            .min(self.backoff_max);
        let cut = self.jitter * fastrand::f64();
        base.mul_f64(1.0 - cut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let o = RedisOptions::new()
            .reconnect_backoff(Duration::from_millis(100), Duration::from_secs(1))
            .reconnect_jitter(0.0);
        assert_eq!(o.backoff_delay(1), Duration::from_millis(100));
        assert_eq!(o.backoff_delay(2), Duration::from_millis(200));
        assert_eq!(o.backoff_delay(4), Duration::from_millis(800));
        assert_eq!(o.backoff_delay(5), Duration::from_secs(1));
        assert_eq!(o.backoff_delay(1000), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let o = RedisOptions::new()
            .reconnect_backoff(Duration::from_millis(100), Duration::from_secs(1))
            .reconnect_jitter(0.5);
        for _ in 0..1000 {
            let d = o.backoff_delay(2);
            assert!(
                d >= Duration::from_millis(100) && d <= Duration::from_millis(200),
                "{d:?}"
            );
        }
        assert_eq!(RedisOptions::new().reconnect_jitter(7.0).jitter, 1.0);
    }

    #[test]
    fn durations_are_clamped_to_a_year() {
        let o = RedisOptions::new()
            .connect_timeout(Duration::MAX)
            .response_timeout(Duration::MAX)
            .publish_deadline(Duration::MAX)
            .reconnect_backoff(Duration::MAX, Duration::MAX)
            .watchdog_interval(Some(Duration::MAX));
        assert_eq!(o.connect_timeout, MAX_DURATION);
        assert_eq!(o.response_timeout, MAX_DURATION);
        assert_eq!(o.publish_deadline, MAX_DURATION);
        assert_eq!(
            (o.backoff_initial, o.backoff_max),
            (MAX_DURATION, MAX_DURATION)
        );
        assert_eq!(o.watchdog_interval, Some(MAX_DURATION));
        assert!(o.validate().is_ok());
        // What the transport computes from them must not overflow.
        let now = tokio::time::Instant::now();
        let _ = now + o.publish_deadline + o.response_timeout;
        for retry in [1, 2, 40, u32::MAX] {
            assert!(o.backoff_delay(retry) <= MAX_DURATION);
        }
    }

    #[test]
    fn zero_durations_are_clamped_or_refused() {
        let o = RedisOptions::new()
            .reconnect_backoff(Duration::ZERO, Duration::ZERO)
            .watchdog_interval(Some(Duration::ZERO));
        assert_eq!(
            (o.backoff_initial, o.backoff_max),
            (MIN_BACKOFF, MIN_BACKOFF)
        );
        assert_eq!(o.watchdog_interval, None);
        assert!(o.validate().is_ok());

        let e = RedisOptions::new()
            .connect_timeout(Duration::ZERO)
            .response_timeout(Duration::ZERO)
            .publish_deadline(Duration::ZERO)
            .validate()
            .unwrap_err();
        assert!(e.contains("publish deadline of zero"), "{e}");
        assert!(e.contains("connect timeout of zero"), "{e}");
        assert!(e.contains("response timeout of zero"), "{e}");
    }

    #[test]
    fn counts_are_clamped_or_refused() {
        assert_eq!(RedisOptions::new().max_in_flight(0).max_in_flight, 1);
        let most = RedisOptions::new().max_in_flight(usize::MAX).max_in_flight;
        assert_eq!(most, MAX_IN_FLIGHT);
        // The transport's semaphore and bounded queue must accept it.
        let _ = tokio::sync::Semaphore::new(most);
        let _ = tokio::sync::mpsc::channel::<()>(most);

        let o = RedisOptions::new().dead_letter_max_len(Some(usize::MAX));
        assert_eq!(o.dead_letter_max_len, None);
        let o = RedisOptions::new().dead_letter_max_len(Some(MAX_STREAM_LEN));
        assert_eq!(o.dead_letter_max_len, Some(MAX_STREAM_LEN));
        let o = RedisOptions::new().max_reconnect_attempts(Some(u32::MAX));
        assert!(o.validate().is_ok());

        let e = RedisOptions::new()
            .dead_letter_max_len(Some(0))
            .max_reconnect_attempts(Some(0))
            .validate()
            .unwrap_err();
        assert!(e.contains("dead_letter_max_len(Some(0))"), "{e}");
        assert!(e.contains("max_reconnect_attempts(Some(0))"), "{e}");
    }

    #[test]
    fn empty_tls_material_is_refused() {
        let e = RedisOptions::new()
            .tls_root_certificate(Vec::new())
            .tls_client_certificate("CERT", "")
            .validate()
            .unwrap_err();
        assert!(e.contains("root certificate is empty"), "{e}");
        assert!(e.contains("client certificate or its key is empty"), "{e}");
    }

    #[test]
    fn debug_hides_keys() {
        let o = RedisOptions::new().tls_client_certificate("CERT", "SECRET-KEY");
        let s = format!("{o:?}");
        assert!(!s.contains("SECRET-KEY"), "{s}");
    }
}
