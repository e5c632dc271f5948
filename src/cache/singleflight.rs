//! Singleflight: concurrent requests for one key share one load.
//!
//! The first caller (the leader) starts the load as its own task, so a client
//! that hangs up does not cancel a load others are waiting for; later callers
//! join it. The flight leaves the table when the load finishes, or earlier
//! when the key is invalidated ([`SingleFlight::forget`]), so callers that
//! arrive after a DELETE start a fresh load instead of joining a stale one.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

pub struct SingleFlight<K, V> {
    flights: Mutex<HashMap<K, Flight<V>>>,
    next_id: AtomicU64,
    /// What waiters get if a load panics.
    on_panic: fn() -> V,
}

struct Flight<V> {
    id: u64,
    result: Shared<BoxFuture<'static, V>>,
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

    /// Runs `load` for `key`, or joins the load already running for it.
    pub async fn run<F, Fut>(self: &Arc<Self>, key: K, load: F) -> (V, Role)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V> + Send + 'static,
    {
        let (result, role) = {
            let mut flights = self.lock();
            if let Some(flight) = flights.get(&key) {
                (flight.result.clone(), Role::Follower)
            } else {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let this = Arc::clone(self);
                let flight_key = key.clone();
                let load = load();
                // The task removes its flight when done; it cannot do so before
                // the insert below, because it needs the lock this scope holds.
                let task = tokio::spawn(async move {
                    // Removes the flight even if the load panics.
                    let _finish = FinishOnDrop {
                        flights: this,
                        key: Some(flight_key),
                        id,
                    };
                    load.await
                });
                let on_panic = self.on_panic;
                let result = async move { task.await.unwrap_or_else(|_| on_panic()) }
                    .boxed()
                    .shared();
                flights.insert(
                    key,
                    Flight {
                        id,
                        result: result.clone(),
                    },
                );
                (result, Role::Leader)
            }
        };
        (result.await, role)
    }

    /// Joins the load running for `key`, if there is one; never starts one.
    pub async fn join(&self, key: &K) -> Option<V> {
        let running = self.lock().get(key).map(|flight| flight.result.clone())?;
        Some(running.await)
    }

    /// Detaches the flight for `key`, if any: its waiters still get its
    /// result, but later callers start a new load.
    pub fn forget(&self, key: &K) {
        self.lock().remove(key);
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
                .run("k".into(), || async {
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
                    .run("k".to_owned(), || async move {
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
        let (first, _) = flights.run("k".into(), || async { Ok(1) }).await;
        let (second, role) = flights.run("k".into(), || async { Ok(2) }).await;
        assert_eq!((first, second, role), (Ok(1), Ok(2), Role::Leader));
    }

    #[tokio::test(start_paused = true)]
    async fn forget_starts_a_new_flight() {
        let flights = flights();
        let slow = spawn_slow_load(&flights);
        tokio::task::yield_now().await;
        assert_eq!(flights.in_flight(), 1);
        flights.forget(&"k".to_owned());
        let (fresh, role) = flights.run("k".into(), || async { Ok(2) }).await;
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
            tokio::spawn(async move { flights.run("k".into(), || async { Ok(2) }).await })
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
            .run("k".into(), || async { panic!("loader bug") })
            .await;
        assert_eq!(value, Err("panicked".into()));
        assert_eq!(flights.in_flight(), 0);
    }
}
