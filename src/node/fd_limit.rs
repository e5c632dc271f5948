//! File descriptors: the soft `RLIMIT_NOFILE` raised to the hard limit at
//! start, and the connection caps fitted under it.
//!
//! Many hosts start processes at a soft limit of 1024 (or 512) with a hard
//! limit far above; at the soft limit, a few hundred idle connections
//! would leave no descriptor for the admin port, and a liveness probe
//! would restart a healthy pod. Raising soft to hard needs no privilege.

use tracing::{info, warn};

use crate::config::ConnectionCaps;

/// Descriptors kept back for everything that is not an accepted
/// connection: the listeners, gossip's socket, connections to peers and
/// origins, the keyring and log files. A quarter of the limit, at least 64.
fn reserve(limit: u64) -> u64 {
    (limit / 4).max(64)
}

/// Raises the soft open-file limit to the hard one, logging a change, and
/// returns the soft limit now in force (`None` where it cannot be read).
pub(super) fn raise() -> Option<u64> {
    let (soft, hard) = match rlimit::Resource::NOFILE.get() {
        Ok(limits) => limits,
        Err(error) => {
            warn!(%error, "cannot read the open-file limit");
            return None;
        }
    };
    if soft >= hard {
        return Some(soft);
    }
    match rlimit::Resource::NOFILE.set(hard, hard) {
        Ok(()) => {
            info!(
                from = soft,
                to = hard,
                "raised the soft open-file limit to the hard limit"
            );
            Some(hard)
        }
        Err(error) => {
            warn!(soft, hard, %error, "cannot raise the open-file limit");
            Some(soft)
        }
    }
}

/// The caps to serve with under an open-file `limit`: as configured when
/// they fit beside the reserve; else the service and peer caps shrink, in
/// proportion, so that together with the admin cap they do. The admin
/// cap is kept (up to a tenth of what is left), so probes get through.
pub(super) fn fit(caps: ConnectionCaps, limit: Option<u64>) -> ConnectionCaps {
    let Some(limit) = limit else {
        return caps;
    };
    let available = usize::try_from(limit.saturating_sub(reserve(limit))).unwrap_or(usize::MAX);
    let wanted = caps
        .service
        .saturating_add(caps.peer)
        .saturating_add(caps.admin);
    if wanted <= available {
        return caps;
    }
    let admin = caps.admin.min(available / 10).max(1);
    let rest = available.saturating_sub(admin).max(2);
    let shrink = |cap: usize| {
        let share = (cap as u128 * rest as u128) / (caps.service + caps.peer).max(1) as u128;
        usize::try_from(share).unwrap_or(usize::MAX).max(1)
    };
    let fitted = ConnectionCaps {
        service: shrink(caps.service),
        peer: shrink(caps.peer),
        admin,
    };
    warn!(
        open_file_limit = limit,
        service = fitted.service,
        peer = fitted.peer,
        admin = fitted.admin,
        "limits.max_connections do not fit under the open-file limit; serving with smaller caps"
    );
    fitted
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: ConnectionCaps = ConnectionCaps {
        service: 4096,
        peer: 4096,
        admin: 128,
    };

    #[test]
    fn caps_that_fit_are_kept() {
        assert_eq!(fit(CAPS, Some(1 << 20)), CAPS);
        assert_eq!(fit(CAPS, None), CAPS);
    }

    #[test]
    fn caps_shrink_under_a_low_limit_and_keep_room_for_the_admin_port() {
        let fitted = fit(CAPS, Some(512));
        let total = fitted.service + fitted.peer + fitted.admin;
        assert!(total as u64 <= 512 - reserve(512), "{fitted:?}");
        assert!(fitted.admin >= 1 && fitted.admin <= 38, "{fitted:?}");
        assert_eq!(fitted.service, fitted.peer, "{fitted:?}");
        assert!(fitted.service >= 100, "{fitted:?}");
    }

    #[test]
    fn even_a_tiny_limit_leaves_every_port_one_connection() {
        let fitted = fit(CAPS, Some(16));
        assert!(fitted.service >= 1 && fitted.peer >= 1 && fitted.admin >= 1);
    }
}
