//! The run's [`Labeler`], built from the resolved configuration: one key ring and one
//! dispatcher over every provider's keys, with the health and quota use that earlier runs
//! left in the state.

use std::sync::Arc;
use std::time::SystemTime;

use super::spec::{Labeler, Member, Policy, RunSpec};
use crate::config::{Config, LabelConfig};
use crate::error::Result;
use crate::keys::health::Health;
use crate::keys::ring::KeyRing;
use crate::keys::settings::Period;
use crate::keys::ApiKey;
use crate::limits::Dim;
use crate::pacing::{Dispatcher, OrgSetup, ProviderRules, SystemClock};
use crate::prompt::Prompter;
use crate::provider::{defaults, logprobs, Client};
use crate::store::{CacheScope, HealthReason, State};
use crate::timeutil::{self, Day};
use crate::ui::Ui;

/// The label cache's scope for one provider: provider, model, prompt and labels.
pub fn cache_scope(c: &crate::config::Config, prompter: &Prompter) -> CacheScope {
    CacheScope::new(c.provider.as_str(), &c.model, &prompter.identity())
}

/// `-v`: each limit in force and where it came from, once per distinct set (and per
/// provider in a pool).
pub fn log_limits(ui: &Ui, base: &crate::config::Config, pool: bool) {
    if !base.org_groups_given {
        for keys in base.shared_groups() {
            let keys: Vec<String> = keys.iter().map(|k| format!("#{k}")).collect();
            ui.info(&format!(
                "keys {} share an organization (found by an earlier run): pacing them as one; set {}_ORG_GROUPS to skip the learning",
                keys.join(", "),
                base.provider.as_str().to_uppercase()
            ));
        }
    }
    let mut shown: Vec<&crate::limits::LimitSet> = Vec::new();
    for (org, set) in base.org_limits.iter().enumerate() {
        if shown.contains(&set) {
            continue;
        }
        shown.push(set);
        let whose = if base.org_limits.len() > 1 {
            let keys: Vec<String> = base
                .keys
                .iter()
                .zip(&base.key_orgs)
                .filter(|(_, o)| **o == org)
                .map(|(k, _)| format!("#{}", k.index))
                .collect();
            format!(" (organization of key {})", keys.join(", "))
        } else {
            String::new()
        };
        let provider = if pool {
            format!("{}: ", base.provider.as_str())
        } else {
            String::new()
        };
        for (d, line) in Dim::ALL.into_iter().zip(set.describe()) {
            let assumed = if set.get(d).assumed() {
                " (assumed)"
            } else {
                ""
            };
            let line = format!("{line}{assumed}");
            ui.debug(1, &format!("{provider}{line}{whose}"));
        }
    }
}

pub fn build_labeler(
    cfg: &LabelConfig,
    ui: Arc<Ui>,
    state: Arc<State>,
    prompter: Prompter,
) -> Result<Labeler> {
    // One ring and one dispatcher over every provider's keys: organizations are numbered
    // across providers, and each keeps its provider's header meanings and day.
    let mut keys = Vec::new();
    let mut key_orgs = Vec::new();
    let mut key_member = Vec::new();
    let mut orgs = Vec::new();
    let mut members = Vec::new();
    for (m, c) in cfg.pool().enumerate() {
        let first_org = orgs.len();
        orgs.extend(org_setups(cfg, c, &state)?);
        for (k, org) in c.keys.iter().zip(&c.key_orgs) {
            keys.push(k.clone());
            key_orgs.push(first_org + org);
            key_member.push(m);
        }
        members.push(member(cfg, c, &prompter, &ui)?);
    }
    let ring = key_ring(cfg, keys, &key_orgs, &key_member, &state, &ui)?;
    let quotas = crate::store::open_quota_store(&cfg.base.state)?;
    let dispatcher = learning_orgs(
        Dispatcher::new(ring, orgs, cfg.delay, Arc::new(SystemClock), quotas)
            .with_store_timeout(cfg.store_timeout)
            .with_rank(cfg.rank),
        cfg,
        &key_member,
    );
    Ok(Labeler {
        spec: RunSpec {
            members,
            key_member,
            prompter,
            labels: cfg.labels.clone(),
            policy: Policy {
                max_retries: cfg.max_retries,
                backoff: cfg.backoff,
                on_exhausted: cfg.on_exhausted,
                store_timeout: cfg.store_timeout,
                priority: cfg.rank.priority,
            },
        },
        dispatcher,
        state,
        ui,
    })
}

/// Tells the dispatcher each key's provider, and lets it learn which keys share an
/// organization unless the user grouped the keys of some provider (their groups then
/// win, and a pool learns nothing).
fn learning_orgs(d: Dispatcher, cfg: &LabelConfig, key_member: &[usize]) -> Dispatcher {
    let d = d.with_families(key_member.to_vec());
    if cfg.pool().any(|c| c.org_groups_given) {
        return d;
    }
    d.learning_orgs(key_member.to_vec())
}

/// The organizations of provider `c`, with what the ledger says each used today.
fn org_setups(cfg: &LabelConfig, c: &Config, state: &State) -> Result<Vec<OrgSetup>> {
    let provider = c.provider.as_str();
    let mut orgs = Vec::new();
    for o in 0..c.org_count() {
        let fps: Vec<String> = c
            .keys
            .iter()
            .zip(&c.key_orgs)
            .filter(|(_, org)| **org == o)
            .map(|(k, _)| k.fingerprint.clone())
            .collect();
        orgs.push(OrgSetup {
            limits: c.org_limits[o].clone(),
            id: c.org_id(o),
            used_today: state.used_today(provider, &fps)?,
            lease: cfg.concurrency as u64 * 4,
            rules: ProviderRules {
                headers: defaults::header_meaning(c.provider),
                day: defaults::day_start(c.provider),
            },
        });
    }
    Ok(orgs)
}

/// Provider `c` as a member of the run.
fn member(cfg: &LabelConfig, c: &Config, prompter: &Prompter, ui: &Ui) -> Result<Member> {
    let provider = c.provider.as_str();
    let client = Client::new(
        &c.base_url,
        &c.model,
        c.json_mode,
        c.timeout,
        cfg.concurrency,
    )?;
    Ok(Member {
        provider,
        client: ask_logprobs(cfg, c, client, ui),
        prices: c.prices,
        tag: format!("{provider}/{}", c.model),
        cache_scope: cache_scope(c, prompter),
    })
}

/// `--confidence logprobs`: asked only of the providers known to return them (Groq
/// answers 400); each other provider is named once, its rows get no confidence.
fn ask_logprobs(cfg: &LabelConfig, c: &Config, client: Client, ui: &Ui) -> Client {
    if !cfg.votes.logprobs() {
        return client;
    }
    if logprobs::supported(c.provider) {
        return client.with_logprobs(logprobs::top_k(cfg.labels.labels().len()));
    }
    ui.info(&format!(
        "--confidence logprobs: {} is not known to return logprobs, so none are asked of it; its rows get no confidence",
        c.provider.as_str()
    ));
    client
}

/// One ring over every provider's keys, each with its provider's day and quota rules,
/// and the health and quota use earlier runs left in the state.
fn key_ring(
    cfg: &LabelConfig,
    keys: Vec<ApiKey>,
    key_orgs: &[usize],
    key_member: &[usize],
    state: &State,
    ui: &Ui,
) -> Result<KeyRing> {
    let mut ring = KeyRing::new(keys, key_orgs)
        .with_rules(defaults::day_start(cfg.base.provider), cfg.backoff)
        .with_quota_rules(cfg.base.quota_reset_day, cfg.rotate_below);
    let providers: Vec<&Config> = cfg.pool().collect();
    for (k, &m) in key_member.iter().enumerate() {
        let c = providers[m];
        ring.set_provider_rules(k, defaults::day_start(c.provider), c.quota_reset_day);
    }
    for (m, c) in providers.iter().enumerate() {
        let mine: Vec<usize> = (0..key_member.len())
            .filter(|&k| key_member[k] == m)
            .collect();
        let provider = c.provider.as_str();
        restore_health(&mut ring, state, provider, &mine, ui)?;
        load_quota_use(&mut ring, state, provider, &mine, c.quota_reset_day)?;
    }
    Ok(ring)
}

/// Starts the day and month counts of `keys` (one provider's) with quotas of their own
/// from the ledger. What `autolabel keys reset` forgot does not count.
fn load_quota_use(
    ring: &mut KeyRing,
    state: &State,
    provider: &str,
    keys: &[usize],
    reset_day: u32,
) -> Result<()> {
    let wall = SystemTime::now();
    let overrides = state.key_overrides(provider)?;
    for &k in keys {
        let slot = &mut ring.slots[k];
        if !slot.quota.is_limited() {
            continue;
        }
        let fp = &slot.key.fingerprint;
        let o = overrides.iter().find(|o| &o.fingerprint == fp);
        for (period, since) in [
            (Period::Day, wall),
            (Period::Month, timeutil::month_start(wall, reset_day)),
        ] {
            let since = Day::of(since);
            let mut used = state.key_used_since(provider, fp, &since)?;
            if let Some(o) = o {
                let base = if period == Period::Day {
                    &o.day_base
                } else {
                    &o.month_base
                };
                used = base.apply(&since, used);
            }
            slot.quota.set_used(period, wall, used.0, used.1);
        }
    }
    Ok(())
}

/// Keys that an earlier run found exhausted, invalid or cooling stay so, without a request.
/// A key rotated out for its own quota is not restored: the ledger and the quotas as
/// configured now decide that again.
fn restore_health(
    ring: &mut KeyRing,
    state: &State,
    provider: &str,
    keys: &[usize],
    ui: &Ui,
) -> Result<()> {
    let stored = state.load_health(provider)?;
    let now = SystemTime::now();
    for &i in keys {
        let fp = ring.slots[i].key.fingerprint.clone();
        let Some(h) = stored.iter().find(|h| h.fingerprint == fp) else {
            continue;
        };
        // A key rotated out for its own quota is each run's own call (from the ledger).
        if let HealthReason::QuotaLow(_) = h.reason {
            continue;
        }
        let Some(health) = Health::from_stored(h, tokio::time::Instant::now(), now) else {
            continue;
        };
        let when = match &health {
            Health::Invalid => "until `autolabel test-keys` passes".to_string(),
            _ => format!("until {}", timeutil::rfc3339(h.until.unwrap_or(now))),
        };
        ui.info(&format!(
            "key {}: {} {when} (from an earlier run: {}); skipping it",
            ring.slots[i].key.label(),
            health.name(),
            h.reason
        ));
        ring.restore(i, health);
    }
    Ok(())
}
