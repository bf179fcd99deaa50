//! Accuracy at coverage: for each threshold, the share of rows whose confidence is at or
//! above it, and how often those rows are right. It shows what `--review-below` would
//! send to a person and what the rest would be worth.

use serde::Serialize;

use super::read::Row;

/// One threshold's line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AtThreshold {
    pub threshold: f64,
    /// Rows at or above the threshold.
    pub rows: u64,
    /// Their share of the evaluated rows.
    pub coverage: f64,
    /// Their accuracy; `None` (null) when no row reaches the threshold.
    pub accuracy: Option<f64>,
}

/// The thresholds 0.5, 0.6, … 1.0. A row without a confidence reaches none of them.
pub fn accuracy_at_coverage(rows: &[Row]) -> Vec<AtThreshold> {
    (5..=10)
        .map(|tenths| {
            // Divided, not stepped by 0.1: 0.6 is then the same double as a cell "0.6".
            let threshold = f64::from(tenths) / 10.0;
            let above: Vec<&Row> = rows
                .iter()
                .filter(|r| r.confidence.is_some_and(|c| c >= threshold))
                .collect();
            let right = above.iter().filter(|r| r.gold == r.predicted).count();
            AtThreshold {
                threshold,
                rows: above.len() as u64,
                coverage: share(above.len(), rows.len()),
                accuracy: (!above.is_empty()).then(|| share(right, above.len())),
            }
        })
        .collect()
}

fn share(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(right: bool, confidence: Option<f64>) -> Row {
        Row {
            number: 1,
            gold: 0,
            predicted: if right { 0 } else { 1 },
            confidence,
            record: None,
        }
    }

    #[test]
    fn each_threshold_counts_the_rows_at_or_above_it() {
        let rows = [
            row(true, Some(1.0)),
            row(true, Some(0.6)),
            row(false, Some(0.6)),
            row(false, Some(0.4)),
            row(true, None),
        ];
        let c = accuracy_at_coverage(&rows);
        let thresholds: Vec<f64> = c.iter().map(|a| a.threshold).collect();
        assert_eq!(thresholds, [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]);
        assert_eq!((c[1].rows, c[1].coverage), (3, 0.6));
        assert_eq!(c[1].accuracy, Some(2.0 / 3.0));
        assert_eq!((c[2].rows, c[2].accuracy), (1, Some(1.0)));
        assert_eq!((c[5].rows, c[5].accuracy), (1, Some(1.0)));
        let none = accuracy_at_coverage(&[row(true, Some(0.3))]);
        assert_eq!((none[0].rows, none[0].accuracy), (0, None));
    }
}
