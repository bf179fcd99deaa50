//! The limits each key works under, as its own organization has them: per dimension the
//! value in force and where it came from. A key is never shown another organization's
//! statement: a key whose provider stated nothing yet shows the configured or default
//! value, named as such, or "not stated yet".

use serde::Serialize;

use crate::config::Config;
use crate::limits::{Dim, LimitSet, Limits, Source};

/// What a dimension without any value shows as its origin.
pub const NOT_STATED: &str = "not stated yet";

/// One dimension of a key's limits.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LimitView {
    /// rpm, rph, rpd, tpm or tpd.
    pub dim: &'static str,
    /// `None` (JSON null): no limit known.
    pub value: Option<u64>,
    /// `stated` (by the provider, to this key's organization), `observed`, `learned`,
    /// `configured` (flag, environment, env file), `default` (the assumed free tier) or
    /// `not stated yet`.
    pub origin: &'static str,
    /// Where it came from, in words: `x-ratelimit-limit-requests (stated to an earlier run)`.
    pub from: String,
}

/// The origin's one word for a value and its source.
pub fn origin(value: Option<u64>, source: &Source) -> &'static str {
    match (value, source) {
        (None, _) | (_, Source::DefaultDropped { .. }) => NOT_STATED,
        (_, Source::Flag | Source::Variable { .. }) => "configured",
        (_, Source::Default { .. }) => "default",
        (_, Source::Stated { .. }) => "stated",
        (_, Source::Observed) => "observed",
        (_, Source::Learned) => "learned",
    }
}

/// The limit set of the organization of the key at `pos` in `cfg.keys`; for a key the
/// env file no longer has (`None`), the limits as configured.
pub fn key_limit_set(cfg: &Config, pos: Option<usize>) -> &LimitSet {
    pos.and_then(|p| cfg.key_orgs.get(p))
        .and_then(|org| cfg.org_limits.get(*org))
        .unwrap_or(&cfg.limits)
}

/// Every dimension of `set`, each with its origin.
pub fn limit_views(set: &LimitSet) -> Vec<LimitView> {
    Dim::ALL
        .into_iter()
        .map(|d| {
            let (value, source) = set.get(d).effective();
            LimitView {
                dim: d.as_str(),
                value,
                origin: origin(value, source),
                from: match (value, source) {
                    (None, Source::DefaultDropped { .. }) => source.to_string(),
                    (None, _) => NOT_STATED.to_string(),
                    (_, Source::Flag) => format!("--{d}"),
                    (_, s) => s.to_string(),
                },
            }
        })
        .collect()
}

/// The values of `views` as plain limits (what a day of quota buys).
pub fn values(views: &[LimitView]) -> Limits {
    let mut out = Limits::default();
    for v in views {
        if let Some(d) = Dim::parse(v.dim) {
            out.set(d, v.value);
        }
    }
    out
}

/// The view of one dimension.
pub fn find(views: &[LimitView], dim: Dim) -> Option<&LimitView> {
    views.iter().find(|v| v.dim == dim.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_dimension_names_where_its_value_came_from() {
        let groq = || Source::Default { provider: "groq" };
        let mut set = LimitSet::configured([
            (Some(30), Source::Flag),
            (None, groq()),
            (Some(14_400), groq()),
            (Some(6_000), groq()),
            (None, groq()),
        ]);
        set.state(
            Dim::Tpm,
            7_000,
            Source::Stated {
                by: "x-ratelimit-limit-tokens".into(),
                earlier: true,
            },
        );
        let v = limit_views(&set);
        let get = |d| find(&v, d).unwrap();
        assert_eq!(
            (get(Dim::Rpm).origin, get(Dim::Rpm).from.as_str()),
            ("configured", "--rpm")
        );
        assert_eq!(get(Dim::Rph).origin, NOT_STATED);
        assert_eq!(get(Dim::Rph).value, None);
        assert_eq!(get(Dim::Rpd).origin, "default");
        assert_eq!(get(Dim::Rpd).from, "the groq free-tier default");
        assert_eq!(get(Dim::Tpm).origin, "stated");
        assert_eq!(values(&v).tpm, Some(7_000));
    }
}
