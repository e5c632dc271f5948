//! A datagram on the gossip port: unsealed, on a sealed node, and sealed around the bytes.
//! The invariants are in `shoal::fuzzing::gossip_packet`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shoal::fuzzing::gossip_packet(data));
