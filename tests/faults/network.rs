//! Network faults as iptables rules inside the host namespaces: a
//! partition between a set of hosts and the rest, and random packet loss.
//! The test process (the root namespace: clients, origin, DNS) is never
//! cut off, as in a cluster where apps still reach their local node.

use crate::netns::Host;
pub use crate::netns::Partition;

/// A share of the packets arriving at every host's `eth0` dropped at
/// random (`-m statistic --mode random`), until [`PacketLoss::end`].
pub struct PacketLoss {
    hosts: Vec<Host>,
    probability: String,
}

impl PacketLoss {
    pub fn start(hosts: &[Host], probability: f64) -> Self {
        let loss = Self {
            hosts: hosts.to_vec(),
            probability: format!("{probability}"),
        };
        loss.apply("-I");
        loss
    }

    pub fn end(self) {
        self.apply("-D");
    }

    fn apply(&self, op: &str) {
        for host in &self.hosts {
            host.iptables(&[
                op,
                "INPUT",
                "-i",
                "eth0",
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &self.probability,
                "-j",
                "DROP",
            ]);
        }
    }
}
