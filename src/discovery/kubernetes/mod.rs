//! The EndpointSlice cross-check (`discovery.kubernetes`): Kubernetes'
//! view of the headless Service that seeds gossip, compared with SWIM's.
//!
//! Kubernetes knows some things before SWIM does: a pod being deleted has
//! its endpoint marked `terminating` at once, while SWIM learns of it only
//! when the node leaves or stops answering. So:
//!
//! - addresses whose endpoints are terminating are published on a watch
//!   channel, and the node leaves them off its ring at once;
//! - ready endpoints that SWIM does not know are announced to;
//! - every disagreement is logged and counted once when it begins
//!   (`shoal_membership_disagreements_total{kind}`), and logged when it ends.
//!
//! Its parts:
//!
//! - `reconcile`: the slices as a reflector store keeps them, and the
//!   comparison. Pure: fed kube-runtime watcher events and SWIM snapshots.
//! - `watch`: the kube client and watcher, the only I/O; API errors are
//!   warnings retried with backoff, never fatal, so the node works on SWIM
//!   alone while the API server is away.
//!
//! This is the only module that uses `kube` and `k8s-openapi`. Like the
//! seed loop it knows neither foca nor the membership types: the node
//! passes a view of SWIM's members and takes announce targets from a
//! channel.

mod reconcile;
mod watch;

pub use reconcile::SwimMember;
pub use watch::run_cross_check;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::metrics::Metrics;

/// The label every EndpointSlice of a Service carries, naming it.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Addresses Kubernetes reports as terminating.
pub type Terminating = Arc<HashSet<IpAddr>>;

/// What the cross-check watches.
#[derive(Debug, Clone)]
pub struct CrossCheckSettings {
    pub namespace: String,
    /// The headless Service whose slices list the nodes.
    pub service: String,
    /// The gossip port announces go to: every node's, as this node's.
    pub gossip_port: u16,
}

impl CrossCheckSettings {
    /// The label selector of the Service's slices.
    pub fn label_selector(&self) -> String {
        format!("{SERVICE_NAME_LABEL}={}", self.service)
    }
}

/// Where the cross-check's findings go.
pub struct CrossCheckOutputs {
    /// Addresses whose endpoints are terminating: off the ring.
    pub terminating: tokio::sync::watch::Sender<Terminating>,
    /// Gossip addresses to announce to.
    pub announce: mpsc::Sender<SocketAddr>,
    /// Counts disagreements.
    pub metrics: Arc<Metrics>,
}
