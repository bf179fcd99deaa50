//! A labeling run's entry in the state's runs registry: registered at the start, a
//! heartbeat every few seconds (rows done of total, rate, key in use), finished at the
//! end, so `autolabel dashboard` shows the runs going on every machine.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use crate::store::{Beat, RunQuality, State};
use crate::timeutil;
use crate::ui::Ui;

/// Often enough for a live view, rarely enough to cost nothing.
const EVERY: Duration = Duration::from_secs(3);

pub struct Heartbeat<'a> {
    state: &'a State,
    ui: &'a Ui,
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

impl<'a> Heartbeat<'a> {
    /// Registers the run of `providers` (comma-separated). A state that cannot take it
    /// costs the run nothing.
    pub fn start(
        state: &'a State,
        ui: &'a Ui,
        providers: &str,
        (input, output): (&Path, &Path),
        total: u64,
        priority: &str,
    ) -> Heartbeat<'a> {
        let host = host_name();
        let id = format!(
            "{host}-{}-{}",
            std::process::id(),
            timeutil::unix_secs(SystemTime::now())
        );
        if let Err(e) = state.run_started(
            &id,
            &host,
            &input.display().to_string(),
            &output.display().to_string(),
            providers,
            total,
        ) {
            ui.debug(1, &format!("could not register the run: {e}"));
        } else if let Err(e) = state.run_priority(&id, priority) {
            ui.debug(1, &format!("could not record the run's priority: {e}"));
        }
        Heartbeat {
            state,
            ui,
            id,
            last: Instant::now(),
        }
    }

    /// Whether the next `beat` will be written.
    pub fn due(&self) -> bool {
        self.last.elapsed() >= EVERY
    }

    /// At most every 3 s.
    pub fn beat(&mut self, beat: &Beat) {
        if self.last.elapsed() < EVERY {
            return;
        }
        self.last = Instant::now();
        if let Err(e) = self.state.run_heartbeat(&self.id, beat) {
            self.ui
                .debug(1, &format!("could not write the run's heartbeat: {e}"));
        }
    }

    /// What the run's votes came to so far (with each heartbeat and at the end).
    pub fn quality(&self, q: &RunQuality) {
        if let Err(e) = self.state.run_quality(&self.id, q) {
            self.ui
                .debug(1, &format!("could not write the run's votes: {e}"));
        }
    }

    pub fn finish(&self, beat: &Beat) {
        if let Err(e) = self.state.run_finished(&self.id, beat) {
            self.ui
                .debug(1, &format!("could not mark the run finished: {e}"));
        }
    }
}
