//! Fallback rows on their way to the state: a fallback row reaches the output only once
//! the state has recorded it (a fallback label the state does not know of would never be
//! re-labeled). The state's writer thread records them; until it says so, the rows wait
//! in the collector's window, and the collector is woken when it has answered. While the
//! state fails, they are sent again, one pass of the pipeline after each failure, until
//! the state answers or the outage lasts `--store-timeout` (see `outage`).

use std::sync::Arc;

use rustc_hash::FxHashSet;
use tokio::sync::Notify;

use super::control::RunControl;
use super::outage::Outage;
use super::spec::Labeler;
use super::writes::{Asked, StateWriter};
use crate::error::Result;

pub struct FallbackRecord {
    /// Rows sent to the state's writer to record, and its answer once made.
    sent: Asked<(Vec<u64>, Result<()>)>,
    /// Woken when the writer has answered.
    pub answered: Arc<Notify>,
    /// Rows recorded in the state, not yet written to the output.
    recorded: FxHashSet<u64>,
    /// The last recording failed: the next pass sends it again (not this one, or a state
    /// that fails at once would be asked in a busy loop).
    retry_next_pass: bool,
    /// The state failing to record them.
    outage: Outage,
}

impl FallbackRecord {
    pub fn new(outage: Outage) -> FallbackRecord {
        FallbackRecord {
            sent: Asked::default(),
            answered: Arc::new(Notify::new()),
            recorded: FxHashSet::default(),
            retry_next_pass: false,
            outage,
        }
    }

    /// Whether rows were sent to the state's writer and its answer not taken.
    pub fn waiting(&self) -> bool {
        self.sent.waiting()
    }

    /// Takes the writer's answer, once it is made: the rows it recorded.
    pub fn take_answer(&mut self, run: &Labeler, control: &RunControl) -> Vec<u64> {
        match self.sent.take() {
            Some((rows, Ok(()))) => {
                self.outage.answered(&run.ui, &run.state.location);
                self.recorded.extend(rows.iter().copied());
                rows
            }
            Some((_, Err(e))) => {
                self.retry_next_pass = true;
                if let Some(since) = self.outage.failed(&run.ui, &run.state.location, &e) {
                    control.stop_for_lost_state(run, since, &e.to_string());
                }
                Vec::new()
            }
            None => Vec::new(),
        }
    }

    /// Of `fallbacks`, the fallback rows (in order) among the rows ready to go out: the
    /// first the state has not recorded, if any (it and every row after it must wait).
    /// Those before it go out now. The ones not recorded are sent to the state's writer,
    /// unless it has some already.
    pub fn first_unrecorded(
        &mut self,
        fallbacks: &[u64],
        output_id: &str,
        writes: &StateWriter,
    ) -> Option<u64> {
        let first = fallbacks.iter().position(|i| !self.recorded.contains(i));
        for i in &fallbacks[..first.unwrap_or(fallbacks.len())] {
            self.recorded.remove(i);
        }
        let first = first?;
        if !std::mem::take(&mut self.retry_next_pass) && !self.sent.waiting() {
            let rows: Vec<u64> = fallbacks[first..]
                .iter()
                .copied()
                .filter(|i| !self.recorded.contains(i))
                .collect();
            let output = output_id.to_string();
            let wake = Some(self.answered.clone());
            writes.ask_and_wake(&mut self.sent, wake, move |state| {
                let recorded = state.add_fallback_rows(&output, &rows);
                (rows, recorded)
            });
        }
        Some(fallbacks[first])
    }
}
