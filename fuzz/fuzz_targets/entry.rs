//! Fuzz target `entry`: the checks are `relocache::fuzzing::entry` (read its
//! docs), shared with `tests/fuzz_regressions.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relocache::fuzzing::entry(data));
