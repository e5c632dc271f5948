//! Where a field stands in the config file: [`line_of`] finds the line of
//! a dotted path (`groups.users.max_value`) so that an error found after
//! parsing (ports that collide, a `max_value` over `capacity`) names the
//! line as a parse error does. It reads the file a second time into a tree
//! of mapping keys with serde-saphyr's spans, only when there is an error.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// The mapping keys of a YAML document, each with the line it is written
/// on and the keys under it; a scalar or a sequence is a leaf with none.
#[derive(Debug, Default)]
struct Keys(BTreeMap<String, (u64, Keys)>);

impl<'de> Deserialize<'de> for Keys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeysVisitor;
        impl<'de> Visitor<'de> for KeysVisitor {
            type Value = Keys;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
                let mut keys = BTreeMap::new();
                // A key that is not a string (`1: x`) ends the walk there.
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    let line = key.referenced.line();
                    keys.insert(key.value, (line, map.next_value::<Keys>()?));
                }
                Ok(Keys(keys))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Keys, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Keys::default())
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Keys, E> {
                Ok(Keys::default())
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Keys, E> {
                Ok(Keys::default())
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Keys, E> {
                Ok(Keys::default())
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Keys, E> {
                Ok(Keys::default())
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Keys, E> {
                Ok(Keys::default())
            }
            fn visit_unit<E: de::Error>(self) -> Result<Keys, E> {
                Ok(Keys::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<Keys, E> {
                Ok(Keys::default())
            }
        }
        deserializer.deserialize_any(KeysVisitor)
    }
}

/// The line of the field `path` in the YAML `text`, if the file writes it.
/// Group and header names may hold dots, so each step takes the longest run
/// of segments that is a key.
pub fn line_of(text: &str, path: &str) -> Option<u64> {
    let mut keys = serde_saphyr::from_str::<Keys>(text).ok()?;
    let segments: Vec<&str> = path.split('.').collect();
    let mut at = 0;
    let mut line = None;
    while at < segments.len() {
        let (taken, value) = (at + 1..=segments.len()).rev().find_map(|end| {
            let key = segments[at..end].join(".");
            keys.0.remove(&key).map(|value| (end, value))
        })?;
        line = Some(value.0);
        keys = value.1;
        at = taken;
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "node:\n  ports: { service: 8000 }\ngroups:\n  v1.users:\n    capacity: 1MiB\n    max_value: 2MiB\n    loader: { http: { url: x, headers: { x.y: z } } }\n";

    #[test]
    fn finds_the_line_of_a_written_field() {
        assert_eq!(line_of(TEXT, "node.ports.service"), Some(2));
        assert_eq!(line_of(TEXT, "groups.v1.users.max_value"), Some(6));
        assert_eq!(
            line_of(TEXT, "groups.v1.users.loader.http.headers.x.y"),
            Some(7)
        );
        assert_eq!(line_of(TEXT, "groups"), Some(3));
        assert_eq!(line_of(TEXT, "groups.v1.users"), Some(4));
    }

    #[test]
    fn a_field_the_file_does_not_write_has_no_line() {
        assert_eq!(line_of(TEXT, "node.ports.peer"), None);
        assert_eq!(line_of(TEXT, "groups.v1.users.max_value.x"), None);
        assert_eq!(line_of("not: [valid", "not"), None);
    }
}
