//! Loopback addresses, one `/24` block per test module.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU8, Ordering};

/// Hands out `127.0.X.Y` addresses for one test file: `X` is the file's own
/// block, `Y` counts up from 2.
pub struct Addrs {
    block: u8,
    next: AtomicU8,
}

impl Addrs {
    pub const fn new(block: u8) -> Self {
        assert!(block != 0, "127.0.0.x is left to developers");
        Self {
            block,
            next: AtomicU8::new(2),
        }
    }

    pub fn next(&self) -> IpAddr {
        let y = self.next.fetch_add(1, Ordering::SeqCst);
        assert!(
            (2..=254).contains(&y),
            "127.0.{}.0/24 is used up: give the test file fewer nodes",
            self.block
        );
        IpAddr::V4(Ipv4Addr::new(127, 0, self.block, y))
    }
}
