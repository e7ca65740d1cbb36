//! Fuzz target `manifest`: the checks are `relocache::fuzzing::manifest` (read its
//! docs), shared with `tests/fuzz_regressions.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relocache::fuzzing::manifest(data));
