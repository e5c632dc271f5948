//! N nodes with fixed membership.

use std::net::IpAddr;
use std::time::Duration;

use super::{Addrs, Config, Node, NodeSpec};

/// N nodes with fixed membership, all ready.
pub struct Cluster {
    pub nodes: Vec<Node>,
}

impl Cluster {
    /// Starts `n` nodes on fresh addresses from `addrs`, each with `config`
    /// and `--peer` listing all of them, and waits until all are ready.
    pub async fn start(addrs: &Addrs, n: usize, config: &Config) -> Self {
        let ips: Vec<IpAddr> = (0..n).map(|_| addrs.next()).collect();
        let mut nodes: Vec<Node> = ips
            .iter()
            .map(|ip| Node::spawn(NodeSpec::new(*ip).config(config).peers(&ips)))
            .collect();
        for node in &mut nodes {
            node.wait_ready().await;
        }
        Self { nodes }
    }

    pub fn ips(&self) -> Vec<IpAddr> {
        self.nodes.iter().map(|n| n.ip).collect()
    }

    pub fn index_of(&self, ip: IpAddr) -> usize {
        self.nodes
            .iter()
            .position(|n| n.ip == ip)
            .unwrap_or_else(|| panic!("{ip} is not a node of this cluster ({:?})", self.ips()))
    }

    /// The index of the node owning `key`, after checking that every live
    /// node's `/_ring` names the same owner.
    pub async fn owner(&self, group: &str, key: &str) -> usize {
        let mut owners = Vec::new();
        for node in &self.nodes {
            owners.push(node.ring_owner(group, key).await);
        }
        assert!(
            owners.windows(2).all(|w| w[0] == w[1]),
            "nodes disagree on the owner of {group}/{key:?}: {owners:?}"
        );
        self.index_of(owners[0])
    }

    /// Indexes of every node but `index`.
    pub fn others(&self, index: usize) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| i != index).collect()
    }

    /// SIGTERM to every node; each must exit 0 within `timeout`.
    pub async fn shutdown(&mut self, timeout: Duration) {
        for node in &self.nodes {
            node.terminate();
        }
        for node in &mut self.nodes {
            let status = node.wait_exit(timeout).await;
            assert_eq!(
                status.code(),
                Some(0),
                "{} exit status: {status}",
                node.name
            );
        }
    }
}
