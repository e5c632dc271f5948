//! The simulator's event queue: the node's own timer queue on virtual time,
//! a min-heap on (time, submission order), so events at the same instant
//! run in the order they were made and a seed always replays the same run.

use std::time::Duration;

use crate::membership::timers::TimerQueue;

pub type EventQueue<E> = TimerQueue<E, Duration>;

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
        let order: Vec<_> = std::iter::from_fn(|| queue.pop_due_with_time(ms(5)))
            .map(|(_, e)| e)
            .collect();
        assert_eq!(order, ["a", "b", "c"]);
        assert_eq!(queue.pop_due_with_time(ms(9)), Some((ms(9), "late")));
    }
}
