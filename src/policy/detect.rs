//! The built-in sensitive-content detector: email addresses, phone numbers, IBANs (mod-97
//! checksum) and payment card numbers (Luhn), plus configured patterns. Candidates are
//! found by regular expressions; checksums keep ordinary numbers from counting.

use regex::Regex;

/// A built-in detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    Email,
    Phone,
    Iban,
    Card,
}

impl Builtin {
    /// Checksummed detectors first: a digit run that is a valid IBAN or card number is
    /// reported as that, not as a phone number.
    pub const ALL: [Builtin; 4] = [Builtin::Iban, Builtin::Card, Builtin::Email, Builtin::Phone];

    pub fn name(self) -> &'static str {
        match self {
            Builtin::Email => "email",
            Builtin::Phone => "phone",
            Builtin::Iban => "iban",
            Builtin::Card => "card",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Builtin::Email => "email address",
            Builtin::Phone => "phone number",
            Builtin::Iban => "IBAN",
            Builtin::Card => "payment card number",
        }
    }

    pub fn parse(name: &str) -> Option<Builtin> {
        Builtin::ALL.into_iter().find(|b| b.name() == name)
    }

    fn pattern(self) -> &'static str {
        match self {
            Builtin::Email => r"(?i)\b[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,24}\b",
            // International (+49 30 1234567, 0049...), North American ((555) 123-4567,
            // 555-123-4567) and national with a trunk 0 and a separator (030 1234567).
            Builtin::Phone => {
                r"(?:(?:\+|\b00)[1-9]\d{0,2}[ .\-/]?(?:\(0\)[ ]?)?(?:\(?\d{1,5}\)?[ .\-/]?){1,5}\d{2,5}\b)|(?:\(\d{3}\)[ ]?\d{3}[ .\-]\d{4}\b)|(?:\b\d{3}[.\-]\d{3}[.\-]\d{4}\b)|(?:\b0[1-9]\d{1,4}[ /\-]\d{4,9}\b)"
            }
            Builtin::Iban => r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b",
            // Unbroken, in groups of four (16 or 19 digits, the last group shorter), or
            // Amex's 4-6-5: the ways card numbers are written. Not ISBN's 978-0-20-...
            Builtin::Card => r"\b(?:\d{13,19}|\d{4}(?:[ \-]\d{4}){2,3}(?:[ \-]\d{1,3})?|\d{4}[ \-]\d{6}[ \-]\d{4,5})\b",
        }
    }

    /// Whether a regex match at `start` in `text` really is one.
    fn confirms(self, text: &str, start: usize, candidate: &str) -> bool {
        match self {
            Builtin::Email => true,
            // A digit group just before means the match is the tail of a longer code
            // (an IBAN, an account or order number), not a phone number.
            Builtin::Phone => !glued(text, start) && (8..=15).contains(&digits(candidate).len()),
            Builtin::Iban => iban_checksum_ok(candidate),
            Builtin::Card => {
                let d = digits(candidate);
                let ean = d.len() == 13 && (d.starts_with(&[9, 7, 8]) || d.starts_with(&[9, 7, 9]));
                !glued(text, start)
                    && !ean
                    && (13..=19).contains(&d.len())
                    && luhn_ok(&d)
                    && !d.iter().all(|&x| x == d[0])
            }
        }
    }
}

/// Scans message text for sensitive content.
#[derive(Debug, Clone)]
pub struct Detector {
    builtins: Vec<(Builtin, Regex)>,
    patterns: Vec<(String, Regex)>,
}

impl Detector {
    /// `patterns` are already-compiled `(name, regex)` pairs from config.
    pub fn new(builtins: &[Builtin], patterns: Vec<(String, Regex)>) -> Result<Self, regex::Error> {
        let builtins =
            builtins.iter().map(|&b| Ok((b, Regex::new(b.pattern())?))).collect::<Result<_, regex::Error>>()?;
        Ok(Detector { builtins, patterns })
    }

    pub fn disabled() -> Self {
        Detector { builtins: Vec::new(), patterns: Vec::new() }
    }

    /// The first finding in `text`, as a reason (`email address`), if any.
    pub fn find(&self, text: &str) -> Option<String> {
        for (builtin, regex) in &self.builtins {
            if regex.find_iter(text).any(|m| builtin.confirms(text, m.start(), m.as_str())) {
                return Some(builtin.label().to_string());
            }
        }
        self.patterns.iter().find(|(_, regex)| regex.is_match(text)).map(|(name, _)| format!("pattern {name}"))
    }

    /// The first finding among `(where, text)` pairs, as `detected X in WHERE`.
    pub fn scan<'a, W: std::fmt::Display>(&self, texts: impl IntoIterator<Item = (W, &'a str)>) -> Option<String> {
        if self.builtins.is_empty() && self.patterns.is_empty() {
            return None;
        }
        texts.into_iter().find_map(|(path, text)| self.find(text).map(|what| format!("detected {what} in {path}")))
    }
}

/// Whether the match at `start` follows another digit group (`DE89 3704 …`).
fn glued(text: &str, start: usize) -> bool {
    text[..start].trim_end_matches(' ').ends_with(|c: char| c.is_ascii_digit())
}

fn digits(text: &str) -> Vec<u8> {
    text.bytes().filter(u8::is_ascii_digit).map(|b| b - b'0').collect()
}

fn luhn_ok(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

/// ISO 13616: move the first four characters to the end, letters to numbers, mod 97 == 1.
fn iban_checksum_ok(candidate: &str) -> bool {
    let compact: Vec<u8> = candidate.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let rotated = compact[4..].iter().chain(&compact[..4]);
    let mut remainder: u32 = 0;
    for &b in rotated {
        let value = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        remainder = if value >= 10 { (remainder * 100 + value) % 97 } else { (remainder * 10 + value) % 97 };
    }
    remainder == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detector() -> Detector {
        Detector::new(&Builtin::ALL, vec![("employee_id".into(), Regex::new(r"\bEMP-\d{6}\b").unwrap())]).unwrap()
    }

    #[test]
    fn finds_each_kind() {
        let d = detector();
        for (text, what) in [
            ("write to anna.schmidt@example.de today", "email address"),
            ("call me at +49 30 12345678", "phone number"),
            ("call (555) 123-4567 tomorrow", "phone number"),
            ("my number is 030 1234567", "phone number"),
            ("IBAN DE89 3704 0044 0532 0130 00 please", "IBAN"),
            ("IBAN GB82WEST12345698765432", "IBAN"),
            ("card 4111 1111 1111 1111 exp 12/29", "payment card number"),
            ("card 5500-0000-0000-0004", "payment card number"),
            ("badge EMP-123456", "pattern employee_id"),
        ] {
            assert_eq!(d.find(text).as_deref(), Some(what), "{text}");
        }
    }

    #[test]
    fn checksums_reject_lookalikes() {
        let d = detector();
        for text in [
            "IBAN DE89 3704 0044 0532 0130 01",   // one digit off: mod 97 fails
            "order 4111 1111 1111 1112",          // Luhn fails
            "the years 1999 2000 2001 2002 2003", // not a phone, not a card
            "version 1.2.3.4 of the protocol",
            "call at 10:30 on 2024-05-06",
            "0000 0000 0000 0000",
        ] {
            assert_eq!(d.find(text), None, "{text}");
        }
    }

    #[test]
    fn scan_names_where_it_found_something() {
        let d = detector();
        let texts = vec![("messages[0].content".to_string(), "hello"), ("messages[1].content".to_string(), "a@b.io")];
        assert_eq!(d.scan(texts).as_deref(), Some("detected email address in messages[1].content"));
        assert_eq!(Detector::disabled().scan(vec![("m".to_string(), "a@b.io")]), None);
    }
}
