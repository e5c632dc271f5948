//! The cache: groups of keys, each with a main cache for the keys this node
//! owns and a hot cache for popular keys owned by others, singleflight
//! loading, TTLs and stats. It reads the ring from a snapshot and reaches
//! other nodes through the [`Peers`] trait; it knows nothing of HTTP or of
//! where membership comes from.

mod admission;
mod breaker;
mod epochs;
mod error;
mod freshness;
mod group;
mod groups;
mod handoff;
mod loader;
mod lru;
mod origin_guard;
mod peers;
mod singleflight;
mod store;
mod superseded;
mod value;
mod version;

pub use error::GroupError;
pub use freshness::StaleDirectives;
pub use group::{Cluster, CopyDrop, CopyDrops, Group, GroupStats, Requester, RingView};
pub use groups::Groups;
pub use handoff::{BATCH_BYTES as HANDOFF_BATCH_BYTES, HandedOff, HandoffReceipt};
pub(crate) use loader::DynLoader;
pub use loader::{LoadError, Loader, NotModified, Reloaded};
pub use peers::{Ask, PeerError, Peers};
pub use store::StoreStats;
pub use value::{Fetched, Fresh, Source, Validators, Value};
pub use version::{Clock, Version};
