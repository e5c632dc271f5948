//! Booleans as written in the config file: `true` or `false`, unquoted.
//!
//! serde-saphyr reads YAML 1.1's `yes`/`no`/`on`/`off` as booleans unless
//! its `strict_booleans` option is on (`file::parse` turns it on), and even
//! then a `bool` field takes the quoted strings `"true"` and `"yes"`. This
//! deserializer asks for whatever the scalar is (`deserialize_any`), so a
//! quoted string or a YAML 1.1 word arrives as a string and is refused,
//! naming what was written. Every `bool` field of the file uses it.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};

/// Serde adapter for `Option<bool>` fields: `#[serde(default, deserialize_with = "boolean::strict")]`.
pub fn strict<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    struct StrictBool;
    impl Visitor<'_> for StrictBool {
        type Value = Option<bool>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("true or false")
        }
        fn visit_bool<E: de::Error>(self, value: bool) -> Result<Self::Value, E> {
            Ok(Some(value))
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
            Err(E::custom(format!(
                "`{text}` is not a boolean: write true or false, unquoted"
            )))
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
            Err(E::custom(format!(
                "`{n}` is not a boolean: write true or false"
            )))
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
            Err(E::custom(format!(
                "`{n}` is not a boolean: write true or false"
            )))
        }
        fn visit_f64<E: de::Error>(self, n: f64) -> Result<Self::Value, E> {
            Err(E::custom(format!(
                "`{n}` is not a boolean: write true or false"
            )))
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    deserializer.deserialize_any(StrictBool)
}
