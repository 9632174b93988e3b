//! libFuzzer entry for `unionrs::fuzzing::archive_load` (the checks live there, shared with
//! tests/fuzz_regressions.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| unionrs::fuzzing::archive_load(data));
