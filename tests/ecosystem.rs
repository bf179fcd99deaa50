//! Fitting into a system: shell completions, a manual page, and a `--version` that says
//! which commit a checkout was built from.

mod common;

use std::process::Command;

use common::*;

fn autolabel(args: &[&str]) -> std::process::Output {
    run(Sandbox::new().cmd().args(args))
}

#[test]
fn completion_scripts_for_each_shell_know_the_commands_and_flags() {
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let out = autolabel(&["completions", shell]);
        assert_eq!(code(&out), 0, "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        for word in [
            "test-keys",
            "usage",
            "prune",
            "vacuum",
            "keep-days",
            "batch-size",
        ] {
            assert!(script.contains(word), "{shell} script lacks {word}");
        }
    }
    let out = autolabel(&["completions", "tcsh"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
}

#[test]
fn bash_completes_subcommands_and_flags_from_the_script() {
    let out = autolabel(&["completions", "bash"]);
    assert_eq!(code(&out), 0);
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("autolabel.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    // What bash does on <TAB>: set the words, call the function with the command, the
    // current and the previous word, read COMPREPLY.
    let complete = |words: &str, cword: usize| {
        let probe = format!(
            "source '{}'; COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE='{words}'; \
             COMP_POINT=${{#COMP_LINE}}; \
             _autolabel autolabel \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        );
        let o = Command::new("bash")
            .args(["--norc", "-c", &probe])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let got = complete("autolabel state p", 2);
    assert_eq!(got.trim(), "prune", "{got}");
    let got = complete("autolabel --keep", 1);
    assert!(got.lines().any(|l| l == "--keep-days"), "{got}");
    let got = complete("autolabel completions ''", 2);
    for shell in ["bash", "zsh", "fish", "powershell"] {
        assert!(got.lines().any(|l| l == shell), "{got}");
    }
}

#[test]
fn the_manual_page_is_roff_with_every_command_and_the_exit_codes() {
    let out = autolabel(&["man"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let page = stdout(&out);
    assert!(page.contains(".TH autolabel 1"), "{page}");
    for part in [".SH NAME", ".SH SYNOPSIS", ".SH OPTIONS", ".SH SUBCOMMANDS"] {
        assert!(page.contains(part), "lacks {part}");
    }
    for word in [
        "\\-\\-input",
        "\\-\\-keep\\-days",
        "test\\-keys",
        "completions",
        "143 terminated",
    ] {
        assert!(page.contains(word), "lacks {word}");
    }
}

#[test]
fn version_names_the_commit_of_a_checkout() {
    let out = autolabel(&["--version"]);
    assert_eq!(code(&out), 0);
    let version = stdout(&out);
    let pkg = env!("CARGO_PKG_VERSION");
    let head = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match head {
        Some(commit) => assert_eq!(version.trim(), format!("autolabel {pkg} ({commit})")),
        None => assert_eq!(version.trim(), format!("autolabel {pkg}")),
    }
}
