//! The FUSE side: transport-neutral operations over the union core (`ops`), the fuser
//! transport (`adapter`), unionrs's own protocol layer (`abi`, `conn`) with its /dev/fuse
//! (`devloop`) and io_uring (`uring`) transports, the session, passthrough and the stats socket.
pub mod abi;
pub mod adapter;
pub mod conn;
pub mod control;
pub mod devloop;
pub mod ops;
pub mod passthrough;
pub mod session;
pub mod uring;
