//! Phone numbers in a run of digit groups: international, North American and national
//! layouts, each valid in a numbering plan ([`super::super::plans`]).

use std::ops::Range;

use phonenumber::country::Id as Region;

use super::super::plans::{has_trunk_prefix, valid_international, valid_national};
use super::{binary, Run};

/// Where phone numbers are looked up.
pub struct Regions<'a> {
    /// National numbers with a trunk `0` (`030 1234567`), and North American ones when
    /// `US` is among them.
    pub configured: &'a [Region],
    /// Implied by the digits' script (Devanagari digits: India): national numbers of
    /// these are looked up whatever digit they start with.
    pub implied: &'a [Region],
}

/// Phone numbers in `run`: international (`+` or `00` and a country code), North
/// American (`415 555 0132`, `(415) 555-0132`, `1-415-555-0132`, `4155550132`), and
/// national with a trunk `0` — each in a phone's layout and valid in a numbering plan.
pub fn phones(text: &str, run: &Run, regions: &Regions<'_>, found: &mut Vec<Range<usize>>) {
    let mut from = run.start.saturating_sub(16);
    while !text.is_char_boundary(from) {
        from -= 1;
    }
    let before = &text[from..run.start];
    if before.to_ascii_lowercase().contains("isbn") {
        return;
    }
    for start in 0..run.len() {
        let first = &text[run.groups[start].clone()];
        let international = (start == 0 && run.plus.is_some()) || (first.starts_with("00") && first.len() <= 5);
        let end = if international {
            international_window(text, run, start)
        } else if !run.may_start(text, start) {
            None
        } else {
            let north_american = regions.configured.contains(&Region::US) || regions.implied.contains(&Region::US);
            let nanp = if north_american { north_american_window(text, run, start) } else { None };
            nanp.or_else(|| national_window(text, run, start, regions))
        };
        if let Some(end) = end {
            let mut span = run.span(start..end);
            if start == 0 {
                span.start = run.start;
            }
            found.push(span);
        }
    }
}

/// Words that say a phone number follows, in the languages of the default regions.
const PHONE_CUES: &[&str] = &[
    "phone", "call", "tel", "tél", "mobil", "móvil", "cell", "fax", "contact", "contat", "text me", "sms", "whatsapp",
    "reach", "dial", "ring", "handy", "ruf", "appel", "portable", "llam", "chiam", "bel ", "gsm",
];

/// Whether one of the [`PHONE_CUES`] comes in the 32 bytes before `at`.
fn phone_cue(text: &str, at: usize) -> bool {
    let mut from = at.saturating_sub(32);
    while !text.is_char_boundary(from) {
        from -= 1;
    }
    let before = text[from..at].to_lowercase();
    PHONE_CUES.iter().any(|cue| before.contains(cue))
}

/// The end of the longest window from `start` with `digits` total digits (at most
/// `max_groups` groups) that `accept` takes.
fn longest(
    text: &str,
    run: &Run,
    start: usize,
    digits: Range<usize>,
    max_groups: usize,
    accept: impl Fn(&Range<usize>) -> bool,
) -> Option<usize> {
    let mut total = 0;
    let mut ends = Vec::new();
    for end in start..run.len().min(start + max_groups) {
        total += run.digit_count(text, end);
        if total >= digits.end {
            break;
        }
        if total >= digits.start {
            ends.push(end + 1);
        }
    }
    ends.into_iter().rev().find(|&end| accept(&(start..end)))
}

fn international_window(text: &str, run: &Run, start: usize) -> Option<usize> {
    longest(text, run, start, 9..18, 8, |window| {
        let digits = run.digits(text, window.clone());
        let digits = digits.strip_prefix("00").unwrap_or(&digits);
        if valid_international(digits) {
            return true;
        }
        // `+49 (0)30 …`: the trunk 0 in brackets is not dialled from abroad.
        let country_group = if &text[run.groups[window.start].clone()] == "00" { 1 } else { 0 };
        let trunk = window.start + country_group + 1;
        if trunk >= window.end || &text[run.groups[trunk].clone()] != "0" {
            return false;
        }
        let country = run.digits(text, window.start..trunk);
        let country = country.strip_prefix("00").unwrap_or(&country);
        let rest = run.digits(text, trunk + 1..window.end);
        valid_international(&format!("{country}{rest}"))
    })
}

/// `415 555 0132`, `415-555-0132`, `(415) 555-0132`, `1 415 555 0132`, `1702/703/4089`,
/// `4155550132`, `14155550132`, valid in the North American plan.
fn north_american_window(text: &str, run: &Run, start: usize) -> Option<usize> {
    let lens = &run.lens[start..];
    let first = &text[run.groups[start].clone()];
    let bracketed = start + 1 < run.len() && run.separator(text, start).contains(')');
    let end = match lens {
        [1, 3, 3, 4, ..] if first == "1" => start + 4,
        [4, 3, 4, ..] if first.starts_with('1') => start + 3,
        [3, 3, 4, ..] => start + 3,
        [3, 7, ..] if bracketed => start + 2,
        [10, ..] => start + 1,
        [11, ..] if first.starts_with('1') => start + 1,
        _ => return None,
    };
    let window = start..end;
    let bare = window.len() == 1;
    if run.interior(text, &window) || !run.uniform(text, &window, if bracketed { 1 } else { 0 }) {
        return None;
    }
    // Ten bare digits are as often an order or tracking number: only after a word
    // that says a phone number follows.
    if bare && !run.spelled && !phone_cue(text, run.groups[start].start) {
        return None;
    }
    let digits = run.digits(text, window);
    let national = digits.strip_prefix('1').filter(|d| d.len() == 10).unwrap_or(&digits);
    valid_international(&format!("1{national}")).then_some(end)
}

/// `030 123 45 67`, `(030) 1234567`, `0171/25 67 91 60`, `01711234567`: an area code
/// with its trunk 0 (2–6 digits) and subscriber groups of two or more digits, one
/// separator after the area code, or one block — valid in a configured region. Without
/// a trunk 0, only in a region whose numbers have none (`349-7782333`, Italy), written
/// in groups; and in a region the digits' script implies, any way.
fn national_window(text: &str, run: &Run, start: usize, regions: &Regions<'_>) -> Option<usize> {
    let first = &text[run.groups[start].clone()];
    let trunk = first.starts_with('0') && !first.starts_with("00");
    // A mobile number without a trunk prefix starts with a three-digit block (Italy's
    // 3xx, Spain's 6xx): anything else is too easily a table of numbers.
    let mobile_block = run.digit_count(text, start) == 3 && start + 1 < run.len();
    let without_trunk = regions.configured.iter().copied().filter(|r| mobile_block && !has_trunk_prefix(*r));
    let candidates: Vec<Region> = if trunk {
        regions.configured.iter().chain(regions.implied).copied().collect()
    } else {
        without_trunk.chain(regions.implied.iter().copied()).collect()
    };
    if candidates.is_empty() {
        return None;
    }
    let first_len = run.digit_count(text, start);
    longest(text, run, start, 7..13, 5, |window| {
        let whole = window.len() == 1;
        if !whole && !(2..=6).contains(&first_len) {
            return false;
        }
        if whole && !trunk && regions.implied.is_empty() {
            return false;
        }
        let subscriber_ok = (window.start + 1..window.end).all(|i| run.digit_count(text, i) >= 2);
        // Brackets may close the area code, nothing else.
        let brackets_later = (window.start..window.end.saturating_sub(1)).any(|i| {
            let s = run.separator(text, i);
            s.contains('(') || (i > window.start && s.contains(')'))
        });
        if !subscriber_ok || brackets_later || !run.uniform(text, window, 1) {
            return false;
        }
        if run.holds_date(text, window) || run.interior(text, window) {
            return false;
        }
        let digits = run.digits(text, window.clone());
        !binary(&digits) && candidates.iter().any(|&region| valid_national(region, &digits))
    })
}
