//! foca's runtime for the core: sends, timers and membership notifications
//! accumulate as in foca's `AccumulatingRuntime`; failed probes (foca's
//! `unstable-notifications`) are kept apart for Lifeguard's confirmations,
//! and the per-packet notifications that feature adds are not kept at all.

use std::time::Duration;

use bytes::Bytes;
use foca::{AccumulatingRuntime, Notification, OwnedNotification, Runtime, Timer};

use super::identity::NodeId;

#[derive(Default)]
pub struct CoreRuntime {
    inner: AccumulatingRuntime<NodeId>,
    failed_probes: Vec<NodeId>,
}

impl CoreRuntime {
    pub fn next_send(&mut self) -> Option<(NodeId, Bytes)> {
        self.inner.to_send()
    }

    pub fn next_timer(&mut self) -> Option<(Duration, Timer<NodeId>)> {
        self.inner.to_schedule()
    }

    pub fn next_notification(&mut self) -> Option<OwnedNotification<NodeId>> {
        self.inner.to_notify()
    }

    /// Members this one probed without an answer, direct or indirect,
    /// since the last call.
    pub fn take_failed_probes(&mut self) -> Vec<NodeId> {
        std::mem::take(&mut self.failed_probes)
    }
}

impl Runtime<NodeId> for CoreRuntime {
    fn notify(&mut self, notification: Notification<'_, NodeId>) {
        match notification {
            Notification::ProbeFailed(_, id) => self.failed_probes.push(id.clone()),
            Notification::DataReceived(_) | Notification::DataSent(_) => {}
            other => self.inner.notify(other),
        }
    }

    fn send_to(&mut self, to: NodeId, data: &[u8]) {
        self.inner.send_to(to, data);
    }

    fn submit_after(&mut self, event: Timer<NodeId>, after: Duration) {
        self.inner.submit_after(event, after);
    }
}
