//! The simulator's event queue: a min-heap on (virtual time, submission
//! order), so events at the same instant run in the order they were made
//! and a seed always replays the same run.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Duration;

pub struct EventQueue<E> {
    heap: BinaryHeap<Entry<E>>,
    next_seq: u64,
}

struct Entry<E> {
    at: Duration,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<E> Eq for Entry<E> {}

impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Entry<E> {
    /// Reversed, so the max-heap pops the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            next_seq: 0,
        }
    }
}

impl<E> EventQueue<E> {
    pub fn push(&mut self, at: Duration, event: E) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Entry { at, seq, event });
    }

    /// The earliest event, if it is due by `until`.
    pub fn pop_until(&mut self, until: Duration) -> Option<(Duration, E)> {
        if self.heap.peek()?.at <= until {
            self.heap.pop().map(|e| (e.at, e.event))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_out_by_time_then_submission() {
        let mut queue = EventQueue::default();
        let ms = Duration::from_millis;
        queue.push(ms(3), "c");
        queue.push(ms(1), "a");
        queue.push(ms(1), "b");
        queue.push(ms(9), "late");
        let order: Vec<_> = std::iter::from_fn(|| queue.pop_until(ms(5)))
            .map(|(_, e)| e)
            .collect();
        assert_eq!(order, ["a", "b", "c"]);
        assert_eq!(queue.pop_until(ms(9)), Some((ms(9), "late")));
    }
}
