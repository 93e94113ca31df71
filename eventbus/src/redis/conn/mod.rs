pub(crate) mod connection;
pub(crate) mod lane;
pub(crate) mod link;
pub(crate) mod open;
pub(crate) mod resp_reply;
pub(crate) mod tcp;
pub(crate) mod tls;
