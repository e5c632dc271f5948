//! Network faults as iptables rules inside the host namespaces: a
//! partition between a set of hosts and the rest, and random packet loss.
//! The test process (the root namespace: clients, origin, DNS) is never
//! cut off, as in a cluster where apps still reach their local node.

use crate::netns::Host;

/// Every packet between `isolated` and the other hosts dropped, by rules in
/// each side's INPUT and OUTPUT chains. [`Partition::heal`] deletes them.
pub struct Partition {
    rules: Vec<(Host, Vec<String>)>,
}

impl Partition {
    pub fn cut(isolated: &[Host], rest: &[Host]) -> Self {
        let mut rules = Vec::new();
        for (side, other) in [(isolated, rest), (rest, isolated)] {
            for host in side {
                for peer in other {
                    let ip = peer.ip.to_string();
                    for (chain, flag) in [("INPUT", "-s"), ("OUTPUT", "-d")] {
                        let rule = [chain, flag, &ip, "-j", "DROP"].map(str::to_owned);
                        rules.push((host.clone(), rule.to_vec()));
                    }
                }
            }
        }
        let partition = Self { rules };
        partition.apply("-I");
        partition
    }

    pub fn heal(self) {
        self.apply("-D");
    }

    fn apply(&self, op: &str) {
        for (host, rule) in &self.rules {
            let mut args = vec![op];
            args.extend(rule.iter().map(String::as_str));
            host.iptables(&args);
        }
    }
}

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
