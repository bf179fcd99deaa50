//! Per-key settings written next to the key in the env file: a name, a priority and
//! quotas of the key's own (per minute, per day, per month; requests and tokens).
//!
//! The settings of a key are the variables named after the variable that holds it, plus
//! a suffix: `GROQ_API_KEY_2=gsk_…` takes `GROQ_API_KEY_2_NAME`, `GROQ_API_KEY_2_PRIORITY`,
//! `GROQ_API_KEY_2_DAILY_TOKENS` and so on. A variable that holds several keys
//! (`GROQ_API_KEYS=a,b`) gives its settings to each of them. A key without settings
//! behaves as before: priority 0, no quota of its own.

use std::fmt;

use super::envfile::Vars;
use crate::error::{Error, Result};

/// A key's own quota dimensions, in the order they are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuotaDim {
    MinuteRequests,
    MinuteTokens,
    DailyRequests,
    DailyTokens,
    MonthlyRequests,
    MonthlyTokens,
}

/// The calendar period a quota counts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// The last 60 seconds.
    Minute,
    /// The UTC day.
    Day,
    /// From the monthly reset day (the 1st unless set) to the next.
    Month,
}

impl QuotaDim {
    pub const ALL: [QuotaDim; 6] = [
        QuotaDim::MinuteRequests,
        QuotaDim::MinuteTokens,
        QuotaDim::DailyRequests,
        QuotaDim::DailyTokens,
        QuotaDim::MonthlyRequests,
        QuotaDim::MonthlyTokens,
    ];

    /// The env-file suffix, e.g. `DAILY_TOKENS`.
    pub fn suffix(self) -> &'static str {
        match self {
            QuotaDim::MinuteRequests => "MINUTE_REQUESTS",
            QuotaDim::MinuteTokens => "MINUTE_TOKENS",
            QuotaDim::DailyRequests => "DAILY_REQUESTS",
            QuotaDim::DailyTokens => "DAILY_TOKENS",
            QuotaDim::MonthlyRequests => "MONTHLY_REQUESTS",
            QuotaDim::MonthlyTokens => "MONTHLY_TOKENS",
        }
    }

    /// For tables and JSON: `daily_tokens`.
    pub fn name(self) -> &'static str {
        match self {
            QuotaDim::MinuteRequests => "minute_requests",
            QuotaDim::MinuteTokens => "minute_tokens",
            QuotaDim::DailyRequests => "daily_requests",
            QuotaDim::DailyTokens => "daily_tokens",
            QuotaDim::MonthlyRequests => "monthly_requests",
            QuotaDim::MonthlyTokens => "monthly_tokens",
        }
    }

    pub fn period(self) -> Period {
        match self {
            QuotaDim::MinuteRequests | QuotaDim::MinuteTokens => Period::Minute,
            QuotaDim::DailyRequests | QuotaDim::DailyTokens => Period::Day,
            QuotaDim::MonthlyRequests | QuotaDim::MonthlyTokens => Period::Month,
        }
    }

    pub fn counts_tokens(self) -> bool {
        matches!(
            self,
            QuotaDim::MinuteTokens | QuotaDim::DailyTokens | QuotaDim::MonthlyTokens
        )
    }
}

impl fmt::Display for QuotaDim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name().replace('_', " "))
    }
}

/// A key's own quotas; `None` = no quota of the key's own in that dimension.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyQuotas {
    values: [Option<u64>; 6],
}

impl KeyQuotas {
    pub fn get(&self, dim: QuotaDim) -> Option<u64> {
        self.values[dim as usize]
    }

    pub fn set(&mut self, dim: QuotaDim, value: Option<u64>) {
        self.values[dim as usize] = value;
    }

    /// The quotas that are set, in display order.
    pub fn iter(&self) -> impl Iterator<Item = (QuotaDim, u64)> + '_ {
        QuotaDim::ALL
            .into_iter()
            .filter_map(|d| self.get(d).map(|v| (d, v)))
    }

    pub fn is_empty(&self) -> bool {
        self.values.iter().all(Option::is_none)
    }
}

/// Everything the env file says about one key besides the key itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeySettings {
    pub name: Option<String>,
    /// Higher goes first; 0 when unset.
    pub priority: i64,
    pub quotas: KeyQuotas,
}

/// The settings of the key(s) held by the variable `var`. A value that is not what its
/// setting needs is a configuration error (exit 2) naming the variable.
pub fn read(var: &str, vars: &Vars) -> Result<KeySettings> {
    let mut s = KeySettings::default();
    let name_var = format!("{var}_NAME");
    if let Some(name) = vars.get(&name_var) {
        let name = name.trim();
        if name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(Error::Config(format!(
                "{name_var}: a key name is at most 64 characters on one line"
            )));
        }
        s.name = Some(name.to_string());
    }
    let prio_var = format!("{var}_PRIORITY");
    if let Some(v) = vars.get(&prio_var) {
        s.priority = v
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|p| (-1_000_000..=1_000_000).contains(p))
            .ok_or_else(|| {
                Error::Config(format!(
                    "{prio_var}={v}: not a whole number between -1000000 and 1000000 (higher is used first)"
                ))
            })?;
    }
    for dim in QuotaDim::ALL {
        let name = format!("{var}_{}", dim.suffix());
        if let Some(v) = vars.get(&name) {
            let n = v.trim().parse::<u64>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                Error::Config(format!(
                    "{name}={v}: not a whole number of at least 1 (leave it out for no quota of the key's own)"
                ))
            })?;
            s.quotas.set(dim, Some(n));
        }
    }
    Ok(s)
}

/// The day of the month (1–28) on which monthly per-key quotas start again, from
/// `<PREFIX>_QUOTA_RESET_DAY` (the 1st when unset). Days after the 28th would not exist
/// in every month, so they are refused rather than guessed at.
pub fn reset_day(prefix: &str, vars: &Vars) -> Result<u32> {
    let name = format!("{prefix}_QUOTA_RESET_DAY");
    match vars.get(&name) {
        None => Ok(1),
        Some(v) => v
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|d| (1..=28).contains(d))
            .ok_or_else(|| {
                Error::Config(format!(
                    "{name}={v}: not a day of the month between 1 and 28 (monthly key quotas start again on that day, UTC)"
                ))
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_setting_next_to_the_key() {
        let vars = Vars::from_maps(
            &[
                ("GROQ_API_KEY_2", "k"),
                ("GROQ_API_KEY_2_NAME", " backup "),
                ("GROQ_API_KEY_2_PRIORITY", "10"),
                ("GROQ_API_KEY_2_DAILY_TOKENS", "50000"),
                ("GROQ_API_KEY_2_MONTHLY_TOKENS", "1000000"),
                ("GROQ_API_KEY_2_MINUTE_REQUESTS", "5"),
            ],
            &[],
        );
        let s = read("GROQ_API_KEY_2", &vars).unwrap();
        assert_eq!(s.name.as_deref(), Some("backup"));
        assert_eq!(s.priority, 10);
        assert_eq!(
            s.quotas.iter().collect::<Vec<_>>(),
            [
                (QuotaDim::MinuteRequests, 5),
                (QuotaDim::DailyTokens, 50_000),
                (QuotaDim::MonthlyTokens, 1_000_000)
            ]
        );
        assert_eq!(
            read("GROQ_API_KEY_1", &vars).unwrap(),
            KeySettings::default()
        );
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        for (var, value) in [
            ("GROQ_API_KEY_1_PRIORITY", "high"),
            ("GROQ_API_KEY_1_DAILY_TOKENS", "0"),
            ("GROQ_API_KEY_1_MONTHLY_REQUESTS", "-3"),
            ("GROQ_API_KEY_1_MINUTE_TOKENS", "1.5"),
        ] {
            let vars = Vars::from_maps(&[(var, value)], &[]);
            let err = read("GROQ_API_KEY_1", &vars).unwrap_err();
            assert!(matches!(err, Error::Config(_)));
            assert!(
                err.to_string().starts_with(&format!("{var}={value}")),
                "{err}"
            );
        }
    }

    #[test]
    fn reset_day_is_1_to_28() {
        let none = Vars::from_maps(&[], &[]);
        assert_eq!(reset_day("GROQ", &none).unwrap(), 1);
        let set = Vars::from_maps(&[("GROQ_QUOTA_RESET_DAY", "15")], &[]);
        assert_eq!(reset_day("GROQ", &set).unwrap(), 15);
        for bad in ["0", "29", "x"] {
            let v = Vars::from_maps(&[("GROQ_QUOTA_RESET_DAY", bad)], &[]);
            assert!(reset_day("GROQ", &v)
                .unwrap_err()
                .to_string()
                .contains("GROQ_QUOTA_RESET_DAY"));
        }
    }
}
