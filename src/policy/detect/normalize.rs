//! Text as the detector reads it: NFKC, default-ignorable characters (zero-width, soft
//! hyphen, BOM, bidi controls) removed, every decimal digit as ASCII, look-alike letters
//! folded to their Unicode TR39 skeleton, and `%XX` escapes decoded — with a map from
//! every position back to the original, so a finding can be redacted where it was written.

use std::borrow::Cow;
use std::ops::Range;

use unicode_normalization::UnicodeNormalization;

/// `text` normalized, and how to find an offset of it in the original.
pub struct Normalized<'a> {
    pub text: Cow<'a, str>,
    /// Where the text differs from the original: pieces in order. Empty when the text is
    /// the original (plain ASCII, no escapes), which is the common case and costs nothing.
    pieces: Vec<Piece>,
    /// The scripts whose digits were folded to ASCII, by their zero's code point
    /// (`0x0966`: Devanagari): they hint at where a phone number is from.
    pub digit_scripts: Vec<u32>,
}

/// A stretch of the normalized text and where it came from.
#[derive(Debug, Clone, Copy)]
struct Piece {
    /// Start in the normalized text.
    at: usize,
    /// The original bytes it came from.
    from: usize,
    to: usize,
    /// Copied unchanged (offsets map one to one), or replaced (every offset maps to the
    /// whole original range).
    copied: bool,
}

impl<'a> Normalized<'a> {
    pub fn new(original: &'a str) -> Self {
        if original.is_ascii() && !original.contains('%') {
            return Normalized { text: Cow::Borrowed(original), pieces: Vec::new(), digit_scripts: Vec::new() };
        }
        let mut builder = Builder { out: String::with_capacity(original.len()), pieces: Vec::new() };
        let mut digit_scripts = Vec::new();
        let mut at = 0;
        while at < original.len() {
            let rest = &original[at..];
            // Plain ASCII, the bulk of most text, is copied a run at a time.
            let plain = rest.bytes().position(|b| !b.is_ascii() || b == b'%').unwrap_or(rest.len());
            if plain > 0 {
                builder.copy(&rest[..plain], at);
                at += plain;
                continue;
            }
            if let Some((len, decoded)) = rest.starts_with('%').then(|| percent_run(rest)).flatten() {
                // Decoded escapes are normalized too: `%EF%BC%A0` is a fullwidth `@`.
                let text: String = decoded.chars().map(|c| fold(c).unwrap_or_else(|| c.to_string())).collect();
                builder.replace(&text, at..at + len);
                at += len;
                continue;
            }
            let Some(c) = rest.chars().next() else { break };
            let len = c.len_utf8();
            if let Some(zero) = digit_zero(c).filter(|z| !digit_scripts.contains(z)) {
                digit_scripts.push(zero);
            }
            match fold(c) {
                None => builder.copy(&rest[..len], at),
                Some(text) => builder.replace(&text, at..at + len),
            }
            at += len;
        }
        Normalized { text: Cow::Owned(builder.out), pieces: builder.pieces, digit_scripts }
    }

    /// The original byte range of `range` of the normalized text.
    pub fn original(&self, range: Range<usize>) -> Range<usize> {
        if self.pieces.is_empty() {
            return range;
        }
        let start = self.locate(range.start, false);
        let end = if range.end > range.start { self.locate(range.end - 1, true) } else { start };
        start..end.max(start)
    }

    /// The original offset of normalized byte `at`: its start, or (with `end`) the end of
    /// what it came from.
    fn locate(&self, at: usize, end: bool) -> usize {
        let i = self.pieces.partition_point(|p| p.at <= at).saturating_sub(1);
        let piece = self.pieces[i];
        match (piece.copied, end) {
            (true, false) => piece.from + (at - piece.at),
            (true, true) => piece.from + (at - piece.at) + 1,
            (false, false) => piece.from,
            (false, true) => piece.to,
        }
    }
}

struct Builder {
    out: String,
    pieces: Vec<Piece>,
}

impl Builder {
    fn copy(&mut self, text: &str, from: usize) {
        match self.pieces.last_mut() {
            Some(last) if last.copied && last.to == from => last.to += text.len(),
            _ => self.pieces.push(Piece { at: self.out.len(), from, to: from + text.len(), copied: true }),
        }
        self.out.push_str(text);
    }

    fn replace(&mut self, text: &str, original: Range<usize>) {
        if text.is_empty() {
            return;
        }
        self.pieces.push(Piece { at: self.out.len(), from: original.start, to: original.end, copied: false });
        self.out.push_str(text);
    }
}

/// One character as the detector reads it (possibly empty), or `None` when it reads as
/// itself. Remembered per thread: text repeats its few non-ASCII characters.
fn fold(c: char) -> Option<String> {
    if c.is_ascii() {
        return None;
    }
    thread_local! {
        static FOLDED: std::cell::RefCell<std::collections::HashMap<char, Option<String>>> =
            std::cell::RefCell::new(std::collections::HashMap::new());
    }
    FOLDED.with(|folded| {
        let mut folded = folded.borrow_mut();
        if let Some(known) = folded.get(&c) {
            return known.clone();
        }
        if folded.len() >= 4096 {
            folded.clear();
        }
        let text = fold_uncached(c);
        let result = (text != c.to_string()).then_some(text);
        folded.insert(c, result.clone());
        result
    })
}

fn fold_uncached(c: char) -> String {
    if let Some(digit) = ascii_digit(c) {
        return digit.to_string();
    }
    let mut out = String::new();
    for d in std::iter::once(c).nfkc() {
        if d.is_ascii() {
            out.push(d);
        } else if let Some(digit) = ascii_digit(d) {
            out.push(digit);
        } else {
            // TR39's skeleton drops default-ignorable characters (zero-width, bidi
            // controls, soft hyphen) and maps look-alikes to their prototype: Cyrillic
            // `а` to `a`. Keep it only when it lands in ASCII: a letter with an accent
            // stays itself.
            let mut buf = [0u8; 4];
            let skeleton: String = unicode_security::skeleton(d.encode_utf8(&mut buf)).collect();
            if skeleton == "l" && d.is_uppercase() {
                // TR39 folds I, l and 1 alike to `l`; an upper-case look-alike (Cyrillic
                // `І`, Greek `Ι`) is an I.
                out.push('I');
            } else if skeleton.is_ascii() {
                out.push_str(&skeleton);
            } else {
                out.push(d);
            }
        }
    }
    out
}

/// The ASCII digit of a decimal digit of any script (Unicode `Nd`).
fn ascii_digit(c: char) -> Option<char> {
    let zero = digit_zero(c)?;
    char::from_digit(u32::from(c) - zero, 10)
}

/// The code point of the zero of `c`'s block of ten digits, if `c` is a digit outside
/// ASCII: the blocks start at these code points.
pub fn digit_zero(c: char) -> Option<u32> {
    const ZEROS: &[u32] = &[
        0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6, 0x0D66, 0x0DE6, 0x0E50,
        0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90, 0x1B50, 0x1BB0, 0x1C40, 0x1C50,
        0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10, 0x104A0, 0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC,
        0x1D7F6,
    ];
    let code = u32::from(c);
    let zero = *ZEROS.iter().rev().find(|&&z| z <= code)?;
    (code - zero < 10).then_some(zero)
}

/// A run of `%XX` escapes at the start of `text`: its length and what it decodes to,
/// when that is text.
fn percent_run(text: &str) -> Option<(usize, String)> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::new();
    let mut i = 0;
    while i + 3 <= bytes.len() && bytes[i] == b'%' {
        let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) else { break };
        decoded.push(high << 4 | low);
        i += 3;
    }
    if decoded.is_empty() {
        return None;
    }
    Some((i, String::from_utf8_lossy(&decoded).into_owned()))
}

fn hex(byte: u8) -> Option<u8> {
    char::from(byte).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(text: &str) -> String {
        Normalized::new(text).text.into_owned()
    }

    #[test]
    fn folds_the_ordinary_variants() {
        assert_eq!(norm("anna＠example.org"), "anna@example.org");
        assert_eq!(norm("ａｎｎａ@ｅｘａｍｐｌｅ.ｏｒｇ"), "anna@example.org");
        assert_eq!(norm("аnnа@ехаmple.org"), "anna@example.org", "Cyrillic а, е, х");
        assert_eq!(norm("an\u{200b}na@exa\u{00ad}mple.o\u{202e}rg\u{feff}"), "anna@example.org");
        assert_eq!(norm("４１１１ ١١١١ ۱۱۱۱ १११११"), "4111 1111 1111 11111");
        assert_eq!(norm("anna%40example.org"), "anna@example.org");
        assert_eq!(norm("%2B49%2030%20123"), "+49 30 123");
        assert_eq!(norm("50% off, 100%"), "50% off, 100%", "not an escape");
        assert_eq!(norm("jörg"), "jörg", "an accented letter stays itself");
        assert_eq!(norm("東京 2024"), "東京 2024");
    }

    #[test]
    fn maps_offsets_back_to_the_original() {
        let original = "mail: аnnа＠ex\u{200b}ample.org!";
        let n = Normalized::new(original);
        let at = n.text.find("anna@example.org").unwrap();
        let range = n.original(at..at + "anna@example.org".len());
        assert_eq!(&original[range], "аnnа＠ex\u{200b}ample.org");
        let plain = Normalized::new("call 030 1234567");
        assert_eq!(plain.original(5..16), 5..16);
        let escaped = "u=a%40b.io&x=1";
        let n = Normalized::new(escaped);
        assert_eq!(&escaped[n.original(2..8)], "a%40b.io");
    }
}
