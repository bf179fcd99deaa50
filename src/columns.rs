//! Which input column holds the text and which the label, and which new columns the output
//! adds. Names are compared as the lookup compares them (trimmed, ASCII case ignored), so a
//! column the tool adds can never share a name with another: a reader of the output (or
//! the resume check) would otherwise take one for the other.

use std::path::Path;

use csv::StringRecord;

use crate::error::{Error, Result};

/// Column names tried, in order, when `--text-column` is not given.
pub const TEXT_COLUMNS: &[&str] = &[
    "text",
    "tweet",
    "full_text",
    "content",
    "comment",
    "review",
    "sentence",
];

/// Whether two column names are the same name to the tool.
pub fn same_name(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// Where the text is and, with `--replace-label-column`, where the old label is.
pub struct Resolved {
    pub text_col: usize,
    pub replace_col: Option<usize>,
}

/// Finds the text column (and the label column to replace), refusing names that occur
/// more than once unless `--text-column` names one that occurs once.
pub fn resolve(
    path: &Path,
    headers: &StringRecord,
    text_column: Option<&str>,
    label_column: &str,
    replace_label: bool,
) -> Result<Resolved> {
    let names: Vec<&str> = headers.iter().collect();
    let listing = names.join(", ");
    let all = |want: &str| -> Vec<usize> {
        (0..names.len())
            .filter(|&i| same_name(names[i], want))
            .collect()
    };
    let duplicates = duplicates(&names);
    if !duplicates.is_empty() && text_column.is_none_or(|t| all(t).len() != 1) {
        return Err(Error::Input(format!(
            "{}: {} more than once; rename the copies, or pass --text-column with a column named once",
            path.display(),
            describe_duplicates(&names, &duplicates)
        )));
    }
    let text_col = match text_column {
        Some(name) => *all(name).first().ok_or_else(|| {
            Error::Input(format!(
                "{}: no column '{name}' (columns: {listing}); pass --text-column with one of them",
                path.display()
            ))
        })?,
        None => TEXT_COLUMNS
            .iter()
            .find_map(|c| all(c).first().copied())
            .ok_or_else(|| {
                Error::Input(format!(
                    "{}: none of the usual text columns ({}) is there (columns: {listing}); pass --text-column NAME",
                    path.display(),
                    TEXT_COLUMNS.join(", ")
                ))
            })?,
    };
    let label_at = all(label_column);
    let replace_col = match label_at.as_slice() {
        [] => None,
        [i] if *i == text_col => {
            return Err(Error::Usage(format!(
                "--label-column '{label_column}' is the text column; choose another name"
            )))
        }
        [i] if replace_label => Some(*i),
        [_, _, ..] if replace_label => {
            return Err(Error::Input(format!(
                "{}: has {} columns named '{label_column}'; --replace-label-column needs exactly one",
                path.display(),
                label_at.len()
            )))
        }
        _ => {
            return Err(Error::Input(format!(
                "{}: already has a column '{label_column}'; pass --label-column NEW_NAME to add another, \
                 or --replace-label-column to overwrite it",
                path.display()
            )))
        }
    };
    Ok(Resolved {
        text_col,
        replace_col,
    })
}

/// Groups of positions whose names are the same name, each group in column order.
fn duplicates(names: &[&str]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, n) in names.iter().enumerate() {
        match groups.iter_mut().find(|g| same_name(names[g[0]], n)) {
            Some(g) => g.push(i),
            None => groups.push(vec![i]),
        }
    }
    groups.retain(|g| g.len() > 1);
    groups
}

/// "column 'text' (2 and 3) is named" / "columns 'a' (1 and 4), 'b' (2 and 3) are named"
fn describe_duplicates(names: &[&str], groups: &[Vec<usize>]) -> String {
    let parts: Vec<String> = groups
        .iter()
        .map(|g| {
            let at: Vec<String> = g.iter().map(|i| (i + 1).to_string()).collect();
            format!("'{}' ({})", names[g[0]], at.join(" and "))
        })
        .collect();
    match parts.len() {
        1 => format!("the column {} is named", parts[0]),
        _ => format!("the columns {} are each named", parts.join(", ")),
    }
}

/// Refuses an output column (flag, name) the run adds when its name is an input column's
/// (the label column being replaced included: it stays in the output) or another added
/// column's.
pub fn check_added(path: &Path, headers: &StringRecord, added: &[(&str, &str)]) -> Result<()> {
    for (k, (flag, name)) in added.iter().enumerate() {
        if name.trim().is_empty() {
            return Err(Error::Usage(format!("{flag} must not be empty")));
        }
        if let Some(i) = (0..headers.len()).find(|&i| same_name(&headers[i], name)) {
            return Err(Error::Input(format!(
                "{}: already has a column '{}' (column {}), which {flag} '{name}' would add again; \
                 choose another name",
                path.display(),
                &headers[i],
                i + 1
            )));
        }
        if let Some((other, _)) = added[..k].iter().find(|(_, n)| same_name(n, name)) {
            return Err(Error::Usage(format!(
                "{flag} '{name}' is also the name given to {other}; give each column its own name"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(names: &[&str]) -> StringRecord {
        StringRecord::from(names.to_vec())
    }

    #[test]
    fn duplicate_names_are_refused_unless_text_column_picks_a_single_one() {
        let p = Path::new("in.csv");
        let h = headers(&["id", "text", "Text", "body"]);
        let err = resolve(p, &h, None, "label", false).err().unwrap();
        assert!(err.to_string().contains("'text' (2 and 3)"), "{err}");
        let err = resolve(p, &h, Some("text"), "label", false).err().unwrap();
        assert!(err.to_string().contains("more than once"), "{err}");
        let r = resolve(p, &h, Some("body"), "label", false).unwrap();
        assert_eq!(r.text_col, 3);
        let h = headers(&["text", "label", "label"]);
        let err = resolve(p, &h, Some("text"), "label", true).err().unwrap();
        assert!(err.to_string().contains("needs exactly one"), "{err}");
    }

    #[test]
    fn an_added_column_may_not_repeat_a_name() {
        let p = Path::new("in.csv");
        let h = headers(&["id", "text", "label"]);
        let ok = check_added(p, &h, &[("--model-column", "model")]);
        assert!(ok.is_ok());
        let err = check_added(p, &h, &[("--status-column", "ID")])
            .err()
            .unwrap();
        assert!(err.to_string().contains("column 1"), "{err}");
        let added = [
            ("--label-column", "l"),
            ("--status-column", "st"),
            ("--model-column", "st"),
        ];
        let err = check_added(p, &h, &added).err().unwrap();
        assert!(err.to_string().contains("--status-column"), "{err}");
    }
}
