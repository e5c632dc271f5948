//! Authentication between nodes, from one shared keyring.
//!
//! - `keyring`: the keys (one base64 32-byte key a line in a file), and a
//!   watch that re-reads the file every 2 s so a rotated Kubernetes Secret
//!   takes effect without a restart.
//! - `seal`: gossip packets sealed with AES-256-GCM (random nonce, the
//!   cluster label as associated data).
//! - [`signing`]: peer HTTP requests signed with HMAC-SHA256 over method,
//!   path, content type, timestamp, nonce, sender and a body digest; the
//!   verifier refuses bad signatures, clock skew over 60 s and replays.
//!
//! The first key seals and signs; every key opens and verifies. To rotate
//! without downtime: add the new key as the *second* line on every node,
//! wait until all have reloaded it, move it to the first line everywhere,
//! then drop the old key once all nodes seal and sign with the new one.
//!
//! Every refusal has a `reason()` that is also its metric label.
//!
//! Not covered: peer responses are not authenticated and nothing is
//! encrypted on the peer port (values travel in clear); a signed request
//! is not bound to one receiver, so within its 60 s a captured request could
//! be replayed once to each other node. Keep the peer port on the cluster
//! network (the chart's NetworkPolicy).

pub(crate) mod keyring;
pub(crate) mod seal;
pub mod signing;

pub(crate) use keyring::spawn_watch;
pub use keyring::{Keyring, KeyringError};
pub(crate) use seal::{SEAL_OVERHEAD, open, seal};
pub(crate) use signing::{Presented, Refusal, Verifier};
pub use signing::{RequestParts, Signer, unix_now};
