//! What `eval` prints: a few lines a person reads at a glance, or (`--json`) one object
//! whose field names scripts rely on (README, "Label quality").

use serde_json::{json, Map, Value};

use super::read::Table;
use super::Report;

/// The `--json` object.
pub fn json(table: &Table, report: &Report) -> Value {
    let s = &report.scores;
    let mut per_label = Map::new();
    let mut confusion = Map::new();
    for (g, name) in table.classes.iter().enumerate() {
        let l = &s.per_label[g];
        per_label.insert(
            name.clone(),
            json!({"precision": l.precision, "recall": l.recall, "f1": l.f1, "support": l.support}),
        );
        let row: Map<String, Value> = table
            .classes
            .iter()
            .enumerate()
            .map(|(p, pred)| (pred.clone(), json!(report.confusion.get(g, p))))
            .collect();
        confusion.insert(name.clone(), Value::Object(row));
    }
    json!({
        "input": table.path.display().to_string(),
        "gold_column": table.gold_column,
        "label_column": table.label_column,
        "evaluated": table.rows.len(),
        "skipped_no_gold": table.skipped_no_gold,
        "skipped_no_label": table.skipped_no_label,
        "fallback": table.fallback,
        "accuracy": s.accuracy,
        "macro_f1": s.macro_f1,
        "weighted_f1": s.weighted_f1,
        "kappa": s.kappa,
        "mcc": s.mcc,
        "labels": table.classes,
        "per_label": per_label,
        "confusion": confusion,
        "ci95": report.ci95,
        "bootstrap": {"resamples": report.resamples, "seed": report.seed},
        "accuracy_at_coverage": report.coverage,
    })
}

/// The text report.
pub fn text(table: &Table, report: &Report) -> String {
    let mut out = vec![counts_line(table)];
    out.push(String::new());
    out.extend(headline(report));
    out.push(String::new());
    out.extend(per_label(table, report));
    out.push(String::new());
    out.extend(confusion(table, report));
    if let Some(lines) = coverage(table, report) {
        out.push(String::new());
        out.extend(lines);
    }
    out.join("\n")
}

fn counts_line(table: &Table) -> String {
    let mut left_out = Vec::new();
    if table.skipped_no_gold > 0 {
        left_out.push(format!("{} without gold", table.skipped_no_gold));
    }
    if table.fallback > 0 {
        left_out.push(format!("{} fallback", table.fallback));
    }
    if table.skipped_no_label > 0 {
        left_out.push(format!("{} without label", table.skipped_no_label));
    }
    let tail = if left_out.is_empty() {
        String::new()
    } else {
        format!(" (left out: {})", left_out.join(", "))
    };
    format!(
        "{}: {} evaluated, '{}' against gold '{}'{tail}",
        table.path.display(),
        crate::ui::count(table.rows.len() as u64, "row"),
        table.label_column,
        table.gold_column
    )
}

fn headline(report: &Report) -> Vec<String> {
    let s = &report.scores;
    let ci = report.ci95.as_ref();
    let with = |v: f64, i: Option<(f64, f64)>| match i {
        Some((lo, hi)) => format!("{v:.3}  [{lo:.3}, {hi:.3}]"),
        None => format!("{v:.3}"),
    };
    let mut lines = vec![
        format!(
            "accuracy     {}",
            with(s.accuracy, ci.map(|c| (c.accuracy.lo, c.accuracy.hi)))
        ),
        format!(
            "macro-F1     {}",
            with(s.macro_f1, ci.map(|c| (c.macro_f1.lo, c.macro_f1.hi)))
        ),
        format!("weighted-F1  {:.3}", s.weighted_f1),
        format!(
            "Cohen's κ    {}",
            with(s.kappa, ci.map(|c| (c.kappa.lo, c.kappa.hi)))
        ),
        format!("MCC          {:.3}", s.mcc),
    ];
    if ci.is_some() {
        lines.push(format!(
            "[95 % bootstrap intervals: {} resamples, seed {}]",
            report.resamples, report.seed
        ));
    }
    lines
}

fn per_label(table: &Table, report: &Report) -> Vec<String> {
    let w = width(&table.classes, "label");
    let mut lines = vec![format!(
        "{:<w$}  precision  recall     F1  support",
        "label"
    )];
    for (k, name) in table.classes.iter().enumerate() {
        let l = &report.scores.per_label[k];
        let mark = if k >= table.predicted_classes {
            "  (never predicted)"
        } else {
            ""
        };
        lines.push(format!(
            "{name:<w$}  {:>9.3}  {:>6.3}  {:>5.3}  {:>7}{mark}",
            l.precision, l.recall, l.f1, l.support
        ));
    }
    lines
}

fn confusion(table: &Table, report: &Report) -> Vec<String> {
    let corner = "gold \\ predicted";
    let w = width(&table.classes, corner);
    let cols: Vec<usize> = table
        .classes
        .iter()
        .map(|c| c.chars().count().max(5))
        .collect();
    let mut head = format!("{corner:<w$}");
    for (name, cw) in table.classes.iter().zip(&cols) {
        head.push_str(&format!("  {name:>cw$}"));
    }
    let mut lines = vec![head];
    for (g, name) in table.classes.iter().enumerate() {
        let mut line = format!("{name:<w$}");
        for (p, cw) in cols.iter().enumerate() {
            line.push_str(&format!("  {:>cw$}", report.confusion.get(g, p)));
        }
        lines.push(line);
    }
    lines
}

fn coverage(table: &Table, report: &Report) -> Option<Vec<String>> {
    let rows = report.coverage.as_ref()?;
    let column = table.confidence_column.as_deref().unwrap_or("confidence");
    let mut lines = vec![format!(
        "accuracy at coverage ('{column}' at or above the threshold):"
    )];
    for r in rows {
        let accuracy = r
            .accuracy
            .map(|a| format!("accuracy {a:.3}"))
            .unwrap_or_else(|| "no row".into());
        lines.push(format!(
            "  ≥ {:.1}  {:>5.1} % of rows ({:>w$})  {accuracy}",
            r.threshold,
            r.coverage * 100.0,
            r.rows,
            w = table.rows.len().to_string().len()
        ));
    }
    Some(lines)
}

/// The width of the first column: the longest class name, or the heading.
fn width(classes: &[String], heading: &str) -> usize {
    classes
        .iter()
        .map(|c| c.chars().count())
        .chain([heading.chars().count()])
        .max()
        .unwrap_or(0)
}
