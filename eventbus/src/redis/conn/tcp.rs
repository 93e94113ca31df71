//! The socket options of every connection the transport makes.

use redis::io::tcp::TcpSettings;

/// `TCP_NODELAY` on: a lone command is written at once instead of waiting for the
/// acknowledgement of the one before (Nagle's algorithm, which redis-rs leaves on by default).
pub(crate) fn settings() -> TcpSettings {
    TcpSettings::default().set_nodelay(true)
}
