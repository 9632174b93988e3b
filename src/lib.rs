//! unionrs: a userspace union filesystem (FUSE) with container-image tooling.
//!
//! Data flows one way: `cli` -> (`fuse` | `image`) -> `union` -> `sys`.
//! `union` never imports the FUSE side; all `unsafe` lives in `sys`.
#![deny(unsafe_code)]

pub mod cli;
pub mod fuse;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod image;
#[allow(unsafe_code)]
pub mod sys;
pub mod union;
