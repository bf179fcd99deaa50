//! What votes cost, for the dry run: a row asks between ⌈N/2⌉ votes (they all agree and
//! settle it) and N, each a request like any other.

use std::time::Duration;

use crate::provider::classify::human;

/// The dry run's figures for one vote a row.
pub struct OneVote {
    pub requests: u64,
    pub tokens: u64,
    pub tokens_per_row: f64,
    /// The seconds the run's requests take at one vote a row (`None` when unpaced).
    pub seconds: Option<f64>,
    /// Rows one key labels a day at one vote a row (`None` without a daily limit).
    pub rows_per_key_day: Option<f64>,
}

/// The fewest votes a row can take: as many as settle it when they all agree.
pub fn fewest(n: u32) -> u32 {
    n.div_ceil(2).max(1)
}

/// Lines that scale the dry run's figures by the votes a row takes, least to most.
pub fn lines(n: u32, one: &OneVote) -> Vec<String> {
    let (lo, hi) = (u64::from(fewest(n)), u64::from(n));
    let mut out = vec![
        format!(
            "votes:            up to {n} a row; {lo} when the first {lo} agree (asking stops once the rest cannot change the winner)"
        ),
        format!(
            "  requests:       {} to {} ({lo} to {hi} a row)",
            one.requests * lo,
            one.requests * hi,
        ),
        format!(
            "  tokens:         {} to {} ({:.1} to {:.1} a row)",
            one.tokens * lo,
            one.tokens * hi,
            one.tokens_per_row * lo as f64,
            one.tokens_per_row * hi as f64
        ),
    ];
    if let Some(s) = one.seconds {
        let time = |votes: u64| human(Duration::from_secs_f64(s * votes as f64));
        out.push(format!("  estimated time: {} to {}", time(lo), time(hi)));
    }
    if let Some(r) = one.rows_per_key_day.filter(|r| *r > 0.0) {
        out.push(format!(
            "  rows per key a day: {} to {} (one vote a row: {})",
            crate::budget::thousands(r / hi as f64),
            crate::budget::thousands(r / lo as f64),
            crate::budget::thousands(r)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn votes_multiply_requests_and_divide_rows_a_day() {
        let one = OneVote {
            requests: 100,
            tokens: 5_000,
            tokens_per_row: 50.0,
            seconds: Some(600.0),
            rows_per_key_day: Some(14_400.0),
        };
        let l = lines(5, &one).join("\n");
        assert!(l.contains("300 to 500 (3 to 5 a row)"), "{l}");
        assert!(l.contains("15000 to 25000 (150.0 to 250.0 a row)"), "{l}");
        assert!(l.contains("2,880 to 4,800"), "{l}");
        // The time grows with the votes too: 10 minutes a vote.
        assert!(l.contains("estimated time: 30m00s to 50m00s"), "{l}");
        assert_eq!(fewest(1), 1);
        assert_eq!(fewest(4), 2);
    }
}
