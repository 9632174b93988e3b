//! Container-image tooling: layers, store, archives.
//!
//! - [`digest`]: sha256 digests, and a reader that verifies them on the stream.
//! - [`reference`]: `NAME[:TAG]` image references.
//! - [`registry`]: pull and push over the OCI distribution protocol.
//! - [`layout`]: OCI layout / Docker archive JSON documents and media types.
//! - [`store`]: the on-disk store (an OCI image layout plus unpacked layers).
//! - [`unpack`]: a layer blob -> a directory, hostile-input safe.
//! - [`dir_stack`]: the parent directory fds [`unpack`] keeps open between entries.
//! - [`archive`]: `load` / `save` of docker-archive and OCI layout tars.
//! - [`container`]: containers (upper/work/merged over an image's layers) and `commit`.
//! - [`layer_export`]: an overlay upper directory -> a deterministic OCI layer tar (`commit`).
//! - [`run`]: `run` (a container, a runtime bundle, the installed OCI runtime).
//! - [`runtime_spec`], [`runtime`], [`rootfs`]: its config.json, the runtime, the rootfs.
//! - [`build`]: `build` from a Dockerfile (parser, steps, layer cache).
//! - [`prune`]: removing unused images, layers and blobs.
//! - [`xattr`]: which extended attributes a layer carries, and where they are read from.
//! - [`security`], [`caps`], [`seccomp`], [`seccomp_default`]: a container's confinement
//!   (capabilities, seccomp profile, `--privileged`), docker's rules.

pub mod archive;
pub mod build;
pub mod container;
pub mod digest;
pub mod dir_stack;
pub mod hash_writer;
pub mod layer_export;
pub mod layout;
pub mod lifecycle;
pub mod pax;
pub mod progress;
pub mod prune;
pub mod reference;
pub mod registry;
pub mod rootfs;
pub mod run;
pub mod runtime;
pub mod runtime_spec;
// The confinement of a container (kept together, apart from the list above).
pub mod caps;
pub mod seccomp;
pub mod seccomp_default;
pub mod security;
pub mod store;
pub mod unpack;
pub mod xattr;
