//! Which alert conditions hold, from one look at the keys, the request counts and the
//! state: pure, so every threshold is tested without a server.

use std::collections::VecDeque;

use super::Thresholds;

/// One key as the alerts see it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeySnap {
    /// `groq #1 gsk_…zq9` (masked).
    pub label: String,
    /// available, cooling, exhausted, invalid or disabled.
    pub status: String,
    /// The tightest quota's share left, in %, and its name; None without a known quota.
    pub quota_left: Option<(f64, String)>,
}

/// One look at everything the alerts watch.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub keys: Vec<KeySnap>,
    /// Requests and successes counted so far today (all keys): only their growth matters.
    pub totals: Option<(u64, u64)>,
    /// Why the state could not be read, if it could not.
    pub unreachable: Option<String>,
}

/// The last requests' outcomes, from the growth of the day's totals between two looks.
/// Counted in the chunks one look sees, so it covers at least the last N requests (and at
/// most one look's worth more).
#[derive(Debug, Default)]
pub struct Window {
    last: Option<(u64, u64)>,
    chunks: VecDeque<(u64, u64)>,
}

impl Window {
    pub fn push(&mut self, totals: (u64, u64), n: u64) {
        let chunk = match self.last {
            None => None,
            // A new day starts its totals from zero.
            Some(prev) if totals.0 < prev.0 || totals.1 < prev.1 => Some(totals),
            Some(prev) => Some((totals.0 - prev.0, totals.1 - prev.1)),
        };
        self.last = Some(totals);
        if let Some(c) = chunk.filter(|c| c.0 > 0) {
            self.chunks.push_back(c);
        }
        // Drop the oldest chunks while the rest still cover n requests.
        while let Some(first) = self.chunks.front() {
            if self.requests() - first.0 >= n.max(1) {
                self.chunks.pop_front();
            } else {
                break;
            }
        }
    }

    fn requests(&self) -> u64 {
        self.chunks.iter().map(|c| c.0).sum()
    }

    /// Success rate in % and the requests it covers, once they number at least `n`.
    pub fn rate(&self, n: u64) -> Option<(f64, u64)> {
        let requests = self.requests();
        let successes: u64 = self.chunks.iter().map(|c| c.1).sum();
        (requests >= n.max(1)).then(|| (successes as f64 * 100.0 / requests as f64, requests))
    }
}

/// The conditions that hold now, each with a stable id (the same condition keeps its id
/// while it lasts) and its text.
pub fn conditions(snap: &Snapshot, window: &Window, t: &Thresholds) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(why) = &snap.unreachable {
        out.push(("state".into(), format!("the state cannot be read: {why}")));
        // Keys and counts from an unreadable state say nothing.
        return out;
    }
    for k in &snap.keys {
        if let Some((left, quota)) = &k.quota_left {
            if *left < t.quota_left_pct && k.status != "disabled" {
                out.push((
                    format!("quota {}", k.label),
                    format!(
                        "key {}: {left:.1} % of its {} quota left (alert below {} %)",
                        k.label,
                        quota.replace('_', " "),
                        t.quota_left_pct
                    ),
                ));
            }
        }
    }
    let spent = |s: &str| matches!(s, "exhausted" | "invalid");
    let out_of_use = |s: &str| spent(s) || s == "disabled";
    if !snap.keys.is_empty()
        && snap.keys.iter().all(|k| out_of_use(&k.status))
        && snap.keys.iter().any(|k| spent(&k.status))
    {
        let count = |s: &str| snap.keys.iter().filter(|k| k.status == s).count();
        out.push((
            "keys".into(),
            format!(
                "no key can label: {} exhausted, {} invalid, {} disabled",
                count("exhausted"),
                count("invalid"),
                count("disabled")
            ),
        ));
    }
    if let Some((rate, n)) = window.rate(t.window) {
        if rate < t.success_pct {
            out.push((
                "success".into(),
                format!(
                    "success rate {rate:.1} % over the last {n} requests (alert below {} %)",
                    t.success_pct
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Thresholds {
        Thresholds {
            quota_left_pct: 10.0,
            success_pct: 90.0,
            window: 10,
        }
    }

    fn key(label: &str, status: &str, left: Option<f64>) -> KeySnap {
        KeySnap {
            label: label.into(),
            status: status.into(),
            quota_left: left.map(|l| (l, "daily_requests".into())),
        }
    }

    fn ids(snap: &Snapshot, w: &Window) -> Vec<String> {
        conditions(snap, w, &t()).into_iter().map(|c| c.0).collect()
    }

    #[test]
    fn quota_left_below_the_threshold() {
        let snap = Snapshot {
            keys: vec![
                key("#1", "available", Some(9.9)),
                key("#2", "available", Some(10.0)),
                key("#3", "disabled", Some(1.0)),
                key("#4", "available", None),
            ],
            ..Snapshot::default()
        };
        assert_eq!(ids(&snap, &Window::default()), ["quota #1"]);
        let text = &conditions(&snap, &Window::default(), &t())[0].1;
        assert_eq!(
            text,
            "key #1: 9.9 % of its daily requests quota left (alert below 10 %)"
        );
    }

    #[test]
    fn every_key_spent() {
        let w = Window::default();
        let all = |s: [&str; 2]| Snapshot {
            keys: vec![key("#1", s[0], None), key("#2", s[1], None)],
            ..Snapshot::default()
        };
        assert_eq!(ids(&all(["exhausted", "invalid"]), &w), ["keys"]);
        assert_eq!(ids(&all(["exhausted", "disabled"]), &w), ["keys"]);
        assert!(ids(&all(["exhausted", "cooling"]), &w).is_empty());
        assert!(
            ids(&all(["disabled", "disabled"]), &w).is_empty(),
            "switched off by hand"
        );
        assert!(ids(&Snapshot::default(), &w).is_empty());
    }

    #[test]
    fn success_rate_over_the_last_n_requests() {
        let mut w = Window::default();
        let snap = Snapshot::default();
        w.push((100, 100), 10); // the baseline: what came before is not counted
        assert!(ids(&snap, &w).is_empty());
        w.push((105, 103), 10);
        assert!(ids(&snap, &w).is_empty(), "5 requests are fewer than 10");
        w.push((110, 108), 10);
        // 8 successes of the last 10 requests.
        assert_eq!(w.rate(10), Some((80.0, 10)));
        assert_eq!(ids(&snap, &w), ["success"]);
        // Good requests push the bad ones out.
        w.push((120, 118), 10);
        assert_eq!(w.rate(10), Some((100.0, 10)));
        assert!(ids(&snap, &w).is_empty());
        // A new day.
        w.push((3, 0), 10);
        w.push((10, 1), 10);
        assert_eq!(w.rate(10), Some((10.0, 10)));
    }

    #[test]
    fn an_unreadable_state_is_the_only_alert() {
        let snap = Snapshot {
            keys: vec![key("#1", "invalid", Some(0.0))],
            unreachable: Some("connection refused".into()),
            ..Snapshot::default()
        };
        let c = conditions(&snap, &Window::default(), &t());
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].0, "state");
        assert!(c[0].1.contains("connection refused"));
    }
}
