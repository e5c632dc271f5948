//! Sizes (`64MiB`) and durations (`400ms`) as they are written in the
//! config file, with serde support that reports a readable error.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};

/// A size in bytes, written `4096`, `4KiB`, `64MiB`, `1GiB` (or SI `MB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl FromStr for Size {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if let Ok(bytes) = text.parse::<u64>() {
            return Ok(Size(bytes));
        }
        text.parse::<bytesize::ByteSize>()
            .map(|size| Size(size.as_u64()))
            .map_err(|_| format!("`{text}` is not a size: write bytes, or a number with KiB, MiB or GiB, e.g. 64MiB"))
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
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Size, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

/// Parses a duration such as `400ms`, `5s`, `5m`, `1h` or `0`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(text).map_err(|_| {
        format!("`{text}` is not a duration: write a number with ms, s, m or h, e.g. 400ms")
    })
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
        assert!("lots".parse::<Size>().is_err());
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
}
