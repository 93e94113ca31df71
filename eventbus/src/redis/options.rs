//! [`RedisOptions`]: timeouts, reconnect backoff, watchdog and TLS material.

use std::fmt;
use std::time::Duration;

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
/// assert_eq!(options.get_publish_deadline(), Duration::from_secs(10));
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
///
/// The `Debug` output never shows TLS keys.
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
    pub(crate) tls_root_certificate: Option<Vec<u8>>,
    pub(crate) tls_client_certificate: Option<(Vec<u8>, Vec<u8>)>,
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
            tls_root_certificate: None,
            tls_client_certificate: None,
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
            .field("tls_root_certificate", &self.tls_root_certificate.is_some())
            .field(
                "tls_client_certificate",
                &self.tls_client_certificate.is_some(),
            )
            .finish()
    }
}

impl RedisOptions {
    /// The defaults (see the table above).
    pub fn new() -> Self {
        Self::default()
    }

    /// How long establishing a connection may take, TCP and TLS handshake and authentication
    /// included (default 3 s). [`connect`](crate::EventBusBuilder::connect) fails after it with
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long the server may take to answer a command (default 3 s). Every command is bounded
    /// by it: a publish that gets no answer in time fails with
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout), and a watchdog `PING` that gets none
    /// marks the connection dead.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// How long a publish (or a query) waits for a lost connection to come back before it fails
    /// with [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected) (default 5 s).
    ///
    /// A publish returns at the latest after this deadline plus the
    /// [`response_timeout`](Self::response_timeout) of its last try.
    pub fn publish_deadline(mut self, deadline: Duration) -> Self {
        self.publish_deadline = deadline;
        self
    }

    /// The reconnect backoff: the first retry waits `initial`, each further one twice as long,
    /// up to `max` (default 100 ms to 5 s). The first reconnect attempt after a loss is made at
    /// once.
    pub fn reconnect_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial;
        self.backoff_max = max.max(initial);
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
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected).
    pub fn max_reconnect_attempts(mut self, attempts: Option<u32>) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// How often each connection is checked with a `PING` (default 1 s; `None` turns the
    /// watchdog off). A `PING` unanswered within the
    /// [`response_timeout`](Self::response_timeout) marks the connection dead and starts a
    /// reconnect: this is how a half-open connection (a paused server, a dropped network path)
    /// is noticed, since no error ever arrives on it.
    pub fn watchdog_interval(mut self, interval: Option<Duration>) -> Self {
        self.watchdog_interval = interval.filter(|d| !d.is_zero());
        self
    }

    /// The approximate length at which each dead-letter stream is trimmed
    /// (`XADD ... MAXLEN ~ n`); `None` keeps every entry. Default: about 10 000.
    pub fn dead_letter_max_len(mut self, max_len: Option<usize>) -> Self {
        self.dead_letter_max_len = max_len;
        self
    }

    /// How many commands (publishes included) may await their answer on the publisher
    /// connection at once (default 1000, at least 1). Further ones wait their turn, within the
    /// [`publish_deadline`](Self::publish_deadline); only then does the
    /// [`response_timeout`](Self::response_timeout) start. This keeps a burst of publishes
    /// pipelined without letting the last of them time out merely for waiting behind the
    /// others.
    pub fn max_in_flight(mut self, commands: usize) -> Self {
        self.max_in_flight = commands.max(1);
        self
    }

    /// The root certificate(s), PEM-encoded, that a `rediss://` server's certificate must chain
    /// to, instead of the system's roots. Needs the `tls` feature; without it `rediss://` URLs
    /// are refused with [`ErrorKind::InvalidUrl`](crate::ErrorKind::InvalidUrl).
    pub fn tls_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_root_certificate = Some(pem.into());
        self
    }

    /// A client certificate and its private key, both PEM-encoded, for servers that require
    /// mutual TLS (`tls-auth-clients yes`). Needs the `tls` feature.
    pub fn tls_client_certificate(
        mut self,
        certificate_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls_client_certificate = Some((certificate_pem.into(), key_pem.into()));
        self
    }

    /// The connect timeout.
    pub fn get_connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The response timeout.
    pub fn get_response_timeout(&self) -> Duration {
        self.response_timeout
    }

    /// The publish deadline.
    pub fn get_publish_deadline(&self) -> Duration {
        self.publish_deadline
    }

    /// The reconnect backoff: first and largest delay.
    pub fn get_reconnect_backoff(&self) -> (Duration, Duration) {
        (self.backoff_initial, self.backoff_max)
    }

    /// The reconnect jitter.
    pub fn get_reconnect_jitter(&self) -> f64 {
        self.jitter
    }

    /// The most reconnect attempts after a loss, or `None` for no limit.
    pub fn get_max_reconnect_attempts(&self) -> Option<u32> {
        self.max_attempts
    }

    /// The watchdog interval, or `None` when the watchdog is off.
    pub fn get_watchdog_interval(&self) -> Option<Duration> {
        self.watchdog_interval
    }

    /// The dead-letter stream length limit.
    pub fn get_dead_letter_max_len(&self) -> Option<usize> {
        self.dead_letter_max_len
    }

    /// The most commands awaiting an answer at once.
    pub fn get_max_in_flight(&self) -> usize {
        self.max_in_flight
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
        assert_eq!(
            RedisOptions::new()
                .reconnect_jitter(7.0)
                .get_reconnect_jitter(),
            1.0
        );
    }

    #[test]
    fn debug_hides_keys() {
        let o = RedisOptions::new().tls_client_certificate("CERT", "SECRET-KEY");
        let s = format!("{o:?}");
        assert!(!s.contains("SECRET-KEY"), "{s}");
    }
}
