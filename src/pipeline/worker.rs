//! Labeling one job (one text, or a batch of texts): wait for a key, call, classify,
//! retry or rotate, normalize. Failures are data here; nothing leaves by `?`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::cli::OnExhausted;
use crate::keys::ring::{rotation_class, Health, HealthChange, KeyRing};
use crate::keys::ApiKey;
use crate::limits::{Dim, Source};
use crate::normalize::LabelSet;
use crate::pacing::{Changes, Dispatcher, Grant, StoreNews};
use crate::prompt::Prompter;
use crate::provider::classify::{human, CallError, ErrorClass};
use crate::provider::{ChatRequest, Client};
use crate::store::{CacheScope, State, StoredHealth, UsageDelta};
use crate::timeutil;
use crate::ui::Ui;

/// Attempts for a single text whose replies name no usable label.
const MAX_UNUSABLE_REPLIES: u32 = 3;

/// How a text ended up.
#[derive(Debug, Clone, PartialEq)]
pub enum TextOutcome {
    /// The label, and the index of the provider (in `Ctx::members`) whose model gave it.
    Labeled(String, usize),
    /// The fallback label was used; the reason is for the log.
    Fallback(String),
    /// The run is stopping (`--on-exhausted stop`, a fatal provider answer, or Ctrl-C).
    Stopped,
}

/// One provider of the run: the only one, or one of a pool (`--provider groq,gemini`).
pub struct Member {
    pub provider: &'static str,
    pub client: Client,
    /// USD per token, in and out.
    pub prices: (f64, f64),
    /// `provider/model`, as the model column shows it.
    pub tag: String,
    /// Prefix of its label-cache keys: provider, model, prompt and labels.
    pub cache_scope: CacheScope,
    /// Taken out of the pool: its model answered 404.
    pub dropped: AtomicBool,
}

/// Everything a job needs, shared by all in-flight jobs.
pub struct Ctx {
    /// The providers, in the order given; every key belongs to one (`key_member`).
    pub members: Vec<Member>,
    /// Per key (the dispatcher's index): its provider's index in `members`.
    pub key_member: Vec<usize>,
    pub dispatcher: Dispatcher,
    pub keys: Vec<ApiKey>,
    pub prompter: Prompter,
    pub labels: LabelSet,
    /// Retries per row after transient failures (server errors, timeouts, dropped
    /// connections, malformed replies); rate limits and key errors never count.
    pub max_retries: u32,
    pub backoff: Duration,
    pub on_exhausted: OnExhausted,
    pub ui: Arc<Ui>,
    pub state: Arc<State>,
    pub usage: Mutex<Usage>,
    pub stopping: AtomicBool,
    /// A provider answer that no row can get past (wrong model or URL).
    pub fatal: Mutex<Option<String>>,
    /// Real prompt tokens per estimated one, learned from the replies' `usage`.
    pub token_scale: Mutex<f64>,
    /// How long the state may stay unreachable before the run stops (`--store-timeout`).
    pub store_timeout: Duration,
    /// Why the run stopped for an unreachable state (exit 75), once it did.
    pub state_lost: Mutex<Option<String>>,
    /// The state failing to record fallback rows (the pipeline's writes wait for it).
    pub state_outage: Mutex<super::outage::Outage>,
}

/// Per key, this run's usage.
pub struct Usage {
    /// Not yet written to the state.
    pub unsaved: Vec<UsageDelta>,
    /// Totals for the end-of-run summary.
    pub totals: Vec<UsageDelta>,
}

enum Failure {
    /// Replies came back but could not be used (batches are split on this).
    Unusable,
    Fallback(String),
    Stopped,
}

impl Ctx {
    /// The provider `key` belongs to.
    pub fn member(&self, key: usize) -> &Member {
        &self.members[self.key_member[key]]
    }

    /// Takes provider `m` out of the pool after its model answered 404: its keys get no
    /// more requests. Returns whether some provider is left to carry on.
    fn drop_member(&self, m: usize, message: &str) -> bool {
        let member = &self.members[m];
        if !member.dropped.swap(true, Ordering::SeqCst) {
            let keys: Vec<usize> = (0..self.keys.len())
                .filter(|&k| self.key_member[k] == m)
                .collect();
            self.dispatcher.with_ring(|ring| {
                for &k in &keys {
                    ring.restore(k, Health::Invalid);
                }
            });
            let left = self
                .members
                .iter()
                .filter(|m| !m.dropped.load(Ordering::SeqCst))
                .count();
            if left > 0 {
                self.ui.error(&format!(
                    "provider {}: model {} answered 404 ({message}); taken out of the pool, {} {} on (check {}_MODEL and {}_BASE_URL)",
                    member.provider,
                    member.client.model(),
                    crate::ui::count(left as u64, "provider"),
                    if left == 1 { "carries" } else { "carry" },
                    member.provider.to_uppercase(),
                    member.provider.to_uppercase(),
                ));
            }
        }
        self.members
            .iter()
            .any(|m| !m.dropped.load(Ordering::SeqCst))
    }

    fn record(&self, key: usize, f: impl Fn(&mut UsageDelta)) {
        let mut usage = self.usage.lock().unwrap();
        f(&mut usage.unsaved[key]);
        f(&mut usage.totals[key]);
    }

    /// Logs and persists what a reply or a wait changed: each key-health change with the
    /// key-status summary after them, and each change of a limit in force (`-v`), which
    /// is remembered when the provider stated it.
    pub fn changed(&self, changes: &Changes, ring: &KeyRing) {
        let clock = self.dispatcher.clock();
        for c in &changes.health {
            let key = &self.keys[c.key];
            let until = match &c.to {
                Health::Exhausted { until } => Some(*until),
                Health::Cooling { until } => {
                    Some(clock.wall() + until.saturating_duration_since(clock.now()))
                }
                _ => None,
            };
            self.ui.info(&format!(
                "key {}: {} -> {} ({})",
                key.label(),
                c.from,
                c.to.name(),
                c.reason
            ));
            self.log_rotation(c, ring);
            // A disabled key is disabled in the state's key overrides; its health there
            // stays what the provider last said.
            let Some(status) = c.to.stored_status() else {
                continue;
            };
            let stored = StoredHealth {
                fingerprint: key.fingerprint.clone(),
                masked: key.masked.clone(),
                status,
                until,
                reason: c.reason.clone(),
            };
            if let Err(e) = self.state.save_health(self.member(c.key).provider, &stored) {
                self.ui.error(&format!("could not save key health: {e}"));
            }
        }
        if !changes.health.is_empty() {
            self.ui.info(&ring.summary());
        }
        match &changes.store {
            Some(StoreNews::Lost { since, error }) => self.ui.error(&format!(
                "state {}: unreachable since {} ({error}), retrying; no request goes without a grant from it meanwhile",
                self.state.location,
                timeutil::rfc3339(*since)
            )),
            Some(StoreNews::Back) => self
                .ui
                .info(&format!("state {}: reachable again", self.state.location)),
            None => {}
        }
        for l in &changes.limits {
            let key = &self.keys[l.key];
            let c = &l.change;
            self.ui.debug(
                1,
                &format!(
                    "organization of key {}: {} = {} from {} (was {})",
                    key.label(),
                    c.dim,
                    c.value,
                    c.source,
                    c.was
                ),
            );
            // Saved when this run heard it (one adopted from the state is already there).
            if let Source::Stated { by, earlier: false } = &c.source {
                let member = self.member(l.key);
                let saved = self.state.save_learned_limit(
                    member.provider,
                    member.client.model(),
                    &key.fingerprint,
                    (c.dim, c.value),
                    by,
                );
                if let Err(e) = saved {
                    self.ui
                        .error(&format!("could not save a learned limit: {e}"));
                }
            }
        }
    }

    /// A change that takes the key in use out of service is a rotation: logged with its
    /// class (quota low, rate limited, exhausted, invalid, manual), the key that takes
    /// over (the first other candidate) and whether it was automatic or manual.
    fn log_rotation(&self, c: &HealthChange, ring: &KeyRing) {
        if c.to == Health::Available || ring.current != Some(c.key) {
            return;
        }
        let Some(next) = ring.candidates().into_iter().find(|&k| k != c.key) else {
            return;
        };
        let (class, mode) = rotation_class(c);
        let reason = if c.reason.starts_with(class) {
            c.reason.clone()
        } else {
            format!("{class}: {}", c.reason)
        };
        let (from, to) = (&self.keys[c.key], &self.keys[next]);
        self.ui.debug(
            1,
            &format!("rotating {} -> {} ({reason})", from.label(), to.label()),
        );
        if let Err(e) = self.state.log_rotation(
            self.member(c.key).provider,
            &from.label(),
            &to.label(),
            &reason,
            mode,
        ) {
            self.ui.error(&format!("could not log a rotation: {e}"));
        }
    }

    /// Takes over what other runs sharing the state found about our keys (exhausted,
    /// invalid, cooling), so that no run sends to a key another one found spent.
    pub fn adopt_shared_health(&self) {
        let mut stored = Vec::new();
        for m in &self.members {
            if let Ok(rows) = self.state.load_health(m.provider) {
                stored.extend(rows);
            }
        }
        let clock = self.dispatcher.clock();
        let (now, wall) = (clock.now(), clock.wall());
        self.dispatcher.with_ring(|ring| {
            let health = ring.adopt(&stored, now, wall);
            if !health.is_empty() {
                let changes = Changes {
                    health,
                    ..Changes::default()
                };
                self.changed(&changes, ring);
            }
        });
    }

    /// Takes over limits other runs sharing the state heard a provider state since they
    /// started (the newest statement by any key of an organization, per dimension).
    pub fn adopt_learned_limits(&self) {
        let mut newest: Vec<(usize, usize, Dim, u64, String, i64)> = Vec::new();
        for (m, member) in self.members.iter().enumerate() {
            let Ok(learned) = self
                .state
                .learned_limits(member.provider, member.client.model())
            else {
                continue;
            };
            for l in learned {
                let Some(key) = (0..self.keys.len()).find(|&k| {
                    self.key_member[k] == m && self.keys[k].fingerprint == l.fingerprint
                }) else {
                    continue;
                };
                let org = self.dispatcher.org_of(key);
                match newest.iter_mut().find(|n| n.0 == org && n.2 == l.dim) {
                    Some(n) if n.5 >= l.updated => {}
                    Some(n) => *n = (org, key, l.dim, l.value, l.source, l.updated),
                    None => newest.push((org, key, l.dim, l.value, l.source, l.updated)),
                }
            }
        }
        let stated: Vec<_> = newest
            .into_iter()
            .map(|(org, key, dim, value, by, _)| (org, key, dim, value, by))
            .collect();
        if !stated.is_empty() {
            self.report_changes(&self.dispatcher.adopt_stated(&stated));
        }
    }

    /// `changed` for changes seen outside the dispatcher (after a reply).
    fn report_changes(&self, changes: &Changes) {
        if !changes.is_empty() {
            self.dispatcher
                .with_ring(|ring| self.changed(changes, ring));
        }
    }

    /// The token estimate for a request, corrected by what replies reported so far.
    fn estimate(&self, req: &ChatRequest) -> (u64, u64) {
        let prompt = req.estimated_tokens() - req.max_tokens as u64;
        let scaled = (prompt as f64 * *self.token_scale.lock().unwrap()).ceil() as u64;
        (prompt, scaled + req.max_tokens as u64)
    }

    fn observe_prompt_tokens(&self, estimated: u64, actual: u64) {
        if estimated == 0 || actual == 0 {
            return;
        }
        let mut scale = self.token_scale.lock().unwrap();
        let ratio = actual as f64 / estimated as f64;
        *scale = (*scale * 0.8 + ratio * 0.2).clamp(0.25, 4.0);
    }

    fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// The state has been unreachable since `since` for the whole store timeout: stop
    /// feeding rows, as `--on-exhausted stop` does (the run exits 75, to be resumed).
    pub fn stop_for_lost_state(&self, since: SystemTime, error: &str) {
        let mut lost = self.state_lost.lock().unwrap_or_else(|p| p.into_inner());
        if lost.is_none() {
            let message = format!(
                "state {}: unreachable since {} ({error}), longer than --store-timeout ({}): stopping; what is done is written, run again to continue",
                self.state.location,
                timeutil::rfc3339(since),
                human(self.store_timeout)
            );
            self.ui.error(&message);
            *lost = Some(message);
        }
        self.stop();
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

/// Labels `texts` (one request if possible), splitting a batch whose reply cannot be
/// trusted, so a label never lands on the wrong row.
pub async fn label_texts(ctx: &Ctx, texts: &[Arc<str>]) -> Vec<TextOutcome> {
    label_slice(ctx, texts).await
}

async fn label_slice(ctx: &Ctx, texts: &[Arc<str>]) -> Vec<TextOutcome> {
    if texts.len() == 1 {
        let req = ctx.prompter.single(&texts[0]);
        let out = request(
            ctx,
            &req,
            1,
            |reply| ctx.labels.normalize(reply).map(|i| vec![i]),
            MAX_UNUSABLE_REPLIES,
        )
        .await;
        return vec![to_outcome(
            ctx,
            out.map(|(v, m)| (v[0], m)),
            "no usable reply",
        )];
    }
    let refs: Vec<&str> = texts.iter().map(|t| &**t).collect();
    let req = ctx.prompter.batch(&refs);
    let n = texts.len();
    match request(
        ctx,
        &req,
        n as u64,
        |reply| ctx.labels.normalize_batch(reply, n),
        1,
    )
    .await
    {
        Ok((labels, m)) => labels
            .into_iter()
            .map(|i| TextOutcome::Labeled(ctx.labels.name(i).to_string(), m))
            .collect(),
        Err(Failure::Unusable) => {
            ctx.ui
                .debug(1, &format!("batch of {n}: reply unusable, splitting"));
            let (left, right) = texts.split_at(n / 2);
            let mut out = Box::pin(label_slice(ctx, left)).await;
            out.extend(Box::pin(label_slice(ctx, right)).await);
            out
        }
        Err(Failure::Fallback(why)) => vec![TextOutcome::Fallback(why); n],
        Err(Failure::Stopped) => vec![TextOutcome::Stopped; n],
    }
}

fn to_outcome(ctx: &Ctx, r: Result<(usize, usize), Failure>, unusable: &str) -> TextOutcome {
    match r {
        Ok((i, m)) => TextOutcome::Labeled(ctx.labels.name(i).to_string(), m),
        Err(Failure::Unusable) => TextOutcome::Fallback(unusable.to_string()),
        Err(Failure::Fallback(why)) => TextOutcome::Fallback(why),
        Err(Failure::Stopped) => TextOutcome::Stopped,
    }
}

/// One logical request for `rows` texts, retried across keys until `validate` accepts a
/// reply; with the index of the provider that gave it.
async fn request<T>(
    ctx: &Ctx,
    req: &ChatRequest,
    rows: u64,
    validate: impl Fn(&str) -> Option<T>,
    max_unusable: u32,
) -> Result<(T, usize), Failure> {
    let (estimated_prompt, tokens) = ctx.estimate(req);
    let mut transient = 0u32;
    let mut unusable = 0u32;
    let on_change = |changes: &Changes, ring: &KeyRing| ctx.changed(changes, ring);
    loop {
        if ctx.is_stopping() {
            return Err(Failure::Stopped);
        }
        let key = match ctx.dispatcher.acquire(tokens, &on_change).await {
            Grant::Key(k) => k,
            Grant::StoreLost { since, error } => {
                ctx.stop_for_lost_state(since, &error);
                return Err(Failure::Stopped);
            }
            Grant::NoKey { earliest } => match ctx.on_exhausted {
                OnExhausted::Fallback => return Err(Failure::Fallback("no usable key".into())),
                OnExhausted::Stop => {
                    if !ctx.stopping.swap(true, Ordering::SeqCst) {
                        ctx.ui.info("every key is exhausted or invalid: stopping (--on-exhausted stop); run again later to continue");
                    }
                    return Err(Failure::Stopped);
                }
                OnExhausted::Wait if earliest.is_none() => {
                    // Every key is invalid: no reset will ever come.
                    if !ctx.stopping.swap(true, Ordering::SeqCst) {
                        ctx.ui.error("every key is invalid, so there is no reset to wait for: stopping; fix the keys (autolabel test-keys) and run again");
                    }
                    return Err(Failure::Stopped);
                }
                OnExhausted::Wait => {
                    wait_for_reset(ctx, earliest).await;
                    continue;
                }
            },
        };
        let secret = &ctx.keys[key].secret;
        let member = ctx.member(key);
        let res = member.client.chat(secret, req).await;
        if ctx.ui.shows(2) {
            ctx.ui.debug(
                2,
                &format!(
                    "{} -> {} in {:.0} ms (requests left {:?}, reset {:?})",
                    ctx.keys[key].label(),
                    match &res.result {
                        Ok(_) => "ok".to_string(),
                        Err(e) => e.describe(),
                    },
                    res.latency.as_secs_f64() * 1000.0,
                    res.headers.remaining_requests,
                    res.headers.reset_requests,
                ),
            );
        }
        match res.result {
            Ok(reply) => {
                if let Some(p) = reply.prompt_tokens {
                    ctx.observe_prompt_tokens(estimated_prompt, p);
                }
                let (tin, tout) = (
                    reply
                        .prompt_tokens
                        .unwrap_or(tokens - req.max_tokens as u64),
                    reply.completion_tokens.unwrap_or(0),
                );
                let cost = tin as f64 * member.prices.0 + tout as f64 * member.prices.1;
                let labeled = validate(&reply.content);
                // Rows count only when the reply labeled them: tokens per row in the
                // ledger then include what unusable replies wasted.
                let labeled_rows = if labeled.is_some() { rows } else { 0 };
                ctx.record(key, |d| {
                    d.requests += 1;
                    d.successes += 1;
                    d.tokens_in += tin;
                    d.tokens_out += tout;
                    d.cost += cost;
                    d.rows += labeled_rows;
                });
                let changes = ctx.dispatcher.succeeded(key, &res.headers, tokens);
                ctx.report_changes(&changes);
                if let Some(v) = labeled {
                    return Ok((v, ctx.key_member[key]));
                }
                unusable += 1;
                ctx.ui
                    .debug(1, &format!("unusable reply: {:?}", preview(&reply.content)));
                if unusable >= max_unusable {
                    return Err(Failure::Unusable);
                }
            }
            Err(err) => {
                ctx.record(key, |d| {
                    d.requests += 1;
                    d.error(err.class());
                });
                match &err {
                    // A limit that passes (a cooldown, a minute window) makes the row wait
                    // for the soonest key that can serve it; an exhausted or invalid key
                    // moves it to another. Neither counts against the row: when no key is
                    // left at all, --on-exhausted decides at the next acquire.
                    CallError::RateLimited { .. }
                    | CallError::QuotaExhausted { .. }
                    | CallError::InvalidKey { .. } => {
                        let changes = ctx.dispatcher.failed(key, &err, &res.headers);
                        ctx.report_changes(&changes);
                    }
                    CallError::Transient { class, .. } => {
                        transient += 1;
                        if transient > ctx.max_retries {
                            return Err(Failure::Fallback(format!(
                                "{} after {transient} tries",
                                err.describe()
                            )));
                        }
                        if *class == ErrorClass::Unparsable {
                            ctx.ui.debug(1, &err.describe());
                        }
                        let changes = ctx.dispatcher.failed(key, &err, &res.headers);
                        ctx.report_changes(&changes);
                        tokio::time::sleep(backoff(ctx.backoff, transient)).await;
                    }
                    CallError::Unreachable { .. } => {
                        transient += 1;
                        if transient > ctx.max_retries {
                            return Err(Failure::Fallback(err.describe()));
                        }
                        tokio::time::sleep(backoff(ctx.backoff, transient)).await;
                    }
                    CallError::Rejected { .. } => {
                        ctx.ui.info(&format!("request refused: {}", err.describe()));
                        return Err(Failure::Unusable);
                    }
                    CallError::NotFound { message } => {
                        // In a pool the other providers carry on; the last one left
                        // (or the only one) ends the run.
                        if ctx.drop_member(ctx.key_member[key], message) {
                            continue;
                        }
                        let mut fatal = ctx.fatal.lock().unwrap();
                        if fatal.is_none() {
                            *fatal = Some(if ctx.members.len() > 1 {
                                format!(
                                    "every provider of the pool answered 404, the last {} ({message}); check each P_MODEL and P_BASE_URL",
                                    member.provider
                                )
                            } else {
                                format!(
                                    "the provider answered 404 ({message}); check --model and --base-url"
                                )
                            });
                        }
                        ctx.stop();
                        return Err(Failure::Stopped);
                    }
                }
            }
        }
    }
}

/// Exponential back-off with jitter: base, 2×base, 4×base… each ×(0.5..1.5).
fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base.mul_f64(2f64.powi(attempt.saturating_sub(1).min(10) as i32));
    exp.mul_f64(0.5 + fastrand::f64())
}

async fn wait_for_reset(ctx: &Ctx, earliest: Option<SystemTime>) {
    let until = earliest.unwrap_or_else(SystemTime::now);
    loop {
        let left = until.duration_since(SystemTime::now()).unwrap_or_default();
        if left.is_zero() || ctx.is_stopping() {
            return;
        }
        ctx.ui.info(&format!(
            "every key is exhausted or invalid: waiting {} for the earliest reset (--on-exhausted wait)",
            human(left)
        ));
        tokio::time::sleep(left.min(Duration::from_secs(30))).await;
    }
}

fn preview(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter() {
        let b = Duration::from_secs(1);
        for attempt in 1..=4 {
            let d = backoff(b, attempt).as_secs_f64();
            let center = 2f64.powi(attempt as i32 - 1);
            assert!(d >= center * 0.5 && d <= center * 1.5, "{attempt}: {d}");
        }
    }
}
