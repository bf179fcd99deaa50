//! The help a newcomer reads, through the real binary: `-h` short and grouped with
//! --input/--output first, each command showing only the flags it uses, a bare
//! `autolabel` that lists the commands, a `help` command that answers `help --help`, and
//! man pages for every command the main page names.

mod common;

use common::*;

const HEADINGS: [&str; 6] = [
    "Input and output:",
    "Labels and prompt:",
    "Keys and providers:",
    "Pacing and limits:",
    "State:",
    "Output detail:",
];

fn help_of(args: &[&str]) -> String {
    let sb = Sandbox::new();
    let out = run(sb.cmd().args(args));
    assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
    stdout(&out)
}

/// The long flags of a help text (`--name` at the start of a line's first column).
fn flags(help: &str) -> Vec<String> {
    help.lines()
        .filter_map(|l| {
            let t = l.trim_start();
            let t = t
                .strip_prefix("-")
                .filter(|r| r.len() > 2 && r.as_bytes()[1] == b',')
                .map(|r| r[2..].trim_start())
                .unwrap_or(t);
            (t.starts_with("--") && l.len() - l.trim_start().len() <= 8)
                .then(|| t.split([' ', '.']).next().unwrap().to_string())
        })
        .collect()
}

#[test]
fn short_help_is_grouped_fits_a_screen_and_starts_with_input_and_output() {
    for args in [&["-h"][..], &["label", "-h"]] {
        let help = help_of(args);
        let lines = help.lines().count();
        assert!(lines <= 62, "{args:?}: {lines} lines:\n{help}");
        let at: Vec<usize> = HEADINGS
            .iter()
            .filter_map(|h| help.lines().position(|l| l == *h))
            .collect();
        assert!(at.len() >= 5, "{args:?}: the headings are shown:\n{help}");
        assert!(
            at.windows(2).all(|w| w[0] < w[1]),
            "{args:?}: in order:\n{help}"
        );
        let f = flags(&help);
        assert_eq!(f[..2], ["--input", "--output"], "{args:?}: {f:?}");
        for main in [
            "--text-column",
            "--dry-run",
            "--provider",
            "--env-file",
            "--concurrency",
        ] {
            assert!(
                f.iter().any(|x| x == main),
                "{args:?}: -h shows {main}: {f:?}"
            );
        }
        assert!(
            !f.iter().any(|x| x == "--rph"),
            "{args:?}: -h leaves out --rph"
        );
    }
    // --help has every heading, in order, and the exit codes.
    let full = help_of(&["--help"]);
    let at: Vec<usize> = HEADINGS
        .iter()
        .map(|h| {
            full.lines()
                .position(|l| l == *h)
                .unwrap_or_else(|| panic!("{h}:\n{full}"))
        })
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{full}");
    assert_eq!(flags(&full)[..2], ["--input", "--output"]);
    assert!(flags(&full).iter().any(|x| x == "--rph"));
}

#[test]
fn each_command_shows_only_the_flags_it_uses() {
    let request_flags = ["--timeout", "--base-url", "--model"];
    for args in [
        &["dashboard", "--help"][..],
        &["usage", "--help"],
        &["keys", "list", "--help"],
        &["keys", "disable", "--help"],
    ] {
        let f = flags(&help_of(args));
        for flag in request_flags
            .iter()
            .chain(&["--delay", "--input", "--labels"])
        {
            assert!(!f.iter().any(|x| x == flag), "{args:?} shows {flag}: {f:?}");
        }
        for flag in ["--provider", "--env-file", "--state"] {
            assert!(f.iter().any(|x| x == flag), "{args:?} lacks {flag}: {f:?}");
        }
    }
    let tk = flags(&help_of(&["test-keys", "--help"]));
    for flag in request_flags {
        assert!(
            tk.iter().any(|x| x == flag),
            "test-keys sends requests: {tk:?}"
        );
    }
    assert!(!tk.iter().any(|x| x == "--delay"), "{tk:?}");
    // A flag a command does not use is refused, not ignored.
    let sb = Sandbox::new();
    let out = run(sb.cmd().args(["dashboard", "--timeout", "5"]));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
}

#[test]
fn bare_autolabel_lists_the_commands_and_where_to_start() {
    let sb = Sandbox::new();
    let out = run(&mut sb.cmd());
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let text = stderr(&out);
    for command in [
        "label",
        "test-keys",
        "usage",
        "state",
        "keys",
        "dashboard",
        "completions",
        "man",
        "help",
    ] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(&format!("{command} "))),
            "{command}:\n{text}"
        );
    }
    assert!(
        text.contains("--input") && text.contains("--dry-run"),
        "{text}"
    );
    assert!(text.contains("autolabel -h"), "{text}");
    assert!(text.lines().count() <= 25, "short:\n{text}");
    assert!(
        text.lines().all(|l| l.chars().count() <= 100),
        "fits a terminal:\n{text}"
    );
}

#[test]
fn the_help_command_answers_itself_and_names_commands() {
    let own = help_of(&["help", "--help"]);
    assert!(own.contains("Usage: autolabel help"), "{own}");
    let top = help_of(&["help"]);
    assert!(
        top.contains("Input and output:") && top.contains("--rph"),
        "{top}"
    );
    let nested = help_of(&["help", "keys", "disable"]);
    assert!(nested.contains("Usage: autolabel keys disable"), "{nested}");
    assert!(flags(&nested).iter().any(|f| f == "--for"), "{nested}");
    let sb = Sandbox::new();
    let out = run(sb.cmd().args(["help", "nope"]));
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("'nope'") && stderr(&out).contains("test-keys"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn man_all_writes_every_page_the_main_page_names() {
    let sb = Sandbox::new();
    let dir = sb.path("man1");
    let out = run(sb.cmd().args(["man", "--all"]).arg(&dir));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let main = std::fs::read_to_string(dir.join("autolabel.1")).unwrap();
    assert_eq!(
        main,
        help_of(&["man"]).trim_end().to_string() + "\n",
        "man prints the same main page"
    );
    let mut named = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let page = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        // roff escapes '-': autolabel\-keys\-list(1)
        for (i, _) in page.match_indices("(1)") {
            let start = page[..i]
                .rfind(|c: char| c.is_whitespace() || c == 'B')
                .unwrap()
                + 1;
            let name = page[start..i].replace("\\-", "-").replace("\\fR", "");
            if name.starts_with("autolabel-") {
                named.push(name);
            }
        }
    }
    named.sort();
    named.dedup();
    for sub in [
        "label",
        "keys-disable",
        "state-prune",
        "dashboard",
        "test-keys",
    ] {
        assert!(named.contains(&format!("autolabel-{sub}")), "{named:?}");
    }
    for name in &named {
        assert!(
            dir.join(format!("{name}.1")).exists(),
            "{name}(1) is named but not written"
        );
    }
}
