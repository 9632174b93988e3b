//! The FUSE side: the operations over the union core (`ops`) and the state they share
//! (`state`), unionrs's FUSE protocol layer (`abi`, `conn`) with its /dev/fuse (`devloop`)
//! and io_uring (`uring`) transports, the session, passthrough and the stats socket.
pub mod abi;
pub mod closer;
pub mod conn;
pub mod control;
pub mod devloop;
pub mod ops;
pub mod passthrough;
pub mod session;
pub mod state;
pub mod uring;
