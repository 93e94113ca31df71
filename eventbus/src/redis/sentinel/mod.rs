pub(crate) mod auth;
pub(crate) mod discovery;
