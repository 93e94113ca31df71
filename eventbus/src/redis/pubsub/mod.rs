pub(crate) mod admin;
pub(crate) mod connection;
pub(crate) mod names;
pub(crate) mod socket;
pub(crate) mod subscriber;
