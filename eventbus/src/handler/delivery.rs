//! One message on its way to one handler.

use std::any::Any;
use std::sync::Arc;

use crate::envelope::{DecodeError, RawEnvelope};
use crate::transport::Message;

/// One message on its way to one handler: the raw message, its parsed envelope, the value
/// decoded for this handler's argument type when the router decoded it already, and what the
/// router found a durable entry to be.
#[doc(hidden)]
#[allow(unreachable_pub)]
pub struct Delivery {
    pub(crate) message: Message,
    pub(crate) raw: Option<Arc<RawEnvelope>>,
    pub(crate) decoded: Option<Arc<dyn Any + Send + Sync>>,
    pub(crate) verdict: Verdict,
}

/// What the router found a durable entry to be, before any run of its handler.
#[derive(Debug, Clone, Default)]
pub(crate) enum Verdict {
    /// An event for the handler: run it.
    #[default]
    Run,
    /// An envelope of the handler's type for another `dataversion`: acknowledged without a
    /// run, as pub/sub skips it.
    Skip,
    /// It can never be handled (larger than `max_message_size`, not an envelope, of another
    /// type, data that does not fit the type): stored as a dead letter at once with the
    /// reason, and acknowledged once stored. `size` is the entry's size as it was read (an
    /// oversized entry's payload is cut down to its first bytes).
    Reject {
        error: Arc<DecodeError>,
        size: usize,
    },
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("message", &self.message)
            .field("event_id", &self.event_id())
            .field("verdict", &self.verdict)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    pub(crate) fn event_id(&self) -> Option<&str> {
        self.raw.as_deref().map(RawEnvelope::id)
    }

    /// This handler's own value: the router's decoded one when this is its last holder, a copy
    /// of it when `copy` can make one, else decoded from the envelope again.
    pub(crate) fn take_envelope<T: Send + Sync + 'static>(
        &mut self,
        decode: impl FnOnce(&RawEnvelope) -> Result<T, DecodeError>,
        copy: impl FnOnce(&T) -> Option<T>,
    ) -> Result<T, DecodeError> {
        if let Some(shared) = self.decoded.take()
            && let Ok(typed) = shared.downcast::<T>()
        {
            match Arc::try_unwrap(typed) {
                Ok(owned) => return Ok(owned),
                Err(typed) => {
                    if let Some(copied) = copy(&typed) {
                        return Ok(copied);
                    }
                }
            }
        }
        match &self.raw {
            Some(raw) => decode(raw),
            None => Err(DecodeError::MissingType),
        }
    }
}
