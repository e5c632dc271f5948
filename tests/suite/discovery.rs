//! Seed discovery against a real DNS server inside the test: the resolver
//! (every A/AAAA record, changes seen at once, failures isolated, literal
//! IPs without DNS, truncated answers retried over TCP) and the seed loop
//! (announces, readiness, re-resolving, shutdown). No `shoal` processes:
//! nothing here gossips, the gossip addresses are only data.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{WAIT, poll_until};
use crate::dns::DnsServer;
use shoal::discovery::{Resolved, Seed, SeedResolver, SeedSettings, run_seed_loop};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const NAME: &str = "shoal-gossip.test.svc.cluster.local";
const GOSSIP: u16 = 7946;

fn v4(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 1, 0, last))
}

fn at(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}

fn seeds(texts: &[&str]) -> Vec<Seed> {
    Seed::parse_all(texts, GOSSIP).expect("test seeds parse")
}

fn resolver(dns: &DnsServer) -> SeedResolver {
    SeedResolver::with_server(dns.addr()).expect("resolver for the test DNS server")
}

fn addr_set(resolved: &Resolved) -> HashSet<SocketAddr> {
    resolved.addrs.iter().copied().collect()
}

// ---------------------------------------------------------------------------
// The resolver

#[tokio::test]
async fn a_name_resolves_to_every_a_record_with_the_seed_port() {
    let dns = DnsServer::start().await;
    let ips: Vec<IpAddr> = (1..=5).map(v4).collect();
    dns.set(NAME, ips.clone());

    let resolved = resolver(&dns)
        .resolve(&seeds(&[&format!("{NAME}:7000")]))
        .await;

    assert!(resolved.failures.is_empty(), "{:?}", resolved.failures);
    assert_eq!(resolved.addrs.len(), 5, "{:?}", resolved.addrs);
    let want: HashSet<SocketAddr> = ips.iter().map(|&ip| at(ip, 7000)).collect();
    assert_eq!(addr_set(&resolved), want);
    assert!(
        dns.queries() >= 1,
        "the resolver never asked the DNS server"
    );
}

#[tokio::test]
async fn a_and_aaaa_records_both_count_and_a_missing_port_is_the_gossip_port() {
    let dns = DnsServer::start().await;
    let v6: IpAddr = "fd00::7".parse().expect("v6");
    dns.set(NAME, vec![v4(1), v6, v4(2)]);

    let resolved = resolver(&dns).resolve(&seeds(&[NAME])).await;

    let want: HashSet<SocketAddr> = [at(v4(1), GOSSIP), at(v6, GOSSIP), at(v4(2), GOSSIP)].into();
    assert_eq!(addr_set(&resolved), want);
    assert_eq!(resolved.addrs.len(), 3, "{:?}", resolved.addrs);
}

#[tokio::test]
async fn changes_are_seen_on_the_next_resolve() {
    let dns = DnsServer::start().await;
    let resolver = resolver(&dns);
    let seeds = seeds(&[NAME]);

    dns.set(NAME, vec![v4(1), v4(2), v4(3)]);
    let first = resolver.resolve(&seeds).await;
    assert_eq!(first.addrs.len(), 3, "{first:?}");

    // A pod went away and two arrived: no cache may hide it.
    dns.set(NAME, vec![v4(2), v4(3), v4(4), v4(5)]);
    let second = resolver.resolve(&seeds).await;
    let want: HashSet<SocketAddr> = [2, 3, 4, 5].map(|i| at(v4(i), GOSSIP)).into();
    assert_eq!(addr_set(&second), want);

    dns.remove(NAME);
    let third = resolver.resolve(&seeds).await;
    assert!(third.addrs.is_empty(), "{third:?}");
    assert_eq!(third.failures.len(), 1, "{third:?}");
}

#[tokio::test]
async fn nothing_is_cached_even_when_the_zone_allows_it() {
    let dns = DnsServer::start().await;
    let resolver = resolver(&dns);
    let seeds = seeds(&[NAME]);
    // CoreDNS answers with a TTL of 5 s or more; an hour makes a cache hit
    // certain if there is a cache.
    dns.set_ttl(3600);

    dns.set(NAME, vec![v4(1)]);
    let first = resolver.resolve(&seeds).await;
    assert_eq!(first.addrs, vec![at(v4(1), GOSSIP)]);
    let asked = dns.queries();

    dns.set(NAME, vec![v4(1), v4(2)]);
    let second = resolver.resolve(&seeds).await;
    let want: HashSet<SocketAddr> = [at(v4(1), GOSSIP), at(v4(2), GOSSIP)].into();
    assert_eq!(addr_set(&second), want, "served from a cache");
    assert!(dns.queries() > asked, "the second resolve did not ask DNS");
}

#[tokio::test]
async fn an_unknown_name_fails_without_hiding_the_other_seeds() {
    let dns = DnsServer::start().await;
    dns.set(NAME, vec![v4(1), v4(2)]);

    let resolved = resolver(&dns)
        .resolve(&seeds(&[
            "nobody.test.svc.cluster.local",
            NAME,
            "10.9.9.9:7000",
        ]))
        .await;

    let want: HashSet<SocketAddr> = [
        at(v4(1), GOSSIP),
        at(v4(2), GOSSIP),
        at("10.9.9.9".parse().expect("ip"), 7000),
    ]
    .into();
    assert_eq!(addr_set(&resolved), want);
    assert_eq!(resolved.failures.len(), 1, "{:?}", resolved.failures);
    let (seed, error) = &resolved.failures[0];
    assert_eq!(seed, "nobody.test.svc.cluster.local:7946");
    assert!(error.contains("NXDOMAIN"), "{error}");
}

#[tokio::test]
async fn a_name_without_addresses_is_a_failure() {
    let dns = DnsServer::start().await;
    dns.set(NAME, vec![]);

    let resolved = resolver(&dns).resolve(&seeds(&[NAME])).await;

    assert!(resolved.addrs.is_empty(), "{resolved:?}");
    assert_eq!(resolved.failures.len(), 1, "{resolved:?}");
    assert!(
        resolved.failures[0].1.contains("no A or AAAA"),
        "{resolved:?}"
    );
}

#[tokio::test]
async fn literal_ip_seeds_need_no_dns() {
    let dns = DnsServer::start().await;
    let texts = ["10.0.0.7", "10.0.0.8:7000", "[fd00::9]:7001", "fd00::a"];

    let resolved = resolver(&dns).resolve(&seeds(&texts)).await;

    let want: Vec<SocketAddr> = [
        "10.0.0.7:7946",
        "10.0.0.8:7000",
        "[fd00::9]:7001",
        "[fd00::a]:7946",
    ]
    .iter()
    .map(|a| a.parse().expect("addr"))
    .collect();
    assert_eq!(resolved.addrs, want, "in seed order");
    assert!(resolved.failures.is_empty());
    assert_eq!(dns.queries(), 0, "literal seeds went to DNS");

    // Not even a DNS server is needed: this one's port has nothing on it.
    let nowhere = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let dead = SeedResolver::with_server(nowhere.local_addr().expect("addr")).expect("resolver");
    drop(nowhere);
    let again = tokio::time::timeout(Duration::from_secs(1), dead.resolve(&seeds(&texts)))
        .await
        .expect("literal seeds resolve without waiting on DNS");
    assert_eq!(again.addrs, want);
}

#[tokio::test]
async fn the_system_resolver_builds_and_passes_literal_seeds_through() {
    let system = SeedResolver::new(None).expect("the system DNS configuration (/etc/resolv.conf)");
    let resolved = system
        .resolve(&seeds(&["10.0.0.7", "[fd00::9]:7001"]))
        .await;
    let want: Vec<SocketAddr> = vec![
        "10.0.0.7:7946".parse().expect("addr"),
        "[fd00::9]:7001".parse().expect("addr"),
    ];
    assert_eq!(resolved.addrs, want);
    assert!(resolved.failures.is_empty());
}

#[tokio::test]
async fn duplicates_are_removed_across_seeds() {
    let dns = DnsServer::start().await;
    dns.set("a.test", vec![v4(1), v4(2)]);
    dns.set("b.test", vec![v4(2), v4(3)]);

    let resolved = resolver(&dns)
        .resolve(&seeds(&["a.test", "b.test", "10.1.0.3", "10.1.0.3:7000"]))
        .await;

    let want: Vec<SocketAddr> = vec![
        at(v4(1), GOSSIP),
        at(v4(2), GOSSIP),
        at(v4(3), 7000),
        at(v4(3), GOSSIP),
    ];
    let mut got = resolved.addrs.clone();
    got.sort();
    assert_eq!(
        got, want,
        "each address once; another port is another address"
    );
}

#[tokio::test]
async fn a_large_headless_service_resolves_in_full_over_tcp() {
    let dns = DnsServer::start().await;
    // 300 A records do not fit one UDP answer: the server truncates and the
    // resolver must ask again over TCP.
    let ips: Vec<IpAddr> = (0..300u16)
        .map(|i| IpAddr::V4(Ipv4Addr::new(10, 2, (i / 250) as u8, (i % 250) as u8 + 1)))
        .collect();
    dns.set(NAME, ips.clone());

    let resolved = resolver(&dns).resolve(&seeds(&[NAME])).await;

    assert!(resolved.failures.is_empty(), "{:?}", resolved.failures);
    assert_eq!(resolved.addrs.len(), 300);
    let want: HashSet<SocketAddr> = ips.iter().map(|&ip| at(ip, GOSSIP)).collect();
    assert_eq!(addr_set(&resolved), want);
}

#[tokio::test]
async fn the_dns_server_closes_its_sockets_on_drop() {
    let dns = DnsServer::start().await;
    let addr = dns.addr();
    drop(dns);
    std::net::UdpSocket::bind(addr).expect("the UDP port is free after drop");
    std::net::TcpListener::bind(addr).expect("the TCP port is free after drop");
}

// ---------------------------------------------------------------------------
// The seed loop

/// A running seed loop and the ends of its channels.
struct SeedLoop {
    me: SocketAddr,
    members: Arc<Mutex<HashSet<SocketAddr>>>,
    joined: watch::Sender<bool>,
    announced: mpsc::Receiver<SocketAddr>,
    ready: watch::Receiver<bool>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl SeedLoop {
    /// This node is `10.1.0.1:7946`; `members` are the gossip addresses in
    /// its membership at the start.
    fn start(
        dns: &DnsServer,
        seed_texts: &[&str],
        interval: Duration,
        joined: bool,
        members: &[SocketAddr],
    ) -> Self {
        let me = at(v4(1), GOSSIP);
        let members: Arc<Mutex<HashSet<SocketAddr>>> =
            Arc::new(Mutex::new(members.iter().copied().collect()));
        let (joined_tx, joined_rx) = watch::channel(joined);
        let (announce_tx, announced) = mpsc::channel(64);
        let (ready_tx, ready) = watch::channel(false);
        let shutdown = CancellationToken::new();
        let view = members.clone();
        let task = tokio::spawn(run_seed_loop(
            SeedSettings::new(seeds(seed_texts), me, interval),
            resolver(dns),
            move || view.lock().expect("members lock").clone(),
            joined_rx,
            announce_tx,
            ready_tx,
            shutdown.clone(),
        ));
        Self {
            me,
            members,
            joined: joined_tx,
            announced,
            ready,
            shutdown,
            task,
        }
    }

    /// The next announce target, waiting at most `WAIT`.
    async fn next_announce(&mut self) -> SocketAddr {
        tokio::time::timeout(WAIT, self.announced.recv())
            .await
            .expect("an announce within the deadline")
            .expect("the seed loop is running")
    }

    async fn wait_ready(&self) {
        let ready = self.ready.clone();
        poll_until("ready", WAIT, || {
            let ready = *ready.borrow();
            async move {
                if ready {
                    Ok(())
                } else {
                    Err("not ready".to_owned())
                }
            }
        })
        .await;
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the seed loop stops on shutdown")
            .expect("the seed loop did not panic");
    }
}

#[tokio::test]
async fn the_loop_announces_to_the_others_and_is_ready_once_joined() {
    let dns = DnsServer::start().await;
    dns.set(NAME, vec![v4(1), v4(2), v4(3)]);
    let mut seed_loop = SeedLoop::start(&dns, &[NAME], Duration::from_secs(30), false, &[]);

    let mut announced = HashSet::new();
    while announced.len() < 2 {
        let target = seed_loop.next_announce().await;
        assert_ne!(target, seed_loop.me, "announced to itself");
        announced.insert(target);
    }
    assert_eq!(announced, [at(v4(2), GOSSIP), at(v4(3), GOSSIP)].into());
    // Others exist and nobody has let this node in: not ready.
    assert!(!*seed_loop.ready.borrow(), "ready without joining anyone");

    seed_loop.joined.send(true).expect("loop listens");
    seed_loop.wait_ready().await;
    seed_loop.stop().await;
}

#[tokio::test]
async fn the_loop_is_ready_alone_when_the_seeds_show_only_this_node() {
    let dns = DnsServer::start().await;
    dns.set(NAME, vec![v4(1)]);
    let mut seed_loop = SeedLoop::start(&dns, &[NAME], Duration::from_secs(30), false, &[]);

    seed_loop.wait_ready().await;
    assert!(
        seed_loop.announced.try_recv().is_err(),
        "nobody else to announce to"
    );
    seed_loop.stop().await;
}

#[tokio::test]
async fn the_loop_retries_failed_lookups_quickly() {
    let dns = DnsServer::start().await;
    // The Service has no DNS record yet.
    let seed_loop = SeedLoop::start(&dns, &[NAME], Duration::from_secs(30), false, &[]);
    poll_until("a first lookup", WAIT, || {
        let queries = dns.queries();
        async move {
            if queries > 0 {
                Ok(())
            } else {
                Err("no query yet".to_owned())
            }
        }
    })
    .await;
    assert!(!*seed_loop.ready.borrow(), "ready while the seed fails");

    // Within the quick steps (1, 2, 4 s …), not after the 30 s interval.
    dns.set(NAME, vec![v4(1)]);
    seed_loop.wait_ready().await;
    seed_loop.stop().await;
}

#[tokio::test]
async fn once_joined_the_loop_re_resolves_and_announces_only_to_newcomers() {
    let dns = DnsServer::start().await;
    dns.set(NAME, vec![v4(1), v4(2)]);
    let mut seed_loop = SeedLoop::start(
        &dns,
        &[NAME],
        Duration::from_secs(1),
        true,
        &[at(v4(2), GOSSIP)],
    );
    seed_loop.wait_ready().await;

    // A pod of the other half appears in DNS: it is announced to, the
    // member already known is not.
    dns.set(NAME, vec![v4(1), v4(2), v4(3)]);
    let target = seed_loop.next_announce().await;
    assert_eq!(target, at(v4(3), GOSSIP));

    // Once it is a member, it is left alone; the loop keeps resolving.
    seed_loop
        .members
        .lock()
        .expect("members lock")
        .insert(at(v4(3), GOSSIP));
    let before = dns.queries();
    poll_until("two more rounds", WAIT, || {
        let queries = dns.queries();
        async move {
            // Each round asks for A and AAAA.
            if queries >= before + 4 {
                Ok(())
            } else {
                Err(format!("{} queries since", queries - before))
            }
        }
    })
    .await;
    while let Ok(target) = seed_loop.announced.try_recv() {
        // At most the round that was under way when v4(3) joined.
        assert_eq!(target, at(v4(3), GOSSIP), "announced to a member");
    }
    seed_loop.stop().await;
}

#[tokio::test]
async fn the_loop_announces_to_a_bounded_number_a_round() {
    let dns = DnsServer::start().await;
    let ips: Vec<IpAddr> = (1..=100).map(v4).collect();
    dns.set(NAME, ips);
    let mut seed_loop = SeedLoop::start(&dns, &[NAME], Duration::from_secs(30), false, &[]);

    // The first round runs at once; the next one is a second later.
    let mut first_round = vec![seed_loop.next_announce().await];
    while let Ok(Some(target)) =
        tokio::time::timeout(Duration::from_millis(300), seed_loop.announced.recv()).await
    {
        first_round.push(target);
    }
    assert!(
        first_round.len() <= 3 * 2,
        "at most 3 a round (allowing a second round on a slow machine): {first_round:?}"
    );
    assert!(!first_round.contains(&seed_loop.me));
    seed_loop.stop().await;
}
