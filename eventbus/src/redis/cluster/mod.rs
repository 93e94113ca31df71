pub(crate) mod admin;
pub(crate) mod lanes;
pub(crate) mod nodes;
pub(crate) mod pushes;
pub(crate) mod slots;
pub(crate) mod subscriber;
