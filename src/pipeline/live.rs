//! What the collector keeps up to date while rows go: on a tick every 500 ms the state
//! gets the usage and cache entries, the key overrides and what other runs found are
//! taken over, the progress line and the run's heartbeat are renewed; and the signals
//! that stop the run are listened to. The state is read and written by its writer
//! thread (`writes`), never on the tick itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::collector::Collector;
use super::heartbeat::Heartbeat;
use super::overrides::OverrideSync;
use super::spec::Labeler;
use super::usage::Usage;
use super::writes::StateWriter;
use super::{adopt, PipelineSetup, RunCounts};
use crate::signals::Signals;
use crate::store::{Beat, RunQuality};

pub struct Live {
    pub tick: tokio::time::Interval,
    pub signals: Signals,
    /// `autolabel keys disable|enable|reset|rotate`, now and while the run goes.
    overrides: OverrideSync,
    /// What other runs sharing the state found, read every second.
    shared: adopt::Shared,
    /// The run's entry in the runs registry, for `autolabel dashboard`.
    heartbeat: Heartbeat,
    started: Instant,
    shared_seen: Instant,
    /// Rows to feed in all.
    total: u64,
    /// `--votes`, and whether the run's votes are recorded (votes or review asked for).
    votes: (u32, bool),
    /// Of those, the rows this run labels itself: what the runs registry shows, so a
    /// rerun of 32 rows reads 32, not the whole file it rewrites.
    to_label: u64,
}

impl Live {
    /// `rows`: (to feed in all, to label by this run).
    pub fn start(
        run: &Labeler,
        writes: &StateWriter,
        setup: &PipelineSetup,
        rows: (u64, u64),
    ) -> Live {
        let (total, to_label) = rows;
        let started = Instant::now();
        let shared_seen = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let signals = Signals::install();
        let overrides = OverrideSync::start(run, writes);
        let providers: Vec<&str> = run.spec.members.iter().map(|m| m.provider).collect();
        // The files as the user knows them, absolute (another machine reads them too):
        // the output itself, not the temporary file a rewrite writes.
        let input = std::path::absolute(&setup.info.path).unwrap_or(setup.info.path.clone());
        let heartbeat = Heartbeat::start(
            writes,
            &providers.join(","),
            (&input, std::path::Path::new(&setup.output_id)),
            to_label,
            run.spec.policy.priority.as_str(),
        );
        Live {
            tick,
            signals,
            overrides,
            shared: adopt::Shared::default(),
            heartbeat,
            started,
            shared_seen,
            total,
            votes: (
                setup.votes.as_ref().map_or(1, |v| v.n),
                setup.votes.is_some() || setup.vote_columns.review_below.is_some(),
            ),
            to_label,
        }
    }

    pub fn on_tick(
        &mut self,
        run: &Labeler,
        writes: &StateWriter,
        usage: &Arc<Usage>,
        c: &mut Collector,
    ) {
        usage.send_flush(writes, &mut c.cache_puts);
        self.overrides.poll(run, writes);
        // Every second: what other runs on the same state found about our keys and heard
        // their providers state (taken over on the tick after the read).
        self.shared.take_over(run, writes);
        if self.shared_seen.elapsed() >= Duration::from_secs(1) {
            self.shared_seen = Instant::now();
            self.shared.ask(run, writes);
        }
        let (key, rate) = self.pace(run, &c.counts);
        let done = c.counts.written;
        run.ui
            .progress(done, self.total, rate, c.counts.fallbacks, &key);
        if self.heartbeat.due() {
            self.record_votes(writes, &c.counts);
        }
        self.heartbeat.beat(
            writes,
            &Beat {
                rows_done: done - c.counts.kept,
                rows_total: self.to_label,
                rate,
                key_in_use: &key,
            },
        );
    }

    /// The last heartbeat, marking the run finished.
    pub fn finish(&self, run: &Labeler, writes: &StateWriter, counts: &RunCounts) {
        self.record_votes(writes, counts);
        let (key, rate) = self.pace(run, counts);
        let beat = Beat {
            rows_done: counts.written - counts.kept,
            rows_total: self.to_label,
            rate,
            key_in_use: &key,
        };
        self.heartbeat.finish(writes, &beat);
    }

    fn record_votes(&self, writes: &StateWriter, c: &RunCounts) {
        if self.votes.1 {
            let q = RunQuality::new(self.votes.0, c.voted, c.unanimous, c.review);
            self.heartbeat.quality(writes, &q);
        }
    }

    /// The key in use, and the rows this run labeled per minute.
    fn pace(&self, run: &Labeler, counts: &RunCounts) -> (String, f64) {
        let minutes = self.started.elapsed().as_secs_f64() / 60.0;
        let key = run.dispatcher.with_ring(|r| {
            r.current
                .map(|k| r.slots[k].key.label())
                .unwrap_or_else(|| "-".into())
        });
        let rate = if minutes > 0.0 {
            (counts.written - counts.kept) as f64 / minutes
        } else {
            0.0
        };
        (key, rate)
    }
}
