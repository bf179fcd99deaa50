//! `tune`'s results: one line per combination, its place in the cost ranking, the
//! recommendation, and how they print (a table, or `--json`).

use serde::Serialize;

use crate::eval::bootstrap::Interval;

/// The measured accuracy and cost of one combination.
#[derive(Debug, Clone, Serialize)]
pub struct Result {
    pub batch_size: u32,
    pub votes: u32,
    pub rows: usize,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub ci95: Ci95,
    /// Estimated tokens a row: the request's estimate over its texts, times the votes a
    /// row took on average.
    pub tokens_per_row: f64,
    /// Rows one key labels a day under the limits in force (`None`: no daily limit).
    pub rows_per_key_day: Option<f64>,
    /// 1 for the cheapest.
    pub cost_rank: usize,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Ci95 {
    pub accuracy: Option<Interval>,
    pub macro_f1: Option<Interval>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Recommended {
    pub batch_size: u32,
    pub votes: u32,
}

/// Ranks by cost: most rows per key a day first (what a free tier runs out of), then
/// fewest tokens a row.
pub fn rank(results: &mut [Result]) {
    let mut order: Vec<usize> = (0..results.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&results[a], &results[b]);
        let day = |r: &Result| r.rows_per_key_day.unwrap_or(f64::INFINITY);
        day(b)
            .total_cmp(&day(a))
            .then(a.tokens_per_row.total_cmp(&b.tokens_per_row))
    });
    for (place, i) in order.into_iter().enumerate() {
        results[i].cost_rank = place + 1;
    }
}

/// The cheapest combination whose accuracy is within `tolerance` of the best.
pub fn recommend(results: &[Result], tolerance: f64) -> Option<Recommended> {
    let best = results.iter().map(|r| r.accuracy).fold(f64::NAN, f64::max);
    results
        .iter()
        .filter(|r| r.accuracy >= best - tolerance - 1e-12)
        .min_by_key(|r| r.cost_rank)
        .map(|r| Recommended {
            batch_size: r.batch_size,
            votes: r.votes,
        })
}

fn interval(i: Option<Interval>) -> String {
    i.map_or("-".into(), |i| format!("[{:.3}, {:.3}]", i.lo, i.hi))
}

/// The table a person reads, and the recommendation with the flags to pass.
pub fn text(results: &[Result], rec: Option<Recommended>, tolerance: f64) -> String {
    let mut out = format!(
        "{:>5} {:>5} {:>8} {:>16} {:>8} {:>16} {:>10} {:>14} {:>4}\n",
        "batch",
        "votes",
        "accuracy",
        "95 % interval",
        "macro-F1",
        "95 % interval",
        "tokens/row",
        "rows/key/day",
        "cost"
    );
    for r in results {
        let day = r
            .rows_per_key_day
            .map_or("no limit".into(), crate::budget::thousands);
        out.push_str(&format!(
            "{:>5} {:>5} {:>8.3} {:>16} {:>8.3} {:>16} {:>10.1} {:>14} {:>4}\n",
            r.batch_size,
            r.votes,
            r.accuracy,
            interval(r.ci95.accuracy),
            r.macro_f1,
            interval(r.ci95.macro_f1),
            r.tokens_per_row,
            day,
            r.cost_rank
        ));
    }
    if let Some(rec) = rec {
        let best = results.iter().map(|r| r.accuracy).fold(f64::NAN, f64::max);
        out.push_str(&format!(
            "recommended: --batch-size {} --votes {} (the cheapest within {tolerance} of the best accuracy, {best:.3})",
            rec.batch_size, rec.votes
        ));
    }
    out
}

/// The `--json` object.
pub fn json(results: &[Result], rec: Option<Recommended>) -> serde_json::Value {
    serde_json::json!({ "results": results, "recommended": rec })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(batch_size: u32, votes: u32, accuracy: f64, day: f64) -> Result {
        Result {
            batch_size,
            votes,
            rows: 200,
            accuracy,
            macro_f1: accuracy,
            ci95: Ci95 {
                accuracy: None,
                macro_f1: None,
            },
            tokens_per_row: 1e6 / day,
            rows_per_key_day: Some(day),
            cost_rank: 0,
        }
    }

    #[test]
    fn the_cheapest_within_the_tolerance_of_the_best_is_recommended() {
        let mut all = vec![
            r(1, 1, 0.90, 14_400.0),
            r(10, 1, 0.895, 60_000.0),
            r(50, 1, 0.70, 80_000.0),
            r(1, 3, 0.93, 5_000.0),
        ];
        rank(&mut all);
        let ranks: Vec<usize> = all.iter().map(|r| r.cost_rank).collect();
        assert_eq!(ranks, [3, 2, 1, 4]);
        assert_eq!(
            recommend(&all, 0.02),
            Some(Recommended {
                batch_size: 1,
                votes: 3
            })
        );
        assert_eq!(recommend(&all, 0.04).unwrap().batch_size, 10);
        assert_eq!(recommend(&all, 0.3).unwrap().batch_size, 50);
        assert!(text(&all, recommend(&all, 0.04), 0.04).contains("--batch-size 10 --votes 1"));
    }
}
