//! Labeling one job (one text, or a batch of texts): wait for a key, call, classify,
//! retry or rotate, normalize. Failures are data here; nothing leaves by `?`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::control::RunControl;
use super::journal;
use super::reply_cap::{generous, GENEROUS_EXTRA};
use super::spec::Labeler;
use super::usage::Usage;
use crate::cli::OnExhausted;
use crate::keys::ring::Health;
use crate::pacing::{Changes, Grant};
use crate::provider::classify::RateHeaders;
use crate::provider::classify::{human, CallError, ErrorClass};
use crate::provider::{CallResult, ChatReply, ChatRequest};

mod net;

/// Attempts for a single text whose replies name no usable label.
const MAX_UNUSABLE_REPLIES: u32 = 3;

/// How a text ended up.
#[derive(Debug, Clone, PartialEq)]
pub enum TextOutcome {
    /// The label, and the index of the provider (in `RunSpec::members`) whose model gave it.
    Labeled(String, usize),
    /// The fallback label was used; the reason is for the log.
    Fallback(String),
    /// The run is stopping (`--on-exhausted stop`, a fatal provider answer, or Ctrl-C).
    Stopped,
}

/// What every job of a run works with: the run, and the collector's control and usage.
#[derive(Clone, Copy)]
pub struct Job<'a> {
    pub run: &'a Labeler,
    pub control: &'a RunControl,
    pub usage: &'a Usage,
}

enum Failure {
    /// Replies came back but could not be used (batches are split on this).
    Unusable,
    Fallback(String),
    Stopped,
}

/// Where one try of a request leaves it.
enum Step<T> {
    Done(T),
    Again,
    Failed(Failure),
}

/// One logical request: what is sent, for how many rows, the estimate of its tokens
/// (the prompt alone, and all in), and what makes a reply usable.
struct Ask<V> {
    req: ChatRequest,
    /// The reply budget the prompt set (`req.max_tokens` varies per try).
    tight: u32,
    rows: u64,
    tokens: (u64, u64),
    validate: V,
}

/// Counts of a request's tries that did not label it.
#[derive(Default)]
struct Tries {
    transient: u32,
    unusable: u32,
    /// A reply came back cut before it named a label: the next tries get room.
    cut: bool,
    /// Keys this request got an error other than a 429 from, with the error: the next
    /// try prefers another key, and whether the error follows the key or the request
    /// decides (see `key_level`).
    failed_on: Vec<(usize, CallError)>,
}

impl Job<'_> {
    /// Logs and persists what the dispatcher changed (never under its lock).
    fn report(&self, changes: &Changes) {
        if !changes.is_empty() {
            journal::apply(self.run, changes);
        }
    }

    /// Takes provider `m` out of the pool after its model answered 404: its keys get no
    /// more requests. Returns whether some provider is left to carry on.
    fn drop_member(&self, m: usize, message: &str) -> bool {
        let run = self.run;
        if self.control.drop_member(m) {
            run.dispatcher.with_ring(|ring| {
                for k in run.spec.keys_of(m) {
                    ring.restore(k, Health::Invalid);
                }
            });
            let left = self.control.members_left();
            if left > 0 {
                let member = &run.spec.members[m];
                run.ui.error(&format!(
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
        self.control.members_left() > 0
    }
}

/// Labels `texts` (one request if possible), splitting a batch whose reply cannot be
/// trusted, so a label never lands on the wrong row.
pub async fn label_texts(job: Job<'_>, texts: &[Arc<str>]) -> Vec<TextOutcome> {
    label_slice(job, texts).await
}

async fn label_slice(job: Job<'_>, texts: &[Arc<str>]) -> Vec<TextOutcome> {
    let spec = &job.run.spec;
    if texts.len() == 1 {
        let req = spec.prompter.single(&texts[0]);
        let out = request(
            job,
            req,
            1,
            |reply| spec.labels.normalize(reply).map(|i| vec![i]),
            MAX_UNUSABLE_REPLIES,
        )
        .await;
        return vec![to_outcome(
            job,
            out.map(|(v, m)| (v[0], m)),
            "no usable reply",
        )];
    }
    let refs: Vec<&str> = texts.iter().map(|t| &**t).collect();
    let req = spec.prompter.batch(&refs);
    let n = texts.len();
    match request(
        job,
        req,
        n as u64,
        |reply| spec.labels.normalize_batch(reply, n),
        1,
    )
    .await
    {
        Ok((labels, m)) => labels
            .into_iter()
            .map(|i| TextOutcome::Labeled(spec.labels.name(i).to_string(), m))
            .collect(),
        Err(Failure::Unusable) => {
            job.run
                .ui
                .debug(1, &format!("batch of {n}: reply unusable, splitting"));
            let (left, right) = texts.split_at(n / 2);
            let mut out = Box::pin(label_slice(job, left)).await;
            out.extend(Box::pin(label_slice(job, right)).await);
            out
        }
        Err(Failure::Fallback(why)) => vec![TextOutcome::Fallback(why); n],
        Err(Failure::Stopped) => vec![TextOutcome::Stopped; n],
    }
}

fn to_outcome(job: Job<'_>, r: Result<(usize, usize), Failure>, unusable: &str) -> TextOutcome {
    match r {
        Ok((i, m)) => TextOutcome::Labeled(job.run.spec.labels.name(i).to_string(), m),
        Err(Failure::Unusable) => TextOutcome::Fallback(unusable.to_string()),
        Err(Failure::Fallback(why)) => TextOutcome::Fallback(why),
        Err(Failure::Stopped) => TextOutcome::Stopped,
    }
}

/// One logical request for `rows` texts, retried across keys until `validate` accepts a
/// reply; with the index of the provider that gave it.
async fn request<T>(
    job: Job<'_>,
    req: ChatRequest,
    rows: u64,
    validate: impl Fn(&str) -> Option<T>,
    max_unusable: u32,
) -> Result<(T, usize), Failure> {
    let tight = req.max_tokens;
    let mut ask = Ask {
        req,
        tight,
        rows,
        tokens: (0, 0),
        validate,
    };
    let mut tries = Tries::default();
    loop {
        net::hold(job).await;
        if job.control.is_stopping() {
            return Err(Failure::Stopped);
        }
        // Reserved for the largest cap any model may get, before the key is known.
        ask.req.max_tokens = reply_cap(job, &ask, &tries, None);
        ask.tokens = job.usage.estimate(&ask.req);
        let avoid: Vec<usize> = tries.failed_on.iter().map(|(k, _)| *k).collect();
        let key = match grant(job, ask.tokens.1, &avoid).await {
            Step::Done(key) => key,
            Step::Again => continue,
            Step::Failed(f) => return Err(f),
        };
        let m = job.run.spec.key_member[key];
        ask.req.max_tokens = reply_cap(job, &ask, &tries, Some(m));
        let member = job.run.spec.member(key);
        let res = member
            .client
            .chat(&job.run.dispatcher.key(key).secret, &ask.req)
            .await;
        log_call(job, key, &res);
        if let Err(err @ CallError::Unreachable { .. }) = &res.result {
            // Never reached the provider: not a request, not one of the row's retries.
            if net::unreached(job, key, ask.tokens.1, err).await {
                continue;
            }
            return Err(Failure::Stopped);
        }
        job.control.reach.lock().unwrap().reached();
        let step = match res.result {
            Ok(reply) => {
                served_elsewhere(job, &mut tries);
                match replied(job, key, &reply, &res.headers, &ask) {
                    Some(v) => Step::Done((v, m)),
                    None if cut_short(job, &reply, &mut tries, m) => Step::Again,
                    None => unusable(job, &reply, &mut tries, max_unusable),
                }
            }
            Err(err) => failed(job, key, &err, &res.headers, &mut tries).await,
        };
        match step {
            Step::Done(v) => return Ok(v),
            Step::Again => {}
            Step::Failed(f) => return Err(f),
        }
    }
}

/// Waits for a key (another than `avoid` if one can serve); when none is left,
/// `--on-exhausted` decides.
async fn grant(job: Job<'_>, tokens: u64, avoid: &[usize]) -> Step<usize> {
    let (run, control) = (job.run, job.control);
    let report = |changes: Changes| job.report(&changes);
    match run
        .dispatcher
        .acquire_avoiding(tokens, avoid, &report)
        .await
    {
        Grant::Key(k) => Step::Done(k),
        Grant::StoreLost { since, error } => {
            control.stop_for_lost_state(run, since, &error);
            Step::Failed(Failure::Stopped)
        }
        Grant::NoKey { earliest } => match run.spec.policy.on_exhausted {
            OnExhausted::Fallback => Step::Failed(Failure::Fallback("no usable key".into())),
            OnExhausted::Stop => {
                if control.stop_first() {
                    run.ui.info("every key is exhausted or invalid: stopping (--on-exhausted stop); run again later to continue");
                }
                Step::Failed(Failure::Stopped)
            }
            OnExhausted::Wait if earliest.is_none() => {
                // Every key is invalid: no reset will ever come.
                if control.stop_first() {
                    run.ui.error("every key is invalid, so there is no reset to wait for: stopping; fix the keys (autolabel test-keys) and run again");
                }
                Step::Failed(Failure::Stopped)
            }
            OnExhausted::Wait => {
                wait_for_reset(job, earliest).await;
                Step::Again
            }
        },
    }
}

/// `-vv`: each call, its result, latency and what its headers say is left.
fn log_call(job: Job<'_>, key: usize, res: &CallResult) {
    let ui = &job.run.ui;
    if ui.shows(2) {
        ui.debug(
            2,
            &format!(
                "{} -> {} in {:.0} ms (requests left {:?}, reset {:?})",
                job.run.dispatcher.key(key).label(),
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
}

/// A reply: counted, learned from, and validated (`Some` when it labels the rows).
fn replied<T>(
    job: Job<'_>,
    key: usize,
    reply: &ChatReply,
    headers: &RateHeaders,
    ask: &Ask<impl Fn(&str) -> Option<T>>,
) -> Option<T> {
    let (estimated_prompt, tokens) = ask.tokens;
    if let Some(p) = reply.prompt_tokens {
        job.usage.observe_prompt_tokens(estimated_prompt, p);
    }
    let (tin, tout) = (
        reply
            .prompt_tokens
            .unwrap_or(tokens - ask.req.max_tokens as u64),
        reply.completion_tokens.unwrap_or(0),
    );
    let prices = job.run.spec.member(key).prices;
    let cost = tin as f64 * prices.0 + tout as f64 * prices.1;
    let labeled = (ask.validate)(&reply.content);
    // Rows count only when the reply labeled them: tokens per row in the ledger then
    // include what unusable replies wasted.
    let labeled_rows = if labeled.is_some() { ask.rows } else { 0 };
    job.usage.record(key, |d| {
        d.requests += 1;
        d.successes += 1;
        d.tokens_in += tin;
        d.tokens_out += tout;
        d.cost += cost;
        d.rows += labeled_rows;
        d.cut += u64::from(reply.cut);
    });
    job.report(&job.run.dispatcher.succeeded(key, headers, tokens));
    labeled
}

/// The reply budget of the next try on model `m` (`None`: not known yet, the largest
/// any model may get): room to spare once a reply came back cut, else the model's cap.
fn reply_cap<V>(job: Job<'_>, ask: &Ask<V>, tries: &Tries, m: Option<usize>) -> u32 {
    let caps = &job.usage.caps;
    match (tries.cut, m) {
        (true, _) => generous(ask.tight),
        (false, Some(m)) => caps.first_try(m, ask.tight),
        (false, None) => caps.largest_first_try(ask.tight),
    }
}

/// A reply cut at `max_tokens` before it named a label: asked again at once with room
/// to spare, not as one of the row's retries (once a request). Whether it was.
fn cut_short(job: Job<'_>, reply: &ChatReply, tries: &mut Tries, m: usize) -> bool {
    if !reply.cut || tries.cut {
        return false;
    }
    tries.cut = true;
    if job.usage.caps.cut(m) {
        job.run.ui.debug(
            1,
            &format!(
                "{}: replies cut at max_tokens again; first tries get {GENEROUS_EXTRA} tokens more",
                job.run.spec.members[m].tag
            ),
        );
    }
    true
}

/// A reply that labels nothing: tried again, up to `max_unusable` replies.
fn unusable<T>(job: Job<'_>, reply: &ChatReply, tries: &mut Tries, max_unusable: u32) -> Step<T> {
    tries.unusable += 1;
    job.run
        .ui
        .debug(1, &format!("unusable reply: {:?}", preview(&reply.content)));
    if tries.unusable >= max_unusable {
        return Step::Failed(Failure::Unusable);
    }
    Step::Again
}

/// A call that failed: counted, and met by its class.
async fn failed<T>(
    job: Job<'_>,
    key: usize,
    err: &CallError,
    headers: &RateHeaders,
    tries: &mut Tries,
) -> Step<T> {
    let run = job.run;
    job.usage.record(key, |d| {
        d.requests += 1;
        d.error(err.class());
    });
    match err {
        // A limit that passes (a cooldown, a minute window) makes the row wait for the
        // soonest key that can serve it; an exhausted or invalid key moves it to another.
        // Neither counts against the row: when no key is left at all, --on-exhausted
        // decides at the next acquire.
        CallError::RateLimited { .. }
        | CallError::QuotaExhausted { .. }
        | CallError::InvalidKey { .. } => {
            job.report(&run.dispatcher.failed(key, err, headers));
            Step::Again
        }
        CallError::Transient {
            class: ErrorClass::Server,
            ..
        } if key_level(job, key, err, tries) => Step::Again,
        CallError::Transient { class, .. } => {
            tries.transient += 1;
            let label = run.dispatcher.key(key).label();
            if tries.transient > run.spec.policy.max_retries {
                return Step::Failed(Failure::Fallback(format!(
                    "{} after {} tries (the last on key {label})",
                    err.describe(),
                    tries.transient
                )));
            }
            if *class == ErrorClass::Unparsable {
                run.ui.debug(1, &format!("key {label}: {}", err.describe()));
            }
            job.report(&run.dispatcher.failed(key, err, headers));
            tokio::time::sleep(backoff(run.spec.policy.backoff, tries.transient)).await;
            Step::Again
        }
        CallError::Unreachable { .. } => unreachable!("met by net::unreached"),
        CallError::Rejected { .. } => {
            run.ui.info(&format!(
                "key {}: request refused: {}",
                run.dispatcher.key(key).label(),
                err.describe()
            ));
            if key_level(job, key, err, tries) {
                return Step::Again;
            }
            Step::Failed(Failure::Unusable)
        }
        CallError::NotFound { .. } if key_level(job, key, err, tries) => Step::Again,
        CallError::NotFound { message } => not_found(job, key, message),
    }
}

/// An error other than a 429 (a 4xx, or a 5xx) on `key`: whether the request should go to
/// another key without spending a retry. The first such error of a request sets the key
/// aside when other keys of its provider succeed (or invalidates a suspect key on its
/// probe) and, for a 4xx, tries another key if there is one. The same request failing on
/// a second key is the request's fault: the suspicion is lifted.
fn key_level(job: Job<'_>, key: usize, err: &CallError, tries: &mut Tries) -> bool {
    let dispatcher = &job.run.dispatcher;
    if !tries.failed_on.is_empty() {
        for (k, _) in tries.failed_on.drain(..) {
            job.report(&dispatcher.row_at_fault(k));
        }
        return false;
    }
    let changes = dispatcher.key_error(key, err);
    let set_aside = changes.health.iter().any(|c| c.key == key);
    job.report(&changes);
    // A 5xx is retried as before (it spends a retry, on any key) unless the key was set
    // aside: a server that fails at random fails on any key.
    if err.class() == ErrorClass::Server && !set_aside {
        return false;
    }
    tries.failed_on.push((key, err.clone()));
    set_aside || dispatcher.other_key(&[key])
}

/// A reply came after errors on other keys: those that failed with a 4xx are the ones at
/// fault (a 5xx counts only when it repeats).
fn served_elsewhere(job: Job<'_>, tries: &mut Tries) {
    for (k, err) in tries.failed_on.drain(..) {
        if err.class() != ErrorClass::Server {
            job.report(&job.run.dispatcher.key_error(k, &err));
        }
    }
}

/// A 404: in a pool the other providers carry on; the last one left (or the only one)
/// ends the run.
fn not_found<T>(job: Job<'_>, key: usize, message: &str) -> Step<T> {
    let spec = &job.run.spec;
    if job.drop_member(spec.key_member[key], message) {
        return Step::Again;
    }
    job.control.fail(|| {
        if spec.members.len() > 1 {
            format!(
                "every provider of the pool answered 404, the last {} ({message}); check each P_MODEL and P_BASE_URL",
                spec.member(key).provider
            )
        } else {
            format!("the provider answered 404 ({message}); check --model and --base-url")
        }
    });
    Step::Failed(Failure::Stopped)
}

/// Exponential back-off with jitter: base, 2×base, 4×base… each ×(0.5..1.5).
fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base.mul_f64(2f64.powi(attempt.saturating_sub(1).min(10) as i32));
    exp.mul_f64(0.5 + fastrand::f64())
}

async fn wait_for_reset(job: Job<'_>, earliest: Option<SystemTime>) {
    let until = earliest.unwrap_or_else(SystemTime::now);
    loop {
        let left = until.duration_since(SystemTime::now()).unwrap_or_default();
        if left.is_zero() || job.control.is_stopping() {
            return;
        }
        job.run.ui.info(&format!(
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
