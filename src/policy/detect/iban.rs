//! IBANs (ISO 13616) as people write them: any case, grouped or not, with the length the
//! registry gives each country and a valid mod-97 checksum.

use std::ops::Range;

/// IBAN length per country, from the SWIFT IBAN registry.
const LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BI", 27),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DJ", 27),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FK", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HN", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("LY", 25),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MN", 20),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NI", 28),
    ("NL", 18),
    ("NO", 15),
    ("OM", 23),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("RU", 33),
    ("SA", 24),
    ("SC", 31),
    ("SD", 18),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("SO", 23),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
    ("YE", 30),
];

fn length_of(country: &[u8]) -> Option<usize> {
    if country.len() != 2 || !country.iter().all(u8::is_ascii_alphabetic) {
        return None;
    }
    LENGTHS.iter().find(|(c, _)| c.as_bytes().eq_ignore_ascii_case(country)).map(|&(_, len)| len)
}

/// Everything shaped like an IBAN, checksum or not: two letters and two check digits not
/// glued to a word before them, then the country's length in letters and digits —
/// grouped by up to three spaces, dashes, dots, slashes or underscores, or spelled out.
/// Those whose [`checksum_ok`] are IBANs; the digits of the others are an account
/// number all the same, not a phone or card number.
pub fn iban_shaped(text: &str) -> Vec<Range<usize>> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i + 4 <= bytes.len() {
        // Most words end here: a letter, then anything but a letter and digits.
        let starts = bytes[i].is_ascii_alphabetic()
            && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric())
            && bytes[i + 1..].iter().find(|b| !is_separator(**b)).is_some_and(u8::is_ascii_alphabetic);
        if let Some(end) = starts.then(|| iban_end(bytes, i)).flatten() {
            found.push(i..end);
            i = end;
            continue;
        }
        i += 1;
    }
    found
}

/// Whether an IBAN-shaped `candidate` has a valid mod-97 checksum.
pub fn checksum_ok(candidate: &str) -> bool {
    let compact: Vec<u8> =
        candidate.bytes().filter(u8::is_ascii_alphanumeric).map(|b| b.to_ascii_uppercase()).collect();
    compact.len() >= 5 && mod97_ok(&compact)
}

/// Separator characters between the characters of an IBAN.
fn is_separator(b: u8) -> bool {
    matches!(b, b' ' | b'-' | b'.' | b'/' | b'_')
}

/// The end of an IBAN-shaped text starting at `start`, if its country and length say it
/// is one. Words are not: the part after the check
/// digits holds at most six letters, the last character ends a word, and the country
/// code and check digits are written together (`DE89 …`) unless every character is
/// spelled out on its own (`D E 8 9 …`).
fn iban_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut compact: Vec<u8> = Vec::with_capacity(34);
    let mut len = None;
    let mut i = start;
    let mut end = start;
    let mut spelled = false;
    while i < bytes.len() && len.is_none_or(|l| compact.len() < l) && compact.len() < 34 {
        let b = bytes[i];
        if b.is_ascii_alphanumeric() {
            compact.push(b.to_ascii_uppercase());
            end = i + 1;
            i += 1;
            match compact.len() {
                1 | 2 if !b.is_ascii_alphabetic() => return None,
                3 if !b.is_ascii_digit() => return None,
                4 if !b.is_ascii_digit() => return None,
                4 => len = Some(length_of(&compact[..2])?),
                _ => {}
            }
            continue;
        }
        let gap = bytes[i..].iter().take_while(|&&b| is_separator(b)).count();
        if gap == 0 || gap > 3 || !bytes.get(i + gap).is_some_and(u8::is_ascii_alphanumeric) {
            return None;
        }
        if compact.len() < 4 {
            spelled = true;
        }
        if spelled && (gap != 1 || bytes[i] != b' ' || bytes.get(i + 2).is_some_and(u8::is_ascii_alphanumeric)) {
            return None;
        }
        i += gap;
    }
    let letters = compact.iter().skip(4).filter(|b| b.is_ascii_alphabetic()).count();
    let ends_word = !bytes.get(end).is_some_and(u8::is_ascii_alphanumeric);
    let complete = len == Some(compact.len()) && letters <= 6 && ends_word;
    complete.then_some(end)
}

/// ISO 13616: the first four characters moved to the end, letters as 10–35, mod 97 == 1.
pub fn mod97_ok(compact: &[u8]) -> bool {
    let rotated = compact[4..].iter().chain(&compact[..4]);
    let mut remainder: u32 = 0;
    for &b in rotated {
        remainder = match b {
            b'0'..=b'9' => (remainder * 10 + u32::from(b - b'0')) % 97,
            b'A'..=b'Z' => (remainder * 100 + u32::from(b - b'A') + 10) % 97,
            _ => return false,
        };
    }
    remainder == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<&str> {
        iban_shaped(text).into_iter().map(|r| &text[r]).filter(|c| checksum_ok(c)).collect()
    }

    #[test]
    fn finds_ibans_in_any_case_and_grouping() {
        assert_eq!(found("IBAN DE89 3704 0044 0532 0130 00 please"), ["DE89 3704 0044 0532 0130 00"]);
        assert_eq!(found("iban: de89370400440532013000."), ["de89370400440532013000"]);
        assert_eq!(found("GB82-WEST-1234-5698-7654-32"), ["GB82-WEST-1234-5698-7654-32"]);
        assert_eq!(found("to GB82 / WEST / 1234 / 5698 / 7654 / 32."), ["GB82 / WEST / 1234 / 5698 / 7654 / 32"]);
        assert_eq!(
            found("IBAN D E 8 9 3 7 0 4 0 0 4 4 0 5 3 2 0 1 3 0 0 0"),
            ["D E 8 9 3 7 0 4 0 0 4 4 0 5 3 2 0 1 3 0 0 0"]
        );
    }

    #[test]
    fn checks_country_length_and_checksum() {
        assert!(found("DE89 3704 0044 0532 0130 01").is_empty(), "mod 97 fails");
        assert!(found("DE89 3704 0044 0532 0130").is_empty(), "too short for DE");
        assert!(found("QQ89 3704 0044 0532 0130 00").is_empty(), "no such country");
        assert!(found("XDE89370400440532013000").is_empty(), "glued to a word");
        assert!(found("de 89 jahre alt und wohnt seit langem in hamburg").is_empty(), "words are not an IBAN");
    }
}
