//! Unit tests of signing and verifying, through the module's own API.

use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;

use super::verifier::MAX_SKEW;
use super::wire::{
    DIGEST_HEADER, HEADERS, MAX_SENDER_LEN, NONCE_HEADER, RECEIVER_HEADER, SENDER_HEADER,
    SIGNATURE_HEADER, TIMESTAMP_HEADER,
};
use super::*;
use crate::security::Keyring;
use crate::security::keyring::KEY_LEN;

const NOW: u64 = 1_700_000_000;
const PATH: &str = "/_shoal/v1/heavy/Zm9v";
/// The node the tests' verifiers stand for, started at `NOW - 100`.
const THIS: ThisNode = ThisNode {
    addr: std::net::SocketAddr::new(
        std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 9)),
        8000,
    ),
    generation: 42,
    started: NOW - 100,
};
/// Requests are signed for it.
const TO_THIS: Receiver = Receiver {
    addr: THIS.addr,
    generation: THIS.generation,
};

fn verifier() -> Verifier {
    Verifier::for_node(THIS)
}

fn keyring(bytes: &[u8]) -> Keyring {
    Keyring::new(bytes.iter().map(|&b| [b; KEY_LEN])).expect("keys")
}

fn get() -> RequestParts<'static> {
    RequestParts {
        method: "GET",
        path_and_query: PATH,
        content_type: None,
        body: b"",
    }
}

fn put() -> RequestParts<'static> {
    RequestParts {
        method: "PUT",
        path_and_query: PATH,
        content_type: Some(b"text/plain"),
        body: b"the value",
    }
}

fn signed(keys: &Keyring, sender: &str, request: &RequestParts<'_>, now: u64) -> HeaderMap {
    signed_for(keys, sender, request, TO_THIS, now)
}

fn signed_for(
    keys: &Keyring,
    sender: &str,
    request: &RequestParts<'_>,
    receiver: Receiver,
    now: u64,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    Signer::new(sender)
        .expect("sender")
        .sign(keys, request, receiver, now, &mut headers);
    headers
}

fn check(
    verifier: &Verifier,
    keys: &Keyring,
    headers: &HeaderMap,
    request: &RequestParts<'_>,
    now: u64,
) -> Result<(), Refusal> {
    let presented = Presented::from_headers(headers)?;
    verifier.verify(keys, &presented, &request.head(), now)?;
    presented.verify_body(request.body)
}

fn reason(result: Result<(), Refusal>) -> &'static str {
    result.expect_err("refused").reason()
}

#[test]
fn round_trip() {
    let keys = keyring(&[1]);
    let verifier = verifier();
    for request in [get(), put()] {
        let headers = signed(&keys, "10.0.0.7:8000", &request, NOW);
        let presented = Presented::from_headers(&headers).expect("parsed");
        assert_eq!(presented.sender, "10.0.0.7:8000");
        assert_eq!(presented.timestamp, NOW);
        assert_eq!(headers[SIGNATURE_HEADER].len(), 64);
        assert_eq!(headers[NONCE_HEADER].len(), 32);
        assert_eq!(presented.receiver, TO_THIS);
        assert_eq!(
            verifier.verify(&keys, &presented, &request.head(), NOW),
            Ok(())
        );
        assert_eq!(presented.verify_body(request.body), Ok(()));
    }
    assert_eq!(verifier.remembered(), 2);
}

#[test]
fn a_fixed_nonce_gives_fixed_headers() {
    // The other nodes of a rolling upgrade read the same format: these values
    // were computed apart from this code, from the module documentation.
    let mut headers = HeaderMap::new();
    Signer::new("a:1").expect("sender").sign_with_nonce(
        &keyring(&[1]),
        &put(),
        TO_THIS,
        NOW,
        0x0123_4567_89ab_cdef,
        &mut headers,
    );
    assert_eq!(headers[TIMESTAMP_HEADER], "1700000000");
    assert_eq!(headers[NONCE_HEADER], "00000000000000000123456789abcdef");
    assert_eq!(headers[SENDER_HEADER], "a:1");
    assert_eq!(headers[RECEIVER_HEADER], "10.0.0.9:8000#42");
    assert_eq!(
        headers[DIGEST_HEADER],
        "eb69abcc54d8bcf975aa735ebb61c8ceb27555455d983d1f8881756760db1fcc"
    );
    assert_eq!(
        headers[SIGNATURE_HEADER],
        "ba85153390639f9a17ce93c5ec7abee1fba538a71306b4ac4406d9f90feceaba"
    );
}

#[test]
fn a_fixed_nonce_gives_fixed_headers_for_a_get() {
    // As above, for a body-less request (whose digest is a constant) and an
    // IPv6 receiver; computed apart from this code with Python's hmac.
    let receiver = Receiver {
        addr: "[2001:db8::7]:8000".parse().expect("addr"),
        generation: 0,
    };
    let mut headers = HeaderMap::new();
    Signer::new("[::1]:8000").expect("sender").sign_with_nonce(
        &keyring(&[1]),
        &get(),
        receiver,
        NOW,
        u128::MAX,
        &mut headers,
    );
    assert_eq!(headers[TIMESTAMP_HEADER], "1700000000");
    assert_eq!(headers[NONCE_HEADER], "ffffffffffffffffffffffffffffffff");
    assert_eq!(headers[RECEIVER_HEADER], "[2001:db8::7]:8000#0");
    assert_eq!(
        headers[DIGEST_HEADER],
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        headers[SIGNATURE_HEADER],
        "312dbd4021ab9c596d458348e724f85f8a496e0e6eea9874251b1c840ed72bf0"
    );
    // Never indexed by HPACK: new in every request.
    assert!(headers[NONCE_HEADER].is_sensitive());
    assert!(headers[SIGNATURE_HEADER].is_sensitive());
}

#[test]
fn any_key_verifies_and_the_first_signs() {
    let old = keyring(&[0xa]);
    let rotating = keyring(&[0xb, 0xa]);
    let verifier = verifier();
    let from_old = signed(&old, "a:1", &get(), NOW);
    assert_eq!(check(&verifier, &rotating, &from_old, &get(), NOW), Ok(()));
    let from_rotating = signed(&rotating, "b:1", &get(), NOW);
    assert_eq!(
        check(&verifier, &old, &from_rotating, &get(), NOW),
        Err(Refusal::BadSignature)
    );
    assert_eq!(
        check(
            &verifier,
            &keyring(&[0xa, 0xb]),
            &from_rotating,
            &get(),
            NOW
        ),
        Ok(())
    );
}

#[test]
fn unsigned_requests_are_missing_a_signature() {
    let verifier = verifier();
    let keys = keyring(&[1]);
    let result = check(&verifier, &keys, &HeaderMap::new(), &get(), NOW);
    assert_eq!(
        result,
        Err(Refusal::Missing {
            header: SIGNATURE_HEADER
        })
    );
    assert_eq!(reason(result), "missing-signature");
    for header in HEADERS {
        let mut headers = signed(&keys, "a:1", &get(), NOW);
        headers.remove(header);
        assert_eq!(
            check(&verifier, &keys, &headers, &get(), NOW),
            Err(Refusal::Missing { header })
        );
    }
}

#[test]
fn a_wrong_key_or_any_change_is_a_bad_signature() {
    let keys = keyring(&[1]);
    let verifier = verifier();
    let headers = signed(&keys, "a:1", &put(), NOW);
    let result = check(&verifier, &keyring(&[2, 3]), &headers, &put(), NOW);
    assert_eq!(result, Err(Refusal::BadSignature));
    assert_eq!(
        result.expect_err("refused").to_string(),
        "the request's signature matches no key in this node's keyring"
    );

    let changed = [
        RequestParts {
            method: "DELETE",
            ..put()
        },
        RequestParts {
            path_and_query: "/_shoal/v1/heavy/YmFy",
            ..put()
        },
        RequestParts {
            path_and_query: "/_shoal/v1/heavy/Zm9v?x=1",
            ..put()
        },
        RequestParts {
            content_type: Some(b"text/html"),
            ..put()
        },
        RequestParts {
            content_type: None,
            ..put()
        },
    ];
    for request in changed {
        assert_eq!(
            check(&verifier, &keys, &headers, &request, NOW),
            Err(Refusal::BadSignature),
            "{request:?}"
        );
    }
    // The body is covered by its digest, checked once it is read.
    let other_body = RequestParts {
        body: b"another value",
        ..put()
    };
    let result = check(&verifier, &keys, &headers, &other_body, NOW);
    assert_eq!(result, Err(Refusal::BodyMismatch));
    assert_eq!(reason(result), "body-mismatch");
    for (header, value) in [
        (SENDER_HEADER, "b:1"),
        (TIMESTAMP_HEADER, "1700000001"),
        (NONCE_HEADER, "00000000000000000000000000000001"),
        (RECEIVER_HEADER, "10.0.0.9:8000#43"),
        (
            DIGEST_HEADER,
            "0000000000000000000000000000000000000000000000000000000000000000",
        ),
    ] {
        let mut forged = headers.clone();
        forged.insert(header, HeaderValue::from_static(value));
        assert_eq!(
            check(&verifier, &keys, &forged, &put(), NOW),
            Err(Refusal::BadSignature),
            "{header}"
        );
    }
    // Nothing refused was remembered but the body mismatch's nonce (its
    // headers were genuine, so its nonce is spent); a genuine request
    // passes.
    assert_eq!(verifier.remembered(), 1);
    let headers = signed(&keys, "a:1", &put(), NOW);
    assert_eq!(check(&verifier, &keys, &headers, &put(), NOW), Ok(()));
}

#[test]
fn malformed_headers_are_bad_signatures() {
    let keys = keyring(&[1]);
    let verifier = verifier();
    for (header, value) in [
        (TIMESTAMP_HEADER, "-5"),
        (TIMESTAMP_HEADER, "+1700000000"),
        (TIMESTAMP_HEADER, "99999999999999999999999"),
        (TIMESTAMP_HEADER, ""),
        (NONCE_HEADER, "xyz"),
        (NONCE_HEADER, "0123456789abcdef0123456789abcdeg"),
        (NONCE_HEADER, "+123456789abcdef0123456789abcdef"),
        (SENDER_HEADER, "a b"),
        (SENDER_HEADER, ""),
        (SIGNATURE_HEADER, "00"),
        (RECEIVER_HEADER, "10.0.0.9:8000"),
        (RECEIVER_HEADER, "10.0.0.9#42"),
        (RECEIVER_HEADER, "10.0.0.9:8000#-1"),
        (RECEIVER_HEADER, "10.0.0.9:8000#+1"),
        (DIGEST_HEADER, "abc"),
    ] {
        let mut headers = signed(&keys, "a:1", &get(), NOW);
        headers.insert(header, HeaderValue::from_static(value));
        let result = check(&verifier, &keys, &headers, &get(), NOW);
        assert!(
            matches!(result, Err(Refusal::Malformed { header: h, .. }) if h == header),
            "{header}: {value}: {result:?}"
        );
        assert_eq!(reason(result), "bad-signature");
    }
    let mut headers = signed(&keys, "a:1", &get(), NOW);
    headers.insert(
        SENDER_HEADER,
        HeaderValue::from_bytes(b"caf\xc3\xa9").expect("opaque bytes"),
    );
    assert!(matches!(
        check(&verifier, &keys, &headers, &get(), NOW),
        Err(Refusal::Malformed { .. })
    ));
    assert!(Signer::new("a b").is_err());
    assert!(Signer::new("").is_err());
    assert!(Signer::new(&"x".repeat(MAX_SENDER_LEN + 1)).is_err());
    assert_eq!(
        Signer::from("[::1]:8000".parse::<std::net::SocketAddr>().expect("addr")).sender(),
        "[::1]:8000"
    );
}

#[test]
fn more_than_a_minute_of_skew_is_refused_either_way() {
    let keys = keyring(&[1]);
    let verifier = verifier();
    let limit = MAX_SKEW.as_secs();
    for (signed_at, ok) in [
        (NOW - limit, true),
        (NOW + limit, true),
        (NOW - limit - 1, false),
        (NOW + limit + 1, false),
        (0, false),
        (u64::MAX, false),
    ] {
        let headers = signed(&keys, "a:1", &get(), signed_at);
        let result = check(&verifier, &keys, &headers, &get(), NOW);
        if ok {
            assert_eq!(result, Ok(()), "signed at {signed_at}");
        } else {
            assert!(
                matches!(result, Err(Refusal::ClockSkew { ahead, .. }) if ahead == (signed_at > NOW)),
                "signed at {signed_at}: {result:?}"
            );
            assert_eq!(reason(result), "clock-skew");
        }
    }
    let headers = signed(&keys, "a:1", &get(), NOW + 75);
    let message = check(&verifier, &keys, &headers, &get(), NOW)
        .expect_err("skewed")
        .to_string();
    assert_eq!(
        message,
        "the request's timestamp is 75 s ahead of this node's clock; at most 60 s of clock skew is accepted"
    );
}

#[test]
fn a_replayed_request_is_refused() {
    let keys = keyring(&[1]);
    let verifier = verifier();
    let headers = signed(&keys, "a:1", &put(), NOW);
    assert_eq!(check(&verifier, &keys, &headers, &put(), NOW), Ok(()));
    for later in [NOW, NOW + 1, NOW + MAX_SKEW.as_secs()] {
        let result = check(&verifier, &keys, &headers, &put(), later);
        assert_eq!(result, Err(Refusal::ReplayedNonce));
        assert_eq!(reason(result), "replayed-nonce");
    }
    // The same nonce spelled in capitals is the same nonce.
    let mut shouted = headers.clone();
    let upper = headers[NONCE_HEADER]
        .to_str()
        .expect("ascii")
        .to_ascii_uppercase();
    shouted.insert(NONCE_HEADER, HeaderValue::try_from(upper).expect("header"));
    assert_eq!(
        check(&verifier, &keys, &shouted, &put(), NOW),
        Err(Refusal::ReplayedNonce)
    );
    // Past the window the replay fails on skew, and the nonce is forgotten.
    assert_eq!(
        reason(check(&verifier, &keys, &headers, &put(), NOW + 61)),
        "clock-skew"
    );
    let fresh = signed(&keys, "a:1", &put(), NOW + 61);
    assert_eq!(check(&verifier, &keys, &fresh, &put(), NOW + 61), Ok(()));
    assert_eq!(verifier.remembered(), 1);
}

#[test]
fn identical_concurrent_requests_from_different_nodes_all_pass() {
    let keys = keyring(&[1]);
    let verifier = verifier();
    // The same GET, at the same second, from two nodes (cross-node
    // singleflight), and twice from one of them.
    let a = signed(&keys, "10.0.0.7:8000", &get(), NOW);
    let b = signed(&keys, "10.0.0.8:8000", &get(), NOW);
    let a_again = signed(&keys, "10.0.0.7:8000", &get(), NOW);
    for headers in [&a, &b, &a_again] {
        assert_eq!(check(&verifier, &keys, headers, &get(), NOW), Ok(()));
    }

    // And many at once, from many threads.
    let verifier = self::verifier();
    std::thread::scope(|scope| {
        for node in 0..8 {
            let (verifier, keys) = (&verifier, &keys);
            scope.spawn(move || {
                let sender = format!("10.0.0.{node}:8000");
                for _ in 0..200 {
                    let headers = signed(keys, &sender, &get(), NOW);
                    assert_eq!(check(verifier, keys, &headers, &get(), NOW), Ok(()));
                }
            });
        }
    });
    assert_eq!(verifier.remembered(), 8 * 200);
}

/// Signs a GET at each of `times` and checks that `verifier` takes it; the
/// headers, to replay.
fn accepted_at(verifier: &Verifier, keys: &Keyring, times: &[u64]) -> Vec<HeaderMap> {
    times
        .iter()
        .map(|&at| {
            let headers = signed(keys, "a:1", &get(), at);
            assert_eq!(check(verifier, keys, &headers, &get(), at), Ok(()));
            headers
        })
        .collect()
}

#[test]
fn a_full_nonce_table_refuses_instead_of_growing() {
    let keys = keyring(&[1]);
    let verifier = Verifier::new(THIS, MAX_SKEW, 3);
    // Over two seconds: the second one's set starts sized as the first's.
    let accepted = accepted_at(&verifier, &keys, &[NOW, NOW, NOW + 1]);
    let headers = signed(&keys, "a:1", &get(), NOW);
    let result = check(&verifier, &keys, &headers, &get(), NOW + 10);
    assert_eq!(
        result,
        Err(Refusal::NonceTableFull {
            capacity: 3,
            window: 60
        })
    );
    assert_eq!(reason(result), "nonce-table-full");
    // A full table still knows a replay for one.
    for replayed in &accepted {
        let result = check(&verifier, &keys, replayed, &get(), NOW + 10);
        assert_eq!(result, Err(Refusal::ReplayedNonce));
    }
    assert_eq!(verifier.remembered(), 3);
    // Once the window has passed, the old nonces are forgotten.
    let later = NOW + 62;
    let headers = signed(&keys, "a:1", &get(), later);
    assert_eq!(check(&verifier, &keys, &headers, &get(), later), Ok(()));
    assert_eq!(verifier.remembered(), 1);
}

/// Full, the table makes room from its oldest seconds: requests signed now
/// keep passing, and only one signed in a forgotten second is refused.
#[test]
fn a_full_nonce_table_forgets_its_oldest_seconds_for_newer_requests() {
    let keys = keyring(&[1]);
    let verifier = Verifier::new(THIS, MAX_SKEW, 3);
    let accepted = accepted_at(&verifier, &keys, &[NOW, NOW, NOW + 1]);
    // Signed at NOW + 2: second NOW (two nonces) is forgotten for it.
    let newer = signed(&keys, "a:1", &get(), NOW + 2);
    assert_eq!(check(&verifier, &keys, &newer, &get(), NOW + 2), Ok(()));
    assert_eq!(verifier.remembered(), 2);
    // A replay from the forgotten second cannot be told from a new request
    // of it: both are refused.
    for headers in [&accepted[0], &signed(&keys, "a:1", &get(), NOW)] {
        let result = check(&verifier, &keys, headers, &get(), NOW + 2);
        assert_eq!(reason(result), "nonce-table-full");
    }
    // Remembered seconds still know their replays.
    for replayed in [&accepted[2], &newer] {
        let result = check(&verifier, &keys, replayed, &get(), NOW + 2);
        assert_eq!(result, Err(Refusal::ReplayedNonce));
    }
    // A steady stream three times the bound, a request a second: each is
    // accepted.
    accepted_at(&verifier, &keys, &(NOW + 3..NOW + 12).collect::<Vec<_>>());
    assert_eq!(verifier.remembered(), 3);
}

#[test]
fn a_request_for_another_member_is_refused() {
    let keys = keyring(&[1]);
    let verifier = verifier();
    let elsewhere = Receiver {
        addr: "10.0.0.8:8000".parse().expect("addr"),
        generation: THIS.generation,
    };
    let headers = signed_for(&keys, "a:1", &get(), elsewhere, NOW);
    let result = check(&verifier, &keys, &headers, &get(), NOW);
    assert_eq!(
        result,
        Err(Refusal::WrongReceiver {
            named: elsewhere.addr,
            this: THIS.addr
        })
    );
    assert_eq!(reason(result), "wrong-receiver");
    // Refused before its nonce was taken: nothing remembered.
    assert_eq!(verifier.remembered(), 0);
}

#[test]
fn a_request_for_an_earlier_run_is_refused() {
    let keys = keyring(&[1]);
    let verifier = verifier();
    // Signed for the generation before this node restarted.
    let earlier = Receiver {
        generation: THIS.generation - 1,
        ..TO_THIS
    };
    let headers = signed_for(&keys, "a:1", &get(), earlier, NOW);
    let result = check(&verifier, &keys, &headers, &get(), NOW);
    assert_eq!(result, Err(Refusal::EarlierRun));
    assert_eq!(reason(result), "earlier-run");
    // A renewed generation of this run is this run.
    let renewed = Receiver {
        generation: THIS.generation + 1,
        ..TO_THIS
    };
    let headers = signed_for(&keys, "a:1", &get(), renewed, NOW);
    assert_eq!(check(&verifier, &keys, &headers, &get(), NOW), Ok(()));
}

#[test]
fn without_a_generation_only_requests_signed_since_the_start_pass() {
    let keys = keyring(&[1]);
    let verifier = verifier();
    let unknown = Receiver {
        generation: 0,
        ..TO_THIS
    };
    let now = THIS.started + 10;
    let before = signed_for(&keys, "a:1", &get(), unknown, THIS.started - 1);
    assert_eq!(
        check(&verifier, &keys, &before, &get(), now),
        Err(Refusal::EarlierRun)
    );
    let since = signed_for(&keys, "a:1", &get(), unknown, THIS.started);
    assert_eq!(check(&verifier, &keys, &since, &get(), now), Ok(()));
}

fn header_value() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        Just(None),
        proptest::collection::vec(any::<u8>(), 0..80).prop_map(Some),
        "[0-9a-fA-F]{0,70}".prop_map(|s| Some(s.into_bytes())),
        "[0-9]{0,25}".prop_map(|s| Some(s.into_bytes())),
    ]
}

proptest! {
    #[test]
    fn random_headers_never_panic_nor_pass(
        timestamp in header_value(),
        nonce in header_value(),
        sender in header_value(),
        receiver in header_value(),
        digest in header_value(),
        signature in header_value(),
        now in any::<u64>(),
    ) {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            (TIMESTAMP_HEADER, timestamp),
            (NONCE_HEADER, nonce),
            (SENDER_HEADER, sender),
            (RECEIVER_HEADER, receiver),
            (DIGEST_HEADER, digest),
            (SIGNATURE_HEADER, signature),
        ] {
            if let Some(value) = value.and_then(|v| HeaderValue::from_bytes(&v).ok()) {
                headers.insert(name, value);
            }
        }
        let verifier = verifier();
        let result = check(&verifier, &keyring(&[1]), &headers, &get(), now);
        prop_assert!(result.is_err());
    }

    #[test]
    fn a_changed_header_never_passes(
        which in 0usize..6,
        replacement in "[ -~]{0,70}",
    ) {
        let keys = keyring(&[1]);
        let headers = signed(&keys, "a:1", &put(), NOW);
        let name = HEADERS[which];
        prop_assume!(headers[name].as_bytes() != replacement.as_bytes());
        let mut forged = headers.clone();
        forged.insert(name, HeaderValue::from_str(&replacement).expect("printable"));
        let verifier = verifier();
        let result = check(&verifier, &keys, &forged, &put(), NOW);
        // Only another spelling of the same values passes (capitals in
        // hex, leading zeros in the timestamp).
        let same = Presented::from_headers(&forged).ok()
            == Some(Presented::from_headers(&headers).expect("parsed"));
        prop_assert_eq!(result.is_ok(), same);
    }
}
