//! Fuzz target `archive_member`: the checks are `relocache::fuzzing::archive_member` (read its
//! docs), shared with `tests/fuzz_regressions.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relocache::fuzzing::archive_member(data));
