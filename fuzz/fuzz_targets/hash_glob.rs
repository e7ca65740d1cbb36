//! Fuzz target `hash_glob`: the checks are `relocache::fuzzing::hash_glob` (read its
//! docs), shared with `tests/fuzz_regressions.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relocache::fuzzing::hash_glob(data));
