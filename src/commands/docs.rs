//! Text about the command itself: shell completion scripts, the manual pages, the `help`
//! command and the short usage of a bare `autolabel`, all generated from the clap
//! definition so they never drift from the flags.

use std::path::Path;

use clap::CommandFactory;

use crate::cli::{Cli, DETAIL, IO, KEYS, LABELS, PACING, STATE};
use crate::error::{Error, Outcome, Result};

/// `autolabel completions SHELL`
pub fn completions(shell: clap_complete::Shell) -> Result<Outcome> {
    // Into a buffer first: the generator panics on a write error (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "autolabel", &mut script);
    print(&script);
    Ok(Outcome::Complete)
}

/// `autolabel man`: the main roff page on stdout; `man --all DIR`: it and one page per
/// command (autolabel-keys-list.1, …), the pages its SUBCOMMANDS section names.
pub fn man_page(all: Option<&Path>) -> Result<Outcome> {
    let mut cmd = Cli::command();
    cmd.build();
    let Some(dir) = all else {
        print(render_page(&cmd)?.as_bytes());
        return Ok(Outcome::Complete);
    };
    let what = || format!("man --all {}", dir.display());
    std::fs::create_dir_all(dir).map_err(|e| Error::io(what(), e))?;
    let mut pages = vec![&cmd];
    let mut written = 0;
    while let Some(page) = pages.pop() {
        pages.extend(page.get_subcommands().filter(|s| !s.is_hide_set()));
        let path = dir.join(clap_mangen::Man::new(page.clone()).get_filename());
        std::fs::write(&path, render_page(page)?).map_err(|e| Error::io(what(), e))?;
        written += 1;
    }
    crate::outln!("{}: {written} manual pages", dir.display());
    Ok(Outcome::Complete)
}

/// One roff page. clap_mangen gives each `--help` heading a section of its own; they
/// become subsections of one OPTIONS section, where man readers look for the flags.
fn render_page(cmd: &clap::Command) -> Result<String> {
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut page)
        .map_err(|e| Error::io("cannot render the manual page", e))?;
    let headings: Vec<String> = [IO, LABELS, KEYS, PACING, STATE, DETAIL]
        .iter()
        .map(|h| h.to_uppercase())
        .collect();
    let mut out = String::new();
    let mut options_open = false;
    for line in String::from_utf8_lossy(&page).lines() {
        let title = line.strip_prefix(".SH ").map(|t| t.trim_matches('"'));
        if title == Some("OPTIONS") {
            options_open = true;
        } else if let Some(t) = title.filter(|t| headings.iter().any(|h| h == t)) {
            if !options_open {
                out.push_str(".SH OPTIONS\n");
                options_open = true;
            }
            out.push_str(&format!(".SS \"{t}\"\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

/// `autolabel help [COMMAND...]`: the full help of autolabel or of one of its commands.
pub fn help(path: &[String]) -> Result<Outcome> {
    let mut cmd = Cli::command();
    // Gives every subcommand its full name ("autolabel keys list") for its usage line.
    cmd.build();
    let mut at = &mut cmd;
    for name in path {
        let known: Vec<String> = at
            .get_subcommands()
            .map(|s| s.get_name().to_string())
            .collect();
        let parent = at.get_bin_name().unwrap_or("autolabel").to_string();
        at = at.find_subcommand_mut(name).ok_or_else(|| {
            Error::Usage(if known.is_empty() {
                format!("'{parent}' has no subcommands ('{name}' given)")
            } else {
                format!(
                    "'{name}' is not a command of {parent}; its commands: {}",
                    known.join(", ")
                )
            })
        })?;
    }
    crate::outln!("{}", at.render_long_help().to_string().trim_end());
    Ok(Outcome::Complete)
}

/// What a bare `autolabel` prints (on stderr; it exits 2 as any incomplete command
/// line): how to call it, the commands, and where to read more.
pub fn short_usage() -> String {
    let cmd = Cli::command();
    let mut text = String::from(
        "Usage: autolabel --input IN.csv --output OUT.csv [OPTIONS]\n       autolabel <COMMAND>\n\n",
    );
    if let Some(about) = cmd.get_about() {
        text.push_str(&wrap(&about.to_string(), 90));
        text.push_str("\n\n");
    }
    text.push_str("Commands:\n");
    let width = cmd
        .get_subcommands()
        .map(|s| s.get_name().len())
        .max()
        .unwrap_or(0);
    for sub in cmd.get_subcommands() {
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        text.push_str(&format!("  {:<width$}  {about}\n", sub.get_name()));
    }
    text.push_str(
        "\nTry: autolabel --input data/sample.csv --output data/sample.labeled.csv --dry-run\n\
         More: autolabel -h (the main flags), autolabel --help (all), autolabel help COMMAND",
    );
    text
}

/// `text` in lines of at most `width` characters, broken between words.
fn wrap(text: &str, width: usize) -> String {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let line = lines.last_mut().unwrap();
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(word.to_string());
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines.join("\n")
}

/// Through `outln!`, like every report: a reader that went away ends the command quietly.
fn print(text: &[u8]) {
    crate::outln!("{}", String::from_utf8_lossy(text).trim_end_matches('\n'));
}
