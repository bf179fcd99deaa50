//! The values of flags that are more than a string or a number: parsed and checked here,
//! so a bad value is refused with exit 2 naming the flag before anything runs.

use clap::ValueEnum;

use crate::pacing::Priority;
use crate::provider::defaults::ProviderName;

/// A UTC day written `YYYY-MM-DD` (`usage --from`/`--to`), one that exists.
pub fn parse_date(s: &str) -> Result<String, String> {
    let s = s.trim();
    crate::timeutil::day_number(s)
        .map(|_| s.to_string())
        .ok_or_else(|| format!("'{s}' is not a date like 2026-12-01 (a UTC day)"))
}

/// A duration like `90s`, `30m`, `2h`, `1d`, `1w` or `1h30m`, at most 366 days.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("'{s}' is not a duration like 90s, 30m, 2h, 1d or 1h30m");
    let mut total: u64 = 0;
    let mut number = String::new();
    let mut any = false;
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        number.clear();
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        any = true;
    }
    if !number.is_empty() || !any || total == 0 {
        return Err(bad());
    }
    if total > 366 * 86_400 {
        return Err(format!("'{s}' is longer than 366 days"));
    }
    Ok(std::time::Duration::from_secs(total))
}

/// `--batch-size`: a number of texts per request, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchSize {
    Fixed(usize),
    /// Chosen at the start of a run from the limits in force and the input's texts.
    Auto,
}

pub(super) fn parse_batch_size(s: &str) -> Result<BatchSize, String> {
    if s.trim().eq_ignore_ascii_case("auto") {
        return Ok(BatchSize::Auto);
    }
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=100).contains(&n) => Ok(BatchSize::Fixed(n)),
        _ => Err(format!(
            "'{s}' is neither a number of texts from 1 to 100 nor auto"
        )),
    }
}

/// The providers of `--provider`: one name (as before), or several for one pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Providers(pub Vec<ProviderName>);

impl Providers {
    /// More than one provider: settings that differ by provider come from `P_` variables.
    pub fn is_pool(&self) -> bool {
        self.0.len() > 1
    }
}

pub(super) fn parse_providers(s: &str) -> Result<Providers, String> {
    let mut names = Vec::new();
    for part in s.split(',').map(str::trim) {
        let name = ProviderName::from_str(part, true).map_err(|_| {
            format!("'{part}' is not a provider (groq, gemini, openai, xai, openrouter, ollama)")
        })?;
        if names.contains(&name) {
            return Err(format!("'{part}' is named twice"));
        }
        names.push(name);
    }
    Ok(Providers(names))
}

/// Seconds from 0 to `MAX`: anything else (negative, NaN, infinite, huge) is refused with
/// exit 2 naming the flag, before it can reach a `Duration`.
pub(super) fn seconds_up_to<const MAX: u32>(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !v.is_finite() || v < 0.0 || v > MAX as f64 {
        return Err(format!("'{s}' must be between 0 and {MAX} seconds"));
    }
    Ok(v)
}

/// A share from 0 to 1 (`--review-below`).
pub(super) fn fraction(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("'{s}' is not a share from 0 to 1 (0.6 for 60 %)")),
    }
}

/// A percentage from 0 to 100.
pub(super) fn percent(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("'{s}' is not a percentage"))?;
    if !v.is_finite() || !(0.0..=100.0).contains(&v) {
        return Err(format!("'{s}' must be between 0 and 100"));
    }
    Ok(v)
}

/// `--priority`: high, normal or low.
pub(super) fn priority(s: &str) -> Result<Priority, String> {
    Priority::parse(s).ok_or_else(|| format!("'{s}' is not a priority: high, normal or low"))
}

pub(super) fn store_timeout_seconds(s: &str) -> Result<f64, String> {
    let v = seconds_up_to::<3600>(s)?;
    if v < 1.0 {
        return Err(format!("'{s}' must be at least 1 second"));
    }
    Ok(v)
}

pub(super) fn timeout_seconds(s: &str) -> Result<f64, String> {
    let v = seconds_up_to::<3600>(s)?;
    if v < 0.001 {
        return Err(format!("'{s}' must be more than 0 seconds"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_for_keys_disable() {
        let secs = |s: &str| parse_duration(s).map(|d| d.as_secs());
        assert_eq!(secs("90s"), Ok(90));
        assert_eq!(secs("1h30m"), Ok(5400));
        assert_eq!(secs("2d"), Ok(172_800));
        for bad in [
            "",
            "10",
            "5x",
            "0m",
            "h",
            "-1h",
            "367d",
            "99999999999999999999w",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
