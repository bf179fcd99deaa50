//! `usage --csv`: the usage per key and day (errors in total and per class) agrees with
//! `usage --json`, and `--errors`
//! exports the error log with keys masked and no cell a spreadsheet would run.

mod common;

use common::*;
use serde_json::Value;

fn out(sb: &Sandbox, args: &[&str]) -> String {
    let r = run(sb.cmd().args(args));
    assert_eq!(code(&r), 0, "{args:?}: {}", stderr(&r));
    stdout(&r)
}

fn rows(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let header = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|x| x.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

#[test]
fn usage_csv_agrees_with_json_and_the_error_log_is_masked() {
    let ks = [PLANTED, KEY2];
    let (fake, sb, _, input, output) = setup(&ks, FakeConfig::with_keys(&ks), 6);
    fake.push_faults([Fault::Status(500), Fault::Echo(500)]);
    let r = run(&mut sb.label(&fake, &input, &output, &["--concurrency", "1"]));
    assert_eq!(code(&r), 0, "{}", stderr(&r));

    let json: Value = serde_json::from_str(&out(&sb, &["usage", "--json"])).unwrap();
    let csv_text = out(&sb, &["usage", "--csv"]);
    let (header, rows_) = rows(&csv_text);
    assert_eq!(
        header,
        [
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
            // Appended after the columns scripts already read: one per error class.
            "errors_rate_limit",
            "errors_quota",
            "errors_auth",
            "errors_server",
            "errors_timeout",
            "errors_network",
            "errors_unparsable",
            "errors_rejected"
        ]
    );
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let mut expected = 0;
    for k in json["keys"].as_array().unwrap() {
        for d in k["days"].as_array().unwrap() {
            expected += 1;
            let row = rows_
                .iter()
                .find(|r| r[col("key")] == k["key"] && r[col("date")] == d["date"])
                .unwrap_or_else(|| panic!("no row for {} {}: {csv_text}", k["key"], d["date"]));
            for n in ["requests", "successes", "tokens_in", "tokens_out", "rows"] {
                assert_eq!(row[col(n)], d[n].to_string(), "{n}: {csv_text}");
            }
            let errors: u64 = d["errors"]
                .as_object()
                .unwrap()
                .values()
                .map(|v| v.as_u64().unwrap())
                .sum();
            assert_eq!(row[col("errors")], errors.to_string());
            // Each class's column holds what --json counts for it.
            for (class, n) in d["errors"].as_object().unwrap() {
                assert_eq!(
                    row[col(&format!("errors_{class}"))],
                    n.to_string(),
                    "{class}: {csv_text}"
                );
            }
        }
    }
    assert_eq!(rows_.len(), expected, "{csv_text}");
    let total: u64 = rows_
        .iter()
        .map(|r| r[col("errors")].parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 2, "{csv_text}");
    let server: u64 = rows_
        .iter()
        .map(|r| r[col("errors_server")].parse::<u64>().unwrap())
        .sum();
    assert_eq!(server, 2, "both 500s are server errors: {csv_text}");

    let err_text = out(&sb, &["usage", "--csv", "--errors"]);
    let (header, errs) = rows(&err_text);
    assert_eq!(
        header,
        ["time", "provider", "key", "model", "class", "status", "message"]
    );
    assert_eq!(errs.len(), 2, "{err_text}");
    assert!(
        errs.iter().all(|e| e[4] == "server" && e[5] == "500"),
        "{err_text}"
    );
    // The provider echoed the key: the export holds it masked only.
    assert!(
        errs.iter()
            .any(|e| e[6].contains(&format!("Bearer {}", &e[2][3..]))),
        "{err_text}"
    );
    sb.assert_no_leak(&[&r], &ks);
    assert!(!csv_text.contains(PLANTED) && !err_text.contains(PLANTED));

    // Not both at once, and --errors only with --csv.
    for bad in [&["usage", "--csv", "--json"][..], &["usage", "--errors"]] {
        assert_eq!(code(&run(sb.cmd().args(bad))), 2, "{bad:?}");
    }
}
