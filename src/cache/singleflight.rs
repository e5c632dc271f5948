//! Singleflight: concurrent requests for one key share one load.
//!
//! The first caller (the leader) starts the load; later callers join it.
//! A [`Detach::Task`] load runs as its own task, so a client that hangs up
//! does not cancel a load others (or the cache) are waiting for: an origin
//! load. A [`Detach::No`] load is driven by its callers, whichever of them
//! polls first, and is dropped when the last of them hangs up: a fetch from
//! another node, which costs nothing to give up and is on the peer hit's
//! path, where a task per request (spawn, schedule, wake, join) is a
//! measurable share of the asking node's CPU (BENCHMARKS.md, "Scale").
//!
//! The flight leaves the table when the load finishes, or earlier when the
//! key is invalidated ([`SingleFlight::forget`]), so callers that arrive
//! after a DELETE start a fresh load instead of joining a stale one.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared, WeakShared};

pub struct SingleFlight<K, V> {
    flights: Mutex<HashMap<K, Flight<V>>>,
    next_id: AtomicU64,
    /// What waiters get if a load panics.
    on_panic: fn() -> V,
}

type Running<V> = Shared<BoxFuture<'static, V>>;

struct Flight<V> {
    id: u64,
    result: Held<V>,
}

/// How the table holds a flight's result.
enum Held<V> {
    /// A task runs the load: the table keeps its result for later callers.
    Task(Running<V>),
    /// The callers run the load: the table must not keep it alive once
    /// they are all gone, or nobody would drive it and it would never end.
    Callers(WeakShared<BoxFuture<'static, V>>),
}

impl<V> Held<V>
where
    V: Clone + Send + Sync + 'static,
{
    /// The running load, if it still runs (or has just finished).
    fn join(&self) -> Option<Running<V>> {
        match self {
            Self::Task(running) => Some(running.clone()),
            Self::Callers(weak) => weak.upgrade(),
        }
    }
}

/// Who runs a load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detach {
    /// A task of its own: it runs to the end whoever waits for it.
    Task,
    /// Its callers: it ends early if they all hang up.
    No,
}

/// Whether a caller ran the load or joined one already running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
}

impl<K, V> SingleFlight<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub fn new(on_panic: fn() -> V) -> Self {
        Self {
            flights: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            on_panic,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, Flight<V>>> {
        self.flights.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `load` for `key`, run as `detach` says, or joins the load
    /// already running for it.
    pub async fn run<F, Fut>(self: &Arc<Self>, key: K, detach: Detach, load: F) -> (V, Role)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V> + Send + 'static,
    {
        let (result, role) = {
            let mut flights = self.lock();
            if let Some(running) = flights.get(&key).and_then(|flight| flight.result.join()) {
                (running, Role::Follower)
            } else {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                // Made before the guard below: were making it to panic,
                // the guard's drop would take the lock this scope holds.
                let load = load();
                // Removes the flight when the load ends, even by a panic or
                // by being dropped; it cannot do so before the insert
                // below, because it needs the lock this scope holds.
                let finish = FinishOnDrop {
                    flights: Arc::clone(self),
                    key: Some(key.clone()),
                    id,
                };
                let on_panic = self.on_panic;
                let (running, held) = match detach {
                    Detach::Task => {
                        let task = tokio::spawn(async move {
                            let _finish = finish;
                            load.await
                        });
                        let running = async move { task.await.unwrap_or_else(|_| on_panic()) }
                            .boxed()
                            .shared();
                        (running.clone(), Held::Task(running))
                    }
                    Detach::No => {
                        let running = async move {
                            let _finish = finish;
                            AssertUnwindSafe(load)
                                .catch_unwind()
                                .await
                                .unwrap_or_else(|_| on_panic())
                        }
                        .boxed()
                        .shared();
                        let weak = running.downgrade();
                        match weak {
                            Some(weak) => (running, Held::Callers(weak)),
                            // Not polled yet, so not finished: always there.
                            None => (running.clone(), Held::Task(running)),
                        }
                    }
                };
                flights.insert(key, Flight { id, result: held });
                (running, Role::Leader)
            }
        };
        (result.await, role)
    }

    /// Joins the load running for `key`, if there is one; never starts one.
    pub async fn join(&self, key: &K) -> Option<V> {
        let running = self
            .lock()
            .get(key)
            .and_then(|flight| flight.result.join())?;
        Some(running.await)
    }

    /// Detaches the flight for `key`, if any: its waiters still get its
    /// result, but later callers start a new load.
    pub fn forget(&self, key: &K) {
        // Dropped after the lock: the last handle of a load its callers
        // run ends it, and its end takes the lock.
        let forgotten = self.lock().remove(key);
        drop(forgotten);
    }

    fn finish(&self, key: &K, id: u64) {
        let mut flights = self.lock();
        if flights.get(key).is_some_and(|flight| flight.id == id) {
            flights.remove(key);
        }
    }

    /// Loads in flight right now.
    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.lock().len()
    }
}

struct FinishOnDrop<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    flights: Arc<SingleFlight<K, V>>,
    key: Option<K>,
    id: u64,
}

impl<K, V> Drop for FinishOnDrop<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.flights.finish(&key, self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    fn flights() -> Arc<SingleFlight<String, Result<u32, String>>> {
        Arc::new(SingleFlight::new(|| Err("panicked".into())))
    }

    /// Starts a load of "k" that answers `Ok(1)` after a second.
    fn spawn_slow_load(
        flights: &Arc<SingleFlight<String, Result<u32, String>>>,
    ) -> tokio::task::JoinHandle<(Result<u32, String>, Role)> {
        let flights = Arc::clone(flights);
        tokio::spawn(async move {
            flights
                .run("k".into(), Detach::Task, || async {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Ok(1)
                })
                .await
        })
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_load() {
        let flights = flights();
        let loads = Arc::new(AtomicUsize::new(0));
        let callers = (0..50).map(|_| {
            let flights = Arc::clone(&flights);
            let loads = Arc::clone(&loads);
            tokio::spawn(async move {
                flights
                    .run("k".to_owned(), Detach::Task, || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok(7)
                    })
                    .await
            })
        });
        let results = futures::future::join_all(callers).await;
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        let leaders = results
            .iter()
            .filter(|r| matches!(r, Ok((Ok(7), Role::Leader))))
            .count();
        assert_eq!(leaders, 1);
        assert!(results.iter().all(|r| matches!(r, Ok((Ok(7), _)))));
        assert_eq!(flights.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn join_shares_a_running_load_and_never_starts_one() {
        let flights = flights();
        assert_eq!(flights.join(&"k".to_owned()).await, None);
        let slow = spawn_slow_load(&flights);
        tokio::task::yield_now().await;
        assert_eq!(flights.join(&"k".to_owned()).await, Some(Ok(1)));
        assert_eq!(slow.await.expect("no panic").0, Ok(1));
        assert_eq!(flights.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn finished_flight_is_not_reused() {
        let flights = flights();
        let (first, _) = flights
            .run("k".into(), Detach::Task, || async { Ok(1) })
            .await;
        let (second, role) = flights
            .run("k".into(), Detach::Task, || async { Ok(2) })
            .await;
        assert_eq!((first, second, role), (Ok(1), Ok(2), Role::Leader));
    }

    #[tokio::test(start_paused = true)]
    async fn forget_starts_a_new_flight() {
        let flights = flights();
        let slow = spawn_slow_load(&flights);
        tokio::task::yield_now().await;
        assert_eq!(flights.in_flight(), 1);
        flights.forget(&"k".to_owned());
        let (fresh, role) = flights
            .run("k".into(), Detach::Task, || async { Ok(2) })
            .await;
        assert_eq!((fresh, role), (Ok(2), Role::Leader));
        assert_eq!(slow.await.expect("no panic").0, Ok(1));
    }

    #[tokio::test(start_paused = true)]
    async fn leader_hanging_up_does_not_cancel_the_load() {
        let flights = flights();
        let leader = spawn_slow_load(&flights);
        tokio::task::yield_now().await;
        let follower = {
            let flights = Arc::clone(&flights);
            tokio::spawn(async move {
                flights
                    .run("k".into(), Detach::Task, || async { Ok(2) })
                    .await
            })
        };
        tokio::task::yield_now().await;
        leader.abort();
        let (value, role) = follower.await.expect("no panic");
        assert_eq!((value, role), (Ok(1), Role::Follower));
    }

    #[tokio::test]
    async fn a_panicking_load_reports_an_error() {
        let flights = flights();
        let (value, _) = flights
            .run("k".into(), Detach::Task, || async { panic!("loader bug") })
            .await;
        assert_eq!(value, Err("panicked".into()));
        assert_eq!(flights.in_flight(), 0);
    }
    /// Starts a load of "k" that its callers run and that answers `Ok(1)`
    /// after a second, counting its drops in `dropped`.
    fn spawn_attached_load(
        flights: &Arc<SingleFlight<String, Result<u32, String>>>,
        dropped: &Arc<AtomicUsize>,
    ) -> tokio::task::JoinHandle<(Result<u32, String>, Role)> {
        struct CountDrop(Arc<AtomicUsize>);
        impl Drop for CountDrop {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let flights = Arc::clone(flights);
        let dropped = Arc::clone(dropped);
        tokio::spawn(async move {
            flights
                .run("k".into(), Detach::No, || async move {
                    let _count = CountDrop(dropped);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Ok(1)
                })
                .await
        })
    }

    #[tokio::test(start_paused = true)]
    async fn an_attached_load_goes_on_for_the_callers_left() {
        let flights = flights();
        let dropped = Arc::new(AtomicUsize::new(0));
        let leader = spawn_attached_load(&flights, &dropped);
        tokio::task::yield_now().await;
        let follower = {
            let flights = Arc::clone(&flights);
            tokio::spawn(async move {
                flights
                    .run("k".into(), Detach::No, || async { Ok(2) })
                    .await
            })
        };
        tokio::task::yield_now().await;
        leader.abort();
        let (value, role) = follower.await.expect("no panic");
        assert_eq!((value, role), (Ok(1), Role::Follower));
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
        assert_eq!(flights.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_attached_load_ends_when_its_last_caller_hangs_up() {
        let flights = flights();
        let dropped = Arc::new(AtomicUsize::new(0));
        let leader = spawn_attached_load(&flights, &dropped);
        tokio::task::yield_now().await;
        assert_eq!(flights.in_flight(), 1);
        leader.abort();
        assert!(leader.await.is_err_and(|e| e.is_cancelled()));
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
        assert_eq!(flights.in_flight(), 0);
        let (value, role) = flights
            .run("k".into(), Detach::No, || async { Ok(2) })
            .await;
        assert_eq!((value, role), (Ok(2), Role::Leader));
    }

    #[tokio::test(start_paused = true)]
    async fn forgetting_an_attached_load_lets_its_callers_finish_it() {
        let flights = flights();
        let dropped = Arc::new(AtomicUsize::new(0));
        let leader = spawn_attached_load(&flights, &dropped);
        tokio::task::yield_now().await;
        flights.forget(&"k".to_owned());
        let (fresh, role) = flights
            .run("k".into(), Detach::No, || async { Ok(2) })
            .await;
        assert_eq!((fresh, role), (Ok(2), Role::Leader));
        assert_eq!(leader.await.expect("no panic").0, Ok(1));
        assert_eq!(flights.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_panicking_attached_load_reports_an_error() {
        let flights = flights();
        let (value, _) = flights
            .run("k".into(), Detach::No, || async { panic!("loader bug") })
            .await;
        assert_eq!(value, Err("panicked".into()));
        assert_eq!(flights.in_flight(), 0);
    }
}
