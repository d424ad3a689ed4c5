//! The built-in sensitive-content detector: email addresses, phone numbers, IBANs and
//! payment card numbers, plus configured patterns — on text normalized first
//! ([`normalize`]), so fullwidth, look-alike, zero-width, other-script and escaped forms
//! count as what they look like. Checksums (Luhn, mod-97) and numbering plans
//! (libphonenumber) keep ordinary numbers from counting.

mod iban;
mod normalize;
mod numbers;
mod plans;

use std::ops::Range;

use phonenumber::country::Id as Region;
use regex::Regex;

pub use normalize::Normalized;

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
}

/// Where national phone numbers are looked up unless `[detect] phone_regions` says
/// otherwise: North America and the European countries whose numbers start with a trunk 0.
pub const DEFAULT_PHONE_REGIONS: &[&str] = &["US", "GB", "DE", "FR", "NL", "AT", "CH", "IT", "BE", "SE", "IE"];

/// Addresses, and the bracketed `[at]` / `(dot)` way people write them to fool robots.
const EMAIL: &str = r"(?x)
    [\p{L}\p{N}._%+\-']+
    (?: @ | \s?[\[({]\s?(?i:at)\s?[\])}]\s? )
    (?: [\p{L}\p{N}](?:[\p{L}\p{N}\-]*[\p{L}\p{N}])? (?: \. | \s?[\[({]\s?(?i:dot)\s?[\])}]\s? ) )+
    \p{L}{2,24}";

/// What a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    Builtin(Builtin),
    /// The configured pattern at this index.
    Pattern(usize),
}

/// One piece of personal data, where it was written (byte offsets in the text as given,
/// before normalization).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub what: What,
    pub range: Range<usize>,
}

/// Text with every finding replaced by a typed placeholder (`[email]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redacted {
    pub text: String,
    /// The placeholders' names, in order, once each: `email`, `pattern:employee_id`.
    pub kinds: Vec<String>,
}

/// Scans text for sensitive content.
#[derive(Debug, Clone)]
pub struct Detector {
    builtins: Vec<Builtin>,
    /// Compiled when `email` is among the builtins.
    email: Option<Regex>,
    patterns: Vec<(String, Regex)>,
    /// Where national phone numbers (`030 1234567`) are looked up.
    phone_regions: Vec<Region>,
}

impl Detector {
    /// `patterns` are already-compiled `(name, regex)` pairs from config.
    pub fn new(
        builtins: &[Builtin],
        patterns: Vec<(String, Regex)>,
        phone_regions: Vec<Region>,
    ) -> Result<Self, regex::Error> {
        let email = if builtins.contains(&Builtin::Email) { Some(Regex::new(EMAIL)?) } else { None };
        Ok(Detector { builtins: builtins.to_vec(), email, patterns, phone_regions })
    }

    /// Every builtin, no patterns, the default phone regions: what `[detect]` gives when
    /// it says nothing.
    pub fn standard() -> Self {
        let regions = DEFAULT_PHONE_REGIONS.iter().filter_map(|r| r.parse().ok()).collect();
        // EMAIL is a constant that compiles; without it the detector still finds the rest.
        Detector::new(&Builtin::ALL, Vec::new(), regions).unwrap_or_else(|_| Detector::disabled())
    }

    /// A detector that finds nothing (`detect.mode = "off"`).
    pub fn disabled() -> Self {
        Detector { builtins: Vec::new(), email: None, patterns: Vec::new(), phone_regions: Vec::new() }
    }

    pub fn is_enabled(&self) -> bool {
        !self.builtins.is_empty() || !self.patterns.is_empty()
    }

    /// The first finding in `text`, as a reason (`email address`), if any.
    pub fn find(&self, text: &str) -> Option<String> {
        if !self.is_enabled() {
            return None;
        }
        let normalized = Normalized::new(text);
        let found = self.scan_normalized(&normalized, true);
        found.first().map(|f| self.label(f.what))
    }

    /// The first finding among `(where, text)` pairs, as `detected X in WHERE`.
    pub fn scan<'a, W: std::fmt::Display>(&self, texts: impl IntoIterator<Item = (W, &'a str)>) -> Option<String> {
        if !self.is_enabled() {
            return None;
        }
        texts.into_iter().find_map(|(path, text)| self.find(text).map(|what| format!("detected {what} in {path}")))
    }

    /// Every finding in `text`, in order, without overlaps; ranges in `text` as given.
    pub fn findings(&self, text: &str) -> Vec<Finding> {
        if !self.is_enabled() {
            return Vec::new();
        }
        let normalized = Normalized::new(text);
        let mut found = self.scan_normalized(&normalized, false);
        for finding in &mut found {
            finding.range = normalized.original(finding.range.clone());
        }
        found
    }

    /// `text` with each finding replaced by its placeholder, or `None` when it holds none.
    pub fn redact(&self, text: &str) -> Option<Redacted> {
        let found = self.findings(text);
        if found.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(text.len());
        let mut kinds: Vec<String> = Vec::new();
        let mut at = 0;
        for finding in found {
            let kind = self.placeholder(finding.what);
            out.push_str(&text[at..finding.range.start]);
            out.push_str(&format!("[{kind}]"));
            at = finding.range.end;
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        out.push_str(&text[at..]);
        Some(Redacted { text: out, kinds })
    }

    /// `email address`, `pattern employee_id`: how a finding reads in a reason.
    pub fn label(&self, what: What) -> String {
        match what {
            What::Builtin(b) => b.label().to_string(),
            What::Pattern(i) => format!("pattern {}", self.pattern_name(i)),
        }
    }

    /// `email`, `pattern:employee_id`: the placeholder a redaction writes.
    pub fn placeholder(&self, what: What) -> String {
        match what {
            What::Builtin(b) => b.name().to_string(),
            What::Pattern(i) => format!("pattern:{}", self.pattern_name(i)),
        }
    }

    fn pattern_name(&self, i: usize) -> &str {
        self.patterns.get(i).map_or("?", |(name, _)| name.as_str())
    }

    /// Findings in normalized text (offsets in it), in order of position; with `first`,
    /// stops at the first detector that finds anything.
    fn scan_normalized(&self, normalized: &Normalized<'_>, first: bool) -> Vec<Finding> {
        let text: &str = &normalized.text;
        let implied = implied_regions(&normalized.digit_scripts);
        let regions = numbers::Regions { configured: &self.phone_regions, implied: &implied };
        let mut found: Vec<Finding> = Vec::new();
        let accounts = if self.builtins.is_empty() { Vec::new() } else { iban::iban_shaped(text) };
        let runs = if self.builtins.iter().any(|b| matches!(b, Builtin::Card | Builtin::Phone)) {
            numbers::runs(text, &accounts)
        } else {
            Vec::new()
        };
        for &builtin in &self.builtins {
            let mut ranges = Vec::new();
            match builtin {
                Builtin::Iban => {
                    ranges.extend(accounts.iter().filter(|a| iban::checksum_ok(&text[(*a).clone()])).cloned())
                }
                Builtin::Card => runs.iter().for_each(|run| numbers::cards(text, run, &mut ranges)),
                Builtin::Phone => {
                    runs.iter().for_each(|run| numbers::phones(text, run, &regions, &mut ranges));
                }
                Builtin::Email if might_hold_email(text) => {
                    ranges.extend(self.email.iter().flat_map(|email| email.find_iter(text).map(|m| m.range())));
                }
                Builtin::Email => {}
            }
            add(&mut found, What::Builtin(builtin), ranges);
            if first && !found.is_empty() {
                return found;
            }
        }
        for (i, (_, regex)) in self.patterns.iter().enumerate() {
            add(&mut found, What::Pattern(i), regex.find_iter(text).map(|m| m.range()).collect());
            if first && !found.is_empty() {
                return found;
            }
        }
        found.sort_by_key(|f| f.range.start);
        found
    }
}

/// An `@`, or an `at` in brackets (`[at]`, `(at)`, `{at}`): without one there is no
/// address, and most text has none — the regex need not run.
fn might_hold_email(text: &str) -> bool {
    let bytes = text.as_bytes();
    memchr_any(bytes, b'@')
        || bytes.windows(3).any(|w| matches!(w[2], b']' | b')' | b'}') && w[..2].eq_ignore_ascii_case(b"at"))
        || bytes
            .windows(4)
            .any(|w| matches!(w[3], b']' | b')' | b'}') && w[..2].eq_ignore_ascii_case(b"at") && w[2] == b' ')
}

fn memchr_any(bytes: &[u8], byte: u8) -> bool {
    bytes.contains(&byte)
}

/// Where a phone number written in a script's digits is likely from: Arabic-Indic digits
/// in the Arab states, Persian ones in Iran, Afghanistan and Pakistan, Devanagari in India
/// and Nepal, Bengali in Bangladesh and India, fullwidth in East Asia.
fn implied_regions(scripts: &[u32]) -> Vec<Region> {
    use Region::*;
    let mut regions = Vec::new();
    for zero in scripts {
        let of_script: &[Region] = match zero {
            0x0660 => &[SA, EG, AE, IQ, JO, KW, QA, BH, OM, SY, LB],
            0x06F0 => &[IR, AF, PK],
            0x0966 => &[IN, NP],
            0x09E6 => &[BD, IN],
            0xFF10 => &[JP, CN, KR, TW, HK],
            _ => &[],
        };
        for region in of_script {
            if !regions.contains(region) {
                regions.push(*region);
            }
        }
    }
    regions
}

/// Adds `ranges` as findings of `what`, except where an earlier finding already covers
/// part of one (a card inside an IBAN is the IBAN).
fn add(found: &mut Vec<Finding>, what: What, ranges: Vec<Range<usize>>) {
    for range in ranges {
        if found.iter().all(|f| f.range.end <= range.start || range.end <= f.range.start) {
            found.push(Finding { what, range });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detector() -> Detector {
        Detector::new(
            &Builtin::ALL,
            vec![("employee_id".into(), Regex::new(r"\bEMP-\d{6}\b").unwrap())],
            vec![Region::US, Region::DE, Region::GB],
        )
        .unwrap()
    }

    #[test]
    fn finds_each_kind() {
        let d = detector();
        for (text, what) in [
            ("write to anna.schmidt@example.de today", "email address"),
            ("write to anna [at] example [dot] de today", "email address"),
            ("call me at +49 30 12345678", "phone number"),
            ("call (415) 555-0132 tomorrow", "phone number"),
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
    fn finds_the_ordinary_variants() {
        let d = detector();
        for text in [
            "anna＠example.org",
            "аnnа@ехаmple.org",
            "an\u{200b}na@example.org",
            "iban de89 3704 0044 0532 0130 00",
            "card ４１１１ １１１１ １１１１ １１１１",
            "Reachable 9-17 +49 30 1234567",
            "room 12 4111 1111 1111 1111",
            "030 123 45 67",
            "415 555 0132",
        ] {
            assert!(d.find(text).is_some(), "{text}");
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
    fn redacts_where_it_was_written() {
        let d = detector();
        let redacted = d.redact("Mail аnnа＠example.org or call +49 30 1234567, card 4111-1111-1111-1111.").unwrap();
        assert_eq!(redacted.text, "Mail [email] or call [phone], card [card].");
        assert_eq!(redacted.kinds, ["email", "phone", "card"]);
        assert_eq!(d.redact("nothing here, 42 times"), None);
        let badge = d.redact("badge EMP-123456").unwrap();
        assert_eq!(badge.text, "badge [pattern:employee_id]");
    }

    #[test]
    fn scan_names_where_it_found_something() {
        let d = detector();
        let texts = vec![("messages[0].content".to_string(), "hello"), ("messages[1].content".to_string(), "a@b.io")];
        assert_eq!(d.scan(texts).as_deref(), Some("detected email address in messages[1].content"));
        assert_eq!(Detector::disabled().scan(vec![("m".to_string(), "a@b.io")]), None);
    }
}
