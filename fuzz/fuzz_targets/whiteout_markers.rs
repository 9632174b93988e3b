//! libFuzzer entry for `unionrs::fuzzing::whiteout_markers` (the checks live there, shared with
//! tests/fuzz_regressions.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| unionrs::fuzzing::whiteout_markers(data));
