//! The state failing to record fallback rows. Those rows must be recorded before they
//! reach the output (a fallback label the state does not know of would never be
//! re-labeled), so they and every row after them wait, sent again as the pipeline goes
//! (`fallback_record`), until the state answers or `--store-timeout` has passed: then the
//! run stops (exit 75) with nothing written past the last recorded row.

use std::time::{Duration, Instant, SystemTime};

use crate::error::Error;
use crate::store::StateLocation;
use crate::ui::Ui;

pub struct Outage {
    /// When the first failed write of this outage happened.
    since: Option<(Instant, SystemTime)>,
    /// How long it may last (`--store-timeout`).
    timeout: Duration,
}

impl Outage {
    pub fn new(timeout: Duration) -> Outage {
        Outage {
            since: None,
            timeout,
        }
    }

    /// A write failed: logs the outage once. Once it has lasted the store timeout, returns
    /// since when (the run is to stop).
    pub fn failed(&mut self, ui: &Ui, location: &StateLocation, e: &Error) -> Option<SystemTime> {
        let (first, wall) = *self.since.get_or_insert_with(|| {
            ui.error(&format!(
                "state {location}: {}, retrying; rows wait until their fallback labels are recorded",
                super::control::trouble(&e.to_string(), SystemTime::now())
            ));
            (Instant::now(), SystemTime::now())
        });
        (first.elapsed() >= self.timeout).then_some(wall)
    }

    /// A write went through.
    pub fn answered(&mut self, ui: &Ui, location: &StateLocation) {
        if self.since.take().is_some() {
            ui.info(&format!("state {location}: reachable again"));
        }
    }
}
