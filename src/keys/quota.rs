//! A key's own quotas at run time (from its env-file settings): the last minute as a
//! sliding window, the UTC day and the monthly period as counts started from the usage
//! ledger. Organization limits are the pacer's; these bind one key only.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use super::settings::{KeyQuotas, Period, QuotaDim};
use crate::timeutil;

const MINUTE: Duration = Duration::from_secs(60);

/// Why a key cannot take a request now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum QuotaWait {
    /// A per-minute quota: ready after this long.
    For(Duration),
    /// A daily or monthly quota is full until this moment.
    Until(SystemTime),
}

/// Requests and tokens counted in one calendar period.
#[derive(Debug, Clone, Copy)]
struct Counter {
    /// When the period ends; `UNIX_EPOCH` until the first roll.
    end: SystemTime,
    requests: u64,
    tokens: u64,
}

impl Counter {
    fn new() -> Counter {
        Counter {
            end: UNIX_EPOCH,
            requests: 0,
            tokens: 0,
        }
    }
}

/// How much of one quota is used.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuotaUse {
    pub dim: QuotaDim,
    pub used: u64,
    pub limit: u64,
}

impl QuotaUse {
    /// The share left, 0.0–1.0.
    pub fn left(&self) -> f64 {
        self.limit.saturating_sub(self.used) as f64 / self.limit as f64
    }
}

#[derive(Debug)]
pub struct KeyQuota {
    quotas: KeyQuotas,
    /// Day of the month monthly quotas start again (1–28).
    reset_day: u32,
    /// (granted at, tokens) in the last minute.
    minute: VecDeque<(Instant, u64)>,
    day: Counter,
    month: Counter,
}

impl KeyQuota {
    pub fn new(quotas: KeyQuotas, reset_day: u32) -> KeyQuota {
        KeyQuota {
            quotas,
            reset_day,
            minute: VecDeque::new(),
            day: Counter::new(),
            month: Counter::new(),
        }
    }

    pub fn quotas(&self) -> &KeyQuotas {
        &self.quotas
    }

    /// Whether any quota of the key's own is set.
    pub fn is_limited(&self) -> bool {
        !self.quotas.is_empty()
    }

    /// Starts a period's count from what the ledger says was used in it already.
    pub fn set_used(&mut self, period: Period, wall: SystemTime, requests: u64, tokens: u64) {
        self.roll(wall);
        match period {
            Period::Minute => self.minute.clear(),
            Period::Day => {
                self.day.requests = requests;
                self.day.tokens = tokens;
            }
            Period::Month => {
                self.month.requests = requests;
                self.month.tokens = tokens;
            }
        }
    }

    /// Takes what the ledger says was used in a period when it is more than counted here:
    /// the ledger also holds what other runs on the same state used with this key.
    pub fn raise_used(&mut self, period: Period, wall: SystemTime, requests: u64, tokens: u64) {
        self.roll(wall);
        let c = match period {
            Period::Minute => return,
            Period::Day => &mut self.day,
            Period::Month => &mut self.month,
        };
        c.requests = c.requests.max(requests);
        c.tokens = c.tokens.max(tokens);
    }

    /// The first UTC day of the day or month containing `wall` (how the ledger is keyed).
    pub fn period_start(&self, period: Period, wall: SystemTime) -> SystemTime {
        match period {
            Period::Month => timeutil::month_start(wall, self.reset_day),
            _ => wall,
        }
    }

    /// When the period containing `wall` ends.
    pub fn period_end(&self, period: Period, wall: SystemTime) -> SystemTime {
        match period {
            Period::Minute => wall + MINUTE,
            Period::Day => timeutil::next_utc_midnight(wall),
            Period::Month => timeutil::next_month_start(wall, self.reset_day),
        }
    }

    /// Starts new day and month counts once their periods have ended.
    pub fn roll(&mut self, wall: SystemTime) {
        if wall >= self.day.end {
            self.day = Counter {
                end: self.period_end(Period::Day, wall),
                requests: 0,
                tokens: 0,
            };
        }
        if wall >= self.month.end {
            self.month = Counter {
                end: self.period_end(Period::Month, wall),
                requests: 0,
                tokens: 0,
            };
        }
    }

    fn prune_minute(&mut self, now: Instant) {
        while self
            .minute
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= MINUTE)
        {
            self.minute.pop_front();
        }
    }

    /// Whether a request of about `tokens` tokens fits every quota of the key now.
    pub fn check(&mut self, now: Instant, wall: SystemTime, tokens: u64) -> Result<(), QuotaWait> {
        if !self.is_limited() {
            return Ok(());
        }
        self.roll(wall);
        let q = self.quotas;
        for (counter, req_dim, tok_dim) in [
            (self.day, QuotaDim::DailyRequests, QuotaDim::DailyTokens),
            (
                self.month,
                QuotaDim::MonthlyRequests,
                QuotaDim::MonthlyTokens,
            ),
        ] {
            let over_requests = q.get(req_dim).is_some_and(|l| counter.requests + 1 > l);
            let over_tokens = q.get(tok_dim).is_some_and(|l| counter.tokens + tokens > l);
            if over_requests || over_tokens {
                return Err(QuotaWait::Until(counter.end));
            }
        }
        self.prune_minute(now);
        let Some(&(oldest, _)) = self.minute.front() else {
            // An empty minute takes any one request, even one larger than the quota:
            // refusing it would never let it go.
            return Ok(());
        };
        let free_at = (oldest + MINUTE).saturating_duration_since(now);
        let over_requests = q
            .get(QuotaDim::MinuteRequests)
            .is_some_and(|l| self.minute.len() as u64 + 1 > l);
        let used: u64 = self.minute.iter().map(|(_, t)| t).sum();
        let over_tokens = q
            .get(QuotaDim::MinuteTokens)
            .is_some_and(|l| used + tokens > l);
        if over_requests || over_tokens {
            return Err(QuotaWait::For(free_at.max(Duration::from_millis(1))));
        }
        Ok(())
    }

    /// Counts a request that goes.
    pub fn take(&mut self, now: Instant, wall: SystemTime, tokens: u64) {
        if !self.is_limited() {
            return;
        }
        self.roll(wall);
        for c in [&mut self.day, &mut self.month] {
            c.requests += 1;
            c.tokens += tokens;
        }
        if self.quotas.get(QuotaDim::MinuteRequests).is_some()
            || self.quotas.get(QuotaDim::MinuteTokens).is_some()
        {
            self.minute.push_back((now, tokens));
        }
    }

    /// Takes back a request counted by `take` that never reached the provider (no
    /// connection could be made): it used none of the key's quotas.
    pub fn give_back(&mut self, tokens: u64) {
        if !self.is_limited() {
            return;
        }
        for c in [&mut self.day, &mut self.month] {
            c.requests = c.requests.saturating_sub(1);
            c.tokens = c.tokens.saturating_sub(tokens);
        }
        if let Some(i) = self.minute.iter().rposition(|(_, t)| *t == tokens) {
            self.minute.remove(i);
        }
    }

    /// Forgets what was counted in a period (`keys reset`).
    pub fn forget(&mut self, period: Period) {
        match period {
            Period::Minute => self.minute.clear(),
            Period::Day => {
                self.day.requests = 0;
                self.day.tokens = 0;
            }
            Period::Month => {
                self.month.requests = 0;
                self.month.tokens = 0;
            }
        }
    }

    /// Use against each daily and monthly quota (the ones a key can run dry of).
    pub fn uses(&self) -> Vec<QuotaUse> {
        self.quotas
            .iter()
            .filter_map(|(dim, limit)| {
                let c = match dim.period() {
                    Period::Minute => return None,
                    Period::Day => self.day,
                    Period::Month => self.month,
                };
                let used = if dim.counts_tokens() {
                    c.tokens
                } else {
                    c.requests
                };
                Some(QuotaUse { dim, used, limit })
            })
            .collect()
    }

    /// The daily or monthly quota with the smallest share left.
    pub fn tightest(&self) -> Option<QuotaUse> {
        self.uses()
            .into_iter()
            .min_by(|a, b| a.left().total_cmp(&b.left()))
    }

    /// The share left of the tightest daily or monthly quota, in thousandths (1000 when
    /// the key has none): what "most quota left" compares.
    pub fn left_permille(&self) -> u32 {
        self.tightest()
            .map_or(1000, |u| (u.left() * 1000.0).floor() as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quotas(set: &[(QuotaDim, u64)]) -> KeyQuotas {
        let mut q = KeyQuotas::default();
        for (d, v) in set {
            q.set(*d, Some(*v));
        }
        q
    }

    #[tokio::test(start_paused = true)]
    async fn minute_quotas_slide() {
        let mut k = KeyQuota::new(quotas(&[(QuotaDim::MinuteRequests, 2)]), 1);
        let wall = SystemTime::now();
        let t0 = Instant::now();
        for _ in 0..2 {
            k.check(t0, wall, 10).unwrap();
            k.take(t0, wall, 10);
        }
        assert_eq!(k.check(t0, wall, 10), Err(QuotaWait::For(MINUTE)));
        let later = t0 + Duration::from_secs(45);
        assert_eq!(
            k.check(later, wall, 10),
            Err(QuotaWait::For(Duration::from_secs(15)))
        );
        assert!(k.check(t0 + MINUTE, wall, 10).is_ok());
    }

    #[test]
    fn daily_and_monthly_counts_start_from_the_ledger_and_roll() {
        let mut k = KeyQuota::new(
            quotas(&[
                (QuotaDim::DailyTokens, 1000),
                (QuotaDim::MonthlyRequests, 100),
            ]),
            1,
        );
        let wall = timeutil::from_unix(1_796_014_800); // 2026-11-30T05:00Z
        let now = Instant::now();
        k.set_used(Period::Day, wall, 5, 900);
        k.set_used(Period::Month, wall, 99, 5000);
        assert_eq!(k.tightest().unwrap().dim, QuotaDim::MonthlyRequests);
        assert_eq!(k.left_permille(), 10);
        k.check(now, wall, 100).unwrap();
        k.take(now, wall, 100);
        // The month's last request is gone; it comes back on the 1st.
        let dec1 = timeutil::from_unix(1_796_083_200);
        assert_eq!(k.check(now, wall, 1), Err(QuotaWait::Until(dec1)));
        // ...unless it never reached the provider.
        k.give_back(100);
        k.check(now, wall, 100).unwrap();
        k.take(now, wall, 100);
        assert_eq!(k.check(now, wall, 1), Err(QuotaWait::Until(dec1)));
        assert!(k.check(now, dec1, 1).is_ok());
        assert_eq!(k.left_permille(), 1000);
    }
}
