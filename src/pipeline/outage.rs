//! The state failing to record fallback rows. Those rows must be recorded before they
//! reach the output (a fallback label the state does not know of would never be
//! re-labeled), so they and every row after them wait, retried on each pass of the
//! pipeline, until the state answers or `--store-timeout` has passed: then the run stops
//! (exit 75) with nothing written past the last recorded row.

use std::time::{Instant, SystemTime};

use super::worker::Ctx;
use crate::error::Error;
use crate::timeutil;

#[derive(Default)]
pub struct Outage {
    /// When the first failed write of this outage happened.
    since: Option<(Instant, SystemTime)>,
}

impl Outage {
    /// A write failed: logs the outage once, and stops the run once it has lasted the
    /// store timeout.
    pub fn failed(&mut self, ctx: &Ctx, e: &Error) {
        let (first, wall) = *self.since.get_or_insert_with(|| {
            ctx.ui.error(&format!(
                "state {}: unreachable since {} ({e}), retrying; rows wait until their fallback labels are recorded",
                ctx.state.location,
                timeutil::rfc3339(SystemTime::now())
            ));
            (Instant::now(), SystemTime::now())
        });
        if first.elapsed() >= ctx.store_timeout {
            ctx.stop_for_lost_state(wall, &e.to_string());
        }
    }

    /// A write went through.
    pub fn answered(&mut self, ctx: &Ctx) {
        if self.since.take().is_some() {
            ctx.ui
                .info(&format!("state {}: reachable again", ctx.state.location));
        }
    }
}
