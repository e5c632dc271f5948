//! The cross-check's I/O: a kube client (in-cluster environment or a
//! kubeconfig, as `kubectl` finds them), a kube-runtime watcher on the
//! Service's EndpointSlices, and the loop that feeds [`CrossCheck`] with
//! its events and SWIM's snapshots and acts on what it finds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::reconcile::{Changes, CrossCheck, Disagreement, DisagreementKind, SwimMember};
use super::{CrossCheckOutputs, CrossCheckSettings};

/// The first wait after the client could not be built; it doubles up to
/// [`MAX_CLIENT_RETRY`].
const FIRST_CLIENT_RETRY: Duration = Duration::from_secs(1);
const MAX_CLIENT_RETRY: Duration = Duration::from_secs(60);

/// Watches the Service's EndpointSlices until `shutdown`, comparing them
/// with `view(members)` whenever either side changes.
///
/// Publishes the terminating addresses on `outputs.terminating`, sends
/// ready endpoints SWIM does not know to `outputs.announce` (at the
/// settings' gossip port), and logs and counts each disagreement once when
/// it begins. Nothing here is fatal: a client that cannot be built is
/// retried, and watch errors are logged and retried with backoff, while
/// the node goes on with SWIM alone (and the last terminating set).
///
/// Returns on `shutdown`, or when the `members` sender is gone (the gossip
/// driver stopped).
pub async fn run_cross_check<S, F>(
    settings: CrossCheckSettings,
    mut members: watch::Receiver<S>,
    view: F,
    outputs: CrossCheckOutputs,
    shutdown: CancellationToken,
) where
    F: Fn(&S) -> Vec<SwimMember> + Send,
    S: Send + Sync,
{
    for kind in DisagreementKind::ALL {
        outputs.metrics.membership_disagreements(kind.as_str());
    }
    let Some(client) = connect(&shutdown).await else {
        return;
    };
    info!(
        namespace = %settings.namespace,
        selector = %settings.label_selector(),
        "watching EndpointSlices to cross-check membership"
    );
    let mut events = slice_events(client, &settings).boxed();
    let mut check = CrossCheck::default();
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            event = events.next() => match event {
                Some(Ok(event)) => {
                    if !apply(&mut check, event) {
                        continue;
                    }
                    publish_terminating(&check, &outputs);
                }
                Some(Err(error)) => {
                    warn!(
                        namespace = %settings.namespace,
                        error = %error,
                        "EndpointSlice watch failed; retrying with backoff, membership on SWIM alone meanwhile"
                    );
                    continue;
                }
                None => {
                    warn!("EndpointSlice watch ended; membership on SWIM alone");
                    return;
                }
            },
            changed = members.changed() => if changed.is_err() {
                debug!("gossip driver gone: cross-check stops");
                return;
            },
        }
        let swim = view(&members.borrow_and_update());
        let changes = check.compare(&swim);
        report(&changes, &outputs, settings.gossip_port, &shutdown).await;
    }
}

/// A kube client from the in-cluster environment or a kubeconfig, retried
/// (with a doubling wait) until one can be built or `shutdown`.
async fn connect(shutdown: &CancellationToken) -> Option<Client> {
    let mut wait = FIRST_CLIENT_RETRY;
    loop {
        match Client::try_default().await {
            Ok(client) => return Some(client),
            Err(error) => warn!(
                error = %error,
                retry_in = ?wait,
                "no Kubernetes API client (neither in-cluster nor a kubeconfig); membership on SWIM alone meanwhile"
            ),
        }
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(MAX_CLIENT_RETRY);
    }
}

/// The watcher's events on the Service's slices: a list, then a watch from
/// its resourceVersion, re-watched when the stream ends and relisted when
/// the version is too old; after an error it waits (exponential backoff
/// with jitter) before trying again.
fn slice_events(
    client: Client,
    settings: &CrossCheckSettings,
) -> impl Stream<Item = Result<Event<EndpointSlice>, watcher::Error>> + Send {
    let api: Api<EndpointSlice> = Api::namespaced(client, &settings.namespace);
    let config = watcher::Config::default().labels(&settings.label_selector());
    watcher::watcher(api, config).default_backoff()
}

/// Applies one event; true if the endpoints may have changed.
fn apply(check: &mut CrossCheck, event: Event<EndpointSlice>) -> bool {
    let first_list = !check.slices().is_listed() && matches!(event, Event::InitDone);
    let changed = check.apply(event);
    if first_list {
        info!(
            slices = check.slices().names().len(),
            endpoints = check.slices().endpoints().len(),
            "EndpointSlices listed"
        );
    } else if changed {
        debug!(
            endpoints = check.slices().endpoints().len(),
            "EndpointSlices changed"
        );
    }
    changed
}

fn publish_terminating(check: &CrossCheck, outputs: &CrossCheckOutputs) {
    let terminating = check.terminating();
    outputs.terminating.send_if_modified(|current| {
        let changed = **current != terminating;
        if changed {
            *current = Arc::new(terminating);
        }
        changed
    });
}

/// Logs and counts the disagreements that began, logs those that ended,
/// and announces to ready endpoints SWIM does not know.
async fn report(
    changes: &Changes,
    outputs: &CrossCheckOutputs,
    gossip_port: u16,
    shutdown: &CancellationToken,
) {
    for disagreement in &changes.began {
        outputs
            .metrics
            .membership_disagreements(disagreement.kind.as_str())
            .inc();
        log_began(disagreement);
    }
    for disagreement in &changes.ended {
        info!(
            kind = disagreement.kind.as_str(),
            addr = %disagreement.addr,
            member = disagreement.member.as_deref().unwrap_or("-"),
            "Kubernetes and SWIM agree again"
        );
    }
    for addr in changes.announce() {
        let target = SocketAddr::new(addr, gossip_port);
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            sent = outputs.announce.send(target) => if sent.is_err() {
                return;
            },
        }
    }
}

fn log_began(d: &Disagreement) {
    let kind = d.kind.as_str();
    let member = d.member.as_deref().unwrap_or("-");
    match d.kind {
        DisagreementKind::TerminatingButAlive => warn!(
            kind, addr = %d.addr, member,
            "membership disagreement: Kubernetes says the endpoint is terminating, SWIM still has it; off the ring now"
        ),
        DisagreementKind::ReadyButUnknown => info!(
            kind, addr = %d.addr, member,
            "membership disagreement: a ready endpoint SWIM does not know; announcing to it"
        ),
        DisagreementKind::MemberWithoutEndpoint => warn!(
            kind, addr = %d.addr, member,
            "membership disagreement: a SWIM member no EndpointSlice of the Service lists"
        ),
    }
}
