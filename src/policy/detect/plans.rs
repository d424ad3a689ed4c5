//! Phone numbering plans: libphonenumber's metadata (from the `phonenumber` crate), each
//! country's patterns compiled once into plain regexes on first use. The crate's own
//! `parse` and `is_valid` share one small regex cache behind a global lock and recompile
//! as it churns (tens of µs a call); the detector validates many candidate numbers per
//! request, so it keeps the data and does the matching itself, as libphonenumber does:
//! a number is valid when its national significant number has a possible length and
//! matches the pattern of some type of number (fixed line, mobile, toll free…) of a
//! region with its country code.

use std::collections::HashMap;
use std::sync::OnceLock;

use phonenumber::country::Id as Region;
use phonenumber::metadata::{Descriptor, Metadata, DATABASE};
use regex::{Regex, RegexBuilder};

/// One type of number: its possible lengths and its pattern, anchored.
struct Pattern {
    lengths: Vec<u16>,
    regex: Regex,
}

impl Pattern {
    fn of(descriptor: &Descriptor) -> Option<Pattern> {
        let source = format!("^(?:{})$", descriptor.national_number().as_str());
        let regex = RegexBuilder::new(&source).ignore_whitespace(true).build().ok()?;
        Some(Pattern { lengths: descriptor.possible_length().to_vec(), regex })
    }

    fn matches(&self, number: &str) -> bool {
        let len = u16::try_from(number.len()).unwrap_or(u16::MAX);
        (self.lengths.is_empty() || self.lengths.contains(&len)) && self.regex.is_match(number)
    }
}

/// One region's plan.
struct Plan {
    general: Pattern,
    kinds: Vec<Pattern>,
}

impl Plan {
    fn of(meta: &Metadata) -> Option<Plan> {
        let d = meta.descriptors();
        let general = Pattern::of(d.general())?;
        let kinds = [
            d.fixed_line(),
            d.mobile(),
            d.toll_free(),
            d.premium_rate(),
            d.shared_cost(),
            d.personal_number(),
            d.voip(),
            d.pager(),
            d.uan(),
            d.voicemail(),
        ];
        Some(Plan { general, kinds: kinds.into_iter().flatten().filter_map(Pattern::of).collect() })
    }

    fn valid(&self, national: &str) -> bool {
        self.general.matches(national) && self.kinds.iter().any(|k| k.matches(national))
    }
}

/// Every country code's plans, compiled when first needed.
fn book() -> &'static HashMap<u16, OnceLock<Vec<Plan>>> {
    static BOOK: OnceLock<HashMap<u16, OnceLock<Vec<Plan>>>> = OnceLock::new();
    BOOK.get_or_init(|| DATABASE.iter().map(|meta| (meta.country_code(), OnceLock::new())).collect())
}

fn plans(code: u16) -> Option<&'static [Plan]> {
    let slot = book().get(&code)?;
    let plans = slot.get_or_init(|| DATABASE.by_code(&code).into_iter().flatten().filter_map(Plan::of).collect());
    Some(plans.as_slice())
}

/// Whether `digits` (after the `+`: country code, then the national significant
/// number) is a valid number.
pub fn valid_international(digits: &str) -> bool {
    (1..=3).any(|len| {
        let (Some(code), Some(national)) = (digits.get(..len), digits.get(len..)) else { return false };
        code.parse::<u16>().is_ok_and(|code| valid_in(code, national))
    })
}

/// Whether `national` is a valid national significant number of a region with `code`.
fn valid_in(code: u16, national: &str) -> bool {
    !national.is_empty() && plans(code).is_some_and(|plans| plans.iter().any(|p| p.valid(national)))
}

/// Whether `digits`, written as in `region` (with its trunk prefix, if it has one), is a
/// valid number there (or in a region sharing its country code).
pub fn valid_national(region: Region, digits: &str) -> bool {
    let Some(meta) = DATABASE.by_id(region.as_ref()) else { return false };
    let national = match meta.national_prefix() {
        Some(prefix) => digits.strip_prefix(prefix).unwrap_or(digits),
        None => digits,
    };
    valid_in(meta.country_code(), national)
}

/// Whether numbers of `region` are written with a trunk prefix at home (Germany's 0);
/// Italy's are not (a landline's 0 is part of the number).
pub fn has_trunk_prefix(region: Region) -> bool {
    DATABASE.by_id(region.as_ref()).is_none_or(|m| m.national_prefix().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_libphonenumber_on_examples() {
        assert!(valid_international("493012345678"));
        assert!(valid_international("442079460958"));
        assert!(valid_international("14155550132"));
        assert!(valid_international("14165550135"), "Canada shares +1");
        assert!(!valid_international("1555123456"), "area code 555 does not exist");
        assert!(valid_national(Region::DE, "030 1234567".replace(' ', "").as_str()));
        assert!(valid_national(Region::IT, "3497782333"));
        assert!(!valid_national(Region::DE, "0000000"));
        assert!(has_trunk_prefix(Region::DE) && !has_trunk_prefix(Region::IT));
    }
}
