//! An HTTP/1.1 request on the peer port: signature headers, verifier, key path, handoff body.
//! The invariants are in `shoal::fuzzing::peer_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shoal::fuzzing::peer_request(data));
