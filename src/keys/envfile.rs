//! Reading keys and limits from `--env-file` and the process environment (the formats
//! the README's "The env file" lists).
//!
//! The earlier tools each had their own variable names and value formats; all of them
//! are accepted here so that an existing `.env` keeps working.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};

/// Variables from the env file and the process, with dotenv precedence: a variable already
/// set in the process wins over the file.
#[derive(Debug, Default, Clone)]
pub struct Vars {
    file: BTreeMap<String, String>,
    process: BTreeMap<String, String>,
    /// Whether the env file existed.
    pub file_found: bool,
}

impl Vars {
    /// Reads `path` (if it exists) and the process environment.
    pub fn load(path: &Path) -> Result<Vars> {
        let process = std::env::vars().collect();
        let (file, file_found) = match crate::safefs::read_small(path) {
            Ok(Some(bytes)) => {
                warn_if_others_may_read(path);
                (parse_env_bytes(path, &bytes)?, true)
            }
            Ok(None) => {
                return Err(Error::Config(format!(
                    "{}: the env file {}",
                    path.display(),
                    crate::safefs::too_large()
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (BTreeMap::new(), false),
            Err(e) => {
                return Err(Error::Config(format!(
                    "{}: cannot read the env file: {e}",
                    path.display()
                ))
                .caused_by(e))
            }
        };
        Ok(Vars {
            file,
            process,
            file_found,
        })
    }

    /// For tests: explicit file and process variables.
    pub fn from_maps(file: &[(&str, &str)], process: &[(&str, &str)]) -> Vars {
        let to_map = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        Vars {
            file: to_map(file),
            process: to_map(process),
            file_found: true,
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.process
            .get(name)
            .or_else(|| self.file.get(name))
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// Where a variable's value came from, for `-v` logs.
    pub fn origin(&self, name: &str) -> &'static str {
        if self.process.contains_key(name) {
            "environment"
        } else {
            "env file"
        }
    }

    fn names(&self) -> impl Iterator<Item = &String> {
        self.file.keys().chain(self.process.keys())
    }
}

/// Warns when the env file's mode lets anyone but its owner in (wider than 0600). Shown
/// even with `--quiet`: it is about the keys, and cron mails stderr.
#[cfg(unix)]
fn warn_if_others_may_read(path: &Path) {
    if let Some(mode) = loose_mode(path) {
        eprintln!(
            "autolabel: warning: {} holds API keys and other users may read it (mode {mode:04o}); \
             restrict it: chmod 600 {}",
            path.display(),
            path.display()
        );
    }
}

#[cfg(not(unix))]
fn warn_if_others_may_read(_: &Path) {}

/// The file's permission bits if group or others have any access.
#[cfg(unix)]
pub fn loose_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

fn parse_env_bytes(path: &Path, bytes: &[u8]) -> Result<BTreeMap<String, String>> {
    // Windows editors leave CRLF line ends and a BOM; dotenv parsers choke on both.
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_start_matches('\u{feff}').replace("\r\n", "\n");
    let mut vars = BTreeMap::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        let (k, v) = item.map_err(|e| {
            Error::Config(format!(
                "{}: not a valid env file: {e}; lines look like GROQ_API_KEY=gsk_...",
                path.display()
            ))
        })?;
        vars.insert(k, v);
    }
    Ok(vars)
}

/// The variable-name prefixes that hold keys for a provider (xAI also answers to GROK).
pub fn prefixes(provider: &str) -> Vec<String> {
    let p = provider.to_ascii_uppercase();
    if p == "XAI" {
        vec!["XAI".into(), "GROK".into()]
    } else {
        vec![p]
    }
}

/// The variable names looked for, in order, for error messages and the README.
pub fn key_var_names(provider: &str) -> Vec<String> {
    prefixes(provider)
        .iter()
        .flat_map(|p| {
            [
                format!("API_KEY_{p}"),
                format!("{p}_API_KEY"),
                format!("{p}_API_KEY_1..n"),
                format!("{p}_API_KEYS"),
                format!("{p}_API_KEY_BACKUP"),
            ]
        })
        .collect()
}

/// Every key for `provider`, in configuration order, duplicates dropped.
pub fn collect_keys(provider: &str, vars: &Vars) -> Vec<String> {
    collect_keys_with_vars(provider, vars)
        .into_iter()
        .map(|(key, _)| key)
        .collect()
}

/// Every key for `provider` with the name of the variable that holds it (where its
/// per-key settings are looked for), in configuration order, duplicates dropped.
pub fn collect_keys_with_vars(provider: &str, vars: &Vars) -> Vec<(String, String)> {
    let mut names = Vec::new();
    for p in prefixes(provider) {
        names.push(format!("API_KEY_{p}"));
        names.push(format!("{p}_API_KEY"));
        let numbered_prefix = format!("{p}_API_KEY_");
        let mut numbered: Vec<(u64, String)> = vars
            .names()
            .filter_map(|n| {
                let rest = n.strip_prefix(&numbered_prefix)?;
                rest.parse::<u64>().ok().map(|i| (i, n.clone()))
            })
            .collect();
        numbered.sort();
        numbered.dedup();
        names.extend(numbered.into_iter().map(|(_, n)| n));
        names.push(format!("{p}_API_KEYS"));
        names.push(format!("{p}_API_KEY_BACKUP"));
    }
    let mut keys: Vec<(String, String)> = Vec::new();
    for name in names {
        if let Some(value) = vars.get(&name) {
            for key in split_keys(value) {
                if !keys.iter().any(|(k, _)| *k == key) {
                    keys.push((key, name.clone()));
                }
            }
        }
    }
    keys
}

/// One value may hold one key, several separated by `;` `,` or whitespace, or a
/// Python-style list `[k1, 'k2']`.
pub fn split_keys(value: &str) -> Vec<String> {
    let trimmed = value.trim();
    let inner = trimmed
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .unwrap_or(trimmed);
    inner
        .split(|c: char| c == ';' || c == ',' || c.is_whitespace())
        .map(|k| k.trim().trim_matches(|c| c == '"' || c == '\''))
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_every_format() {
        assert_eq!(split_keys("k1;k2;k3"), ["k1", "k2", "k3"]);
        assert_eq!(split_keys("[k1, 'k2', \"k3\"]"), ["k1", "k2", "k3"]);
        assert_eq!(split_keys(" k1 ,, k2 \n k3 ;"), ["k1", "k2", "k3"]);
        assert_eq!(split_keys("single"), ["single"]);
    }

    #[test]
    fn collects_in_order_without_duplicates() {
        let vars = Vars::from_maps(
            &[
                ("API_KEY_GROQ", "a;b"),
                ("GROQ_API_KEY_10", "j"),
                ("GROQ_API_KEY_2", "c"),
                ("GROQ_API_KEY_1", "b"),
                ("GROQ_API_KEY_BACKUP", "z"),
                ("GEMINI_API_KEYS", "g1,g2"),
            ],
            &[("GROQ_API_KEY", "p")],
        );
        assert_eq!(collect_keys("groq", &vars), ["a", "b", "p", "c", "j", "z"]);
        assert_eq!(collect_keys("gemini", &vars), ["g1", "g2"]);
    }

    #[cfg(unix)]
    #[test]
    fn a_mode_wider_than_0600_is_loose() {
        use std::os::unix::fs::PermissionsExt;
        let f = tempfile::NamedTempFile::new().unwrap();
        for (mode, loose) in [(0o600, false), (0o400, false), (0o640, true), (0o604, true)] {
            std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(loose_mode(f.path()).is_some(), loose, "{mode:o}");
        }
    }

    #[test]
    fn grok_is_an_alias_of_xai() {
        let vars = Vars::from_maps(&[("GROK_API_KEY", "x1"), ("XAI_API_KEY", "x0")], &[]);
        assert_eq!(collect_keys("xai", &vars), ["x0", "x1"]);
    }

    #[test]
    fn process_wins_over_file_and_empty_values_are_ignored() {
        let vars = Vars::from_maps(&[("GROQ_API_KEY", "file")], &[("GROQ_API_KEY", "proc")]);
        assert_eq!(vars.get("GROQ_API_KEY"), Some("proc"));
        let vars = Vars::from_maps(&[("GROQ_API_KEY", "  ")], &[]);
        assert!(collect_keys("groq", &vars).is_empty());
    }

    #[test]
    fn parses_crlf_quotes_and_comments() {
        let text =
            b"\xef\xbb\xbf# keys\r\nAPI_KEY_GROQ=\"k1;k2\"\r\nexport GROQ_API_KEY_1='k3'\r\n\r\n";
        let vars = parse_env_bytes(Path::new("x"), text).unwrap();
        assert_eq!(vars["API_KEY_GROQ"], "k1;k2");
        assert_eq!(vars["GROQ_API_KEY_1"], "k3");
    }

    mod never_panics {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn env_files(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
                if let Ok(file) = parse_env_bytes(Path::new("x"), &bytes) {
                    let file: Vec<(String, String)> = file.into_iter().collect();
                    let pairs: Vec<(&str, &str)> =
                        file.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    let vars = Vars::from_maps(&pairs, &[]);
                    for p in ["groq", "gemini", "xai", "openrouter"] {
                        for key in collect_keys(p, &vars) {
                            prop_assert!(!key.trim().is_empty());
                        }
                    }
                }
            }

            #[test]
            fn env_lines(name in "(GROQ_API_KEY(_[0-9]{1,2}|S|_BACKUP)?|API_KEY_GROQ|GROK_API_KEY)", value in ".{0,80}") {
                let text = format!("{name}={value}\n");
                if let Ok(file) = parse_env_bytes(Path::new("x"), text.as_bytes()) {
                    let file: Vec<(String, String)> = file.into_iter().collect();
                    let pairs: Vec<(&str, &str)> =
                        file.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    let _ = collect_keys("groq", &Vars::from_maps(&pairs, &[]));
                    let _ = split_keys(&value);
                }
            }
        }
    }
}
