//! Header names outside any one face's protocol: the error response's, which
//! both faces send, and the service API's `x-shoal-source`. Every `x-shoal-*`
//! name is defined once: these here, the peer API's own in `peer::protocol`,
//! the signature's in `security::signing`.

/// The kind of an error ([`super::ErrorKind`]), on the service, admin and
/// peer APIs alike.
pub const ERROR_HEADER: &str = "x-shoal-error";
/// For origin timeouts: how long the origin had, in milliseconds, for peers
/// to pass on.
pub const TIMEOUT_HEADER: &str = "x-shoal-timeout-ms";
/// Where a value came from, on the service API.
pub const SOURCE_HEADER: &str = "x-shoal-source";
