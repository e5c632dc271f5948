//! Walking an error's chain of causes: HTTP clients put the useful part
//! ("connection refused") in a cause, not in their own message.

use std::error::Error;

/// The causes of `error`, nearest first, leaving out `error` itself.
pub(crate) fn causes<'a>(
    error: &'a (dyn Error + 'static),
) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(error.source(), |&cause: &&'a (dyn Error + 'static)| {
        cause.source()
    })
}

/// `error` and its causes, joined with `: `.
pub(crate) fn with_causes(error: &(dyn Error + 'static)) -> String {
    std::iter::once(error)
        .chain(causes(error))
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn chains_read_outermost_first() {
        let error = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ));
        assert_eq!(with_causes(&error), "outer: refused");
        let lone = std::io::Error::other("alone");
        assert_eq!(with_causes(&lone), "alone");
        assert!(causes(&error).any(|e| e.is::<std::io::Error>()));
    }
}
