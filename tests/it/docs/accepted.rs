//! What the loader accepts: every key path of `RawConfig`, traced through serde.

use std::cell::RefCell;
use std::collections::BTreeSet;

use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use tierwise::config::raw::RawConfig;

/// The names the docs write for a map's keys: `upstreams.NAME.tier`, `models.ALIAS.name`.
const PLACEHOLDERS: [(&str, &str); 4] =
    [("upstreams", "NAME"), ("models", "ALIAS"), ("tasks", "NAME"), ("profiles", "NAME")];

/// Every key path `RawConfig` accepts, with the docs' placeholders for map keys, found by
/// deserializing it from a [`Tracer`] that records where each value is read (the
/// serde-reflection trick: a derived `Deserialize` names its fields to `deserialize_struct`).
pub fn accepted_keys() -> BTreeSet<String> {
    let paths = RefCell::new(BTreeSet::new());
    RawConfig::deserialize(Tracer { path: String::new(), paths: &paths }).expect("RawConfig can be traced");
    paths.into_inner()
}

/// A deserializer that offers every field of every struct once, one entry for each map
/// (key `*`) and one element for each sequence (`[]`), and records each leaf's path.
struct Tracer<'a> {
    path: String,
    paths: &'a RefCell<BTreeSet<String>>,
}

impl<'a> Tracer<'a> {
    fn child(&self, segment: &str) -> Tracer<'a> {
        let path = match (self.path.is_empty(), segment) {
            (_, "[]") => format!("{}[]", self.path),
            (true, _) => segment.to_string(),
            (false, _) => format!("{}.{segment}", self.path),
        };
        Tracer { path, paths: self.paths }
    }

    /// Records a leaf. A map or list of plain values is one key (`upstreams.NAME.headers`,
    /// `detect.builtin`); a map of tables gets its placeholder (`upstreams.NAME.tier`).
    fn leaf(&self) {
        let mut path = self.path.as_str();
        while let Some(shorter) = path.strip_suffix(".*").or_else(|| path.strip_suffix("[]")) {
            path = shorter;
        }
        let segments: Vec<&str> = path.split('.').collect();
        let named: Vec<&str> = segments
            .iter()
            .enumerate()
            .map(|(i, segment)| match *segment {
                "*" => PLACEHOLDERS
                    .iter()
                    .find(|(map, _)| i > 0 && segments[i - 1] == *map)
                    .map(|(_, name)| *name)
                    .unwrap_or_else(|| {
                        panic!("`{path}`: a new map of tables; add its placeholder to PLACEHOLDERS in tests/it/docs/accepted.rs")
                    }),
                other => other,
            })
            .collect();
        self.paths.borrow_mut().insert(named.join("."));
    }
}

type Error = de::value::Error;

macro_rules! leaf {
    ($($method:ident => $visit:ident($value:expr)),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.leaf();
            visitor.$visit($value)
        }
    )*};
}

impl<'de> Deserializer<'de> for Tracer<'_> {
    type Error = Error;

    leaf! {
        deserialize_bool => visit_bool(false),
        deserialize_i8 => visit_u64(0), deserialize_i16 => visit_u64(0), deserialize_i32 => visit_u64(0),
        deserialize_i64 => visit_u64(0), deserialize_u8 => visit_u64(0), deserialize_u16 => visit_u64(0),
        deserialize_u32 => visit_u64(0), deserialize_u64 => visit_u64(0),
        deserialize_f32 => visit_f64(0.0), deserialize_f64 => visit_f64(0.0),
        deserialize_char => visit_char('x'), deserialize_str => visit_str("x"), deserialize_string => visit_str("x"),
        deserialize_bytes => visit_bytes(b"x"), deserialize_byte_buf => visit_bytes(b"x"),
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.leaf();
        visitor.visit_unit()
    }
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
        Err(de::Error::custom(format!(
            "`{}` is self-describing (deserialize_any); teach the tracer its shape",
            self.path
        )))
    }
    fn deserialize_identifier<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
        Err(de::Error::custom(format!("`{}`: an identifier outside a map key", self.path)))
    }
    fn deserialize_enum<V: Visitor<'de>>(self, _: &str, _: &[&str], _: V) -> Result<V::Value, Error> {
        Err(de::Error::custom(format!("`{}` is an enum; teach the tracer its variants", self.path)))
    }
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &str, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &str, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_seq(One(Some(self.child("[]"))))
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(self, _: &str, _: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_map(Entries { entries: vec![("*", self.child("*"))].into_iter(), value: None })
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let entries: Vec<_> = fields.iter().map(|field| (*field, self.child(field))).collect();
        visitor.visit_map(Entries { entries: entries.into_iter(), value: None })
    }
}

/// A map whose keys are given and whose values are traced.
struct Entries<'a> {
    entries: std::vec::IntoIter<(&'static str, Tracer<'a>)>,
    value: Option<Tracer<'a>>,
}

impl<'de> MapAccess<'de> for Entries<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        let Some((key, value)) = self.entries.next() else { return Ok(None) };
        self.value = Some(value);
        seed.deserialize(IntoDeserializer::<Error>::into_deserializer(key)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        seed.deserialize(self.value.take().expect("a key comes before its value"))
    }
}

/// A sequence of one traced element.
struct One<'a>(Option<Tracer<'a>>);

impl<'de> SeqAccess<'de> for One<'_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        self.0.take().map(|tracer| seed.deserialize(tracer)).transpose()
    }
}
