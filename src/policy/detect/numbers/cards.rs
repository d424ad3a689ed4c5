//! Payment card numbers in a run of digit groups: a card's layout, a network's prefix
//! and length, and Luhn.

use std::ops::Range;

use super::{binary, Run};

/// Card numbers in `run`: every window of whole groups with 13–19 digits written as
/// cards are (one block, equal blocks, Amex's 4-6-5, Diners' 4-6-4), with one separator
/// throughout, a card network's prefix and length, and Luhn.
pub fn cards(text: &str, run: &Run, found: &mut Vec<Range<usize>>) {
    for start in 0..run.len() {
        // Card numbers start with 2 to 6.
        if !matches!(text.as_bytes()[run.groups[start].start], b'2'..=b'6') {
            continue;
        }
        let mut total = 0;
        for end in start..run.len() {
            total += run.digit_count(text, end);
            if total > 19 {
                break;
            }
            let window = start..end + 1;
            if total < 13 || !card_layout(run, text, &window) || !run.uniform(text, &window, 0) {
                continue;
            }
            let digits = run.digits(text, window.clone());
            // Thirteen digits in one block may be a product's barcode (EAN-13).
            let barcode = window.len() == 1 && digits.len() == 13 && ean_ok(digits.as_bytes());
            if !binary(&digits) && !barcode && is_card(&digits) {
                found.push(run.span(window));
            }
        }
    }
}

fn card_layout(run: &Run, _text: &str, window: &Range<usize>) -> bool {
    match &run.lens[window.clone()] {
        [_] | [4, 6, 5] | [4, 6, 4] => true,
        [first, middle @ .., last] => *first >= 3 && middle.iter().all(|l| l == first) && last <= first,
        [] => false,
    }
}

/// Luhn, not one digit repeated, and a prefix and length a card network issues.
pub fn is_card(digits: &str) -> bool {
    let d = digits.as_bytes();
    let prefix = |n: usize| digits.get(..n).and_then(|p| p.parse::<u32>().ok()).unwrap_or(0);
    let network = match d.first() {
        Some(b'4') => matches!(d.len(), 13 | 16 | 19),
        Some(b'2') => (2221..=2720).contains(&prefix(4)) && d.len() == 16,
        Some(b'5') => match prefix(2) {
            51..=55 => d.len() == 16,
            _ => (16..=19).contains(&d.len()),
        },
        Some(b'3') => match prefix(2) {
            34 | 37 => d.len() == 15,
            35 => (16..=19).contains(&d.len()),
            30 | 36 | 38 | 39 => (14..=19).contains(&d.len()),
            _ => false,
        },
        Some(b'6') => (16..=19).contains(&d.len()),
        _ => false,
    };
    network && !d.iter().all(|&b| b == d[0]) && luhn_ok(d)
}

pub fn luhn_ok(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &b)| {
            let d = u32::from(b - b'0');
            match (i % 2 == 1, d * 2) {
                (true, doubled) if doubled > 9 => doubled - 9,
                (true, doubled) => doubled,
                (false, _) => d,
            }
        })
        .sum();
    sum % 10 == 0
}

/// The GS1 check digit (weights 1 and 3): a product barcode, not a card.
fn ean_ok(digits: &[u8]) -> bool {
    let sum: u32 = digits.iter().enumerate().map(|(i, &b)| u32::from(b - b'0') * if i % 2 == 0 { 1 } else { 3 }).sum();
    sum % 10 == 0
}
