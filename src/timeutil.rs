//! Calendar arithmetic on `SystemTime`: UTC days and RFC 3339 stamps by hand, and the
//! start of a provider's day (UTC, or Pacific time with its daylight saving) with jiff.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

pub fn from_unix(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days since 1970-01-01 of a (year, month, day) (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The start (00:00 UTC) of the monthly period containing `t`, for periods that start
/// on `reset_day` (1–28) of each month.
pub fn month_start(t: SystemTime, reset_day: u32) -> SystemTime {
    let reset_day = reset_day.clamp(1, 28);
    let (y, m, d) = civil_from_days(unix_secs(t).div_euclid(86_400));
    let (y, m) = match (d >= reset_day, m) {
        (true, _) => (y, m),
        (false, 1) => (y - 1, 12),
        (false, _) => (y, m - 1),
    };
    from_unix(days_from_civil(y, m, reset_day) * 86_400)
}

/// The start of the monthly period after the one containing `t`.
pub fn next_month_start(t: SystemTime, reset_day: u32) -> SystemTime {
    let start = month_start(t, reset_day);
    // 32 days after a start on day 1–28 is always inside the next period.
    month_start(start + Duration::from_secs(32 * 86_400), reset_day)
}

/// `YYYY-MM-DD` of the UTC day containing `t`.
pub fn utc_date(t: SystemTime) -> String {
    let (y, m, d) = civil_from_days(unix_secs(t).div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DD` of `days` days before the UTC day of `t`.
pub fn utc_date_days_ago(t: SystemTime, days: u32) -> String {
    utc_date(t - Duration::from_secs(86_400 * days as u64))
}

/// Days since 1970-01-01 of a date written `YYYY-MM-DD`, if it is one that exists (no
/// 2026-02-30, no `2026-1-5`).
pub fn day_number(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let shaped = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
    if !shaped {
        return None;
    }
    let (y, m, d) = (
        text[..4].parse::<i64>().ok()?,
        text[5..7].parse::<u32>().ok()?,
        text[8..].parse::<u32>().ok()?,
    );
    if !(1..=12).contains(&m) || d == 0 {
        return None;
    }
    let n = days_from_civil(y, m, d);
    (civil_from_days(n) == (y, m, d)).then_some(n)
}

/// `YYYY-MM-DD` of a day count since 1970-01-01.
pub fn date_of_day_number(n: i64) -> String {
    let (y, m, d) = civil_from_days(n);
    format!("{y:04}-{m:02}-{d:02}")
}

/// A UTC calendar day as the ledger keeps it, `YYYY-MM-DD`: days sort as their text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(String);

impl Day {
    /// The UTC day containing `t`.
    pub fn of(t: SystemTime) -> Day {
        Day(utc_date(t))
    }

    /// `days` days before the UTC day of `t`.
    pub fn days_ago(t: SystemTime, days: u32) -> Day {
        Day(utc_date_days_ago(t, days))
    }

    /// A day as a store holds it, taken as written (what an older or newer version wrote
    /// still reads back, and compares as text, as it always did).
    pub fn stored(text: String) -> Day {
        Day(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Day {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`
pub fn rfc3339(t: SystemTime) -> String {
    let secs = unix_secs(t);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        (s % 3600) / 60,
        s % 60
    )
}

/// The next midnight UTC after `t`: when a daily quota without a stated reset comes back.
pub fn next_utc_midnight(t: SystemTime) -> SystemTime {
    let secs = unix_secs(t);
    from_unix((secs.div_euclid(86_400) + 1) * 86_400)
}

/// When a provider's day (and its daily quota) starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayStart {
    UtcMidnight,
    /// Midnight in America/Los_Angeles: 07:00 or 08:00 UTC, with daylight saving.
    PacificMidnight,
}

impl DayStart {
    /// The start of the day containing `t`.
    pub fn start_of_day(self, t: SystemTime) -> SystemTime {
        match self {
            DayStart::UtcMidnight => from_unix(unix_secs(t).div_euclid(86_400) * 86_400),
            DayStart::PacificMidnight => pacific(t, false),
        }
    }

    /// The start of the next day after `t`: when a daily quota comes back.
    pub fn next_start(self, t: SystemTime) -> SystemTime {
        match self {
            DayStart::UtcMidnight => next_utc_midnight(t),
            DayStart::PacificMidnight => pacific(t, true),
        }
    }
}

/// Midnight Pacific time starting the day of `t` (or the next day). Should the time-zone
/// data fail, Pacific standard time (UTC-8) is a close enough answer.
fn pacific(t: SystemTime, next: bool) -> SystemTime {
    let secs = unix_secs(t);
    let exact = || -> Result<i64, jiff::Error> {
        let zoned = jiff::Timestamp::from_second(secs)?.in_tz("America/Los_Angeles")?;
        let day = if next { zoned.tomorrow()? } else { zoned };
        Ok(day.start_of_day()?.timestamp().as_second())
    };
    match exact() {
        Ok(s) => from_unix(s),
        Err(_) => {
            let local = secs - 8 * 3600;
            let start = local.div_euclid(86_400) * 86_400 + 8 * 3600;
            from_unix(if next { start + 86_400 } else { start })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc_date(from_unix(0)), "1970-01-01");
        assert_eq!(rfc3339(from_unix(1_795_000_000)), "2026-11-18T11:06:40Z");
        assert_eq!(utc_date(from_unix(951_782_400)), "2000-02-29");
        assert_eq!(unix_secs(next_utc_midnight(from_unix(86_400 + 5))), 172_800);
        assert_eq!(day_number("1970-01-02"), Some(1));
        assert_eq!(day_number("2000-02-29"), Some(11_016));
        assert_eq!(date_of_day_number(11_016), "2000-02-29");
        for bad in [
            "2001-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-1-05",
            "2026/01/05",
            "+026-01-05",
            "",
        ] {
            assert_eq!(day_number(bad), None, "{bad}");
        }
    }

    #[test]
    fn monthly_periods_start_on_the_reset_day() {
        let t = from_unix(1_796_014_800); // 2026-11-30T05:00:00Z
        assert_eq!(rfc3339(month_start(t, 1)), "2026-11-01T00:00:00Z");
        assert_eq!(rfc3339(next_month_start(t, 1)), "2026-12-01T00:00:00Z");
        assert_eq!(rfc3339(month_start(t, 28)), "2026-11-28T00:00:00Z");
        // Before the reset day, the period began last month (across a year, too).
        let jan = from_unix(1_767_571_200); // 2026-01-05
        assert_eq!(rfc3339(month_start(jan, 15)), "2025-12-15T00:00:00Z");
        assert_eq!(rfc3339(next_month_start(jan, 15)), "2026-01-15T00:00:00Z");
        let feb = from_unix(1_772_150_400); // 2026-02-27
        assert_eq!(rfc3339(next_month_start(feb, 28)), "2026-02-28T00:00:00Z");
        let feb28 = next_month_start(feb, 28);
        assert_eq!(rfc3339(next_month_start(feb28, 28)), "2026-03-28T00:00:00Z");
    }

    #[test]
    fn pacific_days_follow_daylight_saving() {
        // 2026-11-30T05:00:00Z is still 2026-11-29 in Los Angeles (UTC-8).
        let t = from_unix(1_796_014_800);
        assert_eq!(rfc3339(t), "2026-11-30T05:00:00Z");
        let p = DayStart::PacificMidnight;
        assert_eq!(rfc3339(p.start_of_day(t)), "2026-11-29T08:00:00Z");
        assert_eq!(rfc3339(p.next_start(t)), "2026-11-30T08:00:00Z");
        // In July it is UTC-7.
        let july = from_unix(1_783_000_000);
        assert_eq!(rfc3339(july), "2026-07-02T13:46:40Z");
        assert_eq!(rfc3339(p.next_start(july)), "2026-07-03T07:00:00Z");
        let u = DayStart::UtcMidnight;
        assert_eq!(rfc3339(u.start_of_day(t)), "2026-11-30T00:00:00Z");
        assert_eq!(rfc3339(u.next_start(t)), "2026-12-01T00:00:00Z");
    }
}
