//! `unionrs build`: images from a Dockerfile/Containerfile, without a daemon.
//!
//! - [`parse`]: the Dockerfile text -> instructions (directives, continuations, heredocs).
//! - [`words`]: quote removal and variable substitution for the instructions that take it.

pub mod parse;
pub mod words;
