//! Fuzz target `depfile`: the checks are `relocache::fuzzing::depfile` (read its
//! docs), shared with `tests/fuzz_regressions.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relocache::fuzzing::depfile(data));
