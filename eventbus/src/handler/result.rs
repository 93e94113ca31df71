//! What a handler returns.

use crate::transport::BoxError;

/// What a handler run returns: `()` or `Result<(), E>`.
#[diagnostic::on_unimplemented(
    message = "a handler must return `()` or `Result<(), E>`, not `{Self}`",
    note = "the bus has nowhere to send a returned value: return `Ok(())` on success",
    note = "the error type must convert into `Box<dyn std::error::Error + Send + Sync>` (`anyhow::Error`, `String` and thiserror types do)"
)]
pub trait HandlerResult: Send + 'static {
    /// Into a plain result.
    fn into_result(self) -> Result<(), BoxError>;
}

impl HandlerResult for () {
    fn into_result(self) -> Result<(), BoxError> {
        Ok(())
    }
}

impl<Err: Into<BoxError> + Send + 'static> HandlerResult for Result<(), Err> {
    fn into_result(self) -> Result<(), BoxError> {
        self.map_err(Into::into)
    }
}
