//! The sentinels' own credentials, and telling their refusal from the data nodes'.
//!
//! Sentinels that require a password (`requirepass` in sentinel.conf, or an ACL user) take it
//! from two query parameters of the `redis+sentinel://` URL, percent-encoded like the rest of
//! a URL:
//!
//! ```text
//! redis+sentinel://:DATA_PASSWORD@host:26379,host:26379/mymaster?sentinel_password=SENTINEL_PASSWORD
//! redis+sentinel://app:DATA_PASSWORD@host:26379/mymaster?sentinel_username=watcher&sentinel_password=SENTINEL_PASSWORD
//! ```
//!
//! The user information before `@` stays the data nodes'. Both parameters are masked in every
//! message, as the password before `@` is.
//!
//! A failed lookup with an authentication error can come from the sentinels or from the
//! primary they name (the lookup checks it with `ROLE`): [`refused`] asks the sentinels alone
//! with `PING`, so the message says which side refused.

use std::fmt;

use redis::sentinel::SentinelClientBuilder;
use redis::{AsyncConnectionConfig, ConnectionInfo, RedisConnectionInfo, RedisError};

use crate::redis::RedisOptions;
use crate::redis::errors::classify;
use crate::transport::ErrorKind;
use crate::transport::url::decode as percent_decode;

/// The query parameter naming the sentinels' user.
pub(crate) const USERNAME_PARAM: &str = "sentinel_username";
/// The query parameter holding the sentinels' password.
pub(crate) const PASSWORD_PARAM: &str = "sentinel_password";

/// The credentials the sentinels require; none when they require none.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct SentinelAuth {
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
}

impl fmt::Debug for SentinelAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentinelAuth")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

impl SentinelAuth {
    /// Takes `sentinel_username` and `sentinel_password` out of a URL's query; returns them
    /// and the rest of the query, for the data nodes. The error never shows the password.
    pub(crate) fn take_from_query(query: &str) -> Result<(SentinelAuth, String), String> {
        let mut auth = SentinelAuth::default();
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match key {
                USERNAME_PARAM => &mut auth.username,
                PASSWORD_PARAM => &mut auth.password,
                _ => {
                    rest.push(pair);
                    continue;
                }
            };
            if slot.is_some() {
                return Err(format!("`{key}` is given twice"));
            }
            *slot = Some(decode(key, value)?);
        }
        if auth.username.is_some() && auth.password.is_none() {
            return Err(format!(
                "`{USERNAME_PARAM}` needs `{PASSWORD_PARAM}`: \
                 ?{USERNAME_PARAM}=USER&{PASSWORD_PARAM}=PASSWORD"
            ));
        }
        Ok((auth, rest.join("&")))
    }

    /// Sets the credentials on the connections to the sentinels.
    pub(crate) fn apply(&self, mut builder: SentinelClientBuilder) -> SentinelClientBuilder {
        if let Some(user) = &self.username {
            builder = builder.set_client_to_sentinel_username(user);
        }
        if let Some(password) = &self.password {
            builder = builder.set_client_to_sentinel_password(password);
        }
        builder
    }

    /// The handshake settings of a connection to a sentinel.
    pub(crate) fn settings(&self) -> RedisConnectionInfo {
        let mut settings = RedisConnectionInfo::default();
        if let Some(user) = &self.username {
            settings = settings.set_username(user);
        }
        if let Some(password) = &self.password {
            settings = settings.set_password(password);
        }
        settings
    }
}

/// A parameter's value, percent-decoded; it must not be empty and must be UTF-8.
fn decode(key: &str, value: &str) -> Result<String, String> {
    if value.is_empty() {
        return Err(format!("`{key}` is empty"));
    }
    percent_decode(value).map(String::from).map_err(|_| {
        format!("`{key}` is not valid UTF-8 once percent-decoded (percent-encode each byte of its UTF-8 form)")
    })
}

/// Asks the sentinels, one after the other, with `PING` and their credentials: the error of
/// the first that refuses them, or `None` when the first that answers accepts them (or none
/// answers).
pub(crate) async fn refused(
    sentinels: &[ConnectionInfo],
    options: &RedisOptions,
) -> Option<RedisError> {
    for info in sentinels {
        match ping(info.clone(), options).await {
            Ok(()) => return None,
            Err(e) if classify(&e, ErrorKind::Unreachable) == ErrorKind::Auth => return Some(e),
            Err(_) => {}
        }
    }
    None
}

async fn ping(info: ConnectionInfo, options: &RedisOptions) -> Result<(), RedisError> {
    let client = crate::redis::conn::tls::client(info, options)?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(options.connect_timeout))
        .set_response_timeout(Some(options.response_timeout));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    redis::cmd("PING").query_async(&mut conn).await
}

/// The message for credentials the sentinels `hosts` refused with `e`.
pub(crate) fn refusal_message(hosts: &str, e: &RedisError, auth: &SentinelAuth) -> String {
    if e.code() == Some("NOAUTH") || auth.password.is_none() {
        format!(
            "sentinel authentication failed: the sentinels {hosts} require a password; put it \
             in the URL as `?{PASSWORD_PARAM}=PASSWORD` (with `&{USERNAME_PARAM}=USER` for an \
             ACL user): the user name and password before `@` are the data nodes'"
        )
    } else {
        format!(
            "sentinel authentication failed: the sentinels {hosts} refused the URL's \
             `{PASSWORD_PARAM}` (wrong password or user name, or the user is disabled)"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(query: &str) -> Result<(SentinelAuth, String), String> {
        SentinelAuth::take_from_query(query)
    }

    #[test]
    fn sentinel_credentials_leave_the_rest_of_the_query() {
        let (auth, rest) = take("protocol=resp3&sentinel_password=s%40cret&x=1").unwrap();
        assert_eq!(auth.password.as_deref(), Some("s@cret"));
        assert_eq!(auth.username, None);
        assert_eq!(rest, "protocol=resp3&x=1");
        let (auth, rest) = take("sentinel_username=watcher&sentinel_password=pw").unwrap();
        assert_eq!(auth.username.as_deref(), Some("watcher"));
        assert_eq!(rest, "");
        assert_eq!(take("").unwrap().0, SentinelAuth::default());
    }

    #[test]
    fn sentinel_credential_mistakes_are_named_without_the_password() {
        for (query, expected) in [
            ("sentinel_password=", "`sentinel_password` is empty"),
            ("sentinel_password=s3c&sentinel_password=s3c", "given twice"),
            ("sentinel_username=w", "needs `sentinel_password`"),
            ("sentinel_password=s3c%FF", "not valid UTF-8"),
        ] {
            let e = take(query).unwrap_err();
            assert!(e.contains(expected), "{query}: {e}");
            assert!(!e.contains("s3c"), "{query}: {e}");
        }
    }

    #[test]
    fn debug_hides_the_password() {
        let (auth, _) = take("sentinel_username=w&sentinel_password=s3cret").unwrap();
        let text = format!("{auth:?}");
        assert!(text.contains("\"w\"") && !text.contains("s3cret"), "{text}");
    }
}
