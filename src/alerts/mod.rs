//! Alerts: a key's quota nearly spent, too many failed requests, no key left that can
//! label, the state unreadable. Watched from the state by a thread of their own
//! (`monitor`) in a labeling run (every 5 s) and in the dashboard (every second); each alert is raised once while its
//! condition lasts (again only after it cleared), as a line in the log, a banner on the
//! page and, with `--alert-webhook`, a POST (`webhook`). Every text is masked.

pub mod check;
pub mod monitor;
pub mod source;
pub mod webhook;

use std::sync::Arc;

use serde::Serialize;

use crate::config::Config;
use crate::store::State;
use crate::timeutil;
use crate::ui::Ui;

/// Starts watching the keys of `pool` on `state`: new alerts go to the log (`ui`) and,
/// with a URL, to the webhook. (`finish` the monitor at the end.)
pub fn watch(
    pool: Vec<Config>,
    state: Arc<State>,
    (t, every): (Thresholds, std::time::Duration),
    webhook: Option<String>,
    ui: Arc<Ui>,
) -> monitor::Monitor {
    let says = ui.clone();
    let webhook = webhook.map(|url| webhook::Webhook::start(url, move |line| says.alert(line)));
    monitor::Monitor::start(
        move || source::look(&pool, &state),
        (t, every),
        move |line| ui.alert(line),
        webhook,
    )
}

/// When a condition becomes an alert (`--alert-quota-left`, `--alert-success`,
/// `--alert-window`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// A key's tightest quota has less than this share left, in %.
    pub quota_left_pct: f64,
    /// The success rate over the last `window` requests is below this, in %.
    pub success_pct: f64,
    pub window: u64,
}

impl Thresholds {
    /// From `--alert-quota-left`, `--alert-success` and `--alert-window`.
    pub fn from_args(a: &crate::cli::AlertArgs) -> Thresholds {
        Thresholds {
            quota_left_pct: a.alert_quota_left,
            success_pct: a.alert_success,
            window: a.alert_window,
        }
    }
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            quota_left_pct: 10.0,
            success_pct: 90.0,
            window: 50,
        }
    }
}

/// An alert in force.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// The condition: `quota <key>`, `success`, `keys` or `state`.
    pub id: String,
    pub text: String,
    /// When it was raised (RFC 3339).
    pub since: String,
}

/// The alerts in force, and which of them are new.
#[derive(Debug, Default)]
pub struct Tracker {
    active: Vec<Alert>,
}

impl Tracker {
    /// Takes the conditions that hold now (id, text) and returns the alerts they newly
    /// raise. One still holding keeps its time and takes the latest text, unannounced.
    pub fn update(&mut self, now: Vec<(String, String)>) -> Vec<Alert> {
        let stamp = timeutil::rfc3339(std::time::SystemTime::now());
        let mut raised = Vec::new();
        let mut next = Vec::with_capacity(now.len());
        for (id, text) in now {
            let text = crate::keys::mask::scrub(&text);
            match self.active.iter().find(|a| a.id == id) {
                Some(a) => next.push(Alert { text, ..a.clone() }),
                None => {
                    let a = Alert {
                        id,
                        text,
                        since: stamp.clone(),
                    };
                    raised.push(a.clone());
                    next.push(a);
                }
            }
        }
        self.active = next;
        raised
    }

    pub fn active(&self) -> &[Alert] {
        &self.active
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, text: &str) -> (String, String) {
        (id.into(), text.into())
    }

    #[test]
    fn each_alert_once_per_condition() {
        let mut t = Tracker::default();
        let raised = t.update(vec![c("success", "80 %")]);
        assert_eq!(raised.len(), 1);
        assert!(
            t.update(vec![c("success", "70 %")]).is_empty(),
            "still the same condition"
        );
        assert_eq!(t.active()[0].text, "70 %");
        assert_eq!(t.update(vec![c("keys", "none")]).len(), 1, "a new one");
        assert_eq!(t.active().len(), 1, "success cleared");
        assert_eq!(
            t.update(vec![c("keys", "none"), c("success", "60 %")])
                .len(),
            1,
            "back after clearing"
        );
    }

    #[test]
    fn texts_are_masked() {
        let mut t = Tracker::default();
        let raised = t.update(vec![c(
            "state",
            "redis said: Bearer gsk_PLANTEDFAKEKEY_0001_secretpart_zq9",
        )]);
        assert!(
            !raised[0].text.contains("PLANTEDFAKEKEY"),
            "{}",
            raised[0].text
        );
    }
}
