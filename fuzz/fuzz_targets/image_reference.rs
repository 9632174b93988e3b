//! libFuzzer entry for `unionrs::fuzzing::image_reference` (the checks live there, shared with
//! tests/fuzz_regressions.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| unionrs::fuzzing::image_reference(data));
