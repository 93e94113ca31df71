//! Attributes to set on a published envelope.

use crate::envelope::Envelope;

/// Attributes to set on a published envelope.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct PublishOptions {
    pub(crate) correlation_id: Option<String>,
    pub(crate) causation_id: Option<String>,
    pub(crate) traceparent: Option<String>,
}

impl PublishOptions {
    /// No extra attributes.
    pub fn new() -> Self {
        Self::default()
    }

    /// A follow-up of `cause`: the same correlation id (or `cause`'s id when it has none) and
    /// `cause`'s id as causation id.
    pub fn caused_by<T>(cause: &Envelope<T>) -> Self {
        PublishOptions {
            correlation_id: Some(
                cause
                    .correlation_id()
                    .map(str::to_owned)
                    .unwrap_or_else(|| cause.id().to_owned()),
            ),
            causation_id: Some(cause.id().to_owned()),
            traceparent: cause.traceparent().map(str::to_owned),
        }
    }

    /// Sets the correlation id.
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Sets the causation id.
    pub fn causation_id(mut self, id: impl Into<String>) -> Self {
        self.causation_id = Some(id.into());
        self
    }

    /// Sets the W3C `traceparent`.
    pub fn traceparent(mut self, traceparent: impl Into<String>) -> Self {
        self.traceparent = Some(traceparent.into());
        self
    }

    /// Sets these attributes on `envelope`.
    pub(crate) fn apply<E>(self, envelope: &mut Envelope<E>) {
        envelope.correlationid = self.correlation_id;
        envelope.causationid = self.causation_id;
        envelope.traceparent = self.traceparent;
    }
}
