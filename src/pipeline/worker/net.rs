//! The worker's side of an unreachable provider (the rules are `pipeline::reach`'s): the
//! request's slot goes back, and the row retries, waits for the network, or the run stops.

use std::time::Duration;

use tokio::time::Instant;

use super::failure::backoff;
use super::Job;
use crate::cli::OnExhausted;
use crate::pipeline::reach::{Next, UNREACHED_IN_A_ROW};
use crate::provider::classify::{human, CallError};

/// After a granted request of about `tokens` could not connect: its slot goes back
/// (nothing reached the provider, so nothing is charged and the key's health stays),
/// then the row tries again after a back-off, waits with the run for the network, or
/// the run stops. Returns whether the row goes on.
pub async fn unreached(job: Job<'_>, key: usize, tokens: u64, err: &CallError) -> bool {
    let (run, control) = (job.run, job.control);
    run.dispatcher.unsent(key, tokens);
    let policy = &run.spec.policy;
    let wait = policy.on_exhausted == OnExhausted::Wait;
    let now = Instant::now();
    let next = control
        .reach
        .lock()
        .unwrap()
        .unreached(now, policy.backoff, wait);
    match next {
        Next::Retry(n) => {
            run.ui
                .debug(1, &format!("{}; trying again", err.describe()));
            tokio::time::sleep(backoff(policy.backoff, n)).await;
            true
        }
        Next::GiveUp => {
            control.fail(|| {
                format!(
                    "{}; stopped after {UNREACHED_IN_A_ROW} tries in a row (nothing was charged): run the same command again to continue, or use --on-exhausted wait to wait for the network",
                    err.describe()
                )
            });
            false
        }
        Next::Wait { until, first } => {
            if first {
                run.ui.info(&format!(
                    "{}; waiting {} before trying again (--on-exhausted wait)",
                    err.describe(),
                    human(until - now)
                ));
            }
            hold(job).await;
            true
        }
    }
}

/// Holds a request back while the run waits for the network (a stop ends the wait).
pub async fn hold(job: Job<'_>) {
    loop {
        let until = job
            .control
            .reach
            .lock()
            .unwrap()
            .waiting_until(Instant::now());
        let Some(until) = until else { return };
        if job.control.is_stopping() {
            return;
        }
        let nap = until.min(Instant::now() + Duration::from_millis(250));
        tokio::time::sleep_until(nap).await;
    }
}
