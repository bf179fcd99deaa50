//! `usage --csv`: the usage per key and day, or with `--errors` the error log, as CSV for
//! a spreadsheet. Text that came from a provider is masked again (`keys::mask::scrub`) and
//! every text cell that a spreadsheet would read as a formula (= + - @, tab, CR first) is
//! prefixed with a single quote, the usual defence against formula injection.

use super::UsageReport;
use crate::provider::classify::ErrorClass;
use crate::store::ErrorEntry;

/// The first columns of the usage CSV: one row per key and UTC day it was used on. Scripts
/// read them by name and place, so new columns only ever go after them ([`usage_header`]).
pub const USAGE_HEADER: [&str; 14] = [
    "provider",
    "date",
    "index",
    "key",
    "name",
    "requests",
    "successes",
    "errors",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "rows",
    "tokens_per_row",
    "cut_replies",
];

/// The usage CSV's whole header: [`USAGE_HEADER`], then one `errors_<class>` column per
/// error class in [`ErrorClass::ALL`]'s order (its stable names, as in `usage --json`).
pub fn usage_header() -> Vec<String> {
    USAGE_HEADER
        .iter()
        .map(|h| h.to_string())
        .chain(
            ErrorClass::ALL
                .iter()
                .map(|c| format!("errors_{}", c.as_str())),
        )
        .collect()
}

/// The header of the error log CSV, newest entry first.
pub const ERRORS_HEADER: [&str; 7] = [
    "time", "provider", "key", "model", "class", "status", "message",
];

/// A text cell as it may be written: masked, and never read as a formula.
pub fn text_cell(s: &str) -> String {
    let s = crate::keys::mask::scrub(s);
    match s.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{s}"),
        _ => s,
    }
}

fn finish(w: csv::Writer<Vec<u8>>) -> String {
    let bytes = w.into_inner().expect("writing to memory");
    String::from_utf8(bytes).expect("cells are UTF-8")
}

/// Every provider's keys, each day of the period a key was used on (oldest first).
pub fn usage_csv(reports: &[UsageReport]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(usage_header()).expect("memory");
    for r in reports {
        for k in &r.keys {
            for d in &k.days {
                let u = &d.usage;
                let index = k.index.map(|i| i.to_string()).unwrap_or_default();
                let tpr = u.tokens_per_row.map(|t| t.to_string()).unwrap_or_default();
                // The same per-class counts `errors` sums, from the same usage model.
                let by_class = ErrorClass::ALL
                    .iter()
                    .map(|c| u.errors.get(c.as_str()).copied().unwrap_or(0).to_string());
                let cells = [
                    text_cell(&r.provider),
                    text_cell(&d.date),
                    index,
                    text_cell(&k.key),
                    text_cell(k.name.as_deref().unwrap_or("")),
                    u.requests.to_string(),
                    u.successes.to_string(),
                    u.error_total().to_string(),
                    u.tokens_in.to_string(),
                    u.tokens_out.to_string(),
                    u.cost_usd.to_string(),
                    u.rows.to_string(),
                    tpr,
                    u.cut_replies.to_string(),
                ];
                w.write_record(cells.into_iter().chain(by_class))
                    .expect("memory");
            }
        }
    }
    finish(w)
}

/// The error log's entries as CSV.
pub fn errors_csv(entries: &[ErrorEntry]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(ERRORS_HEADER).expect("memory");
    for e in entries {
        w.write_record([
            text_cell(&e.time),
            text_cell(&e.provider),
            text_cell(&e.key),
            text_cell(&e.model),
            text_cell(&e.class),
            e.status.map(|s| s.to_string()).unwrap_or_default(),
            text_cell(&e.message),
        ])
        .expect("memory");
    }
    finish(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralised_and_keys_masked() {
        assert_eq!(text_cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(text_cell("+1"), "'+1");
        assert_eq!(text_cell("-1"), "'-1");
        assert_eq!(text_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(text_cell("plain"), "plain");
        let key = "gsk_FAKEKEY_csv_0001_zq9";
        assert!(!text_cell(&format!("bad key {key}")).contains(key));
    }

    #[test]
    fn error_class_columns_follow_the_old_ones_in_class_order() {
        let h = usage_header();
        assert_eq!(h.len(), USAGE_HEADER.len() + ErrorClass::ALL.len());
        assert_eq!(h[..USAGE_HEADER.len()], USAGE_HEADER.map(String::from));
        assert_eq!(h[USAGE_HEADER.len()], "errors_rate_limit");
        assert_eq!(h.last().unwrap(), "errors_rejected");
    }

    #[test]
    fn an_error_entry_is_one_row() {
        let e = ErrorEntry {
            time: "2026-12-06T10:00:00Z".into(),
            provider: "groq".into(),
            key: "#1 gsk_…a1b2".into(),
            model: "m".into(),
            class: "server".into(),
            status: None,
            message: "=cmd, \"quoted\"".into(),
        };
        let text = errors_csv(&[e]);
        let mut r = csv::Reader::from_reader(text.as_bytes());
        let row = r.records().next().unwrap().unwrap();
        assert_eq!(&row[5], "");
        assert_eq!(&row[6], "'=cmd, \"quoted\"");
    }
}
