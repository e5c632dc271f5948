//! A network partition between two halves of a gossip cluster, made with
//! iptables rules on the nodes' own loopback addresses (127.0.35.x): each
//! half declares the other down, and once the partition heals, DNS
//! re-resolution brings them back together. Needs root and iptables (CI
//! has both); elsewhere the test says it was skipped.

mod common;
#[path = "common/dns.rs"]
mod dns;

use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Addrs, Config, Node, NodeSpec, Origin};
use dns::DnsServer;

static ADDRS: Addrs = Addrs::new(35);
const NAME: &str = "partition.shoal.test";
/// Failure detection plus healing on a busy machine.
const SLOW_WAIT: Duration = Duration::from_secs(60);

fn iptables(args: &[String]) -> bool {
    Command::new("iptables")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Drops all traffic from `from` to `to` while it lives.
struct Partition {
    rules: Vec<Vec<String>>,
}

impl Partition {
    fn between(left: &[IpAddr], right: &[IpAddr]) -> Self {
        let mut rules = Vec::new();
        for a in left {
            for b in right {
                for (src, dst) in [(a, b), (b, a)] {
                    rules.push(vec![
                        "INPUT".to_owned(),
                        "-s".to_owned(),
                        src.to_string(),
                        "-d".to_owned(),
                        dst.to_string(),
                        "-j".to_owned(),
                        "DROP".to_owned(),
                    ]);
                }
            }
        }
        for rule in &rules {
            let mut args = vec!["-I".to_owned()];
            args.extend(rule.iter().cloned());
            assert!(iptables(&args), "iptables refused {rule:?}");
        }
        Self { rules }
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        for rule in &self.rules {
            let mut args = vec!["-D".to_owned()];
            args.extend(rule.iter().cloned());
            iptables(&args);
        }
    }
}

fn iptables_usable() -> bool {
    let usable = iptables(&["-L".to_owned(), "INPUT".to_owned(), "-n".to_owned()]);
    if !usable {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the partition test: install iptables and run as root"
        );
        eprintln!(
            "partition test skipped: iptables is not usable here (not root, or not installed)"
        );
    }
    usable
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_halves_split_then_merge_when_it_heals() {
    if !iptables_usable() {
        return;
    }
    let origin = Origin::start().await;
    let dns = DnsServer::start().await;
    let ips: Vec<IpAddr> = (0..4).map(|_| ADDRS.next()).collect();
    dns.set(NAME, ips.clone());
    let config = Config::standard(&origin).extra("discovery: { resolve_interval: 2s }");
    let mut nodes: Vec<Node> = ips
        .iter()
        .map(|&ip| Node::spawn(NodeSpec::new(ip).config(&config).seeded(NAME, dns.addr())))
        .collect();
    for node in &mut nodes {
        node.wait_ready().await;
    }
    for node in &nodes {
        node.wait_for_members(&["alive", "suspect"], &ips, common::WAIT)
            .await;
    }

    let (left, right) = ips.split_at(2);
    let partition = Partition::between(left, right);
    for node in &nodes {
        let own_half = if left.contains(&node.ip) { left } else { right };
        node.wait_for_members(&["alive", "suspect"], own_half, SLOW_WAIT)
            .await;
    }
    // Each half still serves: a key is loaded by the half's own owner.
    for node in &nodes {
        let resp = node.get("/data/during-partition").await;
        assert_eq!(resp.status, 200, "{}", resp.text());
    }

    drop(partition);
    for node in &nodes {
        node.wait_for_members(&["alive", "suspect"], &ips, SLOW_WAIT)
            .await;
    }
}
