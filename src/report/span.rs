//! The UTC days a report covers: the last N days up to today (`--days`, `?days=`), or a
//! range chosen by date (`--from`/`--to`, `?from=&to=`), both ends included. Every view of
//! the one usage model (`usage`, the dashboard's API and page) takes its period from here.

use std::time::{Duration, SystemTime};

use crate::error::Result;
use crate::timeutil::{self, Day};

/// The longest period, in days.
pub const MAX_DAYS: u32 = 3650;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// First and last UTC day, both included.
    pub from: Day,
    pub to: Day,
    /// Days from `from` to `to`.
    pub days: u32,
    /// Where the logs (rotations, actions, errors) start: `days` × 24 h ago for the last
    /// N days (a rolling window, as ever), 00:00 UTC of `from` for a range.
    pub since: SystemTime,
    /// Chosen by date: the logs stop at the end of `to` (the last N days reach now).
    pub chosen: bool,
}

impl Span {
    /// The last `days` UTC days at `now`, today included.
    pub fn last_days(now: SystemTime, days: u32) -> Span {
        Span {
            from: Day::days_ago(now, days.saturating_sub(1)),
            to: Day::of(now),
            days,
            since: now - Duration::from_secs(86_400 * u64::from(days)),
            chosen: false,
        }
    }

    /// The UTC days from `from` to `to` (`YYYY-MM-DD`), both included; `names` are what
    /// the two are called where they were given (`--from`/`--to`, `from`/`to`), for the
    /// message saying what is wrong with them.
    pub fn range(from: &str, to: &str, names: (&str, &str)) -> std::result::Result<Span, String> {
        let day = |text: &str, name: &str| {
            timeutil::day_number(text.trim())
                .ok_or_else(|| format!("{name} {text}: not a date like 2026-12-01 (UTC)"))
        };
        let (a, b) = (day(from, names.0)?, day(to, names.1)?);
        if a > b {
            return Err(format!(
                "{} {from} is after {} {to}: the range runs from the earlier day to the later",
                names.0, names.1
            ));
        }
        let days = b - a + 1;
        if days > i64::from(MAX_DAYS) {
            return Err(format!(
                "{} {from} to {} {to} is {days} days; at most {MAX_DAYS}",
                names.0, names.1
            ));
        }
        Ok(Span {
            from: Day::stored(timeutil::date_of_day_number(a)),
            to: Day::stored(timeutil::date_of_day_number(b)),
            days: days as u32,
            since: timeutil::from_unix(a * 86_400),
            chosen: true,
        })
    }

    /// Whether the UTC day of `date` (`YYYY-MM-DD…`, an RFC 3339 time too) is in the span.
    pub fn holds(&self, date: &str) -> bool {
        let day = date.get(..10).unwrap_or(date);
        self.from.as_str() <= day && day <= self.to.as_str()
    }

    /// Every day of the span, oldest first.
    pub fn dates(&self) -> Vec<String> {
        let first = timeutil::day_number(self.from.as_str()).unwrap_or(0);
        (0..i64::from(self.days))
            .map(|d| timeutil::date_of_day_number(first + d))
            .collect()
    }

    /// A log's entries in the span (newest first, at most `limit`): `fetch(since, n)` reads
    /// the newest `n` from `since` on; a range reads them all, drops those after `to`,
    /// then keeps `limit`. `date_of` gives an entry's time or day.
    pub fn log<T>(
        &self,
        limit: u32,
        fetch: impl FnOnce(SystemTime, u32) -> Result<Vec<T>>,
        date_of: impl Fn(&T) -> String,
    ) -> Result<Vec<T>> {
        let all = fetch(self.since, if self.chosen { u32::MAX } else { limit })?;
        Ok(all
            .into_iter()
            .filter(|e| !self.chosen || self.holds(&date_of(e)))
            .take(limit as usize)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_days_end_today_and_a_range_holds_both_ends() {
        let now = timeutil::from_unix(1_796_014_800); // 2026-11-30T05:00:00Z
        let s = Span::last_days(now, 3);
        assert_eq!(
            (s.from.as_str(), s.to.as_str(), s.days),
            ("2026-11-28", "2026-11-30", 3)
        );
        assert_eq!(s.dates(), ["2026-11-28", "2026-11-29", "2026-11-30"]);
        assert!(!s.chosen);

        let r = Span::range("2026-02-27", "2026-03-01", ("--from", "--to")).unwrap();
        assert_eq!(r.days, 3);
        assert_eq!(r.dates(), ["2026-02-27", "2026-02-28", "2026-03-01"]);
        assert_eq!(timeutil::rfc3339(r.since), "2026-02-27T00:00:00Z");
        assert!(r.holds("2026-02-27") && r.holds("2026-03-01T23:59:59Z"));
        assert!(!r.holds("2026-02-26T23:59:59Z") && !r.holds("2026-03-02"));
        assert_eq!(
            Span::range("2026-12-01", "2026-12-01", ("a", "b"))
                .unwrap()
                .days,
            1
        );
    }

    #[test]
    fn bad_dates_and_reversed_ranges_are_refused_by_name() {
        let names = ("--from", "--to");
        for (from, to, starts) in [
            ("2026-02-30", "2026-03-01", "--from 2026-02-30: not a date"),
            ("2026-12-01", "tomorrow", "--to tomorrow: not a date"),
            ("2026-1-01", "2026-12-01", "--from 2026-1-01: not a date"),
            (
                "2026-12-05",
                "2026-12-01",
                "--from 2026-12-05 is after --to 2026-12-01",
            ),
            (
                "2000-01-01",
                "2026-12-01",
                "--from 2000-01-01 to --to 2026-12-01 is 9832 days",
            ),
        ] {
            let e = Span::range(from, to, names).unwrap_err();
            assert!(e.starts_with(starts), "{from} {to}: {e}");
        }
    }

    #[test]
    fn a_range_keeps_the_log_entries_of_its_days_only() {
        let r = Span::range("2026-12-02", "2026-12-03", ("from", "to")).unwrap();
        let log = [
            "2026-12-04T01:00:00Z",
            "2026-12-03T23:00:00Z",
            "2026-12-02T00:00:00Z",
        ];
        let got = r
            .log(
                1,
                |_, n| Ok(log.iter().take(n as usize).collect()),
                |e| e.to_string(),
            )
            .unwrap();
        assert_eq!(got, [&"2026-12-03T23:00:00Z"]);
    }
}
