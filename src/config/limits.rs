//! Which limits a provider's keys start from: the flags, the variables (with the older
//! tools' names), the free-tier defaults, and what the provider stated to earlier runs.

use super::Config;
use crate::cli::LabelArgs;
use crate::error::{Error, Result};
use crate::keys::envfile::Vars;
use crate::limits::{Dim, LimitSet, Limits, Source};
use crate::provider::defaults::{self, ProviderName};
use crate::store::State;

/// The limit flags of a run (`--rpm 0` and the like are refused).
pub(super) fn flag_limits(args: &LabelArgs) -> Result<Limits> {
    let flags = Limits {
        rpm: args.rpm,
        rph: args.rph,
        rpd: args.rpd,
        tpm: args.tpm,
        tpd: args.tpd,
    };
    for (name, v) in [
        ("rpm", args.rpm),
        ("rph", args.rph),
        ("rpd", args.rpd),
        ("tpm", args.tpm),
        ("tpd", args.tpd),
    ] {
        if v == Some(0) {
            return Err(Error::Usage(format!(
                "--{name} 0: a limit must be at least 1 (leave it out for the default)"
            )));
        }
    }
    Ok(flags)
}

impl Config {
    /// Starts each organization from the limits its keys' provider stated to earlier runs
    /// (for this model), by the rule of `limits`: a stated value replaces a default and
    /// lowers a value the user set. Without configured keys, every key the state knows
    /// counts as one organization.
    ///
    /// First the keys earlier runs found to share an organization are grouped (unless
    /// the user grouped the keys), so each group is paced as one from the start.
    pub fn load_learned(&mut self, state: &State) -> crate::error::Result<()> {
        self.adopt_org_members(state)?;
        let learned = state.learned_limits(self.provider.as_str(), &self.model)?;
        if learned.is_empty() {
            return Ok(());
        }
        let org_fingerprints: Vec<Vec<String>> = (0..self.org_limits.len())
            .map(|org| {
                let fps = self.org_fingerprints(org);
                fps.into_iter().map(str::to_string).collect()
            })
            .collect();
        for (set, fingerprints) in self.org_limits.iter_mut().zip(&org_fingerprints) {
            for dim in Dim::ALL {
                // The newest statement by any key of the organization.
                let newest = learned
                    .iter()
                    .filter(|l| l.dim == dim)
                    .filter(|l| self.keys.is_empty() || fingerprints.contains(&l.fingerprint))
                    .max_by_key(|l| l.updated);
                if let Some(l) = newest {
                    let source = Source::Stated {
                        by: l.source.clone(),
                        earlier: true,
                    };
                    set.state(dim, l.value, source);
                }
            }
            set.yield_defaults();
        }
        Ok(())
    }
}

/// Flag > environment > env file > provider default, for each limit. In a pool of
/// providers (`pool`) a flag is the value for all of them, so a provider's own variable
/// wins over it: environment > env file > flag > default. A variable that is set but not
/// a whole number of at least 1 is an error naming it.
pub(super) fn resolve_limits(
    provider: ProviderName,
    model: &str,
    flags: Limits,
    vars: &Vars,
    pool: bool,
) -> Result<LimitSet> {
    let defaults = defaults::free_tier_limits(provider, model);
    let p = provider.as_str().to_uppercase();
    let mut names: Vec<(Dim, Vec<String>)> = Dim::ALL
        .iter()
        .map(|&d| (d, vec![format!("{p}_{}", d.as_str().to_uppercase())]))
        .collect();
    // The older tools' names.
    let mut alias = |dim: Dim, more: &[&str]| {
        names[dim as usize]
            .1
            .extend(more.iter().map(|s| s.to_string()))
    };
    match provider {
        ProviderName::Gemini => {
            alias(Dim::Rpm, &["GEMINI_MINUTE_LIMIT"]);
            alias(Dim::Rpd, &["GEMINI_DAILY_LIMIT"]);
            alias(Dim::Tpm, &["GEMINI_TOKEN_MINUTE_LIMIT"]);
        }
        ProviderName::Xai => {
            alias(Dim::Rpm, &["GROK_RPM", "GROK_RATE_LIMIT_RPM"]);
            alias(Dim::Rph, &["GROK_RPH", "GROK_RATE_LIMIT_RPH"]);
            alias(Dim::Rpd, &["GROK_RPD"]);
            alias(Dim::Tpm, &["GROK_TPM"]);
        }
        _ => {}
    }
    let mut values = Dim::ALL.map(|_| (None, Source::Flag));
    for (dim, vars_for) in &names {
        let mut from_env = None;
        for name in vars_for {
            let Some(raw) = vars.get(name) else { continue };
            let n = raw
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    Error::Config(format!(
                        "{name}={raw} (from the {}): a limit must be a whole number of at least 1",
                        vars.origin(name)
                    ))
                })?;
            from_env = Some((
                n,
                Source::Variable {
                    name: name.clone(),
                    place: vars.origin(name).to_string(),
                },
            ));
            break;
        }
        let flag = flags.get(*dim).map(|f| (f, Source::Flag));
        let chosen = if pool {
            from_env.or(flag)
        } else {
            flag.or(from_env)
        };
        values[*dim as usize] = if let Some((n, source)) = chosen {
            (Some(n), source)
        } else {
            (
                defaults.get(*dim),
                Source::Default {
                    provider: provider.as_str(),
                },
            )
        };
    }
    Ok(LimitSet::configured(values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_precedence() {
        let vars = Vars::from_maps(
            &[("GROQ_RPM", "10"), ("GROQ_RPD", "99")],
            &[("GROQ_RPD", "77")],
        );
        let flags = Limits {
            rpd: None,
            rpm: Some(5),
            ..Limits::default()
        };
        let set = resolve_limits(
            ProviderName::Groq,
            "llama-3.1-8b-instant",
            flags,
            &vars,
            false,
        )
        .unwrap();
        let l = set.values();
        assert_eq!(l.rpm, Some(5));
        assert_eq!(l.rpd, Some(77));
        assert_eq!(l.tpm, Some(6000));
        let origins = set.describe();
        assert_eq!(origins[0], "rpm = 5 from --rpm");
        assert_eq!(origins[2], "rpd = 77 from GROQ_RPD in environment");
        assert_eq!(origins[3], "tpm = 6000 from the groq free-tier default");
        let bad = Vars::from_maps(&[("GROQ_TPM", "6k")], &[]);
        let err =
            resolve_limits(ProviderName::Groq, "m", Limits::default(), &bad, false).unwrap_err();
        assert!(
            err.to_string().contains("GROQ_TPM=6k (from the env file)"),
            "{err}"
        );
        let vars = Vars::from_maps(&[("GEMINI_MINUTE_LIMIT", "12")], &[]);
        let l = resolve_limits(
            ProviderName::Gemini,
            "gemini-2.0-flash",
            Limits::default(),
            &vars,
            false,
        )
        .unwrap()
        .values();
        assert_eq!(l.rpm, Some(12));
        let vars = Vars::from_maps(&[("GROK_RATE_LIMIT_RPH", "100")], &[]);
        let l = resolve_limits(
            ProviderName::Xai,
            "grok-3-mini",
            Limits::default(),
            &vars,
            false,
        )
        .unwrap()
        .values();
        assert_eq!(l.rph, Some(100));
    }

    #[test]
    fn in_a_pool_a_providers_own_variable_wins_over_the_flag() {
        let vars = Vars::from_maps(&[("GEMINI_RPM", "12")], &[]);
        let flags = Limits {
            rpm: Some(40),
            ..Limits::default()
        };
        let alone = resolve_limits(ProviderName::Gemini, "m", flags, &vars, false).unwrap();
        assert_eq!(alone.values().rpm, Some(40));
        let pooled = resolve_limits(ProviderName::Gemini, "m", flags, &vars, true).unwrap();
        assert_eq!(pooled.values().rpm, Some(12));
        assert_eq!(pooled.describe()[0], "rpm = 12 from GEMINI_RPM in env file");
        // Without a variable the flag applies to every provider of the pool.
        let groq = resolve_limits(ProviderName::Groq, "m", flags, &vars, true).unwrap();
        assert_eq!(groq.values().rpm, Some(40));
    }
}
