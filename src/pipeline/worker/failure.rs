//! A call that failed, met by its class: a limit waits or moves the row to another key,
//! an error that may follow the key sets it aside, a 5xx or a cut connection is retried
//! with a back-off, a 404 takes its provider out of the pool.

use std::time::Duration;

use super::{Failure, Job, Step, Tries};
use crate::keys::health::Health;
use crate::provider::classify::{CallError, ErrorClass, RateHeaders};

impl Job<'_> {
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

/// A call that failed: counted, and met by its class.
pub(super) async fn failed<T>(
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
    job.usage.note_error(run, key, err);
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
pub(super) fn served_elsewhere(job: Job<'_>, tries: &mut Tries) {
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
pub(super) fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base.mul_f64(2f64.powi(attempt.saturating_sub(1).min(10) as i32));
    exp.mul_f64(0.5 + fastrand::f64())
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
