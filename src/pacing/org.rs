//! One organization's limits at run time: per-minute limits as GCRA, hour and day limits
//! as counts in calendar windows aligned to the provider's reset, and what the provider
//! said about them.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::gcra::Gcra;
use crate::limits::{Dim, LimitChange, LimitSet, Limits};
use crate::timeutil::{self, DayStart};

/// A calendar window (a UTC hour, or the provider's day) and what was used in it.
#[derive(Debug)]
struct Window {
    kind: WindowKind,
    end: SystemTime,
    used: u64,
}

#[derive(Debug, Clone, Copy)]
enum WindowKind {
    Hour,
    Day(DayStart),
}

impl Window {
    fn new(kind: WindowKind, wall: SystemTime, used: u64) -> Window {
        Window {
            kind,
            end: kind.end_after(wall),
            used,
        }
    }

    /// Starts a new window once the current one has ended (at the provider's reset, not
    /// at the moment of the next request).
    fn roll(&mut self, wall: SystemTime) {
        if wall >= self.end {
            self.end = self.kind.end_after(wall);
            self.used = 0;
        }
    }
}

impl WindowKind {
    fn end_after(self, wall: SystemTime) -> SystemTime {
        match self {
            WindowKind::Hour => {
                timeutil::from_unix((timeutil::unix_secs(wall).div_euclid(3600) + 1) * 3600)
            }
            WindowKind::Day(day) => day.next_start(wall),
        }
    }
}

/// Why an organization cannot take a request now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Wait {
    /// A minute limit or a short block: ready after this long.
    For(Duration),
    /// An hour or day count is full until this moment.
    Until(SystemTime),
}

pub struct Org {
    pub limits: LimitSet,
    /// `limits.values()`, kept so the hot path does not recompute it.
    values: Limits,
    rpm: Option<Gcra>,
    tpm: Option<Gcra>,
    hour: Window,
    day: Window,
    tokens_day: Window,
    /// Until when reply headers say this organization has nothing left.
    pub blocked_until: Option<Instant>,
    /// Grants in the last minute, to learn a lower real limit from a 429: coalesced into
    /// 100 ms buckets (start, count), so memory stays O(600) whatever the request rate.
    recent: VecDeque<(Instant, u64)>,
}

/// A token burst of a tenth of the minute lets single large requests through while
/// keeping any 60 s window under the limit (the rate is lowered by the burst).
fn token_limiter(tpm: u64) -> Gcra {
    let burst = (tpm / 10).max(1);
    Gcra::per_minute(tpm.saturating_sub(burst).max(1), burst)
}

impl Org {
    pub fn new(limits: LimitSet, wall: SystemTime, used_today: (u64, u64), day: DayStart) -> Org {
        let values = limits.values();
        Org {
            rpm: values.rpm.map(|n| Gcra::per_minute(n, 1)),
            tpm: values.tpm.map(token_limiter),
            hour: Window::new(WindowKind::Hour, wall, 0),
            day: Window::new(WindowKind::Day(day), wall, used_today.0),
            tokens_day: Window::new(WindowKind::Day(day), wall, used_today.1),
            limits,
            values,
            blocked_until: None,
            recent: VecDeque::new(),
        }
    }

    pub fn values(&self) -> Limits {
        self.values
    }

    /// The provider states a limit (or a lower one was observed): update the limiters.
    pub fn restate(&mut self, change: Option<LimitChange>) -> Option<LimitChange> {
        let change = change?;
        let values = self.limits.values();
        if values.rpm != self.values.rpm {
            self.rpm = match (self.rpm.take(), values.rpm) {
                (Some(mut g), Some(n)) => {
                    g.set_rate(n, 1);
                    Some(g)
                }
                (None, Some(n)) => Some(Gcra::per_minute(n, 1)),
                (_, None) => None,
            };
        }
        if values.tpm != self.values.tpm {
            self.tpm = values.tpm.map(token_limiter);
        }
        self.values = values;
        Some(change)
    }

    /// Whether a request of `tokens` may go now. Nothing is charged.
    pub fn check(&mut self, now: Instant, wall: SystemTime, tokens: u64) -> Result<(), Wait> {
        let mut until: Option<SystemTime> = None;
        for (limit, w, cost) in [
            (self.values.rph, &mut self.hour, 1),
            (self.values.rpd, &mut self.day, 1),
            (self.values.tpd, &mut self.tokens_day, tokens),
        ] {
            let Some(limit) = limit else { continue };
            w.roll(wall);
            if w.used.saturating_add(cost) > limit {
                until = until.max(Some(w.end));
            }
        }
        if let Some(until) = until {
            return Err(Wait::Until(until));
        }
        let mut wait = Duration::ZERO;
        if let Some(until) = self.blocked_until {
            wait = wait.max(until.saturating_duration_since(now));
        }
        if let Some(rpm) = &self.rpm {
            wait = wait.max(rpm.wait(now, 1));
        }
        if let Some(tpm) = &self.tpm {
            wait = wait.max(tpm.wait(now, tokens));
        }
        if wait.is_zero() {
            Ok(())
        } else {
            Err(Wait::For(wait))
        }
    }

    /// Charges a granted request to every limit.
    pub fn take(&mut self, now: Instant, tokens: u64) {
        if let Some(rpm) = &mut self.rpm {
            rpm.take(now, 1);
        }
        if let Some(tpm) = &mut self.tpm {
            tpm.take(now, tokens);
        }
        self.hour.used += 1;
        self.day.used += 1;
        self.tokens_day.used = self.tokens_day.used.saturating_add(tokens);
        match self.recent.back_mut() {
            Some((t, n)) if now.saturating_duration_since(*t) < Duration::from_millis(100) => {
                *n += 1
            }
            _ => self.recent.push_back((now, 1)),
        }
        self.served_last_minute(now);
    }

    /// The provider's own count of the day, when its headers count per day: our count
    /// never stays below its (limit − remaining), since other runs may share the key, and
    /// the window ends when the provider says it resets, not at our own midnight.
    pub fn sync_day(
        &mut self,
        wall: SystemTime,
        dim: Dim,
        (limit, remaining): (u64, u64),
        reset: Option<Duration>,
    ) {
        let w = match dim {
            Dim::Rpd => &mut self.day,
            Dim::Tpd => &mut self.tokens_day,
            _ => return,
        };
        w.roll(wall);
        w.used = w.used.max(limit.saturating_sub(remaining));
        if let Some(end) = reset.and_then(|r| wall.checked_add(r)) {
            w.end = end;
        }
    }

    /// Drops grants older than a minute and returns how many are left.
    pub fn served_last_minute(&mut self, now: Instant) -> u64 {
        while self
            .recent
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > Duration::from_secs(60))
        {
            self.recent.pop_front();
        }
        self.recent.iter().map(|(_, n)| n).sum()
    }
}
