//! libFuzzer entry for `unionrs::fuzzing::mount_options` (the checks live there, shared with
//! tests/fuzz_regressions.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| unionrs::fuzzing::mount_options(data));
