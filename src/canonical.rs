//! Canonical JSON digests: the same value hashes the same whatever its field order,
//! whitespace or number spelling (`0`, `0.0` and `0e0` are one number). Cache keys and
//! config versions are such digests.

use ring::digest::{Context, SHA256};
use serde_json::Value;

/// A SHA-256 digest fed in parts; each part is framed, so `("ab", "c")` and `("a", "bc")`
/// differ.
pub struct Digest(Context);

impl Default for Digest {
    fn default() -> Self {
        Digest(Context::new(&SHA256))
    }
}

impl Digest {
    /// A text part.
    pub fn text(&mut self, text: &str) -> &mut Self {
        self.0.update(&(text.len() as u64).to_le_bytes());
        self.0.update(text.as_bytes());
        self
    }

    /// A JSON part, canonically: object keys sorted, integral numbers as integers.
    pub fn json(&mut self, value: &Value) -> &mut Self {
        let mut out = Vec::with_capacity(256);
        write_canonical(value, &mut out);
        self.0.update(&(out.len() as u64).to_le_bytes());
        self.0.update(&out);
        self
    }

    pub fn finish(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.0.finish().as_ref());
        out
    }
}

/// `value` as compact JSON with sorted object keys and canonical numbers.
pub fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null | Value::Bool(_) | Value::String(_) => {
            // Writing a plain value to a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, value);
        }
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => out.extend_from_slice(i.to_string().as_bytes()),
            (_, Some(u), _) => out.extend_from_slice(u.to_string().as_bytes()),
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                out.extend_from_slice((f as i64).to_string().as_bytes());
            }
            _ => out.extend_from_slice(n.to_string().as_bytes()),
        },
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let _ = serde_json::to_writer(&mut *out, key);
                out.push(b':');
                write_canonical(&map[key], out);
            }
            out.push(b'}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canonical(text: &str) -> String {
        let mut out = Vec::new();
        write_canonical(&serde_json::from_str(text).unwrap(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn order_whitespace_and_number_spelling_do_not_matter() {
        let a = canonical(r#"{"b": [1, {"y": 0.0, "x": "é"}], "a": null}"#);
        let b = canonical("{\"a\":null,\"b\":[1.0,{\"x\":\"\\u00e9\",\"y\":0}]}");
        assert_eq!(a, b);
        assert_eq!(a, r#"{"a":null,"b":[1,{"x":"é","y":0}]}"#);
        assert_eq!(canonical("[0.5, -2e0, 1e300]"), "[0.5,-2,1e+300]");
    }

    #[test]
    fn parts_are_framed() {
        let digest = |parts: &[&str]| {
            let mut d = Digest::default();
            for p in parts {
                d.text(p);
            }
            d.finish()
        };
        assert_ne!(digest(&["ab", "c"]), digest(&["a", "bc"]));
        let mut one = Digest::default();
        one.json(&json!({"a": 1}));
        let mut other = Digest::default();
        other.json(&json!({"a": 1.0}));
        assert_eq!(one.finish(), other.finish());
    }
}
