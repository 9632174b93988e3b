//! The only importer of fuser: the Filesystem adapter over the union core, and the session.
pub mod adapter;
pub mod control;
pub mod ops;
pub mod passthrough;
pub mod session;
