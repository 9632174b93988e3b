//! Command-line front end: argument parsing and the mount / image commands.
pub mod options;
pub mod validate;
