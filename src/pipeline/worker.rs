//! Labeling one job (one text, or a batch of texts): wait for a key, call, classify,
//! retry or rotate, normalize. Failures are data here; nothing leaves by `?`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::control::RunControl;
use super::journal;
use super::reply_cap::{self, generous, GENEROUS_EXTRA};
use super::spec::Labeler;
use super::usage::Usage;
use super::writes::StateWriter;
use crate::cli::OnExhausted;
use crate::pacing::{Changes, Grant};
use crate::provider::classify::RateHeaders;
use crate::provider::classify::{human, CallError};
use crate::provider::{CallResult, ChatReply, ChatRequest};

mod failure;
mod logprobs;
mod net;

use failure::{failed, served_elsewhere};

/// Attempts for a single text whose replies name no usable label.
const MAX_UNUSABLE_REPLIES: u32 = 3;

/// How a text ended up.
#[derive(Debug, Clone, PartialEq)]
pub enum TextOutcome {
    /// The label, the index of the provider (in `RunSpec::members`) whose model gave it,
    /// and (`--confidence logprobs`) the confidence its answer's logprobs gave it.
    Labeled(String, usize, Option<f64>),
    /// The fallback label was used; the reason is for the log.
    Fallback(String),
    /// The run is stopping (`--on-exhausted stop`, a fatal provider answer, or Ctrl-C).
    Stopped,
}

/// What every job of a run works with: the run, and the collector's control, usage and
/// state writer.
#[derive(Clone, Copy)]
pub struct Job<'a> {
    pub run: &'a Labeler,
    pub control: &'a RunControl,
    pub usage: &'a Usage,
    pub(super) writes: &'a StateWriter,
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

/// One logical request: what is sent, for which texts, the estimate of its tokens
/// (the prompt alone, and all in), and what makes a reply usable.
struct Ask<'t, V> {
    req: ChatRequest,
    /// The reply budget the prompt set (`req.max_tokens` varies per try).
    tight: u32,
    texts: &'t [Arc<str>],
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
            journal::apply(self.run, self.writes, changes);
        }
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
            texts,
            |reply| logprobs::labeled(&spec.labels, reply),
            MAX_UNUSABLE_REPLIES,
        )
        .await;
        return vec![to_outcome(job, out, "no usable reply")];
    }
    let refs: Vec<&str> = texts.iter().map(|t| &**t).collect();
    let req = spec.prompter.batch(&refs);
    let n = texts.len();
    match request(
        job,
        req,
        texts,
        |reply| spec.labels.normalize_batch(&reply.content, n),
        1,
    )
    .await
    {
        Ok((labels, m)) => labels
            .into_iter()
            .map(|i| TextOutcome::Labeled(spec.labels.name(i).to_string(), m, None))
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

type Answer = ((usize, Option<f64>), usize);

fn to_outcome(job: Job<'_>, r: Result<Answer, Failure>, unusable: &str) -> TextOutcome {
    match r {
        Ok(((i, confidence), m)) => {
            TextOutcome::Labeled(job.run.spec.labels.name(i).to_string(), m, confidence)
        }
        Err(Failure::Unusable) => TextOutcome::Fallback(unusable.to_string()),
        Err(Failure::Fallback(why)) => TextOutcome::Fallback(why),
        Err(Failure::Stopped) => TextOutcome::Stopped,
    }
}

/// One logical request for `texts`, retried across keys until `validate` accepts a
/// reply; with the index of the provider that gave it.
async fn request<T>(
    job: Job<'_>,
    req: ChatRequest,
    texts: &[Arc<str>],
    validate: impl Fn(&ChatReply) -> Option<T>,
    max_unusable: u32,
) -> Result<(T, usize), Failure> {
    let tight = req.max_tokens;
    let mut ask = Ask {
        req,
        tight,
        texts,
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
        if logprobs::refused(job, key, &res) {
            continue;
        }
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
    ask: &Ask<'_, impl Fn(&ChatReply) -> Option<T>>,
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
    let labeled = (ask.validate)(reply);
    // Rows count only when the reply labeled them: tokens per row in the ledger then
    // include what unusable replies wasted. A vote's texts count once their votes settle.
    let votes = &job.usage.vote_rows;
    let labeled_rows = match labeled {
        Some(_) if votes.on() => {
            votes.answered(key, ask.texts);
            0
        }
        Some(_) => ask.texts.len() as u64,
        None => 0,
    };
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
fn reply_cap<V>(job: Job<'_>, ask: &Ask<'_, V>, tries: &Tries, m: Option<usize>) -> u32 {
    let (caps, rows) = (&job.usage.caps, ask.texts.len());
    match (tries.cut, m) {
        (true, _) => generous(ask.tight, rows),
        (false, Some(m)) => caps.first_try(m, ask.tight, rows),
        (false, None) => caps.largest_first_try(ask.tight, rows),
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
                "{}: replies cut at max_tokens again; first tries get {GENEROUS_EXTRA} tokens more a row",
                job.run.spec.members[m].tag
            ),
        );
        reply_cap::remember(job.run, job.writes, m);
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
