//! Container-image tooling: layers, store, registry (being written).
//!
//! - [`layer_export`]: an overlay upper directory -> a deterministic OCI layer tar (`commit`).
//! - [`xattr`]: which extended attributes a layer carries, and where they are read from.

pub mod hash_writer;
pub mod layer_export;
pub mod pax;
pub mod xattr;
pub mod xattr_cmd;
