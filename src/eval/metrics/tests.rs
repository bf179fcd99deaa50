//! The expected figures were computed apart from this code, by per-row definitions
//! (scikit-learn's: precision, recall and F1 per label, κ from the raters' shares, MCC as
//! the correlation of one-hot vectors) in a short Python script, not from a matrix.

use super::*;

/// (gold, predicted) over class indices, from two label strings.
fn pairs(classes: &[&str], gold: &str, predicted: &str) -> Vec<(usize, usize)> {
    let at = |l: &str| classes.iter().position(|c| *c == l).unwrap();
    gold.split(' ')
        .zip(predicted.split(' '))
        .map(|(g, p)| (at(g), at(p)))
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn a_three_class_fixture_matches_the_independent_figures() {
    // By hand: a→a 3, a→b 1; b→b 2, b→c 1; c→c 2, c→a 1. Accuracy 7/10; precision and
    // recall 3/4 for a, 2/3 for b and c; κ = (0.7 − 0.34)/(1 − 0.34) = 6/11; MCC =
    // (7·10 − 34)/√(66·66) = 6/11.
    let classes = ["a", "b", "c"];
    let p = pairs(&classes, "a a a a b b b c c c", "a a a b b b c c c a");
    let s = scores(&Confusion::of(3, &p));
    assert!(close(s.accuracy, 0.7));
    assert!(close(s.macro_f1, 0.6944444444444443), "{s:?}");
    assert!(close(s.weighted_f1, 0.7), "{s:?}");
    assert!(close(s.kappa, 6.0 / 11.0), "{s:?}");
    assert!(close(s.mcc, 6.0 / 11.0), "{s:?}");
    assert!(close(s.per_label[0].precision, 0.75));
    assert!(close(s.per_label[1].recall, 2.0 / 3.0));
    assert_eq!(s.per_label[2].support, 3);
}

#[test]
fn a_class_nobody_predicted_scores_zero_not_nan() {
    // neu is never predicted; x is a gold label outside the predicted labels.
    let classes = ["neg", "neu", "pos", "x"];
    let p = pairs(
        &classes,
        "pos pos pos neg neg neu neu neu neu x",
        "pos neg pos neg neg pos neg neg pos pos",
    );
    let s = scores(&Confusion::of(4, &p));
    assert!(close(s.accuracy, 0.4));
    assert!(close(s.macro_f1, 0.2678571428571429), "{s:?}");
    assert!(close(s.weighted_f1, 0.26428571428571435), "{s:?}");
    assert!(close(s.kappa, 0.2), "{s:?}");
    assert!(close(s.mcc, 0.253546276418555), "{s:?}");
    let neu = s.per_label[1];
    assert_eq!(
        (neu.precision, neu.recall, neu.f1, neu.support),
        (0.0, 0.0, 0.0, 4)
    );
    let neg = s.per_label[0];
    assert!(close(neg.precision, 0.4) && close(neg.recall, 1.0));
    assert!(close(neg.f1, 0.5714285714285715));
    let all = [s.accuracy, s.macro_f1, s.weighted_f1, s.kappa, s.mcc];
    assert!(all.iter().all(|v| v.is_finite()));
}

#[test]
fn one_class_on_both_sides_is_perfect_agreement_and_not_nan() {
    // Chance agreement is 1: κ is 0/0 by its formula, and so is the MCC.
    let s = scores(&Confusion::of(1, &[(0, 0); 5]));
    assert_eq!(
        (s.accuracy, s.kappa, s.mcc, s.macro_f1),
        (1.0, 1.0, 1.0, 1.0)
    );
    // Each rater uses one class, different ones: no agreement, chance 0.
    let s = scores(&Confusion::of(2, &[(0, 1); 5]));
    assert_eq!(
        (s.accuracy, s.kappa, s.mcc, s.macro_f1),
        (0.0, 0.0, 0.0, 0.0)
    );
    // Gold uses one class, predictions two: κ 0 (chance equals observed), MCC 0.
    let s = scores(&Confusion::of(2, &[(0, 0), (0, 0), (0, 1)]));
    assert!(close(s.kappa, 0.0) && s.mcc == 0.0, "{s:?}");
}

#[test]
fn a_single_row() {
    let right = scores(&Confusion::of(2, &[(1, 1)]));
    assert_eq!((right.accuracy, right.kappa, right.mcc), (1.0, 1.0, 1.0));
    assert_eq!(right.per_label[1].support, 1);
    // Class 0 occurs nowhere: it is left out of the macro average.
    assert_eq!(right.macro_f1, 1.0);
    let wrong = scores(&Confusion::of(2, &[(0, 1)]));
    assert_eq!((wrong.accuracy, wrong.kappa, wrong.mcc), (0.0, 0.0, 0.0));
    assert_eq!((wrong.macro_f1, wrong.weighted_f1), (0.0, 0.0));
}

#[test]
fn no_rows_give_zeros() {
    let s = scores(&Confusion::new(3));
    assert_eq!(
        (s.accuracy, s.macro_f1, s.kappa, s.mcc),
        (0.0, 0.0, 0.0, 0.0)
    );
}
