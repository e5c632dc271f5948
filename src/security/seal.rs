//! Sealed gossip packets: AES-256-GCM under the keyring's first key, opened
//! by any key of the keyring.
//!
//! A packet is `version (1 byte) | nonce (12 random bytes) | ciphertext and
//! 16-byte tag`. The associated data is the version byte followed by the
//! caller's label (for gossip, `b"shoal-gossip-v1"`), so a packet sealed for
//! another purpose or another format never opens as this one.
//!
//! Nonces are random: with one key, keep well below 2^32 packets across the
//! whole cluster (rotate the key long before; at 10,000 packets a second
//! cluster-wide that is about 5 days of traffic to reach the bound NIST sets).

use aes_gcm::Nonce;
use aes_gcm::aead::{Aead, Payload};
use thiserror::Error;

use super::Keyring;

/// The format version this node writes and reads.
pub(crate) const SEAL_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + NONCE_LEN;
/// Bytes a sealed packet adds to its plaintext.
pub(crate) const SEAL_OVERHEAD: usize = HEADER_LEN + TAG_LEN;

/// Why a packet did not open. [`OpenError::reason`] is its metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub(crate) enum OpenError {
    #[error("the packet is {len} bytes, shorter than the {SEAL_OVERHEAD} bytes of a sealed packet")]
    Truncated { len: usize },
    #[error("the packet has format version {0}; this node reads version {SEAL_VERSION}")]
    UnknownVersion(u8),
    #[error("no key of this node's keyring opens the packet (another keyring, or tampered)")]
    NoKeyOpens,
}

impl OpenError {
    /// A metric label: `truncated`, `unknown-version` or `no-key-opens`.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            OpenError::Truncated { .. } => "truncated",
            OpenError::UnknownVersion(_) => "unknown-version",
            OpenError::NoKeyOpens => "no-key-opens",
        }
    }
}

/// Seals `plaintext` with the keyring's first key and a fresh random nonce.
pub(crate) fn seal(keyring: &Keyring, label: &[u8], plaintext: &[u8]) -> Vec<u8> {
    seal_with_nonce(keyring, label, plaintext, rand::random())
}

fn seal_with_nonce(
    keyring: &Keyring,
    label: &[u8],
    plaintext: &[u8],
    nonce: [u8; NONCE_LEN],
) -> Vec<u8> {
    let aad = associated_data(label);
    let sealed = keyring
        .primary()
        .cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .expect("AES-GCM seals any message shorter than 64 GiB");
    let mut packet = Vec::with_capacity(HEADER_LEN + sealed.len());
    packet.push(SEAL_VERSION);
    packet.extend_from_slice(&nonce);
    packet.extend_from_slice(&sealed);
    packet
}

/// Opens a packet sealed by [`seal`] with any key of the keyring and the
/// same label. Any input is safe: a packet that does not open is an error.
pub(crate) fn open(keyring: &Keyring, label: &[u8], packet: &[u8]) -> Result<Vec<u8>, OpenError> {
    let Some(&version) = packet.first() else {
        return Err(OpenError::Truncated { len: 0 });
    };
    if version != SEAL_VERSION {
        return Err(OpenError::UnknownVersion(version));
    }
    if packet.len() < SEAL_OVERHEAD {
        return Err(OpenError::Truncated { len: packet.len() });
    }
    let (header, sealed) = packet.split_at(HEADER_LEN);
    let nonce = Nonce::from_slice(&header[1..]);
    let aad = associated_data(label);
    keyring
        .keys()
        .iter()
        .find_map(|key| {
            key.cipher
                .decrypt(
                    nonce,
                    Payload {
                        msg: sealed,
                        aad: &aad,
                    },
                )
                .ok()
        })
        .ok_or(OpenError::NoKeyOpens)
}

fn associated_data(label: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(1 + label.len());
    aad.push(SEAL_VERSION);
    aad.extend_from_slice(label);
    aad
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::security::keyring::KEY_LEN;

    const LABEL: &[u8] = b"shoal-gossip-v1";

    fn keyring(bytes: &[u8]) -> Keyring {
        Keyring::new(bytes.iter().map(|&b| [b; KEY_LEN])).expect("keys")
    }

    #[test]
    fn round_trip() {
        let keys = keyring(&[1]);
        for plaintext in [&b""[..], b"x", &[7u8; 1371]] {
            let packet = seal(&keys, LABEL, plaintext);
            assert_eq!(packet.len(), plaintext.len() + SEAL_OVERHEAD);
            assert_eq!(packet[0], SEAL_VERSION);
            assert_eq!(open(&keys, LABEL, &packet).as_deref(), Ok(plaintext));
        }
        assert_eq!(SEAL_OVERHEAD, 29);
    }

    #[test]
    fn nonces_are_fresh() {
        let keys = keyring(&[1]);
        let a = seal(&keys, LABEL, b"same");
        let b = seal(&keys, LABEL, b"same");
        assert_ne!(a[1..HEADER_LEN], b[1..HEADER_LEN]);
        assert_ne!(a, b);
    }

    #[test]
    fn rotation_opens_with_every_key_and_seals_with_the_first() {
        let old = keyring(&[0xa]);
        let rotating = keyring(&[0xb, 0xa]);
        let new = keyring(&[0xb]);
        // Before the rotation reaches everyone: old packets open on rotated nodes.
        let from_old = seal(&old, LABEL, b"ping");
        assert_eq!(
            open(&rotating, LABEL, &from_old).as_deref(),
            Ok(&b"ping"[..])
        );
        // Rotated nodes seal with the new key, which old-only nodes cannot open...
        let from_rotating = seal(&rotating, LABEL, b"ack");
        assert_eq!(
            open(&old, LABEL, &from_rotating),
            Err(OpenError::NoKeyOpens)
        );
        // ...hence: add the new key second everywhere, then move it first.
        assert_eq!(
            open(&keyring(&[0xa, 0xb]), LABEL, &from_rotating).as_deref(),
            Ok(&b"ack"[..])
        );
        assert_eq!(
            open(&new, LABEL, &from_rotating).as_deref(),
            Ok(&b"ack"[..])
        );
        assert_eq!(open(&new, LABEL, &from_old), Err(OpenError::NoKeyOpens));
    }

    #[test]
    fn another_label_does_not_open() {
        let keys = keyring(&[1]);
        let packet = seal(&keys, LABEL, b"data");
        assert_eq!(
            open(&keys, b"shoal-gossip-v2", &packet),
            Err(OpenError::NoKeyOpens)
        );
        assert_eq!(open(&keys, b"", &packet), Err(OpenError::NoKeyOpens));
    }

    #[test]
    fn refusals_have_reasons() {
        let keys = keyring(&[1]);
        let packet = seal(&keys, LABEL, b"data");
        let cases = [
            (open(&keys, LABEL, &[]), "truncated"),
            (
                open(&keys, LABEL, &packet[..SEAL_OVERHEAD - 1]),
                "truncated",
            ),
            (open(&keys, LABEL, &[2; 64]), "unknown-version"),
            (
                open(&keys, LABEL, &packet[..packet.len() - 1]),
                "no-key-opens",
            ),
        ];
        for (result, reason) in cases {
            let error = result.expect_err("refused");
            assert_eq!(error.reason(), reason, "{error}");
        }
    }

    #[test]
    fn a_fixed_nonce_gives_a_fixed_packet() {
        let keys = keyring(&[1]);
        let a = seal_with_nonce(&keys, LABEL, b"data", [9; NONCE_LEN]);
        let b = seal_with_nonce(&keys, LABEL, b"data", [9; NONCE_LEN]);
        assert_eq!(a, b);
        assert_eq!(&a[1..HEADER_LEN], &[9; NONCE_LEN]);
    }

    proptest! {
        #[test]
        fn random_bytes_never_open(packet in proptest::collection::vec(any::<u8>(), 0..1500)) {
            let keys = keyring(&[1, 2]);
            prop_assert!(open(&keys, LABEL, &packet).is_err());
        }

        #[test]
        fn truncated_packets_never_open(
            plaintext in proptest::collection::vec(any::<u8>(), 0..1400),
            cut in any::<prop::sample::Index>(),
        ) {
            let keys = keyring(&[1]);
            let packet = seal(&keys, LABEL, &plaintext);
            let len = cut.index(packet.len());
            prop_assert!(open(&keys, LABEL, &packet[..len]).is_err());
        }

        #[test]
        fn flipped_bits_never_open(
            plaintext in proptest::collection::vec(any::<u8>(), 0..1400),
            at in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let keys = keyring(&[1]);
            let mut packet = seal(&keys, LABEL, &plaintext);
            let at = at.index(packet.len());
            packet[at] ^= 1 << bit;
            prop_assert!(open(&keys, LABEL, &packet).is_err());
        }

        #[test]
        fn appended_bytes_never_open(
            plaintext in proptest::collection::vec(any::<u8>(), 0..100),
            extra in proptest::collection::vec(any::<u8>(), 1..32),
        ) {
            let keys = keyring(&[1]);
            let mut packet = seal(&keys, LABEL, &plaintext);
            packet.extend_from_slice(&extra);
            prop_assert!(open(&keys, LABEL, &packet).is_err());
        }
    }
}
