pub(crate) mod many;
pub(crate) mod publisher;
