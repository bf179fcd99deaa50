//! A labeling run's entry in the state's runs registry: registered at the start, a
//! heartbeat every few seconds (rows done of total, rate, key in use), finished at the
//! end, so `autolabel dashboard` shows the runs going on every machine. Written by the
//! state's writer thread.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use super::writes::StateWriter;
use crate::store::{Beat, RunQuality};
use crate::timeutil;

/// Often enough for a live view, rarely enough to cost nothing.
const EVERY: Duration = Duration::from_secs(3);

pub struct Heartbeat {
    id: String,
    last: Instant,
}

/// This machine's name (`uname -n`).
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into the buffer we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

impl Heartbeat {
    /// Registers the run of `providers` (comma-separated). A state that cannot take it
    /// costs the run nothing.
    pub fn start(
        writes: &StateWriter,
        providers: &str,
        (input, output): (&Path, &Path),
        total: u64,
        priority: &str,
    ) -> Heartbeat {
        let host = host_name();
        let id = format!(
            "{host}-{}-{}",
            std::process::id(),
            timeutil::unix_secs(SystemTime::now())
        );
        let (run, providers, priority) = (id.clone(), providers.to_string(), priority.to_string());
        let (input, output) = (input.display().to_string(), output.display().to_string());
        writes.send(move |state, ui| {
            if let Err(e) = state.run_started(&run, &host, &input, &output, &providers, total) {
                ui.debug(1, &format!("could not register the run: {e}"));
            } else if let Err(e) = state.run_priority(&run, &priority) {
                ui.debug(1, &format!("could not record the run's priority: {e}"));
            }
        });
        Heartbeat {
            id,
            last: Instant::now(),
        }
    }

    /// Whether the next `beat` will be written.
    pub fn due(&self) -> bool {
        self.last.elapsed() >= EVERY
    }

    /// At most every 3 s.
    pub fn beat(&mut self, writes: &StateWriter, beat: &Beat) {
        if self.last.elapsed() < EVERY {
            return;
        }
        self.last = Instant::now();
        let (id, beat) = (self.id.clone(), OwnedBeat::of(beat));
        writes.send(move |state, ui| {
            if let Err(e) = state.run_heartbeat(&id, &beat.beat()) {
                ui.debug(1, &format!("could not write the run's heartbeat: {e}"));
            }
        });
    }

    /// What the run's votes came to so far (with each heartbeat and at the end).
    pub fn quality(&self, writes: &StateWriter, q: &RunQuality) {
        let (id, q) = (self.id.clone(), *q);
        writes.send(move |state, ui| {
            if let Err(e) = state.run_quality(&id, &q) {
                ui.debug(1, &format!("could not write the run's votes: {e}"));
            }
        });
    }

    pub fn finish(&self, writes: &StateWriter, beat: &Beat) {
        let (id, beat) = (self.id.clone(), OwnedBeat::of(beat));
        writes.send(move |state, ui| {
            if let Err(e) = state.run_finished(&id, &beat.beat()) {
                ui.debug(1, &format!("could not mark the run finished: {e}"));
            }
        });
    }
}

/// A [`Beat`] to send to the writer thread.
struct OwnedBeat {
    rows: (u64, u64),
    rate: f64,
    key_in_use: String,
}

impl OwnedBeat {
    fn of(b: &Beat) -> OwnedBeat {
        OwnedBeat {
            rows: (b.rows_done, b.rows_total),
            rate: b.rate,
            key_in_use: b.key_in_use.to_string(),
        }
    }

    fn beat(&self) -> Beat<'_> {
        Beat {
            rows_done: self.rows.0,
            rows_total: self.rows.1,
            rate: self.rate,
            key_in_use: &self.key_in_use,
        }
    }
}
