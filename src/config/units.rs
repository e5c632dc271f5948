//! Sizes (`64MiB`) and durations (`400ms`) as they are written in the
//! config file, with serde support that reports a readable error. A size
//! or duration too large to hold is an error, never clamped: `bytesize`
//! and the weigher would otherwise saturate it to a different figure.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};

/// A size in bytes, written `4096`, `4KiB`, `64MiB`, `1GiB` (or SI `MB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

/// The longest duration the node can use: times are counted in `u64`
/// milliseconds where they are logged, sent and compared.
const MAX_DURATION_MS: u128 = u64::MAX as u128;

fn not_a_size(text: &str) -> String {
    format!("`{text}` is not a size: write bytes, or a number with KiB, MiB or GiB, e.g. 64MiB")
}

fn too_large_size(text: &str) -> String {
    format!(
        "`{text}` is larger than any size this node can hold ({} bytes)",
        u64::MAX
    )
}

impl FromStr for Size {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let digits_end = text
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(text.len());
        let (number, unit) = (&text[..digits_end], text[digits_end..].trim());
        if number.is_empty() {
            return Err(not_a_size(text));
        }
        // The unit's worth in bytes, as bytesize reads it (`KiB`, `MB`, `B`…).
        let multiplier = if unit.is_empty() {
            1
        } else {
            format!("1{unit}")
                .parse::<bytesize::ByteSize>()
                .map_err(|_| not_a_size(text))?
                .as_u64()
        };
        if let Ok(whole) = number.parse::<u64>() {
            return whole
                .checked_mul(multiplier)
                .map(Size)
                .ok_or_else(|| too_large_size(text));
        }
        if number.bytes().all(|b| b.is_ascii_digit()) {
            // Digits only, yet not a u64: too many of them.
            return Err(too_large_size(text));
        }
        let fraction: f64 = number.parse().map_err(|_| not_a_size(text))?;
        let bytes = fraction * multiplier as f64;
        // 2^64 is the first f64 above u64::MAX; `as` would saturate at it.
        if bytes >= 18_446_744_073_709_551_616.0 {
            return Err(too_large_size(text));
        }
        Ok(Size(bytes as u64))
    }
}

impl<'de> serde::Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as 4096, 4KiB or 64MiB")
            }
            fn visit_u64<E: de::Error>(self, bytes: u64) -> Result<Size, E> {
                Ok(Size(bytes))
            }
            fn visit_i64<E: de::Error>(self, bytes: i64) -> Result<Size, E> {
                u64::try_from(bytes)
                    .map(Size)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            // The parser hands over a number too large for a u64 as a float.
            fn visit_f64<E: de::Error>(self, bytes: f64) -> Result<Size, E> {
                Err(E::custom(if bytes >= 1.0e19 {
                    too_large_size(&bytes.to_string())
                } else {
                    format!(
                        "`{bytes}` is not a whole number of bytes: write bytes, or a number with KiB, MiB or GiB"
                    )
                }))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Size, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

/// Parses a duration such as `400ms`, `5s`, `5m`, `1h` or `0`; one longer
/// than `u64::MAX` milliseconds is an error.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let duration = humantime::parse_duration(text).map_err(|error| match error {
        humantime::DurationError::NumberOverflow => too_long_duration(text),
        _ => format!("`{text}` is not a duration: write a number with ms, s, m or h, e.g. 400ms"),
    })?;
    if duration.as_millis() > MAX_DURATION_MS {
        return Err(too_long_duration(text));
    }
    Ok(duration)
}

fn too_long_duration(text: &str) -> String {
    format!(
        "`{text}` is longer than any duration this node can use ({} ms)",
        u64::MAX
    )
}

/// Serde adapter for `Option<Duration>` fields written as `400ms`.
pub mod duration {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = Option<Duration>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 400ms, 5s or 5m")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
                if n == 0 {
                    Ok(Some(Duration::ZERO))
                } else {
                    Err(E::custom(format!("`{n}` has no unit: write {n}s or {n}ms")))
                }
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
                u64::try_from(n)
                    .map_err(|_| E::custom("a duration cannot be negative"))
                    .and_then(|n| self.visit_u64(n))
            }
            // The parser hands over a number too large for a u64 as a float.
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Self::Value, E> {
                Err(E::custom(format!(
                    "`{n}` has no unit: write a number with ms, s, m or h, e.g. 400ms"
                )))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                parse_duration(text).map(Some).map_err(E::custom)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!("4096".parse::<Size>(), Ok(Size(4096)));
        assert_eq!("4KiB".parse::<Size>(), Ok(Size(4096)));
        assert_eq!("64MiB".parse::<Size>(), Ok(Size(64 << 20)));
        assert_eq!("1 GiB".parse::<Size>(), Ok(Size(1 << 30)));
        assert_eq!("2MB".parse::<Size>(), Ok(Size(2_000_000)));
        assert_eq!("1.5KiB".parse::<Size>(), Ok(Size(1536)));
        assert_eq!("16EiB".parse::<Size>().ok(), None, "2^64 does not fit");
        assert_eq!("15EiB".parse::<Size>(), Ok(Size(15 << 60)));
        assert!("lots".parse::<Size>().is_err());
        assert!("MiB".parse::<Size>().is_err());
        assert!("4 parsecs".parse::<Size>().is_err());
        assert!("-1".parse::<Size>().is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("400ms"), Ok(Duration::from_millis(400)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5").is_err());
    }

    #[test]
    fn sizes_that_overflow_are_errors_not_clamped() {
        for text in [
            "99999999999999999999TiB",
            "18446744073709551616",
            "99999999999999999999",
            "17179869184GiB",
            "20000000000.5GiB",
        ] {
            let error = text.parse::<Size>().expect_err(text);
            assert!(error.contains("larger than any size"), "{text}: {error}");
        }
        assert_eq!(
            "18446744073709551615".parse::<Size>(),
            Ok(Size(u64::MAX)),
            "the largest u64 is a size"
        );
    }

    #[test]
    fn durations_that_overflow_are_errors_not_clamped() {
        for text in [
            "99999999999999999999999s",
            "18446744073709551616ms",
            "18446744073709552s",
            "600000000000000h",
        ] {
            let error = parse_duration(text).expect_err(text);
            assert!(
                error.contains("longer than any duration"),
                "{text}: {error}"
            );
        }
        assert_eq!(
            parse_duration("18446744073709551s"),
            Ok(Duration::from_secs(18_446_744_073_709_551)),
            "just within u64 milliseconds"
        );
    }
}
