//! Which client failures get the one retry a Go or urllib3 client gives an
//! idempotent GET.

use super::format::chain;

/// Failed before any answer because a connection was refused, reset or
/// closed (as on a reused keep-alive connection the server just closed):
/// what Go's net/http and urllib3 retry an idempotent request on. Timeouts
/// are not retried.
pub fn connection_level(error: &reqwest::Error) -> bool {
    if error.is_timeout() {
        return false;
    }
    if error.is_connect() {
        return true;
    }
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionRefused
                    | ConnectionReset
                    | ConnectionAborted
                    | BrokenPipe
                    | UnexpectedEof
                    | NotConnected
            ) {
                return true;
            }
        }
        source = inner.source();
    }
    let text = chain(error).to_ascii_lowercase();
    [
        "connection closed before message completed",
        "connection reset",
        "connection refused",
        "broken pipe",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}
