//! A service-API path (first byte: node.max_key): group/key split, percent-decoding, limits.
//! The invariants are in `shoal::fuzzing::service_route`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shoal::fuzzing::service_route(data));
