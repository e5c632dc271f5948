//! Refresh ahead, stale answers, revalidation and origin protection under
//! paused time, against a scripted origin that counts what it is asked.

use std::sync::atomic::{AtomicUsize, Ordering};

use http::HeaderValue;

use super::*;
use crate::cache::loader::{Loader, NotModified, Reloaded};
use crate::cache::value::Validators;
use crate::config::{CircuitBreaker, Freshness, OriginLimits};

const TTL: Duration = Duration::from_secs(10);
const ORIGIN_DELAY: Duration = Duration::from_millis(200);

/// What the scripted origin answers next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// A new body (`v1`, `v2`, … by load) with an `ETag` of the body.
    Value,
    /// 304 to a conditional request whose `ETag` matches.
    NotModified,
    Fail,
    NotFound,
}

struct ScriptedOrigin {
    answer: Mutex<Answer>,
    loads: AtomicUsize,
    conditional: AtomicUsize,
    version: AtomicUsize,
}

impl ScriptedOrigin {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            answer: Mutex::new(Answer::Value),
            loads: AtomicUsize::new(0),
            conditional: AtomicUsize::new(0),
            version: AtomicUsize::new(0),
        })
    }

    fn answer(&self, answer: Answer) {
        *self.answer.lock().expect("lock") = answer;
    }

    fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }

    fn etag(&self) -> HeaderValue {
        HeaderValue::from(self.version.load(Ordering::SeqCst))
    }

    async fn respond(&self, validators: &Validators) -> Result<Reloaded, LoadError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        if !validators.is_empty() {
            self.conditional.fetch_add(1, Ordering::SeqCst);
        }
        tokio::time::sleep(ORIGIN_DELAY).await;
        let answer = *self.answer.lock().expect("lock");
        match answer {
            Answer::Fail => Err(LoadError::Failure("the origin answered 500".into())),
            Answer::NotFound => Err(LoadError::NotFound),
            Answer::NotModified if validators.etag == Some(self.etag()) => {
                Ok(Reloaded::NotModified(NotModified::default()))
            }
            Answer::Value | Answer::NotModified => {
                let version = self.version.fetch_add(1, Ordering::SeqCst) + 1;
                Ok(Reloaded::Modified(
                    Fresh::new(Value::new(format!("v{version}"), None)).with_validators(
                        Validators {
                            etag: Some(HeaderValue::from(version)),
                            last_modified: None,
                        },
                    ),
                ))
            }
        }
    }
}

impl Loader for Arc<ScriptedOrigin> {
    async fn load(&self, _key: &str) -> Result<Fresh, LoadError> {
        match self.respond(&Validators::default()).await? {
            Reloaded::Modified(fresh) => Ok(fresh),
            Reloaded::NotModified(_) => Err(LoadError::Failure("304 unasked".into())),
        }
    }

    async fn reload(&self, _key: &str, validators: &Validators) -> Result<Reloaded, LoadError> {
        self.respond(validators).await
    }
}

fn fresh_config(freshness: Freshness, origin: OriginLimits) -> GroupConfig {
    GroupConfig {
        ttl: Some(TTL),
        freshness,
        origin,
        ..config(1 << 20, Some(Duration::from_secs(60)))
    }
}

fn all_on() -> Freshness {
    Freshness {
        refresh_ahead: 0.5,
        stale_while_revalidate: Some(Duration::from_secs(5)),
        stale_if_error: Some(Duration::from_secs(60)),
        ttl_jitter: 0.0,
    }
}

/// A group on ME whose key `key` ME owns, and the origin behind it.
fn owner_group(config: GroupConfig) -> (Arc<Group>, Arc<ScriptedOrigin>, String) {
    let origin = ScriptedOrigin::new();
    let (group, _, _) =
        Setup::plain().build_loading(config, FakePeers::unused(), Arc::new(origin.clone()));
    let key = keys_owned_by(ME, 1).remove(0);
    (group, origin, key)
}

async fn get(group: &Arc<Group>, key: &str) -> Result<Fetched, GroupError> {
    group.get(key, Requester::Client).await
}

fn body(fetched: &Fetched) -> &[u8] {
    &fetched.fresh.value.bytes
}

/// Lets spawned reloads run until the origin has answered them.
async fn settle() {
    tokio::time::sleep(ORIGIN_DELAY * 2).await;
}

#[tokio::test(start_paused = true)]
async fn a_hit_late_in_the_ttl_is_served_at_once_and_refreshes_once() {
    let (group, origin, key) = owner_group(fresh_config(all_on(), OriginLimits::default()));
    assert_eq!(body(&get(&group, &key).await.expect("load")), b"v1");
    tokio::time::advance(Duration::from_secs(6)).await;
    let started = Instant::now();
    for _ in 0..20 {
        let hit = get(&group, &key).await.expect("hit");
        assert_eq!(
            (body(&hit), hit.source, hit.stale),
            (&b"v1"[..], Source::Main, None)
        );
        assert_eq!(
            hit.fresh.ttl,
            Some(Duration::ZERO),
            "past the refresh point"
        );
    }
    assert_eq!(started.elapsed(), Duration::ZERO, "no hit waited");
    settle().await;
    assert_eq!(origin.loads(), 2, "twenty hits, one refresh");
    assert_eq!(origin.conditional.load(Ordering::SeqCst), 1);
    let refreshed = get(&group, &key).await.expect("hit");
    assert_eq!(body(&refreshed), b"v2");
    assert_eq!(group.metrics.freshness.refreshes_ahead.get(), 1);
    assert_eq!(group.metrics.freshness.modified.get(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_expired_key_is_served_stale_and_reloaded_once() {
    let (group, origin, key) = owner_group(fresh_config(all_on(), OriginLimits::default()));
    get(&group, &key).await.expect("load");
    tokio::time::advance(TTL + Duration::from_secs(2)).await;
    let started = Instant::now();
    for _ in 0..5 {
        let stale = get(&group, &key).await.expect("stale");
        assert_eq!(body(&stale), b"v1");
        assert_eq!(stale.stale, Some(TTL + Duration::from_secs(2)), "its age");
        assert_eq!(stale.fresh.ttl, Some(Duration::ZERO), "no copy kept");
    }
    assert_eq!(started.elapsed(), Duration::ZERO);
    settle().await;
    assert_eq!(origin.loads(), 2);
    let fresh = get(&group, &key).await.expect("fresh");
    assert_eq!((body(&fresh), fresh.stale), (&b"v2"[..], None));
    assert_eq!(group.metrics.freshness.stale_while_revalidate.get(), 5);
    assert_eq!(group.metrics.freshness.refreshes_stale.get(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_reload_serves_the_stale_value_until_its_window_ends() {
    let (group, origin, key) = owner_group(fresh_config(all_on(), OriginLimits::default()));
    get(&group, &key).await.expect("load");
    origin.answer(Answer::Fail);
    // Past the revalidation window: each get waits for a reload that fails.
    tokio::time::advance(TTL + Duration::from_secs(6)).await;
    let stale = get(&group, &key).await.expect("stale instead of 502");
    assert_eq!(body(&stale), b"v1");
    assert!(stale.stale.is_some());
    assert_eq!(group.metrics.freshness.stale_if_error.get(), 1);
    assert_eq!(group.metrics.freshness.revalidation_failed.get(), 1);
    tokio::time::advance(Duration::from_secs(60)).await;
    let gone = get(&group, &key).await;
    assert!(
        matches!(gone, Err(GroupError::OriginFailure(_))),
        "{gone:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_origin_is_asked_about_a_key_once_a_second_not_once_a_read() {
    let (group, origin, key) = owner_group(fresh_config(all_on(), OriginLimits::default()));
    get(&group, &key).await.expect("load");
    origin.answer(Answer::Fail);
    tokio::time::advance(TTL + Duration::from_secs(6)).await;
    let asked = origin.loads();
    for _ in 0..10 {
        let stale = get(&group, &key).await.expect("stale");
        assert!(stale.stale.is_some());
        tokio::time::advance(Duration::from_millis(50)).await;
    }
    assert_eq!(origin.loads(), asked + 1, "one reload for ten reads");
    tokio::time::advance(Duration::from_secs(1)).await;
    get(&group, &key).await.expect("stale");
    assert_eq!(origin.loads(), asked + 2, "and another a second later");
    assert_eq!(group.metrics.freshness.stale_if_error.get(), 11);
}

#[tokio::test(start_paused = true)]
async fn a_not_found_drops_what_was_held() {
    let (group, origin, key) = owner_group(fresh_config(all_on(), OriginLimits::default()));
    get(&group, &key).await.expect("load");
    origin.answer(Answer::NotFound);
    tokio::time::advance(TTL + Duration::from_secs(6)).await;
    assert_eq!(get(&group, &key).await, Err(GroupError::OriginNotFound));
    // Not served stale later, though its window has not ended.
    origin.answer(Answer::Fail);
    assert!(matches!(
        get(&group, &key).await,
        Err(GroupError::OriginFailure(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn a_304_renews_the_entry_without_a_body() {
    let (group, origin, key) = owner_group(fresh_config(
        Freshness {
            stale_if_error: Some(Duration::from_secs(60)),
            ..Freshness::default()
        },
        OriginLimits::default(),
    ));
    get(&group, &key).await.expect("load");
    origin.answer(Answer::NotModified);
    tokio::time::advance(TTL + Duration::from_secs(1)).await;
    let renewed = get(&group, &key).await.expect("revalidated");
    assert_eq!((body(&renewed), renewed.stale), (&b"v1"[..], None));
    assert_eq!(origin.conditional.load(Ordering::SeqCst), 1);
    assert_eq!(group.metrics.freshness.not_modified.get(), 1);
    // A full TTL again: no origin request until it ends.
    tokio::time::advance(TTL - Duration::from_secs(1)).await;
    get(&group, &key).await.expect("hit");
    assert_eq!(origin.loads(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_non_owner_never_refreshes_or_serves_stale() {
    let (group, origin, _) = owner_group(fresh_config(all_on(), OriginLimits::default()));
    let theirs = keys_owned_by(OTHER, 1).remove(0);
    // A main entry for a key OTHER owns (as after a ring change).
    let fresh = Fresh {
        ttl: Some(TTL),
        ..Fresh::new(Value::new("mine", None))
    };
    let entry = group.owner_entry(&theirs, &fresh, Instant::now());
    group.main.insert(key_digest(&theirs), entry);
    tokio::time::advance(Duration::from_secs(6)).await;
    let hit = get(&group, &theirs).await.expect("still fresh");
    assert_eq!(body(&hit), b"mine");
    settle().await;
    assert_eq!(origin.loads(), 0, "the owner refreshes, not this node");
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_serves_stale_and_spares_the_origin() {
    let limits = OriginLimits {
        circuit_breaker: Some(CircuitBreaker {
            failures: 2,
            cool_down: Duration::from_secs(30),
        }),
        ..OriginLimits::default()
    };
    let (group, origin, key) = owner_group(fresh_config(all_on(), limits));
    // Owned keys: the first is `key`, the next two fail, two more are new.
    let cold = keys_owned_by(ME, 5);
    get(&group, &key).await.expect("load");
    origin.answer(Answer::Fail);
    for other in &cold[1..3] {
        assert!(get(&group, other).await.is_err());
    }
    assert_eq!(group.metrics.origin.circuit_state.get(), 1, "open");
    let asked = origin.loads();
    tokio::time::advance(TTL + Duration::from_secs(6)).await;
    let stale = get(&group, &key).await.expect("stale while open");
    assert!(stale.stale.is_some());
    let refused = get(&group, &cold[3]).await;
    assert!(
        matches!(refused, Err(GroupError::OriginCircuitOpen(_))),
        "{refused:?}"
    );
    assert_eq!(origin.loads(), asked, "the origin was not asked");
    origin.answer(Answer::Value);
    tokio::time::advance(Duration::from_secs(30)).await;
    get(&group, &cold[4]).await.expect("the probe succeeds");
    assert_eq!(group.metrics.origin.circuit_state.get(), 0, "closed");
}

#[tokio::test(start_paused = true)]
async fn jitter_spreads_expiries_and_never_lengthens_them() {
    let freshness = Freshness {
        ttl_jitter: 0.5,
        ..Freshness::default()
    };
    let (group, _, _) = owner_group(fresh_config(freshness, OriginLimits::default()));
    let keys = keys_owned_by(ME, 40);
    let mut ttls = Vec::new();
    for key in &keys {
        let loaded = get(&group, key).await.expect("load");
        ttls.push(loaded.fresh.ttl.expect("a ttl"));
    }
    let (min, max) = (ttls.iter().min().copied(), ttls.iter().max().copied());
    let (min, max) = (min.expect("ttls"), max.expect("ttls"));
    assert!(max <= TTL && min >= TTL / 2, "{min:?}..{max:?}");
    assert!(max - min > TTL / 10, "spread: {min:?}..{max:?}");
}
