//! The agreement measures of `eval`, all computed from one confusion matrix, so that a
//! bootstrap resample costs one pass over its rows and a k × k matrix.
//!
//! Undefined ratios (a class nobody predicted, one nobody labeled) are 0, never NaN: a
//! NaN would print as "NaN" and break `--json` readers. Cohen's κ and the MCC are 0/0
//! when both raters use one class only; they are 1 there when every row agrees (the
//! labels are the same, which is what a reader of "1" takes away) and 0 otherwise.

/// Counts of gold × predicted label over the classes `0..k`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confusion {
    k: usize,
    /// Row-major: `cells[gold * k + predicted]`.
    cells: Vec<u64>,
}

impl Confusion {
    pub fn new(k: usize) -> Confusion {
        Confusion {
            k,
            cells: vec![0; k * k],
        }
    }

    /// A matrix of the given (gold, predicted) pairs.
    pub fn of(k: usize, pairs: &[(usize, usize)]) -> Confusion {
        let mut c = Confusion::new(k);
        for &(g, p) in pairs {
            c.add(g, p);
        }
        c
    }

    pub fn add(&mut self, gold: usize, predicted: usize) {
        self.cells[gold * self.k + predicted] += 1;
    }

    pub fn classes(&self) -> usize {
        self.k
    }

    pub fn get(&self, gold: usize, predicted: usize) -> u64 {
        self.cells[gold * self.k + predicted]
    }

    pub fn total(&self) -> u64 {
        self.cells.iter().sum()
    }

    /// Rows whose gold label is `class` (its support).
    pub fn gold_count(&self, class: usize) -> u64 {
        (0..self.k).map(|p| self.get(class, p)).sum()
    }

    /// Rows predicted as `class`.
    pub fn predicted_count(&self, class: usize) -> u64 {
        (0..self.k).map(|g| self.get(g, class)).sum()
    }

    fn agreeing(&self) -> u64 {
        (0..self.k).map(|c| self.get(c, c)).sum()
    }
}

/// Precision, recall, F1 and support of one class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabelScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u64,
}

/// Every measure `eval` reports, for one set of rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    pub accuracy: f64,
    pub macro_f1: f64,
    pub weighted_f1: f64,
    pub kappa: f64,
    pub mcc: f64,
    /// In class order.
    pub per_label: Vec<LabelScores>,
}

/// `a / b`, or 0 when `b` is 0.
fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        a / b
    }
}

pub fn label_scores(c: &Confusion, class: usize) -> LabelScores {
    let tp = c.get(class, class) as f64;
    let support = c.gold_count(class);
    let precision = ratio(tp, c.predicted_count(class) as f64);
    let recall = ratio(tp, support as f64);
    LabelScores {
        precision,
        recall,
        f1: ratio(2.0 * precision * recall, precision + recall),
        support,
    }
}

pub fn scores(c: &Confusion) -> Scores {
    let n = c.total() as f64;
    let per_label: Vec<LabelScores> = (0..c.classes()).map(|k| label_scores(c, k)).collect();
    // Macro over every class that occurs as gold or as prediction (as scikit-learn does):
    // a matrix may carry classes absent from this set of rows (a bootstrap resample).
    let present: Vec<&LabelScores> = (0..c.classes())
        .filter(|&k| c.gold_count(k) + c.predicted_count(k) > 0)
        .map(|k| &per_label[k])
        .collect();
    let macro_f1 = ratio(present.iter().map(|s| s.f1).sum(), present.len() as f64);
    let weighted_f1 = ratio(per_label.iter().map(|s| s.f1 * s.support as f64).sum(), n);
    Scores {
        accuracy: ratio(c.agreeing() as f64, n),
        macro_f1,
        weighted_f1,
        kappa: kappa(c),
        mcc: mcc(c),
        per_label,
    }
}

/// Cohen's κ: observed agreement beyond the agreement the two raters' label shares
/// would give by chance.
pub fn kappa(c: &Confusion) -> f64 {
    let n = c.total() as f64;
    if n == 0.0 {
        return 0.0;
    }
    let observed = c.agreeing() as f64 / n;
    let chance: f64 = (0..c.classes())
        .map(|k| c.gold_count(k) as f64 * c.predicted_count(k) as f64)
        .sum::<f64>()
        / (n * n);
    if 1.0 - chance <= f64::EPSILON {
        return if observed >= 1.0 { 1.0 } else { 0.0 };
    }
    (observed - chance) / (1.0 - chance)
}

/// Matthews' correlation for k classes (Gorodkin's R_K):
/// (c·s − Σ p_k t_k) / √((s² − Σ p_k²)(s² − Σ t_k²)), with c the agreeing rows, s all
/// rows, p_k the rows predicted k and t_k the rows whose gold is k.
pub fn mcc(c: &Confusion) -> f64 {
    let s = c.total() as f64;
    let agree = c.agreeing() as f64;
    let (mut pt, mut pp, mut tt) = (0.0, 0.0, 0.0);
    for k in 0..c.classes() {
        let (p, t) = (c.predicted_count(k) as f64, c.gold_count(k) as f64);
        pt += p * t;
        pp += p * p;
        tt += t * t;
    }
    let denominator = ((s * s - pp) * (s * s - tt)).sqrt();
    if denominator == 0.0 {
        return if s > 0.0 && agree == s { 1.0 } else { 0.0 };
    }
    (agree * s - pt) / denominator
}

#[cfg(test)]
mod tests;
