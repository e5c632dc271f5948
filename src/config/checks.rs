//! What start-up needs of a whole [`Config`] beyond each field's own
//! checks: TCP ports that do not collide, and groups in which the largest
//! entry a PUT may bring fits the cache. [`check`] runs at the end of
//! [`resolve`](super::resolve) (so `shoal check-config` sees every error
//! the node would stop on) and again when a node starts, for configs a
//! program built in code. Binding itself (a port another process holds)
//! can only be found out by binding, and stays a start-up error.

use std::net::IpAddr;

use super::{Config, ConfigError, GroupConfig, NodeConfig};

/// Bytes a main-cache entry costs beyond its key and value, measured
/// (`tests/memory.rs` counts the heap as glibc charges it: 131 for a
/// 12-byte key and a 21-byte value): the `Arc`ed entry (80, glibc's class
/// for it), the rounding and size word of the one block that holds key and
/// value (8 to 23, about 16 on average), and the map's slot and hash index
/// (24, and 5 to 9 at the table's load factor). The cache weighs every entry
/// with it (`cache::value`), so a cache of many small values stays within
/// its capacity too; the config checks that `max_value` leaves room for it.
/// The hot cache, in moka, weighs each entry `MOKA_EXTRA_OVERHEAD` more.
pub const ENTRY_OVERHEAD: u64 = 136;

/// Runs every whole-config check start-up relies on; the error names the
/// field and both figures.
pub fn check(config: &Config) -> Result<(), ConfigError> {
    check_ports(&config.node)?;
    for (name, group) in &config.groups {
        check_group(name, group, config.node.max_key)?;
    }
    Ok(())
}

/// The three TCP listeners need distinct ports wherever their addresses
/// overlap (the service may bind elsewhere than the peer and admin ports).
/// Port 0 asks the OS for a free port and never collides. Gossip is UDP and
/// has the UDP port to itself, so it may share a number with any of them.
fn check_ports(node: &NodeConfig) -> Result<(), ConfigError> {
    // (field, flag, bind address, port)
    let listeners = [
        (
            "node.ports.service",
            "--service-port",
            node.service_bind,
            node.ports.service,
        ),
        ("node.ports.peer", "--peer-port", node.bind, node.ports.peer),
        (
            "node.ports.admin",
            "--admin-port",
            node.bind,
            node.ports.admin,
        ),
    ];
    for (index, (first, first_flag, first_ip, first_port)) in listeners.iter().enumerate() {
        for (second, second_flag, second_ip, second_port) in &listeners[index + 1..] {
            if *first_port != 0 && first_port == second_port && overlap(*first_ip, *second_ip) {
                return Err(ConfigError::field(
                    *second,
                    format!(
                        "`{first}` ({first_flag}) and `{second}` ({second_flag}) are both {first_port}, on addresses that overlap ({first_ip} and {second_ip}): give each TCP listener its own port"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Whether two bind addresses share a port space: the same address, or a
/// wildcard that covers the other. `::` covers IPv4 too (the listeners are
/// dual-stack); `0.0.0.0` covers every IPv4 address.
fn overlap(a: IpAddr, b: IpAddr) -> bool {
    let covers = |wild: IpAddr, other: IpAddr| match wild {
        IpAddr::V6(v6) if v6.is_unspecified() => true,
        IpAddr::V4(v4) if v4.is_unspecified() => match other {
            IpAddr::V4(_) => true,
            IpAddr::V6(v6) => v6.is_unspecified() || v6.to_ipv4_mapped().is_some(),
        },
        _ => false,
    };
    a.to_canonical() == b.to_canonical() || covers(a, b) || covers(b, a)
}

/// The largest entry a PUT may bring (a key of `node.max_key`, a value of
/// `max_value`, the per-entry overhead) must fit `capacity`, or such a PUT
/// could never be stored; and it must be weighable, as moka weighs in u32.
fn check_group(name: &str, group: &GroupConfig, max_key: usize) -> Result<(), ConfigError> {
    let max_key = max_key as u64;
    let largest = group
        .max_value
        .saturating_add(max_key)
        .saturating_add(ENTRY_OVERHEAD);
    if largest > u64::from(u32::MAX) {
        return Err(ConfigError::field(
            "node.max_key",
            format!(
                "{max_key} bytes: with group `{name}`'s max_value of {} bytes one entry would weigh {largest} bytes, more than the cache can weigh ({} bytes)",
                group.max_value,
                u32::MAX
            ),
        ));
    }
    if largest > group.capacity {
        let room = group.capacity.saturating_sub(max_key + ENTRY_OVERHEAD);
        return Err(ConfigError::field(
            format!("groups.{name}.max_value"),
            format!(
                "{} bytes does not fit this group's capacity of {} bytes: one entry weighs its key (up to node.max_key, {max_key} bytes) + its value + {ENTRY_OVERHEAD} bytes of overhead, so max_value may be at most {room} bytes here; lower max_value or raise capacity",
                group.max_value, group.capacity
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an IP")
    }

    #[test]
    fn which_addresses_overlap() {
        assert!(overlap(ip("::"), ip("127.0.0.1")));
        assert!(overlap(ip("::"), ip("::1")));
        assert!(overlap(ip("0.0.0.0"), ip("10.0.0.7")));
        assert!(overlap(ip("0.0.0.0"), ip("::")));
        assert!(overlap(ip("127.0.0.1"), ip("::ffff:127.0.0.1")));
        assert!(overlap(ip("10.0.0.7"), ip("10.0.0.7")));
        assert!(!overlap(ip("0.0.0.0"), ip("::1")));
        assert!(!overlap(ip("127.0.0.1"), ip("127.0.0.2")));
        assert!(!overlap(ip("127.0.0.1"), ip("::1")));
    }
}
