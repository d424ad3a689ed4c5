//! Reading a request the way its upstream will: every string of the JSON that is
//! forwarded — not a list of fields — through the [`Detector`], object keys and long
//! numbers included. Only values that are the API's own words (roles, types, enums, ids)
//! are skipped, see [`NOT_TEXT`]. Payloads the detector cannot read (`data:` URIs of
//! images and audio, long base64) follow `[detect] opaque`; `data:` URIs and base64 that
//! hold text are decoded and read.

use std::fmt::{self, Write as _};

use base64::Engine as _;
use serde_json::{Map, Value};

use super::Detector;

/// What a payload the detector cannot read makes a request (`[detect] opaque`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opaque {
    /// Fail closed (the default): it may hold anything, so it stays on this machine.
    Sensitive,
    /// The operator has decided such payloads may leave (e.g. images for a cloud vision
    /// model).
    Normal,
}

impl Opaque {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "sensitive" => Some(Opaque::Sensitive),
            "normal" => Some(Opaque::Normal),
            _ => None,
        }
    }
}

/// What happens when something a model said below the next tier — an answer, a check's
/// or a judge's feedback, an error text — holds personal data (`[detect] local_output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalOutput {
    /// The request becomes sensitive from that step on (the default): nothing derived
    /// from it goes above local.
    Reclassify,
    /// The finding is replaced by a typed placeholder (`[email]`) and escalation goes
    /// on; a judge above local is not asked.
    Redact,
}

impl LocalOutput {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "reclassify" => Some(LocalOutput::Reclassify),
            "redact" => Some(LocalOutput::Redact),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LocalOutput::Reclassify => "reclassify",
            LocalOutput::Redact => "redact",
        }
    }
}

/// How a task treats what the detector cannot read and what a local model said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetectPolicy {
    pub opaque: Opaque,
    pub local_output: LocalOutput,
}

impl Default for DetectPolicy {
    fn default() -> Self {
        DetectPolicy { opaque: Opaque::Sensitive, local_output: LocalOutput::Reclassify }
    }
}

/// Keys whose string values (or arrays of strings) are the API's own vocabulary or
/// identifiers, never a person's text: roles, part and tool types, enums, ids.
pub const NOT_TEXT: &[&str] = &[
    "role",
    "type",
    "id",
    "tool_call_id",
    "object",
    "detail",
    "format",
    "encoding_format",
    "reasoning_effort",
    "service_tier",
    "verbosity",
    "voice",
    "finish_reason",
    "modalities",
    "tool_choice",
];

/// Strings at least this long made only of base64 characters are decoded before reading.
const BASE64_MIN: usize = 256;

/// One step of a JSON path.
#[derive(Debug, Clone, Copy)]
pub enum Segment<'v> {
    Key(&'v str),
    Index(usize),
}

/// Where a value sits, for messages a person reads: `messages[1].content[0].text`.
pub struct Path<'a, 'v>(pub &'a [Segment<'v>]);

impl fmt::Display for Path<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// Walks JSON values and reports the first piece of personal data (or opaque payload,
/// when those count) as a reason: `detected email address in tools[0].function.description`.
pub struct Scanner<'d> {
    pub detector: &'d Detector,
    pub opaque: Opaque,
}

impl Scanner<'_> {
    pub fn is_enabled(&self) -> bool {
        self.detector.is_enabled()
    }

    /// The first finding in `value`, which sits at `path`.
    pub fn value<'v>(&self, path: &mut Vec<Segment<'v>>, value: &'v Value) -> Option<String> {
        match value {
            Value::String(text) => self.text(path, text),
            Value::Number(number) => {
                // Only a number long enough to be a phone or card number can be one.
                let long =
                    number.as_u64().is_some_and(|n| n >= 1_000_000) || number.as_i64().is_some_and(|n| n <= -1_000_000);
                if long {
                    self.text(path, &number.to_string())
                } else {
                    None
                }
            }
            Value::Array(items) => self.array(path, items),
            Value::Object(map) => self.object(path, map),
            Value::Bool(_) | Value::Null => None,
        }
    }

    /// The first finding in an object's keys and values.
    pub fn object<'v>(&self, path: &mut Vec<Segment<'v>>, map: &'v Map<String, Value>) -> Option<String> {
        for (key, value) in map {
            path.push(Segment::Key(key));
            let found = self.detector.find(key).map(|what| format!("detected {what} in the key {}", Path(path)));
            let found = found.or_else(|| if is_api_word(key, value) { None } else { self.value(path, value) });
            path.pop();
            if found.is_some() {
                return found;
            }
        }
        None
    }

    /// The first finding in an array's items — and, for an array of content parts, in
    /// their texts joined, so a number split across two parts is still one number.
    pub fn array<'v>(&self, path: &mut Vec<Segment<'v>>, items: &'v [Value]) -> Option<String> {
        for (i, item) in items.iter().enumerate() {
            path.push(Segment::Index(i));
            let found = self.value(path, item);
            path.pop();
            if found.is_some() {
                return found;
            }
        }
        let texts: Vec<&str> = items.iter().filter_map(|part| part.get("text")?.as_str()).collect();
        if texts.len() < 2 {
            return None;
        }
        [texts.concat(), texts.join(" ")].iter().find_map(|joined| {
            let what = self.detector.find(joined)?;
            Some(format!("detected {what} across the text parts of {}", Path(path)))
        })
    }

    /// The first finding in one string: read as text, or decoded when it is a `data:`
    /// URI or base64; an unreadable payload counts when `opaque` says so.
    pub fn text(&self, path: &[Segment<'_>], text: &str) -> Option<String> {
        let found = match decode(text) {
            Payload::Text(text) => self.detector.find(text).map(|what| (what, "")),
            Payload::Decoded(text) => self.detector.find(&text).map(|what| (what, " (decoded)")),
            Payload::Opaque(kind) if self.opaque == Opaque::Sensitive => {
                let mut reason = format!("an opaque payload ({kind}) in {}", Path(path));
                let _ = write!(reason, ", which the detector cannot read (detect.opaque = \"sensitive\")");
                return Some(reason);
            }
            Payload::Opaque(_) => None,
        };
        found.map(|(what, how)| format!("detected {what} in {}{how}", Path(path)))
    }
}

fn is_api_word(key: &str, value: &Value) -> bool {
    NOT_TEXT.contains(&key)
        && match value {
            Value::String(_) => true,
            Value::Array(items) => items.iter().all(Value::is_string),
            _ => false,
        }
}

/// How a string is read.
enum Payload<'t> {
    /// As it is.
    Text(&'t str),
    /// A `data:` URI or base64 that decodes to text.
    Decoded(String),
    /// Bytes the detector cannot read: an image, audio, a PDF. Names what it is.
    Opaque(String),
}

fn decode(text: &str) -> Payload<'_> {
    let trimmed = text.trim_start();
    if let Some(rest) = trimmed.get(..5).filter(|p| p.eq_ignore_ascii_case("data:")).and_then(|_| trimmed.get(5..)) {
        return decode_data_uri(rest);
    }
    if text.len() >= BASE64_MIN
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_'))
    {
        return match base64_text(text) {
            Some(decoded) => Payload::Decoded(decoded),
            None => Payload::Opaque("base64 data".into()),
        };
    }
    Payload::Text(text)
}

/// `data:[<media type>][;base64],<data>` (RFC 2397), after the `data:`.
fn decode_data_uri(rest: &str) -> Payload<'_> {
    let Some((header, data)) = rest.split_once(',') else { return Payload::Text(rest) };
    let media = header.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let base64 = header.split(';').any(|p| p.trim().eq_ignore_ascii_case("base64"));
    let readable = media.is_empty()
        || media.starts_with("text/")
        || media.ends_with("+json")
        || media.ends_with("+xml")
        || matches!(media.as_str(), "application/json" | "application/xml" | "application/x-www-form-urlencoded");
    let kind = if media.is_empty() { "data: URI".to_string() } else { format!("data:{media}") };
    if !readable {
        return Payload::Opaque(kind);
    }
    if !base64 {
        // Percent escapes are decoded by the detector's normalization.
        return Payload::Text(data);
    }
    match base64_text(data) {
        Some(decoded) => Payload::Decoded(decoded),
        None => Payload::Opaque(kind),
    }
}

/// Base64 (standard or URL-safe, padded or not) that decodes to UTF-8 text.
fn base64_text(data: &str) -> Option<String> {
    use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
    use base64::engine::DecodePaddingMode;
    let lenient = GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let data = data.trim();
    let bytes = GeneralPurpose::new(&base64::alphabet::STANDARD, lenient)
        .decode(data)
        .or_else(|_| GeneralPurpose::new(&base64::alphabet::URL_SAFE, lenient).decode(data))
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    // Text, not bytes that happen to be valid UTF-8: no control characters but whitespace.
    text.chars().all(|c| !c.is_control() || c.is_whitespace()).then_some(text)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::policy::Builtin;

    fn scan(value: Value, opaque: Opaque) -> Option<String> {
        let detector = Detector::new(&Builtin::ALL, Vec::new(), vec![phonenumber::country::Id::DE]).unwrap();
        Scanner { detector: &detector, opaque }.value(&mut Vec::new(), &value)
    }

    #[test]
    fn reads_every_field_not_a_list_of_them() {
        let found = |v: Value| scan(v, Opaque::Sensitive).unwrap_or_default();
        assert_eq!(found(json!({"user": "anna@example.org"})), "detected email address in user");
        assert_eq!(
            found(json!({"tools": [{"function": {"description": "mail a@b.io", "name": "f"}}]})),
            "detected email address in tools[0].function.description"
        );
        assert_eq!(
            found(json!({"metadata": {"card": 4111111111111111u64}})),
            "detected payment card number in metadata.card"
        );
        assert_eq!(found(json!({"metadata": {"a@b.io": 1}})), "detected email address in the key metadata.a@b.io");
        assert_eq!(
            found(
                json!({"content": [{"type": "text", "text": "card 4111 1111"}, {"type": "text", "text": "1111 1111"}]})
            ),
            "detected payment card number across the text parts of content"
        );
        assert_eq!(
            scan(json!({"role": "user", "type": "text", "id": "call_4111111111111111"}), Opaque::Sensitive),
            None
        );
    }

    #[test]
    fn decodes_what_it_can_and_calls_the_rest_opaque() {
        let text = base64::engine::general_purpose::STANDARD.encode("write to anna@example.org");
        let uri = json!({"url": format!("data:text/plain;base64,{text}")});
        assert_eq!(scan(uri, Opaque::Normal).unwrap(), "detected email address in url (decoded)");
        let image = json!({"image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}});
        let reason = scan(image.clone(), Opaque::Sensitive).unwrap();
        assert!(reason.starts_with("an opaque payload (data:image/png) in image_url.url"), "{reason}");
        assert_eq!(scan(image, Opaque::Normal), None, "opaque = normal lets it pass");
        let audio = json!({"input_audio": {"data": "UklGR".repeat(100), "format": "wav"}});
        assert!(scan(audio, Opaque::Sensitive).unwrap().contains("base64 data"));
        let escaped = json!({"url": "https://x.example/t?to=anna%40example.org"});
        assert_eq!(scan(escaped, Opaque::Sensitive).unwrap(), "detected email address in url");
    }
}
