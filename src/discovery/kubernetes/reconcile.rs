//! The cross-check without I/O: the Service's EndpointSlices kept as
//! kube-runtime's reflector store keeps objects (fed watcher events, a
//! relist swapped in whole on `InitDone`), and their comparison with SWIM's
//! member list, reported once when a disagreement begins and once when it
//! ends.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::Event;

/// What the Service's EndpointSlices say of one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointState {
    /// `conditions.ready`; unset means ready. With `publishNotReadyAddresses`
    /// it is true for every pod that has an address, even a terminating one.
    pub ready: bool,
    /// `conditions.terminating`; unset means not terminating. True once the
    /// pod is being deleted.
    pub terminating: bool,
}

impl EndpointState {
    /// Two endpoints naming one address (duplicated or mirrored slices):
    /// ready if either is, terminating only if both are, so one slice alone
    /// never takes a member off the ring while another lists it as live.
    fn merge(self, other: Self) -> Self {
        Self {
            ready: self.ready || other.ready,
            terminating: self.terminating && other.terminating,
        }
    }

    /// A pod SWIM should know: ready and not on its way out. `serving` is
    /// not read: it follows pod readiness, which flaps during start-up (and,
    /// for sidecars, with the app), and says nothing of membership.
    fn expects_member(self) -> bool {
        self.ready && !self.terminating
    }
}

/// One slice, reduced to its endpoints' addresses and conditions.
type SliceEndpoints = Vec<(IpAddr, EndpointState)>;

/// The Service's EndpointSlices by name.
///
/// Watch events (`Apply`, `Delete`) change it one slice at a time. A list
/// (`Init`, `InitApply`…, `InitDone`), the first one or a relist after the
/// watch lost its place, is gathered aside and then replaces the slices
/// whole, so the view never shows half a list nor keeps a slice deleted
/// while the watch was down.
#[derive(Debug, Default)]
pub struct SliceStore {
    /// `None` until the first list is complete.
    slices: Option<BTreeMap<String, SliceEndpoints>>,
    /// A list being gathered.
    listing: Option<BTreeMap<String, SliceEndpoints>>,
    /// Every address the slices name, merged.
    endpoints: BTreeMap<IpAddr, EndpointState>,
}

impl SliceStore {
    /// Applies one watcher event. True if the endpoints may have changed;
    /// the first complete list always counts as a change.
    pub fn apply(&mut self, event: Event<EndpointSlice>) -> bool {
        let changed = match event {
            Event::Init => {
                self.listing = Some(BTreeMap::new());
                false
            }
            Event::InitApply(slice) => {
                let (name, endpoints) = reduce(&slice);
                self.listing.get_or_insert_default().insert(name, endpoints);
                false
            }
            Event::InitDone => {
                let listed = self.listing.take().unwrap_or_default();
                let changed = self.slices.as_ref() != Some(&listed);
                self.slices = Some(listed);
                changed
            }
            // The watcher sends no watch event before its first list ends.
            Event::Apply(slice) => self.slices.as_mut().is_some_and(|slices| {
                let (name, endpoints) = reduce(&slice);
                slices.insert(name, endpoints.clone()) != Some(endpoints)
            }),
            Event::Delete(slice) => self
                .slices
                .as_mut()
                .is_some_and(|slices| slices.remove(&name_of(&slice)).is_some()),
        };
        if changed {
            self.endpoints = merged(self.slices.iter().flat_map(BTreeMap::values));
        }
        changed
    }

    /// Whether a first list has completed.
    pub fn is_listed(&self) -> bool {
        self.slices.is_some()
    }

    /// Every address the slices name; empty before the first list.
    pub fn endpoints(&self) -> &BTreeMap<IpAddr, EndpointState> {
        &self.endpoints
    }

    /// The slices' names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.slices
            .iter()
            .flat_map(BTreeMap::keys)
            .map(String::as_str)
            .collect()
    }
}

fn name_of(slice: &EndpointSlice) -> String {
    slice.metadata.name.clone().unwrap_or_default()
}

/// A slice's name and its endpoints' IP addresses with their conditions
/// (FQDN slices name no IP and count for nothing).
fn reduce(slice: &EndpointSlice) -> (String, SliceEndpoints) {
    let endpoints = slice
        .endpoints
        .iter()
        .flat_map(|endpoint| {
            let conditions = endpoint.conditions.as_ref();
            let state = EndpointState {
                ready: conditions.and_then(|c| c.ready).unwrap_or(true),
                terminating: conditions.and_then(|c| c.terminating).unwrap_or(false),
            };
            endpoint
                .addresses
                .iter()
                .filter_map(|address| address.parse::<IpAddr>().ok())
                .map(move |ip| (ip, state))
        })
        .collect();
    (name_of(slice), endpoints)
}

fn merged<'a>(slices: impl Iterator<Item = &'a SliceEndpoints>) -> BTreeMap<IpAddr, EndpointState> {
    let mut endpoints: BTreeMap<IpAddr, EndpointState> = BTreeMap::new();
    for &(ip, state) in slices.flatten() {
        endpoints
            .entry(ip)
            .and_modify(|known| *known = known.merge(state))
            .or_insert(state);
    }
    endpoints
}

/// How Kubernetes and SWIM can disagree about a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DisagreementKind {
    /// The endpoint is terminating while SWIM still has the member alive or
    /// suspect: the member leaves the ring at once, before SWIM notices.
    TerminatingButAlive,
    /// A ready endpoint, not terminating, at an address where SWIM has no
    /// live member: this node announces to it.
    ReadyButUnknown,
    /// A live SWIM member at an address no endpoint of the Service names.
    MemberWithoutEndpoint,
}

impl DisagreementKind {
    pub const ALL: [Self; 3] = [
        Self::TerminatingButAlive,
        Self::ReadyButUnknown,
        Self::MemberWithoutEndpoint,
    ];

    /// The `kind` label of `shoal_membership_disagreements_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TerminatingButAlive => "terminating-but-alive",
            Self::ReadyButUnknown => "ready-but-unknown",
            Self::MemberWithoutEndpoint => "member-without-endpoint",
        }
    }
}

/// A member as SWIM sees it: what the comparison reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwimMember {
    pub name: String,
    /// The member's advertised IP, which is its pod IP.
    pub addr: IpAddr,
    /// Alive or suspect (on the ring); a down member counts as unknown.
    pub live: bool,
}

/// One disagreement between the EndpointSlices and SWIM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disagreement {
    pub kind: DisagreementKind,
    pub addr: IpAddr,
    /// The SWIM member at the address, when SWIM knows one (even down).
    pub member: Option<String>,
}

/// Every disagreement between `endpoints` and SWIM's `members` now, by
/// kind, then address.
pub fn disagreements(
    endpoints: &BTreeMap<IpAddr, EndpointState>,
    members: &[SwimMember],
) -> Vec<Disagreement> {
    let live: BTreeMap<IpAddr, &str> = members
        .iter()
        .filter(|m| m.live)
        .map(|m| (m.addr, m.name.as_str()))
        .collect();
    let known = |addr: IpAddr| {
        live.get(&addr).map(|name| (*name).to_owned()).or_else(|| {
            members
                .iter()
                .find(|m| m.addr == addr)
                .map(|m| m.name.clone())
        })
    };
    let mut found = Vec::new();
    for (&addr, state) in endpoints {
        let kind = if state.terminating && live.contains_key(&addr) {
            DisagreementKind::TerminatingButAlive
        } else if state.expects_member() && !live.contains_key(&addr) {
            DisagreementKind::ReadyButUnknown
        } else {
            continue;
        };
        found.push(Disagreement {
            kind,
            addr,
            member: known(addr),
        });
    }
    found.extend(
        live.iter()
            .filter(|(addr, _)| !endpoints.contains_key(addr))
            .map(|(&addr, name)| Disagreement {
                kind: DisagreementKind::MemberWithoutEndpoint,
                addr,
                member: Some((*name).to_owned()),
            }),
    );
    found.sort_by_key(|d| (d.kind, d.addr));
    found
}

/// What one comparison changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Disagreements that began: each is logged and counted once.
    pub began: Vec<Disagreement>,
    /// Disagreements that ended.
    pub ended: Vec<Disagreement>,
}

impl Changes {
    /// The addresses to announce to: ready endpoints SWIM just turned out
    /// not to know.
    pub fn announce(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.began
            .iter()
            .filter(|d| d.kind == DisagreementKind::ReadyButUnknown)
            .map(|d| d.addr)
    }
}

/// The cross-check's state: the slices, and the disagreements open now.
#[derive(Debug, Default)]
pub struct CrossCheck {
    slices: SliceStore,
    open: BTreeMap<(DisagreementKind, IpAddr), Disagreement>,
}

impl CrossCheck {
    /// Applies one watcher event; true if the endpoints may have changed.
    pub fn apply(&mut self, event: Event<EndpointSlice>) -> bool {
        self.slices.apply(event)
    }

    pub fn slices(&self) -> &SliceStore {
        &self.slices
    }

    /// The addresses whose endpoints are terminating: they leave the ring.
    pub fn terminating(&self) -> HashSet<IpAddr> {
        self.slices
            .endpoints()
            .iter()
            .filter(|(_, state)| state.terminating)
            .map(|(&addr, _)| addr)
            .collect()
    }

    /// Compares the endpoints with SWIM's `members` and returns the
    /// disagreements that began or ended since the last comparison. Before
    /// the first list there is nothing to compare with, and nothing changes.
    pub fn compare(&mut self, members: &[SwimMember]) -> Changes {
        if !self.slices.is_listed() {
            return Changes::default();
        }
        let now: BTreeMap<_, _> = disagreements(self.slices.endpoints(), members)
            .into_iter()
            .map(|d| ((d.kind, d.addr), d))
            .collect();
        let ended = self
            .open
            .iter()
            .filter(|(key, _)| !now.contains_key(key))
            .map(|(_, d)| d.clone())
            .collect();
        let began = now
            .iter()
            .filter(|(key, _)| !self.open.contains_key(key))
            .map(|(_, d)| d.clone())
            .collect();
        self.open = now;
        Changes { began, ended }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use DisagreementKind::{MemberWithoutEndpoint, ReadyButUnknown, TerminatingButAlive};

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    /// An endpoint: `(last octet, ready, terminating)`; `None` conditions
    /// are left unset.
    fn endpoint(last: u8, ready: Option<bool>, terminating: Option<bool>) -> Endpoint {
        Endpoint {
            addresses: vec![ip(last).to_string()],
            conditions: Some(EndpointConditions {
                ready,
                serving: ready,
                terminating,
            }),
            ..Endpoint::default()
        }
    }

    fn ready(last: u8) -> Endpoint {
        endpoint(last, Some(true), Some(false))
    }

    fn terminating(last: u8) -> Endpoint {
        // publishNotReadyAddresses: still ready while terminating.
        endpoint(last, Some(true), Some(true))
    }

    fn slice(name: &str, endpoints: Vec<Endpoint>) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            address_type: "IPv4".into(),
            endpoints,
            ports: None,
        }
    }

    fn member(last: u8) -> SwimMember {
        SwimMember {
            name: format!("node-{last}"),
            addr: ip(last),
            live: true,
        }
    }

    fn down(last: u8) -> SwimMember {
        SwimMember {
            live: false,
            ..member(last)
        }
    }

    fn listed(slices: Vec<EndpointSlice>) -> CrossCheck {
        let mut check = CrossCheck::default();
        check.apply(Event::Init);
        for slice in slices {
            check.apply(Event::InitApply(slice));
        }
        assert!(check.apply(Event::InitDone), "the first list is a change");
        check
    }

    fn addrs(check: &CrossCheck) -> Vec<IpAddr> {
        check.slices().endpoints().keys().copied().collect()
    }

    fn kinds(disagreements: &[Disagreement]) -> Vec<(DisagreementKind, IpAddr)> {
        disagreements.iter().map(|d| (d.kind, d.addr)).collect()
    }

    #[test]
    fn nothing_is_seen_before_the_first_list_completes() {
        let mut check = CrossCheck::default();
        assert!(!check.apply(Event::Init));
        assert!(!check.apply(Event::InitApply(slice("a", vec![terminating(1)]))));
        assert!(!check.slices().is_listed());
        assert!(check.terminating().is_empty());
        assert_eq!(check.compare(&[member(1)]), Changes::default());
        assert!(check.apply(Event::InitDone));
        assert_eq!(check.terminating(), HashSet::from([ip(1)]));
    }

    #[test]
    fn an_empty_first_list_is_still_a_list() {
        let mut check = listed(Vec::new());
        assert!(check.slices().is_listed());
        let changes = check.compare(&[member(1)]);
        assert_eq!(kinds(&changes.began), [(MemberWithoutEndpoint, ip(1))]);
    }

    #[test]
    fn watch_events_apply_one_slice_at_a_time() {
        let mut check = listed(vec![slice("a", vec![ready(1)])]);
        assert!(check.apply(Event::Apply(slice("b", vec![ready(2)]))));
        assert_eq!(addrs(&check), [ip(1), ip(2)]);
        // The same slice again changes nothing.
        assert!(!check.apply(Event::Apply(slice("b", vec![ready(2)]))));
        assert!(check.apply(Event::Apply(slice("a", vec![ready(1), ready(3)]))));
        assert_eq!(addrs(&check), [ip(1), ip(2), ip(3)]);
        assert!(check.apply(Event::Delete(slice("b", Vec::new()))));
        assert_eq!(addrs(&check), [ip(1), ip(3)]);
        assert!(!check.apply(Event::Delete(slice("gone", Vec::new()))));
    }

    #[test]
    fn a_relist_is_swapped_in_whole_on_init_done() {
        let mut check = listed(vec![slice("a", vec![ready(1)]), slice("b", vec![ready(2)])]);
        assert!(!check.apply(Event::Init));
        assert!(!check.apply(Event::InitApply(slice("c", vec![ready(3)]))));
        // Mid-list the old view stands.
        assert_eq!(addrs(&check), [ip(1), ip(2)]);
        assert!(check.apply(Event::InitDone));
        // Slices the relist did not bring back are gone.
        assert_eq!(addrs(&check), [ip(3)]);
        assert_eq!(check.slices().names(), ["c"]);
        // The same list again is no change.
        check.apply(Event::Init);
        check.apply(Event::InitApply(slice("c", vec![ready(3)])));
        assert!(!check.apply(Event::InitDone));
    }

    #[test]
    fn terminating_leaves_but_not_ready_or_not_serving_does_not() {
        let not_ready = endpoint(2, Some(false), Some(false));
        let not_serving = Endpoint {
            conditions: Some(EndpointConditions {
                ready: Some(true),
                serving: Some(false),
                terminating: Some(false),
            }),
            ..ready(3)
        };
        let unset = Endpoint {
            conditions: None,
            ..ready(4)
        };
        let check = listed(vec![slice(
            "a",
            vec![terminating(1), not_ready, not_serving, unset],
        )]);
        assert_eq!(check.terminating(), HashSet::from([ip(1)]));
        let state = check.slices().endpoints()[&ip(4)];
        assert!(
            state.ready && !state.terminating,
            "unset: ready, not terminating"
        );
    }

    #[test]
    fn an_address_is_terminating_only_if_every_slice_says_so() {
        let check = listed(vec![
            slice("a", vec![terminating(1), terminating(2)]),
            slice("b", vec![ready(1)]),
        ]);
        assert_eq!(check.terminating(), HashSet::from([ip(2)]));
    }

    #[test]
    fn fqdn_and_malformed_addresses_are_skipped() {
        let mut fqdn = slice("a", vec![ready(1)]);
        fqdn.address_type = "FQDN".into();
        fqdn.endpoints[0].addresses = vec!["pod.example".into(), "not an ip".into()];
        let check = listed(vec![fqdn, slice("b", vec![ready(2)])]);
        assert_eq!(addrs(&check), [ip(2)]);
    }

    #[test]
    fn each_kind_of_disagreement() {
        let endpoints = listed(vec![slice(
            "a",
            vec![ready(1), terminating(2), ready(3), terminating(4), ready(6)],
        )]);
        let members = [member(1), member(2), member(5), down(6)];
        let found = disagreements(endpoints.slices().endpoints(), &members);
        assert_eq!(
            kinds(&found),
            [
                (TerminatingButAlive, ip(2)),
                (ReadyButUnknown, ip(3)),
                (ReadyButUnknown, ip(6)),
                (MemberWithoutEndpoint, ip(5)),
            ]
        );
        assert_eq!(found[0].member.as_deref(), Some("node-2"));
        assert_eq!(found[1].member, None);
        assert_eq!(
            found[2].member.as_deref(),
            Some("node-6"),
            "down, but known"
        );
        // A terminating endpoint SWIM no longer has alive agrees (ip 4).
    }

    #[test]
    fn a_disagreement_is_reported_once_when_it_begins_and_once_when_it_ends() {
        let mut check = listed(vec![slice("a", vec![ready(1), ready(2)])]);
        let members = [member(1), member(2)];
        assert_eq!(check.compare(&members), Changes::default());

        check.apply(Event::Apply(slice("a", vec![ready(1), terminating(2)])));
        let changes = check.compare(&members);
        assert_eq!(kinds(&changes.began), [(TerminatingButAlive, ip(2))]);
        assert!(changes.ended.is_empty());
        // More events and snapshots while it lasts: not counted again.
        check.apply(Event::Apply(slice("b", Vec::new())));
        assert_eq!(check.compare(&members), Changes::default());
        assert_eq!(check.compare(&members), Changes::default());

        // SWIM catches up (the member left): the disagreement ends.
        let changes = check.compare(&[member(1), down(2)]);
        assert!(changes.began.is_empty());
        assert_eq!(kinds(&changes.ended), [(TerminatingButAlive, ip(2))]);

        // It can begin again, and then counts again.
        let changes = check.compare(&members);
        assert_eq!(kinds(&changes.began), [(TerminatingButAlive, ip(2))]);
    }

    #[test]
    fn ready_but_unknown_endpoints_are_announced_to_once() {
        let mut check = listed(vec![slice("a", vec![ready(1)])]);
        assert_eq!(check.compare(&[member(1)]), Changes::default());
        check.apply(Event::Apply(slice("b", vec![ready(7), terminating(8)])));
        let changes = check.compare(&[member(1)]);
        assert_eq!(changes.announce().collect::<Vec<_>>(), [ip(7)]);
        assert_eq!(check.compare(&[member(1)]).announce().count(), 0);
        // Once SWIM knows it, it is no longer a disagreement.
        let changes = check.compare(&[member(1), member(7)]);
        assert_eq!(kinds(&changes.ended), [(ReadyButUnknown, ip(7))]);
    }

    #[test]
    fn a_relist_keeps_disagreements_that_still_hold() {
        let mut check = listed(vec![slice("a", vec![terminating(1)])]);
        let changes = check.compare(&[member(1)]);
        assert_eq!(changes.began.len(), 1);
        check.apply(Event::Init);
        check.apply(Event::InitApply(slice("a2", vec![terminating(1)])));
        check.apply(Event::InitDone);
        assert_eq!(check.compare(&[member(1)]), Changes::default());
    }
}
