//! `autolabel eval` through the real binary: the figures of a fixture computed apart
//! from the code (the Python script in src/eval/metrics/tests.rs's comment gave them),
//! the exact `--json` field names, which rows count, `--errors`, and bad input.

mod common;

use common::*;
use serde_json::Value;

/// Ten rows counted (neu never predicted; x a gold label outside the predicted ones),
/// one without gold, one fallback. Figures of the ten rows: accuracy 0.4, macro-F1
/// 0.267857…, weighted F1 0.264285…, κ 0.2, MCC 0.253546….
const FIXTURE: &str = "\
id,text,gold,label,status,confidence
1,a,pos,pos,model,0.9
2,b,pos,neg,model,0.95
3,c,pos,pos,cached,1.0
4,d,neg,neg,model,0.7
5,e,neg,neg,model,0.7
6,f,neu,pos,model,0.5
7,g,NEU,neg,model,0.6
8,h,neu,neg,model,
9,i,neu,pos,model,0.8
10,j,x,pos,model,0.55
11,k,,neg,model,0.9
12,l,pos,neu,fallback,
";

fn eval(sb: &Sandbox, args: &[&str]) -> std::process::Output {
    run(sb
        .cmd()
        .arg("eval")
        .arg("--input")
        .arg(sb.path("in.csv"))
        .args(args))
}

fn close(v: &Value, want: f64) -> bool {
    (v.as_f64().unwrap() - want).abs() < 1e-9
}

#[test]
fn json_has_the_documented_fields_and_the_independent_figures() {
    let sb = Sandbox::new();
    std::fs::write(sb.path("in.csv"), FIXTURE).unwrap();
    let before = std::fs::metadata(sb.path("in.csv"))
        .unwrap()
        .modified()
        .unwrap();
    let out = eval(&sb, &["--gold-column", "gold", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let j: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(j["evaluated"], 10);
    assert_eq!(j["skipped_no_gold"], 1);
    assert_eq!(j["fallback"], 1);
    assert!(close(&j["accuracy"], 0.4), "{j}");
    assert!(close(&j["macro_f1"], 0.2678571428571429), "{j}");
    assert!(close(&j["weighted_f1"], 0.26428571428571435), "{j}");
    assert!(close(&j["kappa"], 0.2), "{j}");
    assert!(close(&j["mcc"], 0.253546276418555), "{j}");
    let neu = &j["per_label"]["neu"];
    assert_eq!(
        (
            &neu["precision"],
            &neu["recall"],
            &neu["f1"],
            &neu["support"]
        ),
        (
            &Value::from(0.0),
            &Value::from(0.0),
            &Value::from(0.0),
            &Value::from(4)
        )
    );
    assert!(close(&j["per_label"]["neg"]["precision"], 0.4));
    assert!(close(&j["per_label"]["neg"]["recall"], 1.0));
    // Gold rows × predicted columns; "NEU" is the class neu.
    assert_eq!(j["confusion"]["neu"]["neg"], 2);
    assert_eq!(j["confusion"]["neu"]["pos"], 2);
    assert_eq!(j["confusion"]["x"]["pos"], 1);
    assert_eq!(j["confusion"]["pos"]["neg"], 1);
    for m in ["accuracy", "macro_f1", "kappa"] {
        let ci = j["ci95"][m].as_array().unwrap();
        let (lo, hi) = (ci[0].as_f64().unwrap(), ci[1].as_f64().unwrap());
        assert!(
            lo <= j[m].as_f64().unwrap() && j[m].as_f64().unwrap() <= hi,
            "{m}: {j}"
        );
        assert!(lo < hi, "{m}: {j}");
    }
    // The confidence column gives accuracy at coverage: ≥ 0.9 are rows 1, 2 and 3.
    let at = &j["accuracy_at_coverage"];
    assert_eq!(at[4]["threshold"], 0.9);
    assert_eq!(at[4]["rows"], 3);
    assert!(close(&at[4]["accuracy"], 2.0 / 3.0), "{at}");
    assert_eq!(std::fs::read_to_string(sb.path("in.csv")).unwrap(), FIXTURE);
    let after = std::fs::metadata(sb.path("in.csv"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(before, after, "eval never writes its input");
}

#[test]
fn the_text_report_and_seeded_intervals() {
    let sb = Sandbox::new();
    std::fs::write(sb.path("in.csv"), FIXTURE).unwrap();
    let out = eval(&sb, &["--gold-column", "gold"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    for want in [
        "10 rows evaluated",
        "1 without gold, 1 fallback",
        "accuracy     0.400  [",
        "Cohen's κ    0.200",
        "MCC          0.254",
        "x          0.000   0.000  0.000        1  (never predicted)",
        "gold \\ predicted",
        "≥ 0.9   30.0 % of rows ( 3)  accuracy 0.667",
    ] {
        assert!(text.contains(want), "{want:?}:\n{text}");
    }
    let ci = |args: &[&str]| {
        let out = eval(
            &sb,
            &[&["--gold-column", "gold", "--json"][..], args].concat(),
        );
        serde_json::from_str::<Value>(&stdout(&out)).unwrap()["ci95"].clone()
    };
    assert_eq!(ci(&["--seed", "5"]), ci(&["--seed", "5"]));
    assert_ne!(ci(&["--seed", "5"]), ci(&["--seed", "6"]));
    assert_eq!(ci(&["--bootstrap", "0"]), Value::Null);
}

#[test]
fn errors_lists_disagreements_most_confident_first_and_never_the_input() {
    let sb = Sandbox::new();
    std::fs::write(sb.path("in.csv"), FIXTURE).unwrap();
    let errors = sb.path("errors.csv");
    let out = eval(
        &sb,
        &[
            "--gold-column",
            "gold",
            "--errors",
            errors.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = std::fs::read_to_string(&errors).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "id,text,gold,label,status,confidence,eval_gold,predicted"
    );
    let ids: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split(',').next().unwrap())
        .collect();
    // Confidence 0.95, 0.8, 0.6, 0.55, 0.5, then the row without one.
    assert_eq!(ids, ["2", "9", "7", "10", "6", "8"], "{text}");
    assert!(lines.contains(&"7,g,NEU,neg,model,0.6,neu,neg"), "{text}");
    assert!(
        stderr(&out).contains("6 rows whose labels disagree"),
        "{}",
        stderr(&out)
    );

    // -q keeps the results and the file, and says nothing else.
    for quiet in ["-q", "--quiet"] {
        let out = run(sb
            .cmd()
            .arg("eval")
            .arg("--input")
            .arg(sb.path("in.csv"))
            .args(["--gold-column", "gold", "--errors"])
            .arg(sb.path("quiet.csv"))
            .arg(quiet));
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert_eq!(stderr(&out), "", "{quiet:?}");
        assert!(stdout(&out).contains("accuracy"), "{}", stdout(&out));
        assert_eq!(std::fs::read_to_string(sb.path("quiet.csv")).unwrap(), text);
    }

    // Not the input, whatever the name; the input is left as it was.
    std::fs::hard_link(sb.path("in.csv"), sb.path("same.csv")).unwrap();
    for name in ["in.csv", "same.csv"] {
        let out = eval(
            &sb,
            &[
                "--gold-column",
                "gold",
                "--errors",
                sb.path(name).to_str().unwrap(),
            ],
        );
        assert_eq!(code(&out), 2, "{}", stderr(&out));
        assert!(stderr(&out).contains("--errors"), "{}", stderr(&out));
    }
    assert_eq!(std::fs::read_to_string(sb.path("in.csv")).unwrap(), FIXTURE);
    // A link at the name is replaced, not written through.
    std::fs::write(sb.path("other.txt"), "keep").unwrap();
    std::os::unix::fs::symlink(sb.path("other.txt"), sb.path("link.csv")).unwrap();
    let out = eval(
        &sb,
        &[
            "--gold-column",
            "gold",
            "--errors",
            sb.path("link.csv").to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(sb.path("other.txt")).unwrap(),
        "keep"
    );
    assert!(std::fs::read_to_string(sb.path("link.csv"))
        .unwrap()
        .starts_with("id,text"));
}

#[test]
fn bad_input_is_exit_2_naming_the_file_and_column() {
    let sb = Sandbox::new();
    std::fs::write(sb.path("in.csv"), FIXTURE).unwrap();
    let out = eval(&sb, &["--gold-column", "truth"]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(err.contains("in.csv") && err.contains("'truth'"), "{err}");
    let out = eval(
        &sb,
        &["--gold-column", "gold", "--label-column", "sentiment"],
    );
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("'sentiment'"), "{}", stderr(&out));
    std::fs::write(sb.path("in.csv"), "text,gold,label\na,,pos\n").unwrap();
    let out = eval(&sb, &["--gold-column", "gold"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("no row to evaluate"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn eval_is_a_command_of_help_and_man() {
    let sb = Sandbox::new();
    let out = run(&mut sb.cmd());
    assert!(stderr(&out)
        .lines()
        .any(|l| l.trim_start().starts_with("eval ")));
    let dir = sb.path("man");
    let out = run(sb.cmd().args(["man", "--all"]).arg(&dir));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let page = std::fs::read_to_string(dir.join("autolabel-eval.1")).unwrap();
    assert!(page.contains("gold"), "{page}");
}
