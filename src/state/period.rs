//! Budget periods on the UTC calendar: a day, a month. Dates from unix time with Howard
//! Hinnant's civil-from-days arithmetic (no time-zone database: UTC only).

/// A budget's period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Daily,
    Monthly,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Daily => "daily",
            Period::Monthly => "monthly",
        }
    }

    /// The period containing `now` (unix seconds): its id (`2026-11-28`, `2026-11`) and
    /// when it ends (unix seconds).
    pub fn at(self, now: u64) -> (String, u64) {
        let day = i64::try_from(now / 86_400).unwrap_or(i64::MAX);
        let (year, month, date) = civil_from_days(day);
        match self {
            Period::Daily => (format!("{year:04}-{month:02}-{date:02}"), seconds(day + 1)),
            Period::Monthly => {
                let (next_year, next_month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
                (format!("{year:04}-{month:02}"), seconds(days_from_civil(next_year, next_month, 1)))
            }
        }
    }
}

/// `2026-11-29T00:00:00Z` for a unix time on a day boundary (any time: its day's start).
pub fn rfc3339_day(unix: u64) -> String {
    let (year, month, date) = civil_from_days(i64::try_from(unix / 86_400).unwrap_or(i64::MAX));
    format!("{year:04}-{month:02}-{date:02}T00:00:00Z")
}

fn seconds(days: i64) -> u64 {
    u64::try_from(days).unwrap_or(0).saturating_mul(86_400)
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant); the
/// audit log's timestamps use it too.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let date = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, date)
}

fn days_from_civil(year: i64, month: u32, date: u32) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(date) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_months_end_at_utc_midnight() {
        // 2026-11-28T10:00:00Z
        let now = 1_795_860_000;
        assert_eq!(Period::Daily.at(now), ("2026-11-28".into(), 1_795_910_400));
        assert_eq!(rfc3339_day(1_795_910_400), "2026-11-29T00:00:00Z");
        let (month, ends) = Period::Monthly.at(now);
        assert_eq!((month.as_str(), rfc3339_day(ends).as_str()), ("2026-11", "2026-12-01T00:00:00Z"));
        // December rolls into the next year; February of a leap year has 29 days.
        let (_, ends) = Period::Monthly.at(1_796_083_200 + 86_400 * 5); // 2026-12-06
        assert_eq!(rfc3339_day(ends), "2027-01-01T00:00:00Z");
        let (id, ends) = Period::Monthly.at(1_835_395_200); // 2028-02-29
        assert_eq!((id.as_str(), rfc3339_day(ends).as_str()), ("2028-02", "2028-03-01T00:00:00Z"));
    }

    #[test]
    fn the_calendar_round_trips() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
    }
}
