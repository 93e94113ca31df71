//! The Redis pub/sub transport.

use std::sync::Arc;

use crate::transport::{ErrorKind, Inbound, Transport, TransportError};

/// Options of the Redis transport.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RedisOptions {}

pub(crate) async fn connect(
    url: &str,
    inbound: Arc<dyn Inbound>,
    options: &RedisOptions,
) -> Result<Arc<dyn Transport>, TransportError> {
    let _ = (url, inbound, options);
    Err(TransportError::new(ErrorKind::Unsupported, "not yet"))
}
