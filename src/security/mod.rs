//! Authentication between nodes, from one shared keyring.
//!
//! - `keyring`: the keys (one base64 32-byte key a line in a file), and a
//!   watch that re-reads the file every 2 s so a rotated Kubernetes Secret
//!   takes effect without a restart.
//! - `seal`: gossip packets sealed with AES-256-GCM (random nonce, the
//!   cluster label as associated data).
//! - [`signing`]: peer HTTP requests signed with HMAC-SHA256 over method,
//!   path, content type, timestamp, nonce, sender, receiver and a body
//!   digest; the verifier refuses bad signatures, clock skew over 60 s,
//!   requests for another member or an earlier run of this one, and
//!   replays, all before it reads the body.
//!
//! The first key seals and signs; every key opens and verifies. To rotate
//! without downtime: add the new key as the *second* line on every node,
//! wait until all have reloaded it, move it to the first line everywhere,
//! then drop the old key once all nodes seal and sign with the new one.
//!
//! Every refusal has a `reason()` that is also its metric label.
//!
//! Not covered: peer responses are not authenticated and nothing is
//! encrypted on the peer port (values travel in clear), so someone who can
//! watch the cluster network reads values, and one who can also intercept
//! can answer in a peer's place. Keep the peer port on the cluster network
//! (the chart's NetworkPolicy).

pub(crate) mod keyring;
pub(crate) mod seal;
pub mod signing;

pub(crate) use keyring::spawn_watch;
pub use keyring::{Keyring, KeyringError};
pub(crate) use seal::{SEAL_OVERHEAD, open, seal};
pub(crate) use signing::{Presented, Refusal, ThisNode, Verifier};
pub use signing::{Receiver, RequestHead, RequestParts, Signer, unix_now};
