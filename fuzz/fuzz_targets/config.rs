//! A config file's YAML, resolved as `shoal -c` and as an embedded config.
//! The invariants are in `shoal::fuzzing::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shoal::fuzzing::config(data));
