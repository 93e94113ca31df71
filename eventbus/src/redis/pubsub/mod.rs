pub(crate) mod admin;
pub(crate) mod names;
pub(crate) mod subscriber;
