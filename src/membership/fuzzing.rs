//! What the fuzz targets (`crate::fuzzing`) reach of gossip: a fresh
//! receiver that takes one datagram through the node's own receive path,
//! and real packets from a real exchange for seeds. Here because only this
//! module may name foca.

use foca::{AccumulatingRuntime, Foca, PostcardCodec};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::mpsc;

use super::core::{FocaInstance, max_packet, take_datagram};
use super::identity::NodeId;
use super::invalidation::{Broadcasts, Invalidation};
use super::swim::foca_config;
use crate::config::{SwimConfig, SwimProfile};
use crate::security::Keyring;

pub(crate) use super::core::GOSSIP_LABEL;

/// What one datagram did to a fresh receiver.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Received {
    /// Members the receiver knows afterwards.
    pub(crate) members: usize,
    /// Invalidations it passed to the node.
    pub(crate) invalidations: Vec<Invalidation>,
}

fn node(
    name: &str,
    last_octet: u8,
    sealed: bool,
) -> (FocaInstance, mpsc::UnboundedReceiver<Invalidation>) {
    let identity = NodeId::new(name, ([127, 0, 0, last_octet], 7946).into(), 8000, 1_000);
    let swim = SwimConfig::profile(SwimProfile::Lan);
    let (tx, rx) = mpsc::unbounded_channel();
    let foca = Foca::with_custom_broadcast(
        identity,
        foca_config(&swim, 1, max_packet(sealed)),
        StdRng::seed_from_u64(u64::from(last_octet)),
        PostcardCodec,
        Broadcasts::new(tx, mpsc::unbounded_channel().0),
    );
    (foca, rx)
}

/// Gives `datagram` to a fresh receiver (sealed gossip when `keyring` is
/// given), as the node's socket loop would: the drop reason, or what it
/// learnt.
pub(crate) fn receive(
    keyring: Option<&Keyring>,
    datagram: &[u8],
) -> Result<Received, &'static str> {
    let (mut foca, mut invalidations) = node("receiver", 1, keyring.is_some());
    let mut runtime = AccumulatingRuntime::new();
    take_datagram(&mut foca, &mut runtime, keyring, datagram).map_err(|d| d.reason())?;
    let mut received = Vec::new();
    while let Ok(invalidation) = invalidations.try_recv() {
        received.push(invalidation);
    }
    Ok(Received {
        members: foca.num_members(),
        invalidations: received,
    })
}

/// Unsealed packets from a real exchange addressed to the receiver of
/// [`receive`]: an announce, the feed answering it, and gossip carrying an
/// invalidation broadcast.
pub(crate) fn sample_datagrams() -> Vec<Vec<u8>> {
    let (mut a, _a_rx) = node("sender", 2, false);
    let (mut b, _b_rx) = node("receiver", 1, false);
    let mut a_out = AccumulatingRuntime::new();
    let mut b_out = AccumulatingRuntime::new();
    let mut packets = Vec::new();
    let b_id = NodeId::new("receiver", ([127, 0, 0, 1], 7946).into(), 8000, 1_000);
    if a.announce(b_id, &mut a_out).is_err() {
        return packets;
    }
    // The announce goes to the receiver, whose feed goes back.
    while let Some((_, data)) = a_out.to_send() {
        let _ = b.handle_data(&data, &mut b_out);
        packets.push(data.to_vec());
    }
    while let Some((_, data)) = b_out.to_send() {
        let _ = a.handle_data(&data, &mut a_out);
    }
    let invalidation = Invalidation {
        id: 7,
        group: "heavy".into(),
        digest: 0x0123_4567_89ab_cdef,
        owner: Some(([127, 0, 0, 2], 8000).into()),
        superseded: 42 << 16,
    };
    if a.add_broadcast(&invalidation.encode()).is_ok() && a.gossip(&mut a_out).is_ok() {
        while let Some((_, data)) = a_out.to_send() {
            packets.push(data.to_vec());
        }
    }
    packets
}
