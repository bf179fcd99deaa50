//! Resolving flags, the env file, the process environment and provider defaults into one
//! `Config`. This is the only place that applies precedence (flag > environment >
//! env file > provider default) and the only place below `main` that reads the env.

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{BatchSize, CommonArgs, LabelArgs, OnExhausted};
use crate::error::{Error, Result};
use crate::keys::envfile::{self, Vars};
use crate::keys::settings::{self, KeySettings};
use crate::keys::ApiKey;
use crate::limits::{Dim, LimitSet, Limits, Source};
use crate::normalize::LabelSet;
use crate::provider::defaults::{self, ProviderName};
use crate::store::{OrgId, State, StateLocation};

/// What every command needs: provider, keys and where the state lives.
#[derive(Debug, Clone)]
pub struct Config {
    pub provider: ProviderName,
    /// Without a trailing `/`.
    pub base_url: String,
    pub model: String,
    /// Whether to ask for JSON mode on batches.
    pub json_mode: bool,
    /// Keys in configuration order (index 1..n).
    pub keys: Vec<ApiKey>,
    /// The keys are stand-ins for a dry run: none is configured yet (`--keys N`).
    pub keys_assumed: bool,
    /// Per key: the index of its organization (keys of one organization share limits).
    pub key_orgs: Vec<usize>,
    /// Whether the user grouped the keys (`--org-groups`, `P_ORG_GROUPS`): then nothing
    /// about shared organizations is learned, the user's groups win.
    pub org_groups_given: bool,
    /// Limits as configured (flag, environment, env file, or the free-tier default),
    /// each with where it came from.
    pub limits: LimitSet,
    /// Per organization: `limits` with what the provider stated to earlier runs
    /// (`load_learned`); the pacer starts from these.
    pub org_limits: Vec<LimitSet>,
    pub timeout: Duration,
    /// Where the state lives (a file or a Redis server).
    pub state: StateLocation,
    pub env_file: PathBuf,
    pub quiet: bool,
    pub verbose: u8,
    /// USD per token, in and out.
    pub prices: (f64, f64),
    /// Day of the month (1–28, UTC) on which monthly per-key quotas start again.
    pub quota_reset_day: u32,
}

/// `--max-retries` without a value: the number of keys, but never fewer than this.
const DEFAULT_MIN_RETRIES: u32 = 4;

/// A labeling run on top of `Config`.
#[derive(Debug, Clone)]
pub struct LabelConfig {
    /// The first (or only) provider; it also carries the settings all providers share
    /// (state, timeout, verbosity).
    pub base: Config,
    /// The other providers of a pool (`--provider groq,gemini`), in the order given.
    pub more: Vec<Config>,
    pub input: PathBuf,
    pub output: PathBuf,
    pub text_column: Option<String>,
    pub label_column: String,
    pub replace_label_column: bool,
    pub status_column: Option<String>,
    /// Column with the provider/model that labeled each row.
    pub model_column: Option<String>,
    pub labels: LabelSet,
    pub fallback_label: String,
    pub delay: Duration,
    pub concurrency: usize,
    pub batch_size: BatchSize,
    /// Retries per row after transient failures (server errors, timeouts, dropped
    /// connections, malformed replies). Rate limits and key errors never count.
    pub max_retries: u32,
    pub backoff: Duration,
    pub on_exhausted: OnExhausted,
    /// How long a shared state (Redis) may stay unreachable before the run stops (exit 75).
    pub store_timeout: Duration,
    /// Percent of a key's own daily or monthly quota below which it is rotated out.
    pub rotate_below: f64,
    pub prompt_template: Option<String>,
    pub use_cache: bool,
    pub limit: Option<u64>,
    pub dry_run: bool,
    pub overwrite: bool,
    /// Days of history the state keeps (0: all).
    pub keep_days: u32,
    pub report_dir: Option<PathBuf>,
    /// Seconds between progress lines without a terminal.
    pub progress_every: Duration,
}

impl Config {
    /// One `Config` per provider of `--provider`, in the order given (one for a single
    /// name). With a list, settings that differ by provider come only from `P_` variables
    /// (`--base-url`, `--model` and `--org-groups` are refused), and a limit or price flag
    /// applies to every provider whose own `P_` variable does not set it.
    pub fn resolve_pool(
        args: &CommonArgs,
        prices: (Option<f64>, Option<f64>),
        flags: Limits,
        org_groups: Option<&str>,
    ) -> Result<Vec<Config>> {
        let pool = args.provider.is_pool();
        if pool {
            let upper: Vec<String> = args
                .provider
                .0
                .iter()
                .map(|p| p.as_str().to_uppercase())
                .collect();
            let names = |suffix: &str| {
                upper
                    .iter()
                    .map(|p| format!("{p}_{suffix}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            for (set, flag, env, suffix) in [
                (
                    args.base_url.is_some(),
                    "--base-url",
                    " (or AUTOLABEL_BASE_URL)",
                    "BASE_URL",
                ),
                (
                    args.model.is_some(),
                    "--model",
                    " (or AUTOLABEL_MODEL)",
                    "MODEL",
                ),
                (org_groups.is_some(), "--org-groups", "", "ORG_GROUPS"),
            ] {
                if set {
                    return Err(Error::Usage(format!(
                        "{flag}{env} cannot be used with several providers: set {} in the env file or the environment instead",
                        names(suffix)
                    )));
                }
            }
        }
        let vars = Vars::load(&args.env_file)?;
        args.provider
            .0
            .iter()
            .map(|&p| Config::resolve_one(args, p, pool, prices, flags, org_groups, &vars))
            .collect()
    }

    /// The settings of one provider. `pool`: it is one of several, so its `P_` variables
    /// win over the limit and price flags (which then apply to all providers alike).
    fn resolve_one(
        args: &CommonArgs,
        provider: ProviderName,
        pool: bool,
        prices: (Option<f64>, Option<f64>),
        flags: Limits,
        org_groups: Option<&str>,
        vars: &Vars,
    ) -> Result<Config> {
        let d = defaults::defaults(provider);
        let prefix = provider.as_str().to_uppercase();
        let var = |suffix: &str| {
            let name = format!("{prefix}_{suffix}");
            vars.get(&name).map(|v| (v.trim().to_string(), name))
        };
        let model = match (&args.model, var("MODEL")) {
            (Some(m), _) => m.clone(),
            (None, Some((m, _))) => m,
            (None, None) => d.model.to_string(),
        };
        let (base_url, url_origin) = match (&args.base_url, var("BASE_URL")) {
            (Some(u), _) => (u.clone(), "--base-url".to_string()),
            (None, Some((u, name))) => (u, name),
            (None, None) => (d.base_url.to_string(), "--base-url".to_string()),
        };
        let base_url = base_url.trim_end_matches('/').to_string();
        // Messages show the URL without its password, if it has one.
        let shown = crate::keys::mask::scrub(&base_url);
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(Error::Usage(format!(
                "{url_origin} {shown}: must start with http:// or https://"
            )));
        }
        if let Err(e) = reqwest::Url::parse(&format!("{base_url}/chat/completions")) {
            return Err(Error::Usage(format!(
                "{url_origin} {shown}: not a usable URL ({e})"
            )));
        }
        let secrets = if provider.needs_key() {
            envfile::collect_keys_with_vars(provider.as_str(), vars)
        } else {
            vec![("ollama".to_string(), String::new())]
        };
        let keys_assumed = secrets.is_empty() && args.assume_keys.is_some();
        let secrets = match args.assume_keys {
            // Stand-ins: a dry run counts keys, it never sends with them.
            Some(n) if keys_assumed => (1..=n)
                .map(|i| (format!("assumed-key-{i}"), String::new()))
                .collect(),
            _ => secrets,
        };
        if secrets.is_empty() {
            let names = envfile::key_var_names(provider.as_str()).join(", ");
            let file = args.env_file.display();
            let upper = provider.as_str().to_uppercase();
            let fix = if vars.file_found {
                format!("{file} has none of them set: put your key(s) after the = in it, e.g. {upper}_API_KEY_1=your-key")
            } else {
                format!("{file} does not exist: copy envs/.envs.example to {file} and put your key(s) in it, e.g. {upper}_API_KEY_1=your-key")
            };
            return Err(Error::Config(format!(
                "no {} API key found: looked for {names} in {file} and the environment; {fix} (--dry-run estimates without keys)",
                provider.as_str()
            )));
        }
        let pool_name = pool.then_some(provider.as_str());
        let keys: Vec<ApiKey> = secrets
            .into_iter()
            .enumerate()
            .map(|(i, (secret, var))| {
                let settings = if var.is_empty() {
                    KeySettings::default()
                } else {
                    settings::read(&var, vars)?
                };
                Ok(ApiKey::new(i + 1, secret)
                    .with_settings(settings)
                    .in_pool(pool_name))
            })
            .collect::<Result<_>>()?;
        let limits = resolve_limits(provider, &model, flags, vars, pool)?;
        let quota_reset_day = settings::reset_day(&prefix, vars)?;
        let group_spec = org_groups
            .map(str::to_string)
            .or_else(|| var("ORG_GROUPS").map(|(v, _)| v));
        let key_orgs = parse_org_groups(group_spec.as_deref(), keys.len())?;
        let org_count = key_orgs.iter().max().map_or(0, |m| m + 1);
        let price = |flag: Option<f64>, name: &str| -> Result<f64> {
            let from_var = || -> Result<Option<f64>> {
                match vars.get(&format!("{prefix}_{name}")) {
                    Some(s) => s.trim().parse().map(Some).map_err(|_| {
                        Error::Config(format!(
                            "{prefix}_{name}={s}: not a number (USD per million tokens)"
                        ))
                    }),
                    None => Ok(None),
                }
            };
            // Alone, the flag wins; in a pool, the provider's own variable does.
            let v = if pool {
                from_var()?.or(flag).unwrap_or(0.0)
            } else {
                match flag {
                    Some(v) => v,
                    None => from_var()?.unwrap_or(0.0),
                }
            };
            if !v.is_finite() || v < 0.0 {
                return Err(Error::Usage(format!(
                    "price {v}: must be a finite number of USD per million tokens, 0 or more"
                )));
            }
            Ok(v / 1_000_000.0)
        };
        Ok(Config {
            provider,
            base_url,
            model,
            json_mode: d.json_mode,
            keys,
            keys_assumed,
            key_orgs,
            org_groups_given: group_spec.is_some(),
            org_limits: vec![limits.clone(); org_count],
            limits,
            timeout: Duration::from_secs_f64(args.timeout.max(0.001)),
            state: StateLocation::resolve(args.state.as_deref(), &args.redis_prefix)?,
            env_file: args.env_file.clone(),
            quiet: args.quiet,
            verbose: args.verbose,
            prices: (price(prices.0, "PRICE_IN")?, price(prices.1, "PRICE_OUT")?),
            quota_reset_day,
        })
    }

    /// For `usage`: like `resolve_pool`, but a provider without keys is no error (the
    /// state still knows them).
    pub fn resolve_for_report(args: &CommonArgs) -> Result<Vec<Config>> {
        let pool = args.provider.is_pool();
        if pool {
            // Refuses --base-url and --model with a list, as every command does.
            if let Err(e @ Error::Usage(_)) =
                Config::resolve_pool(args, (None, None), Limits::default(), None)
            {
                return Err(e);
            }
        }
        let vars = Vars::load(&args.env_file)?;
        let mut out = Vec::new();
        for &provider in &args.provider.0 {
            let one = Config::resolve_one(
                args,
                provider,
                pool,
                (None, None),
                Limits::default(),
                None,
                &vars,
            );
            out.push(match one {
                Err(Error::Config(msg)) if msg.starts_with("no ") => {
                    let model = args.model.clone().unwrap_or_else(|| {
                        vars.get(&format!("{}_MODEL", provider.as_str().to_uppercase()))
                            .map(|m| m.trim().to_string())
                            .unwrap_or_else(|| defaults::defaults(provider).model.to_string())
                    });
                    let limits = resolve_limits(provider, &model, Limits::default(), &vars, pool)?;
                    Config {
                        provider,
                        base_url: String::new(),
                        model,
                        json_mode: false,
                        keys: Vec::new(),
                        keys_assumed: false,
                        key_orgs: Vec::new(),
                        org_groups_given: false,
                        org_limits: vec![limits.clone()],
                        limits,
                        timeout: Duration::from_secs(30),
                        state: StateLocation::resolve(args.state.as_deref(), &args.redis_prefix)?,
                        env_file: args.env_file.clone(),
                        quiet: args.quiet,
                        verbose: args.verbose,
                        prices: (0.0, 0.0),
                        quota_reset_day: settings::reset_day(
                            &provider.as_str().to_uppercase(),
                            &vars,
                        )?,
                    }
                }
                other => other?,
            });
        }
        Ok(out)
    }

    pub fn org_count(&self) -> usize {
        self.key_orgs.iter().max().map_or(0, |m| m + 1)
    }

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

    /// Groups the keys that earlier runs found in one organization (see
    /// `Store::org_members`); the user's own groups win.
    fn adopt_org_members(&mut self, state: &State) -> crate::error::Result<()> {
        if self.org_groups_given || self.keys.len() < 2 {
            return Ok(());
        }
        let members = state.org_members(self.provider.as_str())?;
        let org_of = |fp: &str| {
            members
                .iter()
                .find(|(f, _)| f == fp)
                .map(|(_, o)| o.as_str())
        };
        let mut seen: Vec<(&str, usize)> = Vec::new();
        let mut key_orgs = Vec::new();
        let mut next = 0;
        for key in &self.keys {
            let group = org_of(&key.fingerprint);
            match group.and_then(|g| seen.iter().find(|(o, _)| *o == g)) {
                Some(&(_, index)) => key_orgs.push(index),
                None => {
                    seen.extend(group.map(|g| (g, next)));
                    key_orgs.push(next);
                    next += 1;
                }
            }
        }
        if key_orgs != self.key_orgs {
            self.key_orgs = key_orgs;
            self.org_limits = vec![self.limits.clone(); next];
        }
        Ok(())
    }

    /// The keys (their indexes, from 1) of each organization of several keys.
    pub fn shared_groups(&self) -> Vec<Vec<usize>> {
        (0..self.org_count())
            .map(|org| {
                self.keys
                    .iter()
                    .zip(&self.key_orgs)
                    .filter(|(_, o)| **o == org)
                    .map(|(k, _)| k.index)
                    .collect::<Vec<_>>()
            })
            .filter(|keys| keys.len() > 1)
            .collect()
    }

    /// How every run names organization `org` in the shared quota store: provider, model
    /// and its keys' fingerprints, so runs with the same keys share one limiter.
    pub fn org_id(&self, org: usize) -> OrgId {
        OrgId::new(
            self.provider.as_str(),
            &self.model,
            &self.org_fingerprints(org),
        )
    }

    /// The fingerprints of organization `org`'s keys, in configuration order.
    fn org_fingerprints(&self, org: usize) -> Vec<&str> {
        self.keys
            .iter()
            .zip(&self.key_orgs)
            .filter(|(_, o)| **o == org)
            .map(|(k, _)| k.fingerprint.as_str())
            .collect()
    }

    /// The lowest limits in force over the organizations (for estimates and reports).
    pub fn limits_in_force(&self) -> Limits {
        crate::pacing::lowest(&self.org_limits)
    }
}

impl LabelConfig {
    pub fn resolve(args: &LabelArgs) -> Result<LabelConfig> {
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
        let mut common = args.common.clone();
        if args.dry_run {
            common.assume_keys = Some(args.assumed_keys as usize);
        }
        let mut pool = Config::resolve_pool(
            &common,
            (args.price_in, args.price_out),
            flags,
            args.org_groups.as_deref(),
        )?;
        let base = pool.remove(0);
        let more = pool;
        let labels =
            LabelSet::parse(&args.labels).map_err(|e| Error::Usage(format!("--labels {e}")))?;
        let prompt_template = match &args.prompt_file {
            None => None,
            Some(p) => {
                let t = read_prompt_file(p)?;
                if !t.contains("{text}") {
                    return Err(Error::Usage(format!(
                        "--prompt-file {}: has no {{text}} placeholder for the text to label",
                        p.display()
                    )));
                }
                Some(t)
            }
        };
        if args.fallback_label.trim().is_empty() {
            return Err(Error::Usage("--fallback-label must not be empty".into()));
        }
        let input = args.input.clone().expect("clap requires --input");
        let output = args.output.clone().expect("clap requires --output");
        crate::safefs::refuse_input(&input, &output, "--output")?;
        let all_keys: usize = base.keys.len() + more.iter().map(|c| c.keys.len()).sum::<usize>();
        let max_retries = args
            .max_retries
            .unwrap_or((all_keys as u32).max(DEFAULT_MIN_RETRIES));
        Ok(LabelConfig {
            input,
            output,
            text_column: args.text_column.clone(),
            label_column: args.label_column.clone(),
            replace_label_column: args.replace_label_column,
            status_column: args.status_column.clone(),
            model_column: args.model_column.clone(),
            labels,
            fallback_label: args.fallback_label.trim().to_string(),
            delay: Duration::from_secs_f64(args.delay),
            concurrency: args.concurrency as usize,
            batch_size: args.batch_size,
            max_retries,
            backoff: Duration::from_secs_f64(args.backoff),
            on_exhausted: args.on_exhausted,
            store_timeout: Duration::from_secs_f64(args.store_timeout),
            rotate_below: args.rotate_below,
            prompt_template,
            use_cache: !args.no_cache,
            limit: args.limit,
            dry_run: args.dry_run,
            overwrite: args.overwrite,
            keep_days: args.keep_days,
            report_dir: args.report_dir.clone(),
            progress_every: Duration::from_secs_f64(args.progress_every),
            base,
            more,
        })
    }

    /// Every provider of the run, the first one first.
    pub fn pool(&self) -> impl Iterator<Item = &Config> {
        std::iter::once(&self.base).chain(&self.more)
    }

    pub fn pool_mut(&mut self) -> impl Iterator<Item = &mut Config> {
        std::iter::once(&mut self.base).chain(&mut self.more)
    }

    pub fn is_pool(&self) -> bool {
        !self.more.is_empty()
    }

    /// The lowest limits in force over every organization of every provider (for the
    /// one batch size a run uses).
    pub fn limits_in_force(&self) -> Limits {
        let sets: Vec<LimitSet> = self
            .pool()
            .flat_map(|c| c.org_limits.iter().cloned())
            .collect();
        crate::pacing::lowest(&sets)
    }
}

/// The prompt template, read up to the small-file cap (a device never ends).
fn read_prompt_file(p: &std::path::Path) -> Result<String> {
    let flag = |why: String| Error::Usage(format!("--prompt-file {}: {why}", p.display()));
    let bytes = crate::safefs::read_small(p)
        .map_err(|e| flag(e.to_string()))?
        .ok_or_else(|| flag(crate::safefs::too_large()))?;
    String::from_utf8(bytes).map_err(|_| flag("is not valid UTF-8; save it as UTF-8".into()))
}

/// Flag > environment > env file > provider default, for each limit. In a pool of
/// providers (`pool`) a flag is the value for all of them, so a provider's own variable
/// wins over it: environment > env file > flag > default. A variable that is set but not
/// a whole number of at least 1 is an error naming it.
fn resolve_limits(
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

/// `"1,2;3"` → keys 1 and 2 share an organization, key 3 has its own, and every key not
/// named has its own too. Returns the organization index of each key.
pub fn parse_org_groups(spec: Option<&str>, keys: usize) -> Result<Vec<usize>> {
    let mut orgs: Vec<Option<usize>> = vec![None; keys];
    let mut next = 0;
    if let Some(spec) = spec.filter(|s| !s.trim().is_empty()) {
        for group in spec.split(';').map(str::trim).filter(|g| !g.is_empty()) {
            for item in group.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                let idx: usize = item
                    .parse()
                    .ok()
                    .filter(|i| (1..=keys).contains(i))
                    .ok_or_else(|| {
                        Error::Usage(format!(
                            "org groups '{spec}': '{item}' is not a key index between 1 and {keys}"
                        ))
                    })?;
                if orgs[idx - 1].is_some() {
                    return Err(Error::Usage(format!(
                        "org groups '{spec}': key {idx} is named twice"
                    )));
                }
                orgs[idx - 1] = Some(next);
            }
            next += 1;
        }
    }
    Ok(orgs
        .into_iter()
        .map(|o| {
            o.unwrap_or_else(|| {
                next += 1;
                next - 1
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_groups() {
        assert_eq!(parse_org_groups(None, 3).unwrap(), [0, 1, 2]);
        assert_eq!(parse_org_groups(Some("1,2"), 3).unwrap(), [0, 0, 1]);
        assert_eq!(parse_org_groups(Some("1,3;2"), 4).unwrap(), [0, 1, 0, 2]);
        assert!(parse_org_groups(Some("1,4"), 3).is_err());
        assert!(parse_org_groups(Some("1;1"), 3).is_err());
    }

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
