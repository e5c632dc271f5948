//! One ordered timer queue for foca's timers. A spawned sleep per timer could
//! deliver them out of order; a min-heap hands them out by deadline, and by
//! submission order among equal deadlines. Pure: time is an input, of any
//! ordered type (the node's `Instant`, the simulator's virtual `Duration`).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use tokio::time::Instant;

pub struct TimerQueue<T, At = Instant> {
    heap: BinaryHeap<Scheduled<T, At>>,
    next_seq: u64,
}

struct Scheduled<T, At> {
    at: At,
    seq: u64,
    timer: T,
}

impl<T, At: Ord> PartialEq for Scheduled<T, At> {
    fn eq(&self, other: &Self) -> bool {
        (&self.at, self.seq) == (&other.at, other.seq)
    }
}

impl<T, At: Ord> Eq for Scheduled<T, At> {}

impl<T, At: Ord> PartialOrd for Scheduled<T, At> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T, At: Ord> Ord for Scheduled<T, At> {
    /// Reversed, so the max-heap pops the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        (&other.at, other.seq).cmp(&(&self.at, self.seq))
    }
}

impl<T, At: Ord> Default for TimerQueue<T, At> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            next_seq: 0,
        }
    }
}

impl<T, At: Ord + Copy> TimerQueue<T, At> {
    pub fn push(&mut self, at: At, timer: T) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Scheduled { at, seq, timer });
    }

    /// When the earliest timer is due.
    pub fn next_deadline(&self) -> Option<At> {
        self.heap.peek().map(|s| s.at)
    }

    /// The earliest timer, if it is due at `now`.
    pub fn pop_due(&mut self, now: At) -> Option<T> {
        self.pop_due_with_time(now).map(|(_, timer)| timer)
    }

    /// The earliest timer and when it was due, if it is due at `now`.
    pub fn pop_due_with_time(&mut self, now: At) -> Option<(At, T)> {
        if self.heap.peek()?.at <= now {
            self.heap.pop().map(|s| (s.at, s.timer))
        } else {
            None
        }
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timers_come_out_by_deadline_then_submission() {
        let start = Instant::now();
        let mut queue = TimerQueue::default();
        queue.push(start + Duration::from_millis(30), "c");
        queue.push(start + Duration::from_millis(10), "a");
        queue.push(start + Duration::from_millis(10), "b");
        assert_eq!(
            queue.next_deadline(),
            Some(start + Duration::from_millis(10))
        );
        assert_eq!(queue.pop_due(start), None);
        let later = start + Duration::from_millis(30);
        let order: Vec<_> = std::iter::from_fn(|| queue.pop_due(later)).collect();
        assert_eq!(order, ["a", "b", "c"]);
        assert!(queue.is_empty());
    }
}
