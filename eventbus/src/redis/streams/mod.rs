pub(crate) mod acker;
pub(crate) mod dead_letters;
pub(crate) mod dedupe;
pub(crate) mod reader;
pub(crate) mod reply;
pub(crate) mod retention;
