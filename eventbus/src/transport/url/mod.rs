//! The URLs the bus connects to: one parser for every form, and one way to show them without
//! their secrets.
//!
//! ```text
//! memory://[NAME]
//! redis://[user[:password]@]host[:port][/db][?protocol=resp3]        (rediss:// with #insecure)
//! redis+unix:///path/to/redis.sock[?db=N&user=U&pass=P&protocol=resp3]   (also unix://)
//! redis+sentinel://[user[:password]@]host[:port][,host[:port]...]/<master>[/db]
//!     [?protocol=resp3][&sentinel_username=U][&sentinel_password=P]  (rediss+sentinel://)
//! redis+cluster://[user[:password]@]host:port[,host:port...]/        (rediss+cluster://)
//! ```
//!
//! [`Url::parse`] splits a text into scheme, user information, hosts, path, query and fragment
//! and never fails; the rules of each form are checked apart (`check`), so that each mistake
//! gets its own message. The authority ends at the first `/`, `?` or `#` after the scheme, and
//! the user information is what precedes its last `@`: a `@` in a query value (such as
//! `sentinel_username=ops@team`) is the value's. A password holding an unencoded `/`, `?` or
//! `#` would end the authority early; the parser recognises it, to say so rather than read a
//! wrong host (and to keep the password out of every message): when a `@` follows the
//! authority where no `@` belongs (in the path, the fragment, or the query other than the
//! value of a user name or password parameter), or follows an authority without `@` that is
//! not a list of hosts, the user information runs to the first `@` after which the rest reads
//! as hosts and a path, query and fragment without such a `@`, and the check rejects the URL.
//! The path of a Unix socket URL (`redis+unix:///...`, nothing between `//` and `/`) may hold
//! a `@`.
//!
//! [`Url`]'s `Display` and `Debug` (and [`redact_url`]) replace every password by `***`: the
//! one in the user information, and the values of the `pass`, `password` and
//! `sentinel_password` query parameters, whatever characters they hold. A fragment other than
//! `#insecure` is an unencoded `#` in a query value: it is left out after a password
//! parameter, and masked as the query is otherwise.

use std::borrow::Cow;
use std::fmt;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

#[cfg(feature = "redis")]
pub(crate) mod check;

/// Query parameters whose value is a password: `pass` and `password` (`redis+unix://`) and
/// `sentinel_password` (`redis+sentinel://`). Matched without regard to case.
const PASSWORD_PARAMS: [&str; 3] = ["pass", "password", "sentinel_password"];

/// Query parameters whose value may hold a `@`: user names and passwords.
const CREDENTIAL_PARAMS: [&str; 5] = [
    "user",
    "pass",
    "password",
    "sentinel_username",
    "sentinel_password",
];

/// What stays unencoded in the user information of a normalised URL: the unreserved
/// characters of RFC 3986.
#[cfg_attr(not(feature = "redis"), allow(dead_code))] // read by the Redis transport
const USERINFO: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The URL with any password replaced by `***`, for messages and logs: the one in the user
/// information (`redis://user:***@host`) and the values of the query parameters `pass`,
/// `password` and `sentinel_password` (`redis+sentinel://h/m?sentinel_password=***`),
/// whatever characters they hold. A text without a scheme is masked up to its last `@`.
///
/// ```
/// use eventbus::transport::redact_url;
///
/// assert_eq!(redact_url("redis://app:s3cret@10.0.0.1:6379/0"), "redis://app:***@10.0.0.1:6379/0");
/// assert_eq!(
///     redact_url("redis+unix:///run/redis.sock?user=ops@corp&pass=s3cret"),
///     "redis+unix:///run/redis.sock?user=ops@corp&pass=***"
/// );
/// ```
pub fn redact_url(url: &str) -> String {
    Url::parse(url).to_string()
}

/// A URL split into its parts, each as written (still percent-encoded). `Display` and `Debug`
/// show it without its passwords.
#[derive(Clone, Copy)]
pub(crate) struct Url<'a> {
    /// The scheme as written, when the text has one.
    scheme: Option<&'a str>,
    /// What precedes the `@` that ends the user information.
    userinfo: Option<&'a str>,
    /// `host[:port]`, a comma-separated list of them, a memory hub's name, or nothing.
    hosts: &'a str,
    /// From the first `/` after the hosts to the query (or the end).
    path: &'a str,
    query: Option<&'a str>,
    fragment: Option<&'a str>,
}

impl<'a> Url<'a> {
    /// Splits `text`; never fails. See the [module](self) for the rules.
    pub(crate) fn parse(text: &'a str) -> Url<'a> {
        let Some((scheme, rest)) = text.split_once("://").filter(|(s, _)| is_scheme(s)) else {
            // No scheme: whatever precedes the last `@` may be a password.
            let (userinfo, rest) = match text.rfind('@') {
                Some(at) => (Some(&text[..at]), &text[at + 1..]),
                None => (None, text),
            };
            return Url::server(None, userinfo, rest);
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let mut at = rest[..end].rfind('@');
        // A socket path may hold a `@`.
        let socket = end == 0
            && ["redis+unix", "unix"]
                .iter()
                .any(|s| scheme.eq_ignore_ascii_case(s));
        if let Some(misplaced) = misplaced_at(rest, end).filter(|_| !socket) {
            at = Some(misplaced);
        }
        match at {
            Some(at) => Url::server(Some(scheme), Some(&rest[..at]), &rest[at + 1..]),
            None => Url::server(Some(scheme), None, rest),
        }
    }

    /// The parts of `rest`, which follows the user information.
    fn server(scheme: Option<&'a str>, userinfo: Option<&'a str>, rest: &'a str) -> Url<'a> {
        let (rest, fragment) = split(rest, '#');
        let (rest, query) = split(rest, '?');
        let (hosts, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        Url {
            scheme,
            userinfo,
            hosts,
            path,
            query,
            fragment,
        }
    }

    /// The scheme in lower case (`redis`, `rediss+sentinel`), when the text has one.
    pub(crate) fn scheme(&self) -> Option<String> {
        self.scheme.map(str::to_ascii_lowercase)
    }

    /// The user information as written: `user`, `user:password` or `:password`.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn userinfo(&self) -> Option<&'a str> {
        self.userinfo
    }

    /// The user name and the password of the user information, as written (the password is
    /// what follows its first `:`).
    pub(crate) fn credentials(&self) -> Option<(&'a str, Option<&'a str>)> {
        let userinfo = self.userinfo?;
        Some(match userinfo.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (userinfo, None),
        })
    }

    /// `host[:port]` or a comma-separated list of them; empty for a Unix socket.
    pub(crate) fn hosts(&self) -> &'a str {
        self.hosts
    }

    /// From the `/` after the hosts (the socket path, the database, the master name) to the
    /// query; empty when there is none.
    pub(crate) fn path(&self) -> &'a str {
        self.path
    }

    /// The query after `?`, as written.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn query(&self) -> Option<&'a str> {
        self.query
    }

    /// The fragment after `#`.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn fragment(&self) -> Option<&'a str> {
        self.fragment
    }

    /// The user information with user name and password percent-encoded anew, so that no
    /// other parser can read them differently.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn normalized_userinfo(&self) -> Option<String> {
        let (user, password) = self.credentials()?;
        let encode = |text: &str| {
            let decoded = percent_decode_str(text).decode_utf8_lossy();
            utf8_percent_encode(&decoded, USERINFO).to_string()
        };
        Some(match password {
            Some(password) => format!("{}:{}", encode(user), encode(password)),
            None => encode(user),
        })
    }

    /// The URL with its scheme in lower case and its user information normalised
    /// ([`normalized_userinfo`](Self::normalized_userinfo)): the text to give redis-rs.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn normalized(&self) -> String {
        let mut text = self.scheme().map(|s| s + "://").unwrap_or_default();
        if let Some(userinfo) = self.normalized_userinfo() {
            text.push_str(&userinfo);
            text.push('@');
        }
        text.push_str(self.hosts);
        text.push_str(self.path);
        for (mark, part) in [('?', self.query), ('#', self.fragment)] {
            if let Some(part) = part {
                text.push(mark);
                text.push_str(part);
            }
        }
        text
    }

    /// Whether the fragment is shown: not when it may be the end of a password query value
    /// that held an unencoded `#` (anything but `#insecure` after a password parameter).
    fn shows_fragment(&self) -> bool {
        let last = self.query.and_then(|q| q.rsplit('&').next()).unwrap_or("");
        let after_password = last
            .split_once('=')
            .is_some_and(|(key, _)| is_one_of(key, &PASSWORD_PARAMS));
        !after_password
            || self
                .fragment
                .is_some_and(|f| f.eq_ignore_ascii_case("insecure"))
    }
}

/// `key=value` pairs separated by `&`, the values of password parameters replaced by `***`.
fn write_masked_pairs(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    for (i, pair) in text.split('&').enumerate() {
        if i > 0 {
            f.write_str("&")?;
        }
        match pair.split_once('=') {
            Some((key, _)) if is_one_of(key, &PASSWORD_PARAMS) => write!(f, "{key}=***")?,
            _ => f.write_str(pair)?,
        }
    }
    Ok(())
}

impl fmt::Display for Url<'_> {
    /// The URL with its passwords replaced by `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(scheme) = self.scheme {
            write!(f, "{scheme}://")?;
        }
        match self.credentials() {
            // A user name holding `/`, `?` or `#` was not meant to end there: mask it too.
            Some((user, Some(_))) if !user.contains(['/', '?', '#']) => write!(f, "{user}:***@")?,
            Some(_) => f.write_str("***@")?,
            None => {}
        }
        write!(f, "{}{}", self.hosts, self.path)?;
        if let Some(query) = self.query {
            f.write_str("?")?;
            write_masked_pairs(f, query)?;
        }
        // A fragment other than `#insecure` is an unencoded `#` in a query value: masked as
        // the query is (the parameters after it are in it).
        match self.fragment {
            Some(fragment) if self.shows_fragment() => {
                f.write_str("#")?;
                write_masked_pairs(f, fragment)
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Debug for Url<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Url").field(&self.to_string()).finish()
    }
}

/// The text `text` stands for once its `%XX` escapes are decoded (a `%` not followed by two
/// hex digits stands for itself); an error when that is not UTF-8.
#[cfg_attr(not(feature = "redis"), allow(dead_code))] // read by the Redis transport
pub(crate) fn decode(text: &str) -> Result<Cow<'_, str>, std::str::Utf8Error> {
    percent_decode_str(text).decode_utf8()
}

/// Whether `scheme` is made of the characters a scheme may hold (RFC 3986).
fn is_scheme(scheme: &str) -> bool {
    scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

fn is_one_of(key: &str, keys: &[&str]) -> bool {
    keys.iter().any(|k| key.eq_ignore_ascii_case(k))
}

/// `text` split at the first `mark`.
fn split(text: &str, mark: char) -> (&str, Option<&str>) {
    match text.split_once(mark) {
        Some((before, after)) => (before, Some(after)),
        None => (text, None),
    }
}

/// The position in `rest` (what follows `scheme://`) of the `@` that ends user information
/// whose password held an unencoded `/`, `?` or `#` (the authority, `rest[..end]`, ending
/// early), when a `@` after the authority is where no `@` belongs, or follows an authority
/// without `@` that is no list of hosts: the first `@` after which the URL reads without such
/// a `@` and with a list of hosts (failing that, without such a `@`; failing that, the last).
fn misplaced_at(rest: &str, end: usize) -> Option<usize> {
    let ats: Vec<usize> = rest[end..]
        .match_indices('@')
        .map(|(i, _)| end + i)
        .collect();
    let last = *ats.last()?;
    let authority = &rest[..end];
    if (authority.contains('@') || is_hosts(authority)) && !has_misplaced_at(&rest[end..]) {
        return None;
    }
    // The authority after the `@` at `at`, if the rest reads without a misplaced `@`.
    let reads_well = |&at: &usize| {
        let after = &rest[at + 1..];
        let end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let fine = !after[..end].contains('@') && !has_misplaced_at(&after[end..]);
        fine.then_some((at, &after[..end]))
    };
    let candidates: Vec<(usize, &str)> = ats.iter().filter_map(reads_well).collect();
    let with_hosts = candidates.iter().find(|(_, hosts)| is_hosts(hosts));
    Some(
        with_hosts
            .or(candidates.first())
            .map_or(last, |(at, _)| *at),
    )
}

/// Whether `hosts` is a comma-separated list of `host[:port]`.
fn is_hosts(hosts: &str) -> bool {
    hosts.split(',').all(|h| check_host_port(h).is_ok())
}

/// Whether `tail`, what follows an authority, holds a `@` where none belongs: in the path, in
/// the fragment, or in the query but for the value of a user name or password parameter (a
/// fragment after such a value may be the rest of it, after an unencoded `#`).
fn has_misplaced_at(tail: &str) -> bool {
    let fragment = tail.find('#').unwrap_or(tail.len());
    let Some(query) = tail[..fragment].find('?') else {
        return tail.contains('@');
    };
    // Whether the `@` at `at` (in the query or the fragment) ends a credential's value.
    let in_credential = |at: usize| {
        let at = at.min(fragment);
        let start = tail[query + 1..at]
            .rfind('&')
            .map_or(query + 1, |i| query + 1 + i + 1);
        tail[start..at]
            .split_once('=')
            .is_some_and(|(key, _)| is_one_of(key, &CREDENTIAL_PARAMS))
    };
    tail.match_indices('@')
        .any(|(at, _)| at < query || !in_credential(at))
}

/// `host[:port]` or `[v6]:port`: the message says what is wrong.
pub(crate) fn check_host_port(server: &str) -> Result<(), String> {
    let (host, port) = if let Some(v6) = server.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return Err("the IPv6 address lacks its closing `]`".to_owned());
        };
        match after {
            "" => (addr, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (addr, Some(port)),
                None => return Err("expected `:PORT` after the IPv6 address".to_owned()),
            },
        }
    } else {
        match server.split_once(':') {
            Some((_, port)) if port.contains(':') => {
                return Err(
                    "an IPv6 address must be written in brackets: redis://[::1]:6379".to_owned(),
                );
            }
            Some((host, port)) => (host, Some(port)),
            None => (server, None),
        }
    };
    check_host(host)?;
    port.map_or(Ok(()), check_port)
}

fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("the host is missing: expected redis://HOST:PORT".to_owned());
    }
    if matches!(host, "0.0.0.0" | "::") {
        return Err(format!(
            "`{host}` is the wildcard address a server listens on, not one to connect to: \
             name the server (for this machine, 127.0.0.1)"
        ));
    }
    let bad = host.chars().find(|c| {
        c.is_ascii() && !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
    });
    match bad {
        Some(c) => Err(format!(
            "the host `{host}` holds `{c}`, which a host name cannot"
        )),
        None => Ok(()),
    }
}

fn check_port(port: &str) -> Result<(), String> {
    if port.is_empty() {
        return Err("the port is empty after `:`".to_owned());
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("the port `{port}` is not a number (1-65535)"));
    }
    match port.parse::<u32>() {
        Ok(0) => Err("port 0 is not a port a server listens on: use 1-65535".to_owned()),
        Ok(n) if n <= u32::from(u16::MAX) => Ok(()),
        _ => Err(format!("the port {port} is out of range: use 1-65535")),
    }
}

#[cfg(test)]
pub(crate) mod tests;
