//! Resolving flags, the env file, the process environment and provider defaults into one
//! `Config`. This is the only place that applies precedence (flag > environment >
//! env file > provider default) and the only place below `main` that reads the env.

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{BatchSize, CommonArgs, LabelArgs, OnExhausted};
use crate::error::{Error, Result};
use crate::keys::envfile::Vars;
use crate::keys::settings;
use crate::keys::ApiKey;
use crate::limits::{LimitSet, Limits};
use crate::normalize::LabelSet;
use crate::pacing::Rank;
use crate::provider::defaults::{self, ProviderName};
use crate::store::StateLocation;

mod keys;
mod limits;
mod orgs;

use limits::resolve_limits;
pub use orgs::parse_org_groups;

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
    /// How the run ranks against others on the same keys (`--priority`, `--min-share`).
    pub rank: Rank,
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
    /// `--votes`, the confidence and votes columns, and review.
    pub votes: crate::votes::VoteSettings,
    /// `tune`: this run's answers are cached apart under this tag.
    pub cache_tag: Option<String>,
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
        let (keys, keys_assumed) = keys::resolve_keys(args, provider, pool, vars)?;
        let limits = resolve_limits(provider, &model, flags, vars, pool)?;
        let quota_reset_day = settings::reset_day(&prefix, vars)?;
        let group_spec = org_groups
            .map(str::to_string)
            .or_else(|| var("ORG_GROUPS").map(|(v, _)| v));
        let key_orgs = parse_org_groups(group_spec.as_deref(), keys.len())?;
        let org_count = key_orgs.iter().max().map_or(0, |m| m + 1);
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
            prices: (
                resolve_price(prices.0, "PRICE_IN", &prefix, vars, pool)?,
                resolve_price(prices.1, "PRICE_OUT", &prefix, vars, pool)?,
            ),
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

    /// The lowest limits in force over the organizations (for estimates and reports).
    pub fn limits_in_force(&self) -> Limits {
        crate::pacing::lowest(&self.org_limits)
    }
}

impl LabelConfig {
    pub fn resolve(args: &LabelArgs) -> Result<LabelConfig> {
        let flags = limits::flag_limits(args)?;
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
        let votes = crate::votes::VoteSettings::from_args(args, &input, &output)?;
        Ok(LabelConfig {
            votes,
            cache_tag: args.cache_tag.clone(),
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
            rank: Rank {
                priority: args.priority,
                min_share: args.min_share / 100.0,
            },
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

/// A price in USD per token, given in USD per million tokens by the flag or the
/// provider's `P_PRICE_IN`/`P_PRICE_OUT` variable.
fn resolve_price(
    flag: Option<f64>,
    name: &str,
    prefix: &str,
    vars: &Vars,
    pool: bool,
) -> Result<f64> {
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
}

/// The prompt template, read up to the small-file cap (a device never ends).
fn read_prompt_file(p: &std::path::Path) -> Result<String> {
    let flag = |why: String| Error::Usage(format!("--prompt-file {}: {why}", p.display()));
    let bytes = crate::safefs::read_small(p)
        .map_err(|e| flag(e.to_string()))?
        .ok_or_else(|| flag(crate::safefs::too_large()))?;
    String::from_utf8(bytes).map_err(|_| flag("is not valid UTF-8; save it as UTF-8".into()))
}
