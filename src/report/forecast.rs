//! When a key's day or month quota runs out at today's rate (issue 24 item 6): today's use
//! of the quota's dimension spread over the part of the UTC day gone by, set against what
//! is left. A daily quota that would last past midnight does not run out (it resets then);
//! a monthly one is forecast up to the end of its month, a day that may be weeks away.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::timeutil;

/// A key's forecast: the first day or month quota to run out before it resets, if any.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Forecast {
    /// e.g. `daily_requests`; `None` when none runs out before it resets.
    pub quota: Option<&'static str>,
    /// RFC 3339, UTC.
    pub at: Option<String>,
    /// `daily_requests at 14:32 UTC` (today), `monthly_tokens on 2026-12-19` (a later
    /// day), or `not today`.
    pub text: String,
}

/// Seconds until `left` more is used at `used_today` per `secs_into_day` seconds; `None`
/// when nothing was used today (no rate to go by).
pub fn secs_to_run_out(used_today: u64, secs_into_day: u64, left: u64) -> Option<u64> {
    if left == 0 {
        return Some(0);
    }
    (used_today > 0)
        .then(|| (left as u128 * secs_into_day.max(1) as u128 / used_today as u128) as u64)
}

/// A quota as the forecast reads it: name (`daily_requests`), used (if known), limit.
pub type Quota = (&'static str, Option<u64>, u64);

/// The forecast over a key's quotas; `today` is (requests, tokens) used today, and
/// `month_end` when the monthly quotas reset.
pub fn forecast(
    quotas: &[Quota],
    today: (u64, u64),
    now: SystemTime,
    month_end: SystemTime,
) -> Forecast {
    let secs_into_day = timeutil::unix_secs(now).rem_euclid(86_400) as u64;
    let to_midnight = 86_400 - secs_into_day;
    let to_month_end = month_end
        .duration_since(now)
        .map_or(0, |d| d.as_secs())
        .max(to_midnight);
    let first = quotas
        .iter()
        .filter(|(name, ..)| name.starts_with("daily_") || name.starts_with("monthly_"))
        .filter_map(|&(name, used, limit)| {
            let rate = if name.ends_with("_tokens") {
                today.1
            } else {
                today.0
            };
            let left = limit.saturating_sub(used?);
            let secs = secs_to_run_out(rate, secs_into_day, left)?;
            let horizon = if name.starts_with("daily_") {
                to_midnight
            } else {
                to_month_end
            };
            (secs < horizon).then_some((secs, name))
        })
        .min();
    match first {
        Some((secs, quota)) => {
            let at = timeutil::rfc3339(now + Duration::from_secs(secs));
            let text = if secs < to_midnight {
                format!("{quota} at {} UTC", &at[11..16])
            } else {
                format!("{quota} on {}", &at[..10])
            };
            Forecast {
                quota: Some(quota),
                at: Some(at),
                text,
            }
        }
        None => Forecast {
            quota: None,
            at: None,
            text: "not today".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_so_far_says_when_what_is_left_is_gone() {
        // 100 requests in the first 6 hours; 300 left: 18 more hours, past midnight.
        assert_eq!(secs_to_run_out(100, 6 * 3600, 300), Some(18 * 3600));
        assert_eq!(secs_to_run_out(0, 3600, 10), None);
        assert_eq!(secs_to_run_out(5, 3600, 0), Some(0));
        // 06:00 UTC: 100 of 200 daily requests used: out at 12:00.
        let six = SystemTime::UNIX_EPOCH + Duration::from_secs(20_000 * 86_400 + 6 * 3600);
        let q = |name, used, limit| -> Quota { (name, Some(used), limit) };
        // 2024-10-04 06:00 UTC: the month ends on 11-01, 27 days and 18 hours on.
        let end = six + Duration::from_secs(27 * 86_400 + 18 * 3600);
        let f = forecast(&[q("daily_requests", 100, 200)], (100, 0), six, end);
        assert_eq!(f.quota, Some("daily_requests"));
        assert_eq!(f.text, "daily_requests at 12:00 UTC");
        assert_eq!(
            forecast(&[q("daily_requests", 100, 500)], (100, 0), six, end).text,
            "not today"
        );
        // The month's quota goes first: 50 left at 100 a quarter day: 03:00 from now.
        let f = forecast(
            &[
                q("daily_tokens", 0, 10_000),
                q("monthly_requests", 950, 1000),
            ],
            (100, 0),
            six,
            end,
        );
        assert_eq!(f.text, "monthly_requests at 09:00 UTC");
        // 400 a day against 4000 left of the month: 10 days on, within the month.
        let f = forecast(&[q("monthly_requests", 1000, 5000)], (100, 0), six, end);
        assert_eq!(f.quota, Some("monthly_requests"));
        assert_eq!(f.at.as_deref(), Some("2024-10-14T06:00:00Z"));
        assert_eq!(f.text, "monthly_requests on 2024-10-14");
        // 400 a day against 40 000 left: the month resets first.
        let f = forecast(&[q("monthly_requests", 0, 40_000)], (100, 0), six, end);
        assert_eq!(f.text, "not today");
        // Nothing used today: no rate, no forecast.
        assert_eq!(
            forecast(&[q("daily_requests", 0, 1)], (0, 0), six, end).text,
            "not today"
        );
    }
}
