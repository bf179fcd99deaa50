//! Bootstrap intervals: the rows are drawn again with replacement, as many as there are,
//! `resamples` times, and the 2.5th and 97.5th percentiles of a measure over the
//! resamples bound its 95 % interval. The generator is seeded, so one input and one seed
//! give the same intervals on every machine and run.

use serde::Serialize;

use super::metrics::{scores, Confusion};

/// A 95 % interval, `[lo, hi]` in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(into = "[f64; 2]")]
pub struct Interval {
    pub lo: f64,
    pub hi: f64,
}

impl From<Interval> for [f64; 2] {
    fn from(i: Interval) -> [f64; 2] {
        [i.lo, i.hi]
    }
}

/// The intervals `eval` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Intervals {
    pub accuracy: Interval,
    pub macro_f1: Interval,
    pub kappa: Interval,
}

/// The intervals of accuracy, macro-F1 and κ over `resamples` resamples of `pairs`
/// (gold, predicted class among `k`); `None` when there is nothing to resample.
pub fn intervals(
    pairs: &[(usize, usize)],
    k: usize,
    resamples: u32,
    seed: u64,
) -> Option<Intervals> {
    if pairs.is_empty() || resamples == 0 {
        return None;
    }
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut accuracy = Vec::with_capacity(resamples as usize);
    let mut macro_f1 = Vec::with_capacity(resamples as usize);
    let mut kappa = Vec::with_capacity(resamples as usize);
    for _ in 0..resamples {
        let mut matrix = Confusion::new(k);
        for _ in 0..pairs.len() {
            let (g, p) = pairs[rng.usize(..pairs.len())];
            matrix.add(g, p);
        }
        let s = scores(&matrix);
        accuracy.push(s.accuracy);
        macro_f1.push(s.macro_f1);
        kappa.push(s.kappa);
    }
    Some(Intervals {
        accuracy: middle_95(accuracy),
        macro_f1: middle_95(macro_f1),
        kappa: middle_95(kappa),
    })
}

/// The 2.5th and 97.5th percentiles, interpolated between neighbours (the common
/// "linear" definition, numpy's default).
fn middle_95(mut values: Vec<f64>) -> Interval {
    values.sort_by(f64::total_cmp);
    Interval {
        lo: percentile(&values, 0.025),
        hi: percentile(&values, 0.975),
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let at = q * (sorted.len() - 1) as f64;
    let below = at.floor() as usize;
    let above = (below + 1).min(sorted.len() - 1);
    let w = at - below as f64;
    sorted[below] * (1.0 - w) + sorted[above] * w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_between_neighbours() {
        // numpy.percentile([0, 1, ..., 10], [2.5, 97.5]) = [0.25, 9.75]
        let v: Vec<f64> = (0..=10).map(f64::from).collect();
        assert_eq!(middle_95(v), Interval { lo: 0.25, hi: 9.75 });
        assert_eq!(middle_95(vec![3.0]), Interval { lo: 3.0, hi: 3.0 });
    }

    #[test]
    fn the_same_seed_gives_the_same_intervals_around_the_estimate() {
        // 70 of 100 rows right, over two classes.
        let mut pairs = vec![(0, 0); 40];
        pairs.extend([(1, 1); 30]);
        pairs.extend([(0, 1); 20]);
        pairs.extend([(1, 0); 10]);
        let a = intervals(&pairs, 2, 1000, 7).unwrap();
        assert_eq!(Some(&a), intervals(&pairs, 2, 1000, 7).as_ref());
        assert_ne!(Some(&a), intervals(&pairs, 2, 1000, 8).as_ref());
        assert!(a.accuracy.lo < 0.7 && 0.7 < a.accuracy.hi, "{a:?}");
        // The binomial standard error is √(0.7·0.3/100) ≈ 0.046: the interval is about
        // ±1.96 of it, 0.18 wide; the resampling noise is well inside ±0.04.
        let width = a.accuracy.hi - a.accuracy.lo;
        assert!((0.14..0.22).contains(&width), "{a:?}");
        assert!(a.kappa.lo < a.kappa.hi && a.macro_f1.lo < a.macro_f1.hi);
    }

    #[test]
    fn agreement_everywhere_has_no_spread_and_nothing_has_no_interval() {
        let a = intervals(&[(1, 1); 8], 2, 200, 1).unwrap();
        let one = Interval { lo: 1.0, hi: 1.0 };
        assert_eq!((a.accuracy, a.macro_f1, a.kappa), (one, one, one));
        assert!(intervals(&[], 2, 100, 1).is_none());
        assert!(intervals(&[(0, 0)], 2, 0, 1).is_none());
    }
}
