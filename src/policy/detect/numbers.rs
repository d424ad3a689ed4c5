//! Numbers in text as people write them: runs of digit groups joined by separators
//! (spaces, dashes, dots, slashes, brackets, up to three characters), and the windows of
//! a run that are a payment card (a card layout, a network's prefix and length, Luhn) or
//! a phone number (a phone layout, then libphonenumber's numbering plans). Checksums,
//! numbering plans and layouts — not "is there a number just before" — keep ordinary
//! numbers from counting: "room 12 4111 1111 1111 1111" is a card all the same.

use std::ops::Range;

mod cards;
mod phones;

pub use cards::cards;
pub use phones::{phones, Regions};

/// Longest separator between two groups of one number, in characters.
const MAX_SEPARATOR: usize = 3;

/// One run of digit groups.
#[derive(Debug)]
pub struct Run {
    /// Byte ranges of the groups (ASCII digits only).
    groups: Vec<Range<usize>>,
    /// A `+` stood right before the first group (`+49 …`, `+ 1 …`): its offset.
    plus: Option<usize>,
    /// Where the run starts in the text (its `+`, or its first group).
    start: usize,
    /// Spelled out digit by digit (`4 1 1 1 …`): written that way on purpose.
    spelled: bool,
    /// The digits in each group.
    lens: Vec<usize>,
    /// Written as one structured number — equal blocks (`8728 0594 7708`, a serial or
    /// tracking number) or thousands (`1 073 741 824`): it holds no phone number of its
    /// own, only the whole run may be one.
    structured: bool,
}

/// A letter of a script that puts spaces between words: a digit right next to one is
/// part of that word (`v2`, `a3f9`). Next to a CJK or Arabic letter it is not.
fn glues(c: char) -> bool {
    c.is_alphabetic() && u32::from(c) < 0x0530
}

fn is_separator(c: char) -> bool {
    matches!(c, ' ' | '\t' | '-' | '.' | '/' | '(' | ')' | '_' | '\u{2010}'..='\u{2015}' | '\u{2212}')
}

/// The runs of `text`. A group glued to a letter (`v2`, `0x1F`, `a3f9`) belongs to a
/// word, not to a number, and ends the run it would have joined; so does a group inside
/// one of the `accounts` (IBAN-shaped spans, whose digits are an account number).
pub fn runs(text: &str, accounts: &[Range<usize>]) -> Vec<Run> {
    let bytes = text.as_bytes();
    let mut runs = Runs { text, done: Vec::new(), groups: Vec::new(), plus: None };
    // Separator characters since the last group.
    let mut gap = 0usize;
    let mut plus: Option<usize> = None;
    let mut at = 0;
    while at < bytes.len() {
        if runs.groups.is_empty() && plus.is_none() {
            // Between numbers, skip straight to the next digit or plus sign.
            match bytes[at..].iter().position(|b| b.is_ascii_digit() || *b == b'+') {
                Some(skip) => at += skip,
                None => break,
            }
        }
        if bytes[at].is_ascii_digit() {
            let end = at + bytes[at..].iter().position(|b| !b.is_ascii_digit()).unwrap_or(bytes.len() - at);
            let glued = text[..at].chars().next_back().is_some_and(glues)
                || text[end..].chars().next().is_some_and(glues)
                || accounts.iter().any(|a| a.start <= at && end <= a.end);
            if glued {
                runs.close();
                plus = None;
            } else {
                if runs.groups.is_empty() || !(1..=MAX_SEPARATOR).contains(&gap) {
                    runs.close();
                    runs.plus = plus.take();
                }
                runs.groups.push(at..end);
            }
            gap = 0;
            at = end;
            continue;
        }
        let Some(c) = text[at..].chars().next() else { break };
        let next = bytes.get(at + c.len_utf8()).copied();
        let open = !runs.groups.is_empty();
        let after_number = at > 0 && (bytes[at - 1].is_ascii_digit() || bytes[at - 1] == b')');
        if is_separator(c) && open {
            gap += 1;
            if gap > MAX_SEPARATOR {
                runs.close();
            }
        } else if c == '+' && open && after_number && next.is_some_and(|b| b.is_ascii_digit() || b == b'(') {
            // `+49+30+1234567`, `+33+(0)+9`: a form-encoded space inside a number.
            gap += 1;
        } else if c == '+' {
            runs.close();
            plus = Some(at);
            gap = 0;
        } else if plus.is_some() && (c == ' ' || c == '(') {
            // `+ 49`, `+(49)`: the plus still leads the next group.
        } else {
            runs.close();
            plus = None;
        }
        at += c.len_utf8();
    }
    runs.close();
    runs.done
}

/// The runs found so far, and the groups of the one being read.
struct Runs<'t> {
    text: &'t str,
    done: Vec<Run>,
    groups: Vec<Range<usize>>,
    plus: Option<usize>,
}

impl Runs<'_> {
    /// Ends the run being read. One with fewer than seven digits is neither a card nor a
    /// phone number, and most numbers in text are that short: it is not kept.
    fn close(&mut self) {
        let digits: usize = self.groups.iter().map(|g| g.len()).sum();
        if digits >= 7 {
            let run = Run::new(std::mem::take(&mut self.groups), self.plus.take());
            self.done.push(run.collapse_spaced_digits().measured(self.text));
        }
        self.groups.clear();
        self.plus = None;
    }
}

impl Run {
    fn new(groups: Vec<Range<usize>>, plus: Option<usize>) -> Run {
        let start = plus.unwrap_or(groups[0].start);
        Run { groups, plus, start, spelled: false, lens: Vec::new(), structured: false }
    }

    /// `4 1 1 1 1 1 1 1 …`: seven or more one-digit groups are one number spelled out.
    fn collapse_spaced_digits(self) -> Run {
        if self.groups.len() >= 7 && self.groups.iter().all(|g| g.len() == 1) {
            let span = self.groups[0].start..self.groups[self.groups.len() - 1].end;
            return Run { groups: vec![span], spelled: true, ..self };
        }
        self
    }

    fn measured(mut self, text: &str) -> Run {
        self.lens = self.groups.iter().map(|g| text[g.clone()].bytes().filter(u8::is_ascii_digit).count()).collect();
        let lens = &self.lens;
        let blocks = lens[0] >= 3 && lens.iter().all(|&l| l == lens[0]);
        let thousands = lens[0] <= 3 && lens[1..].iter().all(|&l| l == 3);
        self.structured = self.len() >= 3 && (blocks || thousands) && self.uniform(text, &(0..self.len()), 0);
        self
    }

    fn len(&self) -> usize {
        self.groups.len()
    }

    /// The digits of groups `window` (a collapsed group keeps only its digits).
    fn digits(&self, text: &str, window: Range<usize>) -> String {
        self.groups[window].iter().flat_map(|g| text[g.clone()].chars().filter(char::is_ascii_digit)).collect()
    }

    fn digit_count(&self, _text: &str, group: usize) -> usize {
        self.lens[group]
    }

    fn span(&self, window: Range<usize>) -> Range<usize> {
        self.groups[window.start].start..self.groups[window.end - 1].end
    }

    /// The separator between group `i` and group `i + 1`.
    fn separator<'t>(&self, text: &'t str, i: usize) -> &'t str {
        &text[self.groups[i].end..self.groups[i + 1].start]
    }

    /// Whether the separators inside `window` from its `from`-th gap on are all the same.
    fn uniform(&self, text: &str, window: &Range<usize>, from: usize) -> bool {
        let mut gaps = (window.start + from..window.end.saturating_sub(1)).map(|i| self.separator(text, i));
        match gaps.next() {
            None => true,
            Some(first) => gaps.all(|g| g == first),
        }
    }

    /// A window strictly inside a longer stretch of groups written alike (a tracking or
    /// serial number, a table row) is part of that, not a number of its own.
    fn interior(&self, text: &str, window: &Range<usize>) -> bool {
        if window.start == 0 || window.end >= self.len() {
            return false;
        }
        let before = self.separator(text, window.start - 1);
        let after = self.separator(text, window.end - 1);
        let inside = if window.len() > 1 { Some(self.separator(text, window.end - 2)) } else { None };
        before == after && inside.is_none_or(|s| s == before)
    }

    /// Whether `window` holds a date: three groups with one date separator and a
    /// four-digit year (`06.05.2024`, `2024-05-06`, `5/6/2024`), or is one with a
    /// two-digit year (`06.05.24`) on its own.
    fn holds_date(&self, text: &str, window: &Range<usize>) -> bool {
        if window.len() == 3 && self.len() == 3 && self.date_at(text, 0, true) {
            return true;
        }
        (window.start..window.end.saturating_sub(2)).any(|i| self.date_at(text, i, false))
    }

    fn date_at(&self, text: &str, i: usize, short_year: bool) -> bool {
        let (a, b) = (self.separator(text, i), self.separator(text, i + 1));
        if a != b || !matches!(a, "." | "/" | "-") {
            return false;
        }
        let part = |g: usize| (self.groups[g].len(), text[self.groups[g].clone()].parse::<u32>().unwrap_or(0));
        let year = |(len, value): (usize, u32)| (len == 4 && (1000..3000).contains(&value)) || (short_year && len == 2);
        let day_or_month = |(len, value): (usize, u32)| len <= 2 && (1..=31).contains(&value);
        let month = |(len, value): (usize, u32)| len <= 2 && (1..=12).contains(&value);
        let (x, y, z) = (part(i), part(i + 1), part(i + 2));
        let day_first = day_or_month(x) && day_or_month(y) && (month(x) || month(y)) && year(z);
        let year_first = year(x) && x.0 == 4 && month(y) && day_or_month(z);
        day_first || year_first
    }

    /// Whether a phone number may start at group `i`: not inside a structured number, not
    /// right after a decimal point (`6.022`), not the seconds of a time (`04:32:07`).
    fn may_start(&self, text: &str, i: usize) -> bool {
        if i == 0 {
            let before = &text.as_bytes()[..self.groups[0].start];
            return !(before.ends_with(b":") && before.len() >= 2 && before[before.len() - 2].is_ascii_digit());
        }
        !self.structured && self.separator(text, i - 1) != "."
    }
}

/// Only zeros and ones: a bit pattern, never a card or a phone number.
fn binary(digits: &str) -> bool {
    digits.bytes().all(|b| b == b'0' || b == b'1')
}

#[cfg(test)]
mod tests {
    use phonenumber::country::Id as Region;

    use super::cards::is_card;
    use super::*;

    fn found<'t>(text: &'t str, regions: &[Region]) -> Vec<&'t str> {
        let mut hits = Vec::new();
        let regions = Regions { configured: regions, implied: &[] };
        for run in runs(text, &[]) {
            cards(text, &run, &mut hits);
            phones(text, &run, &regions, &mut hits);
        }
        hits.into_iter().map(|r| &text[r]).collect()
    }

    const REGIONS: &[Region] = &[Region::US, Region::DE, Region::GB, Region::FR];

    #[test]
    fn a_number_after_a_number_is_still_found() {
        assert_eq!(found("room 12 4111 1111 1111 1111", REGIONS), ["4111 1111 1111 1111"]);
        assert_eq!(found("Reachable 9-17 +49 30 1234567", REGIONS), ["+49 30 1234567"]);
    }

    #[test]
    fn finds_common_phone_formats() {
        for text in [
            "030 123 45 67",
            "415 555 0132",
            "(415) 555-0132",
            "call 4155550132",
            "06.12.34.56.78",
            "+44 20 7946 0958",
            "+49 (0)30 1234567",
            "0171/25 67 91 60",
            "phone: 1 2 1 3 8 2 7 8 4 2 3",
            "+49+30+1234567",
        ] {
            assert!(!found(text, REGIONS).is_empty(), "{text}");
        }
    }

    #[test]
    fn leaves_dates_versions_codes_and_words_alone() {
        for text in [
            "on 06.05.2024 at 10:30",
            "version 1.2.3.4",
            "hash a3f94111111111111111",
            "2024-05-06",
            "mask 0111 0101 1010 0000",
            "USPS 9400 1538 0948 8396 6279 1417",
            "ISBN 0366083422",
            "S/N 8728 0594 7708",
            "2^30 = 1 073 741 824 bytes",
            "N_A = 6.022 140 76 × 10^23",
            "Date: Fri Mar 1 04:32:07 2026 -0500",
            "2003-12-09 / 09.12.2003 / 12/9/2003",
            "DHL 9598050976",
        ] {
            assert_eq!(found(text, REGIONS), Vec::<&str>::new(), "{text}");
        }
    }

    #[test]
    fn cards_need_a_network_prefix_and_luhn() {
        assert!(is_card("4111111111111111"));
        assert!(is_card("378282246310005"), "Amex, 15 digits");
        assert!(!is_card("4111111111111112"), "Luhn fails");
        assert!(!is_card("9111111111111111"), "no network starts with 9");
        assert_eq!(found("EAN 4006381333931", REGIONS), Vec::<&str>::new(), "an EAN-13 barcode");
        assert_eq!(found("4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1", REGIONS), ["4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1"]);
    }
}
