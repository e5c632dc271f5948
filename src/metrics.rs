//! The Prometheus registry and the handles the rest of the node records into.
//!
//! Every metric is created once here; callers get pre-labelled handles (one
//! [`GroupMetrics`] per group) so the hot path never looks a label up. The
//! groupcache counters that `/_stats` reports are read back from the same
//! counters, so the two views cannot disagree.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets from 50 µs to 10 s: cache hits land in the first few,
/// origin loads in the last.
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// Where a response's bytes came from, as the `source` label and the
/// `x-shoal-source` header say.
pub const SOURCES: [&str; 5] = ["main", "hot", "peer", "origin", "error"];

pub struct Metrics {
    registry: Registry,
    gets: IntCounterVec,
    cache_gets: IntCounterVec,
    cache_hits: IntCounterVec,
    peer_loads: IntCounterVec,
    peer_errors: IntCounterVec,
    loads: IntCounterVec,
    loads_deduped: IntCounterVec,
    local_loads: IntCounterVec,
    local_load_errors: IntCounterVec,
    server_requests: IntCounterVec,
    cache_bytes: IntGaugeVec,
    cache_items: IntGaugeVec,
    cache_evictions: IntCounterVec,
    request_duration: HistogramVec,
    origin_request_duration: HistogramVec,
    pub peer_request_duration: Histogram,
    members: IntGaugeVec,
    pub ring_members: IntGauge,
    pub membership_changes: IntCounter,
    membership_disagreements: IntCounterVec,
    peer_rejected: IntCounterVec,
    connections_rejected: IntCounterVec,
    connections_open: IntGaugeVec,
    gossip_packets: IntCounterVec,
    gossip_bytes: IntCounterVec,
    gossip_rejected: IntCounterVec,
    gossip_suspicion_events: IntCounterVec,
    handoff_entries: IntCounterVec,
    handoff_bytes: IntCounterVec,
    handoff_refused: IntCounterVec,
    previous_owner_lookups: IntCounterVec,
    successor_loads: IntCounterVec,
    stale_served: IntCounterVec,
    revalidations: IntCounterVec,
    refreshes: IntCounterVec,
    origin_inflight: IntGaugeVec,
    origin_circuit_state: IntGaugeVec,
    origin_rejected: IntCounterVec,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let vec = IntCounterVec::new(Opts::new(name, help).namespace("shoal"), labels)
        .expect("static metric definition is valid");
    registry
        .register(Box::new(vec.clone()))
        .expect("metric names are unique");
    vec
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let vec = IntGaugeVec::new(Opts::new(name, help).namespace("shoal"), labels)
        .expect("static metric definition is valid");
    registry
        .register(Box::new(vec.clone()))
        .expect("metric names are unique");
    vec
}

fn histogram(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help)
        .namespace("shoal")
        .buckets(LATENCY_BUCKETS.to_vec());
    let vec = HistogramVec::new(opts, labels).expect("static metric definition is valid");
    registry
        .register(Box::new(vec.clone()))
        .expect("metric names are unique");
    vec
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let g = &["group"];
        let gc = &["group", "cache"];
        let build_info = gauge(
            &r,
            "build_info",
            "Build information; always 1.",
            &["version"],
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let peer_request_duration = histogram(
            &r,
            "peer_request_duration_seconds",
            "Time to fetch a value from its owner over the peer API.",
            &[],
        )
        .with_label_values::<&str>(&[]);
        let metrics = Self {
            gets: counter(&r, "gets_total", "Get requests, from clients and peers.", g),
            cache_gets: counter(&r, "cache_gets_total", "Lookups in a cache.", gc),
            cache_hits: counter(&r, "cache_hits_total", "Lookups answered by a cache.", gc),
            peer_loads: counter(
                &r,
                "peer_loads_total",
                "Values fetched from their owner.",
                g,
            ),
            peer_errors: counter(
                &r,
                "peer_errors_total",
                "Failed requests to other nodes.",
                g,
            ),
            loads: counter(&r, "loads_total", "Gets that missed both caches.", g),
            loads_deduped: counter(
                &r,
                "loads_deduped_total",
                "Loads left after singleflight merged concurrent ones.",
                g,
            ),
            local_loads: counter(
                &r,
                "local_loads_total",
                "Loads this node ran against the origin.",
                g,
            ),
            local_load_errors: counter(
                &r,
                "local_load_errors_total",
                "Origin loads that failed.",
                g,
            ),
            server_requests: counter(
                &r,
                "server_requests_total",
                "Get requests received from other nodes.",
                g,
            ),
            cache_bytes: gauge(
                &r,
                "cache_bytes",
                "Bytes held by a cache, entries' overhead included.",
                gc,
            ),
            cache_items: gauge(&r, "cache_items", "Entries held by a cache.", gc),
            cache_evictions: counter(
                &r,
                "cache_evictions_total",
                "Entries evicted to stay within capacity.",
                gc,
            ),
            request_duration: histogram(
                &r,
                "request_duration_seconds",
                "Service API request latency by where the answer came from.",
                &["group", "source"],
            ),
            origin_request_duration: histogram(
                &r,
                "origin_request_duration_seconds",
                "Time the origin (loader) took to answer.",
                g,
            ),
            peer_request_duration,
            members: gauge(&r, "members", "Known members by state.", &["state"]),
            ring_members: IntGauge::with_opts(
                Opts::new("ring_members", "Members on the hash ring.").namespace("shoal"),
            )
            .expect("static metric definition is valid"),
            membership_changes: IntCounter::with_opts(
                Opts::new("membership_changes_total", "Changes to the member list.")
                    .namespace("shoal"),
            )
            .expect("static metric definition is valid"),
            membership_disagreements: counter(
                &r,
                "membership_disagreements_total",
                "Times Kubernetes' EndpointSlices and SWIM began to disagree about a member, by kind.",
                &["kind"],
            ),
            peer_rejected: counter(
                &r,
                "peer_rejected_total",
                "Peer API requests refused, by reason.",
                &["reason"],
            ),
            connections_rejected: counter(
                &r,
                "connections_rejected_total",
                "Connections and requests cut off by a limit (limits:), by port and reason.",
                &["port", "reason"],
            ),
            connections_open: gauge(
                &r,
                "connections_open",
                "Connections open now, by port.",
                &["port"],
            ),
            gossip_packets: counter(
                &r,
                "gossip_packets_total",
                "Gossip datagrams, by direction.",
                &["direction"],
            ),
            gossip_bytes: counter(
                &r,
                "gossip_bytes_total",
                "Gossip bytes, by direction.",
                &["direction"],
            ),
            gossip_rejected: counter(
                &r,
                "gossip_rejected_total",
                "Gossip datagrams dropped, by reason.",
                &["reason"],
            ),
            gossip_suspicion_events: counter(
                &r,
                "gossip_suspicion_events_total",
                "Lifeguard's confirmed suspicions, by event: confirmation_sent (this node's probe of a suspect failed), confirmation_received, shortened (a suspicion cut short by confirmations), refuted (a suspicion of this node answered straight to its confirmer).",
                &["event"],
            ),
            handoff_entries: counter(
                &r,
                "handoff_entries_total",
                "Main-cache entries handed to their next owners by a leaving node (sent) or taken over from one (received).",
                &["group", "direction"],
            ),
            handoff_bytes: counter(
                &r,
                "handoff_bytes_total",
                "Bytes of values handed off, by direction.",
                &["group", "direction"],
            ),
            handoff_refused: counter(
                &r,
                "handoff_refused_total",
                "Handed-off entries not kept: this node held that write or a newer one already, or could not cache the value.",
                g,
            ),
            previous_owner_lookups: counter(
                &r,
                "previous_owner_lookups_total",
                "Peeks at a key's previous owners before an origin load, by result.",
                &["group", "result"],
            ),
            successor_loads: counter(
                &r,
                "successor_loads_total",
                "Origin loads this node ran as owner-in-waiting for an owner that could not be reached.",
                g,
            ),
            stale_served: counter(
                &r,
                "stale_served_total",
                "Expired values served, by reason: while-revalidate (a background reload runs) or if-error (the reload failed).",
                &["group", "reason"],
            ),
            revalidations: counter(
                &r,
                "origin_revalidations_total",
                "Conditional reloads (If-None-Match / If-Modified-Since) of a held value, by result: not-modified (304), modified, failed.",
                &["group", "result"],
            ),
            refreshes: counter(
                &r,
                "refreshes_total",
                "Background reloads started, by trigger: ahead (a hit late in the TTL) or stale (a hit after expiry).",
                &["group", "trigger"],
            ),
            origin_inflight: gauge(
                &r,
                "origin_inflight",
                "Origin loads this node is running now.",
                g,
            ),
            origin_circuit_state: gauge(
                &r,
                "origin_circuit_state",
                "The origin's circuit breaker: 0 closed, 1 open, 2 half-open.",
                g,
            ),
            origin_rejected: counter(
                &r,
                "origin_rejected_total",
                "Origin loads not sent, by reason: overloaded (max_concurrent_loads and its queue) or circuit-open.",
                &["group", "reason"],
            ),
            registry: r,
        };
        metrics
            .registry
            .register(Box::new(metrics.ring_members.clone()))
            .expect("metric names are unique");
        metrics
            .registry
            .register(Box::new(metrics.membership_changes.clone()))
            .expect("metric names are unique");
        metrics
    }

    /// Pre-labelled handles for one group.
    pub fn group(&self, group: &str) -> GroupMetrics {
        let cache = |name: &str| CacheMetrics {
            gets: self.cache_gets.with_label_values(&[group, name]),
            hits: self.cache_hits.with_label_values(&[group, name]),
            bytes: self.cache_bytes.with_label_values(&[group, name]),
            items: self.cache_items.with_label_values(&[group, name]),
            evictions: self.cache_evictions.with_label_values(&[group, name]),
        };
        let request_duration =
            SOURCES.map(|source| self.request_duration.with_label_values(&[group, source]));
        GroupMetrics {
            gets: self.gets.with_label_values(&[group]),
            peer_loads: self.peer_loads.with_label_values(&[group]),
            peer_errors: self.peer_errors.with_label_values(&[group]),
            loads: self.loads.with_label_values(&[group]),
            loads_deduped: self.loads_deduped.with_label_values(&[group]),
            local_loads: self.local_loads.with_label_values(&[group]),
            local_load_errors: self.local_load_errors.with_label_values(&[group]),
            server_requests: self.server_requests.with_label_values(&[group]),
            origin_duration: self.origin_request_duration.with_label_values(&[group]),
            peer_duration: self.peer_request_duration.clone(),
            request_duration,
            main: cache("main"),
            hot: cache("hot"),
            churn: ChurnMetrics {
                handoff_sent_entries: self.handoff_entries.with_label_values(&[group, "sent"]),
                handoff_received_entries: self
                    .handoff_entries
                    .with_label_values(&[group, "received"]),
                handoff_sent_bytes: self.handoff_bytes.with_label_values(&[group, "sent"]),
                handoff_received_bytes: self.handoff_bytes.with_label_values(&[group, "received"]),
                handoff_refused: self.handoff_refused.with_label_values(&[group]),
                previous_owner_hits: self
                    .previous_owner_lookups
                    .with_label_values(&[group, "hit"]),
                previous_owner_misses: self
                    .previous_owner_lookups
                    .with_label_values(&[group, "miss"]),
                previous_owner_errors: self
                    .previous_owner_lookups
                    .with_label_values(&[group, "error"]),
                successor_loads: self.successor_loads.with_label_values(&[group]),
            },
            freshness: FreshnessMetrics {
                stale_while_revalidate: self
                    .stale_served
                    .with_label_values(&[group, "while-revalidate"]),
                stale_if_error: self.stale_served.with_label_values(&[group, "if-error"]),
                not_modified: self
                    .revalidations
                    .with_label_values(&[group, "not-modified"]),
                modified: self.revalidations.with_label_values(&[group, "modified"]),
                revalidation_failed: self.revalidations.with_label_values(&[group, "failed"]),
                refreshes_ahead: self.refreshes.with_label_values(&[group, "ahead"]),
                refreshes_stale: self.refreshes.with_label_values(&[group, "stale"]),
            },
            origin: OriginMetrics {
                inflight: self.origin_inflight.with_label_values(&[group]),
                circuit_state: self.origin_circuit_state.with_label_values(&[group]),
                overloaded: self
                    .origin_rejected
                    .with_label_values(&[group, "overloaded"]),
                circuit_open: self
                    .origin_rejected
                    .with_label_values(&[group, "circuit-open"]),
            },
        }
    }

    /// Sets the member count for one state (`alive`, `suspect`, `down`).
    pub fn set_members(&self, state: &str, count: usize) {
        self.members
            .with_label_values(&[state])
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// The counter of one kind of membership disagreement (EndpointSlice
    /// cross-check); asking for it makes the series appear, at 0.
    pub fn membership_disagreements(&self, kind: &str) -> IntCounter {
        self.membership_disagreements.with_label_values(&[kind])
    }

    /// Counts a refused peer request.
    pub fn peer_rejected(&self, reason: &str) {
        self.peer_rejected.with_label_values(&[reason]).inc();
    }

    /// Counts a connection, or a request on one, cut off by a limit.
    pub fn connection_rejected(&self, port: &str, reason: &str) {
        self.connections_rejected
            .with_label_values(&[port, reason])
            .inc();
    }

    /// The gauge of open connections on one port.
    pub fn connections_open(&self, port: &str) -> IntGauge {
        self.connections_open.with_label_values(&[port])
    }

    /// Counts a gossip datagram of `bytes` sent (`out`) or received (`in`).
    pub fn gossip_packet(&self, direction: &str, bytes: usize) {
        self.gossip_packets.with_label_values(&[direction]).inc();
        self.gossip_bytes
            .with_label_values(&[direction])
            .inc_by(u64::try_from(bytes).unwrap_or(u64::MAX));
    }

    /// Counts what Lifeguard did, by event.
    pub fn gossip_suspicion_events(&self, events: &[(&str, u64)]) {
        for &(event, count) in events {
            if count > 0 {
                self.gossip_suspicion_events
                    .with_label_values(&[event])
                    .inc_by(count);
            }
        }
    }

    /// Counts a dropped gossip datagram.
    pub fn gossip_rejected(&self, reason: &str) {
        self.gossip_rejected.with_label_values(&[reason]).inc();
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// One group's counters, named as groupcache's `Stats`.
#[derive(Clone)]
pub struct GroupMetrics {
    pub gets: IntCounter,
    pub peer_loads: IntCounter,
    pub peer_errors: IntCounter,
    pub loads: IntCounter,
    pub loads_deduped: IntCounter,
    pub local_loads: IntCounter,
    pub local_load_errors: IntCounter,
    pub server_requests: IntCounter,
    pub origin_duration: Histogram,
    pub peer_duration: Histogram,
    /// Indexed like [`SOURCES`].
    pub request_duration: [Histogram; 5],
    pub main: CacheMetrics,
    pub hot: CacheMetrics,
    pub churn: ChurnMetrics,
    pub freshness: FreshnessMetrics,
    pub origin: OriginMetrics,
}

/// One group's freshness counters: stale answers, revalidations, refreshes.
#[derive(Clone)]
pub struct FreshnessMetrics {
    pub stale_while_revalidate: IntCounter,
    pub stale_if_error: IntCounter,
    pub not_modified: IntCounter,
    pub modified: IntCounter,
    pub revalidation_failed: IntCounter,
    pub refreshes_ahead: IntCounter,
    pub refreshes_stale: IntCounter,
}

/// One group's origin protection: loads in flight, the circuit, refusals.
#[derive(Clone)]
pub struct OriginMetrics {
    pub inflight: IntGauge,
    pub circuit_state: IntGauge,
    pub overloaded: IntCounter,
    pub circuit_open: IntCounter,
}

/// One group's churn counters: handoffs, previous-owner peeks, successor loads.
#[derive(Clone)]
pub struct ChurnMetrics {
    pub handoff_sent_entries: IntCounter,
    pub handoff_received_entries: IntCounter,
    pub handoff_sent_bytes: IntCounter,
    pub handoff_received_bytes: IntCounter,
    pub handoff_refused: IntCounter,
    pub previous_owner_hits: IntCounter,
    pub previous_owner_misses: IntCounter,
    pub previous_owner_errors: IntCounter,
    pub successor_loads: IntCounter,
}

/// One cache's (main or hot) counters and gauges.
#[derive(Clone)]
pub struct CacheMetrics {
    pub gets: IntCounter,
    pub hits: IntCounter,
    pub bytes: IntGauge,
    pub items: IntGauge,
    pub evictions: IntCounter,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_named_metrics() {
        let metrics = Metrics::new();
        let group = metrics.group("heavy");
        group.gets.inc();
        group.main.hits.inc();
        metrics.peer_rejected("malformed");
        metrics
            .membership_disagreements("terminating-but-alive")
            .inc();
        let text = metrics.render();
        assert!(
            text.contains("shoal_gets_total{group=\"heavy\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("shoal_cache_hits_total{cache=\"main\",group=\"heavy\"} 1"),
            "{text}"
        );
        assert!(text.contains("shoal_build_info{version="), "{text}");
        assert!(
            text.contains("shoal_peer_rejected_total{reason=\"malformed\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("shoal_membership_disagreements_total{kind=\"terminating-but-alive\"} 1"),
            "{text}"
        );
    }
}
