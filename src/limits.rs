//! Limits per organization: the five dimensions, where each value in force came from,
//! and the one rule that decides between what the user set, what the provider states
//! and the assumed free-tier default.
//!
//! The rule: a value the provider states (reply headers, a 429 body) replaces the
//! free-tier default whether it is higher or lower, from the first reply on; a value the
//! user set (flag, environment, env file) stays unless the provider states a lower one.
//!
//! Defaults yield to evidence: a free-tier default the provider never states is dropped
//! once it states another dimension's limit far above the free tier (the key is not on
//! it), and an assumed hour or day limit is never enforced (`enforced`): the provider's
//! own 429 decides when a day is over, not a guess.

use std::fmt;

/// One limit dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dim {
    /// Requests per minute.
    Rpm,
    /// Requests per hour.
    Rph,
    /// Requests per day.
    Rpd,
    /// Tokens per minute.
    Tpm,
    /// Tokens per day.
    Tpd,
}

impl Dim {
    pub const ALL: [Dim; 5] = [Dim::Rpm, Dim::Rph, Dim::Rpd, Dim::Tpm, Dim::Tpd];

    pub fn as_str(self) -> &'static str {
        match self {
            Dim::Rpm => "rpm",
            Dim::Rph => "rph",
            Dim::Rpd => "rpd",
            Dim::Tpm => "tpm",
            Dim::Tpd => "tpd",
        }
    }

    pub fn parse(s: &str) -> Option<Dim> {
        Dim::ALL
            .into_iter()
            .find(|d| d.as_str().eq_ignore_ascii_case(s.trim()))
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Per-key (per-organization) limit values. `None` means "no limit known".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub rpm: Option<u64>,
    pub rph: Option<u64>,
    pub rpd: Option<u64>,
    pub tpm: Option<u64>,
    pub tpd: Option<u64>,
}

impl Limits {
    pub fn get(&self, dim: Dim) -> Option<u64> {
        match dim {
            Dim::Rpm => self.rpm,
            Dim::Rph => self.rph,
            Dim::Rpd => self.rpd,
            Dim::Tpm => self.tpm,
            Dim::Tpd => self.tpd,
        }
    }

    pub fn set(&mut self, dim: Dim, value: Option<u64>) {
        let slot = match dim {
            Dim::Rpm => &mut self.rpm,
            Dim::Rph => &mut self.rph,
            Dim::Rpd => &mut self.rpd,
            Dim::Tpm => &mut self.tpm,
            Dim::Tpd => &mut self.tpd,
        };
        *slot = value;
    }

    /// The lower of each dimension (for a summary over several organizations).
    pub fn min(self, other: Limits) -> Limits {
        let mut out = Limits::default();
        for d in Dim::ALL {
            out.set(
                d,
                match (self.get(d), other.get(d)) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                },
            );
        }
        out
    }
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `--rpm` and friends.
    Flag,
    /// A variable such as `GROQ_RPM`, with where it was found ("envs/.envs", "environment").
    Variable { name: String, place: String },
    /// The provider's assumed free tier.
    Default { provider: &'static str },
    /// Stated by the provider: a reply header or a 429 body. `earlier` when it was read
    /// from the state at start-up (stated to an earlier run).
    Stated { by: String, earlier: bool },
    /// Not stated, but seen: a 429 after fewer requests than the limit allowed.
    Observed,
    /// Learned from 429s that give no wait: lowered at each, raised a little after each
    /// clean minute (never above a stated or user-set limit).
    Learned,
    /// The provider's free-tier default, dropped because a stated limit of another
    /// dimension shows the key is not on the free tier (`because` says which).
    DefaultDropped {
        provider: &'static str,
        because: String,
    },
}

impl Source {
    /// Whether the user chose this value (it then stays unless the provider states less).
    pub fn user_set(&self) -> bool {
        matches!(self, Source::Flag | Source::Variable { .. })
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag => f.write_str("the flag"),
            Source::Variable { name, place } => write!(f, "{name} in {place}"),
            Source::Default { provider } => write!(f, "the {provider} free-tier default"),
            Source::Stated { by, earlier: false } => f.write_str(by),
            Source::Stated { by, earlier: true } => write!(f, "{by} (stated to an earlier run)"),
            Source::Observed => f.write_str("the requests served in the minute before a 429"),
            Source::Learned => {
                f.write_str("429s without a wait (lowered at each, raised after each clean minute)")
            }
            Source::DefaultDropped { provider, because } => {
                write!(f, "the {provider} free-tier default, dropped ({because})")
            }
        }
    }
}

/// One dimension: what the user set or the default, and what the provider stated.
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    /// The user's value (flag, environment, env file) or the free-tier default.
    pub configured: Option<u64>,
    pub configured_source: Source,
    /// The latest value the provider stated (or a lower one observed).
    pub stated: Option<(u64, Source)>,
}

impl Limit {
    /// The value in force and where it comes from.
    pub fn effective(&self) -> (Option<u64>, &Source) {
        match (&self.stated, self.configured) {
            (None, c) => (c, &self.configured_source),
            (Some((s, src)), Some(c)) if self.configured_source.user_set() => {
                if *s < c {
                    (Some(*s), src)
                } else {
                    (Some(c), &self.configured_source)
                }
            }
            (Some((s, src)), _) => (Some(*s), src),
        }
    }

    /// Whether the value in force is an assumption: a free-tier default that no provider
    /// stated and no user set.
    pub fn assumed(&self) -> bool {
        self.stated.is_none()
            && self.configured.is_some()
            && matches!(self.configured_source, Source::Default { .. })
    }

    /// `tpm = 10000000 from x-ratelimit-limit-tokens`
    pub fn describe(&self, dim: Dim) -> String {
        let (value, source) = self.effective();
        let value = value.map_or("none".to_string(), |v| v.to_string());
        match source {
            Source::Flag => format!("{dim} = {value} from --{dim}"),
            other => format!("{dim} = {value} from {other}"),
        }
    }
}

/// A stated limit this many times its free-tier default shows a key not on the free tier.
const PAID_TIER_FACTOR: u64 = 10;

/// A change of the value in force, for the log and the state.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitChange {
    pub dim: Dim,
    /// `None`: no limit in force any more (a free-tier default was dropped).
    pub value: Option<u64>,
    pub source: Source,
    /// What was in force before, described.
    pub was: String,
}

impl LimitChange {
    /// The log line of a dropped free-tier default:
    /// `tpd: free-tier default dropped (the provider states tpm 10000000, not a free-tier key)`.
    pub fn dropped_default(&self) -> Option<String> {
        match &self.source {
            Source::DefaultDropped { because, .. } => Some(format!(
                "{}: free-tier default dropped ({because})",
                self.dim
            )),
            _ => None,
        }
    }
}

/// The five dimensions of one organization.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitSet {
    dims: [Limit; 5],
}

impl LimitSet {
    /// Every dimension configured from `values`, each with its source.
    pub fn configured(values: [(Option<u64>, Source); 5]) -> LimitSet {
        LimitSet {
            dims: values.map(|(configured, configured_source)| Limit {
                configured,
                configured_source,
                stated: None,
            }),
        }
    }

    /// Plain values with no provider statements (tests, unlimited runs).
    pub fn from_limits(limits: Limits, source: Source) -> LimitSet {
        LimitSet::configured(Dim::ALL.map(|d| (limits.get(d), source.clone())))
    }

    pub fn get(&self, dim: Dim) -> &Limit {
        &self.dims[dim.index()]
    }

    /// The values in force.
    pub fn values(&self) -> Limits {
        let mut out = Limits::default();
        for d in Dim::ALL {
            out.set(d, self.get(d).effective().0);
        }
        out
    }

    /// One `-v` line per dimension.
    pub fn describe(&self) -> Vec<String> {
        Dim::ALL.iter().map(|&d| self.get(d).describe(d)).collect()
    }

    /// The provider states `value` for `dim`. Returns the change of the value in force, if any.
    pub fn state(&mut self, dim: Dim, value: u64, source: Source) -> Option<LimitChange> {
        let value = value.max(1);
        let limit = &mut self.dims[dim.index()];
        if limit.stated.as_ref().is_some_and(|(v, _)| *v == value) {
            return None;
        }
        let before = limit.effective().0;
        let was = limit.describe(dim);
        limit.stated = Some((value, source));
        let (after, source) = limit.effective();
        (after != before).then(|| LimitChange {
            dim,
            value: Some(after.unwrap_or(value)),
            source: source.clone(),
            was,
        })
    }

    /// The values in force that are enforced: an assumed hour or day limit is not (only
    /// the provider's own 429 ends a day; an assumed minute limit still sets the pace).
    pub fn enforced(&self) -> Limits {
        let mut out = self.values();
        for d in [Dim::Rph, Dim::Rpd, Dim::Tpd] {
            if self.get(d).assumed() {
                out.set(d, None);
            }
        }
        out
    }

    /// The assumed dimensions, each with its value (for `-v` and the dry run).
    pub fn assumed(&self) -> Vec<(Dim, u64)> {
        Dim::ALL
            .into_iter()
            .filter(|&d| self.get(d).assumed())
            .filter_map(|d| Some((d, self.get(d).configured?)))
            .collect()
    }

    /// Drops every free-tier default the provider has not stated once it states some
    /// dimension's limit more than ten times that dimension's free-tier default: such a
    /// key is not on the free tier, and its unstated limits are unknown, not the free
    /// tier's. Returns one change per dropped default.
    pub fn yield_defaults(&mut self) -> Vec<LimitChange> {
        let evidence = Dim::ALL.into_iter().find_map(|d| {
            let l = self.get(d);
            let (Some((stated, Source::Stated { .. })), Some(default)) = (&l.stated, l.configured)
            else {
                return None;
            };
            let free_tier = matches!(l.configured_source, Source::Default { .. });
            (free_tier && *stated > default.saturating_mul(PAID_TIER_FACTOR))
                .then_some((d, *stated))
        });
        let Some((by, stated)) = evidence else {
            return Vec::new();
        };
        let mut changes = Vec::new();
        for d in Dim::ALL {
            let limit = &mut self.dims[d.index()];
            let Source::Default { provider } = limit.configured_source else {
                continue;
            };
            if !limit.assumed() {
                continue;
            }
            let was = limit.describe(d);
            limit.configured = None;
            limit.configured_source = Source::DefaultDropped {
                provider,
                because: format!("the provider states {by} {stated}, not a free-tier key"),
            };
            changes.push(LimitChange {
                dim: d,
                value: None,
                source: limit.configured_source.clone(),
                was,
            });
        }
        changes
    }

    /// A lower value seen in practice; never raises the value in force.
    pub fn observe_lower(&mut self, dim: Dim, value: u64) -> Option<LimitChange> {
        let current = self.get(dim).effective().0;
        if current.is_some_and(|c| value >= c) {
            return None;
        }
        self.state(dim, value, Source::Observed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(configured: Option<u64>, source: Source) -> LimitSet {
        let mut values = Dim::ALL.map(|_| (None, Source::Default { provider: "groq" }));
        values[Dim::Tpm.index()] = (configured, source);
        LimitSet::configured(values)
    }

    fn header() -> Source {
        Source::Stated {
            by: "x-ratelimit-limit-tokens".into(),
            earlier: false,
        }
    }

    #[test]
    fn stated_values_replace_defaults_up_and_down() {
        let mut l = set(Some(6000), Source::Default { provider: "groq" });
        let change = l.state(Dim::Tpm, 10_000_000, header()).unwrap();
        assert_eq!(change.value, Some(10_000_000));
        assert!(change.was.contains("6000 from the groq free-tier default"));
        assert_eq!(l.values().tpm, Some(10_000_000));
        assert_eq!(
            l.get(Dim::Tpm).describe(Dim::Tpm),
            "tpm = 10000000 from x-ratelimit-limit-tokens"
        );
        assert!(l.state(Dim::Tpm, 10_000_000, header()).is_none());
        l.state(Dim::Tpm, 3000, header()).unwrap();
        assert_eq!(l.values().tpm, Some(3000));
    }

    #[test]
    fn user_values_stay_unless_the_provider_states_less() {
        let mut l = set(Some(50_000), Source::Flag);
        assert!(l.state(Dim::Tpm, 10_000_000, header()).is_none());
        assert_eq!(l.values().tpm, Some(50_000));
        assert_eq!(l.get(Dim::Tpm).describe(Dim::Tpm), "tpm = 50000 from --tpm");
        let change = l.state(Dim::Tpm, 20_000, header()).unwrap();
        assert_eq!(change.value, Some(20_000));
        // The provider raising it again cannot go above the user's value.
        let change = l.state(Dim::Tpm, 90_000, header()).unwrap();
        assert_eq!(change.value, Some(50_000));
        assert_eq!(change.source, Source::Flag);
    }

    #[test]
    fn observed_values_only_lower() {
        let mut l = set(Some(300), Source::Flag);
        assert!(l.observe_lower(Dim::Tpm, 400).is_none());
        assert_eq!(l.observe_lower(Dim::Tpm, 60).unwrap().value, Some(60));
        assert_eq!(l.values().tpm, Some(60));
    }

    fn groq_free_tier(rpm: (u64, Source)) -> LimitSet {
        let groq = || Source::Default { provider: "groq" };
        LimitSet::configured([
            (Some(rpm.0), rpm.1),
            (None, groq()),
            (Some(14_400), groq()),
            (Some(6_000), groq()),
            (Some(500_000), groq()),
        ])
    }

    #[test]
    fn a_stated_limit_far_above_the_free_tier_drops_the_unstated_defaults() {
        let mut l = groq_free_tier((10_000, Source::Flag));
        assert_eq!(
            l.assumed(),
            [(Dim::Rpd, 14_400), (Dim::Tpm, 6_000), (Dim::Tpd, 500_000)]
        );
        // Ten times the free tier is still a free-tier key's possible limit.
        l.state(Dim::Tpm, 60_000, header());
        assert!(l.yield_defaults().is_empty());
        l.state(
            Dim::Rpd,
            14_400,
            Source::Stated {
                by: "x-ratelimit-limit-requests".into(),
                earlier: false,
            },
        );
        l.state(Dim::Tpm, 10_000_000, header());
        let dropped = l.yield_defaults();
        assert_eq!(dropped.len(), 1, "{dropped:?}");
        assert_eq!(
            dropped[0].dropped_default().unwrap(),
            "tpd: free-tier default dropped (the provider states tpm 10000000, not a free-tier key)"
        );
        assert_eq!(dropped[0].value, None);
        assert_eq!(l.values().tpd, None);
        // The user's value and the stated ones stay; nothing is dropped twice.
        assert_eq!(l.values().rpm, Some(10_000));
        assert_eq!(l.values().rpd, Some(14_400));
        assert!(l.yield_defaults().is_empty());
        assert!(l
            .get(Dim::Tpd)
            .describe(Dim::Tpd)
            .starts_with("tpd = none from the groq free-tier default, dropped ("));
    }

    #[test]
    fn assumed_hour_and_day_limits_are_not_enforced_but_minute_ones_pace() {
        let l = groq_free_tier((30, Source::Default { provider: "groq" }));
        let e = l.enforced();
        assert_eq!((e.rpm, e.tpm), (Some(30), Some(6_000)));
        assert_eq!((e.rpd, e.tpd), (None, None));
        // A day limit the user set (or the provider stated) is enforced.
        let mut l = groq_free_tier((30, Source::Flag));
        l.state(
            Dim::Rpd,
            1_000,
            Source::Stated {
                by: "x".into(),
                earlier: false,
            },
        );
        assert_eq!(l.enforced().rpd, Some(1_000));
    }

    #[test]
    fn dims_parse_and_limits_take_the_lower() {
        assert_eq!(Dim::parse(" TPD "), Some(Dim::Tpd));
        assert_eq!(Dim::parse("x"), None);
        let a = Limits {
            rpm: Some(10),
            tpm: None,
            ..Limits::default()
        };
        let b = Limits {
            rpm: Some(5),
            tpm: Some(7),
            ..Limits::default()
        };
        assert_eq!(a.min(b).rpm, Some(5));
        assert_eq!(a.min(b).tpm, Some(7));
    }
}
