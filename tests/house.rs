//! The house stays small: no source file over 500 lines (its `#[cfg(test)]` module not
//! counted), no function over 80 lines, and no `use` cycle between the modules of `src/`.
//!
//! These are the limits ARCHITECTURE.md promises a newcomer. They are checked from the
//! source text with a small lexer (strings, chars and comments skipped), so no parser
//! crate is needed. Run `cargo test --test house -- --nocapture` for the figures.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 500;
const MAX_FN_LINES: usize = 80;

/// Rooms still too big when this test landed (issue 19 is open until this list is empty),
/// each capped at its size then: it may shrink, never grow, and nothing joins it.
const STILL_TOO_BIG: &[(&str, usize)] = &[];

/// The sizes over `max` that are neither on `STILL_TOO_BIG` nor within its cap.
fn over(sizes: Vec<(String, usize)>, max: usize) -> Vec<String> {
    sizes
        .into_iter()
        .filter(|(what, n)| {
            let cap = STILL_TOO_BIG
                .iter()
                .find(|(known, _)| known == what)
                .map_or(max, |(_, cap)| *cap);
            *n > cap
        })
        .map(|(what, n)| format!("{what}: {n} lines"))
        .collect()
}

/// One source file: its module path (`crate::a::b`) and the text before its test module.
struct Source {
    file: String,
    module: Vec<String>,
    code: String,
}

fn sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files.sort();
    let test_only = test_only_files(&files);
    files
        .into_iter()
        .filter(|path| !test_only.iter().any(|t| path.starts_with(t)))
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let rel = path.strip_prefix(&root).unwrap();
            Source {
                file: format!("src/{}", rel.display()),
                module: module_of(rel),
                code: without_test_module(&text),
            }
        })
        .collect()
}

/// Files (and folders) of modules declared under `#[cfg(test)]`: they are test modules,
/// whatever their size.
fn test_only_files(files: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(path).unwrap();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for (i, line) in lines.iter().enumerate() {
            if *line != "#[cfg(test)]" {
                continue;
            }
            let decl = lines[i + 1..].iter().find(|l| !l.starts_with("#["));
            let Some(name) = decl.and_then(|l| {
                let l = l
                    .trim_start_matches("pub(crate) ")
                    .trim_start_matches("pub ");
                l.strip_prefix("mod ")?.strip_suffix(';')
            }) else {
                continue;
            };
            let stem = path.file_stem().unwrap().to_string_lossy();
            let dir = if stem == "mod" || stem == "lib" {
                path.parent().unwrap().to_path_buf()
            } else {
                path.with_extension("")
            };
            out.push(dir.join(format!("{name}.rs")));
            out.push(dir.join(name));
        }
    }
    out
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `lib.rs` → [], `a.rs` and `a/mod.rs` → [a], `a/b.rs` → [a, b]. `main.rs` and
/// `bin/*` are their own crates; they get a name no path can reach.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    match parts.last().map(String::as_str) {
        Some("lib") if parts.len() == 1 => parts.clear(),
        Some("main") if parts.len() == 1 => parts = vec!["<main>".into()],
        Some("mod") => {
            parts.pop();
        }
        _ => {}
    }
    parts
}

/// The file's text up to its inline test module: a top-level `#[cfg(test)]` followed by
/// `mod NAME {` (by convention at the end of a file).
fn without_test_module(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let end = (0..lines.len())
        .find(|&i| {
            lines[i].starts_with("#[cfg(test)]")
                && lines[i + 1..]
                    .iter()
                    .find(|l| !l.starts_with("#["))
                    .map(|l| {
                        l.trim_start_matches("pub(crate) ")
                            .trim_start_matches("pub ")
                    })
                    .is_some_and(|l| l.starts_with("mod ") && l.trim_end().ends_with('{'))
        })
        .unwrap_or(lines.len());
    lines[..end].iter().map(|l| format!("{l}\n")).collect()
}

/// The code with comments, string and char literals blanked (newlines kept, so line
/// numbers still hold).
fn blank_literals(code: &str) -> String {
    let b = code.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let keep_newlines = |s: &[u8], out: &mut Vec<u8>| {
        out.extend(s.iter().map(|&c| if c == b'\n' { b'\n' } else { b' ' }))
    };
    while i < b.len() {
        let rest = &b[i..];
        let end = if rest.starts_with(b"//") {
            i + rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len())
        } else if rest.starts_with(b"/*") {
            let mut depth = 0;
            let mut j = i;
            while j < b.len() {
                if b[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if b[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            j
        } else if let Some(len) = raw_string_len(rest) {
            i + len
        } else if rest[0] == b'"' || rest.starts_with(b"b\"") {
            let mut j = i + if rest[0] == b'"' { 1 } else { 2 };
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            j + 1
        } else if rest[0] == b'\'' && is_char_literal(rest) {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'\'' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            j + 1
        } else {
            out.push(rest[0]);
            i += 1;
            continue;
        };
        let end = end.min(b.len());
        keep_newlines(&b[i..end], &mut out);
        i = end;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `r"…"`, `r#"…"#`, `br##"…"##`: the literal's length.
fn raw_string_len(s: &[u8]) -> Option<usize> {
    let start = if s.starts_with(b"br") {
        2
    } else if s.starts_with(b"r") {
        1
    } else {
        return None;
    };
    let hashes = s[start..].iter().take_while(|&&c| c == b'#').count();
    if s.get(start + hashes) != Some(&b'"') {
        return None;
    }
    let close: Vec<u8> = std::iter::once(b'"')
        .chain(std::iter::repeat_n(b'#', hashes))
        .collect();
    let body = start + hashes + 1;
    let at = s[body..].windows(close.len()).position(|w| w == close)?;
    Some(body + at + close.len())
}

/// `'a'`, `'\n'`, `'\u{1F600}'` are chars; `'a` (a lifetime) is not.
fn is_char_literal(s: &[u8]) -> bool {
    match s.get(1) {
        Some(b'\\') => true,
        Some(_) => {
            // One UTF-8 character, then the closing quote.
            let text = String::from_utf8_lossy(&s[1..s.len().min(6)]);
            let mut chars = text.chars();
            chars.next();
            chars.next() == Some('\'')
        }
        None => false,
    }
}

/// Every `fn` with a body: (name, first line, number of lines).
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let code = blank_literals(code);
    let bytes = code.as_bytes();
    let line_at = |pos: usize| code[..pos].matches('\n').count() + 1;
    let mut found = Vec::new();
    let mut search = 0;
    while let Some(at) = code[search..].find("fn ") {
        let start = search + at;
        search = start + 3;
        let before_ok = start == 0 || !is_ident(bytes[start - 1]);
        if !before_ok {
            continue;
        }
        let name: String = code[start + 3..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            continue;
        }
        // The body opens at the first `{` before any `;` (a trait method without a body
        // ends at its `;`), counting only brackets at depth 0 of the signature.
        let mut depth = 0i32;
        let mut open = None;
        for (j, &c) in bytes.iter().enumerate().skip(start) {
            match c {
                b'(' | b'[' | b'<' => depth += 1,
                b')' | b']' => depth -= 1,
                b'>' if j > 0 && bytes[j - 1] != b'-' && bytes[j - 1] != b'=' => depth -= 1,
                b';' if depth <= 0 => break,
                b'{' if depth <= 0 => {
                    open = Some(j);
                    break;
                }
                _ => {}
            }
        }
        let Some(open) = open else { continue };
        let mut depth = 0;
        let mut close = open;
        for (j, &c) in bytes.iter().enumerate().skip(open) {
            match c {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        close = j;
                        break;
                    }
                }
                _ => {}
            }
        }
        let first = line_at(start);
        found.push((name, first, line_at(close) - first + 1));
    }
    found
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The modules a file's code names: `use` trees (braces expanded) and inline
/// `crate::…`/`super::…`/`self::…` paths, as absolute segment lists.
fn named_paths(src: &Source, children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let code = blank_literals(&src.code);
    let mut paths = Vec::new();
    // `use` statements, possibly over several lines.
    let mut rest = code.as_str();
    while let Some(at) = find_word(rest, "use") {
        let after = &rest[at + 3..];
        let end = after.find(';').unwrap_or(after.len());
        let tree: String = after[..end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        for p in expand_use_tree(&tree) {
            paths.push(p);
        }
        rest = &after[end..];
    }
    // Inline paths anywhere in the code.
    let starts: Vec<String> = ["crate", "super", "self"]
        .iter()
        .map(|s| s.to_string())
        .chain(children.iter().cloned())
        .map(|s| format!("{s}::"))
        .collect();
    for start in &starts {
        let mut from = 0;
        while let Some(at) = code[from..].find(start) {
            let pos = from + at;
            from = pos + start.len();
            let prev = &code.as_bytes()[..pos];
            if prev.last().is_some_and(|&c| is_ident(c) || c == b':') {
                continue;
            }
            let path: String = code[pos..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            paths.push(path.split("::").map(String::from).collect());
        }
    }
    paths
        .into_iter()
        .filter_map(|p| absolute(&src.module, children, p))
        .collect()
}

fn find_word(hay: &str, word: &str) -> Option<usize> {
    let b = hay.as_bytes();
    let mut from = 0;
    while let Some(at) = hay[from..].find(word) {
        let pos = from + at;
        let before = pos == 0 || !is_ident(b[pos - 1]);
        let after = b
            .get(pos + word.len())
            .is_none_or(|&c| c.is_ascii_whitespace());
        if before && after {
            return Some(pos);
        }
        from = pos + word.len();
    }
    None
}

/// `a::{b, c::{d, e}}` → [a::b, a::c::d, a::c::e] (whitespace already removed).
fn expand_use_tree(tree: &str) -> Vec<Vec<String>> {
    let tree = tree.trim_start_matches("::");
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or(tree);
        let path = path.split("as").next().unwrap_or(path);
        return vec![path
            .split("::")
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()];
    };
    let prefix: Vec<String> = tree[..open]
        .split("::")
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut last) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[last..i]);
                last = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[last..]);
    let mut out = Vec::new();
    for part in parts.into_iter().filter(|p| !p.is_empty()) {
        for sub in expand_use_tree(part) {
            let mut p = prefix.clone();
            p.extend(sub.into_iter().filter(|s| s != "self"));
            out.push(p);
        }
    }
    out
}

/// Resolves `crate::`, `super::`, `self::` and child-module prefixes to an absolute path.
fn absolute(
    here: &[String],
    children: &BTreeSet<String>,
    path: Vec<String>,
) -> Option<Vec<String>> {
    let mut segs = path.into_iter().peekable();
    let mut base: Vec<String> = match segs.peek().map(String::as_str) {
        Some("crate") => {
            segs.next();
            Vec::new()
        }
        Some("self") => {
            segs.next();
            here.to_vec()
        }
        Some("super") => {
            let mut b = here.to_vec();
            while segs.peek().map(String::as_str) == Some("super") {
                segs.next();
                b.pop()?;
            }
            b
        }
        Some(first) if children.contains(first) => here.to_vec(),
        _ => return None,
    };
    base.extend(segs);
    Some(base)
}

/// Tarjan's strongly connected components with more than one module.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let i = t.index.len();
        t.index.insert(v, i);
        t.low.insert(v, i);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g: graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

/// The module graph: an edge from each file module to every other file module it names,
/// except its own ancestors (a child using its parent's items is part of the parent).
fn module_graph(srcs: &[Source]) -> BTreeMap<String, BTreeSet<String>> {
    let known: BTreeSet<Vec<String>> = srcs.iter().map(|s| s.module.clone()).collect();
    let name = |m: &[String]| {
        if m.is_empty() {
            "crate".to_string()
        } else {
            m.join("::")
        }
    };
    let mut graph = BTreeMap::new();
    for src in srcs {
        let children: BTreeSet<String> = known
            .iter()
            .filter(|m| m.len() == src.module.len() + 1 && m.starts_with(&src.module))
            .map(|m| m.last().unwrap().clone())
            .collect();
        let mut edges = BTreeSet::new();
        for path in named_paths(src, &children) {
            // The longest prefix that is a file module.
            let target = (0..=path.len())
                .rev()
                .map(|n| &path[..n])
                .find(|p| known.contains(*p));
            let Some(target) = target else { continue };
            let ancestor = src.module.starts_with(target);
            if !ancestor {
                edges.insert(name(target));
            }
        }
        graph.insert(name(&src.module), edges);
    }
    graph
}

#[test]
fn no_source_file_is_over_500_lines() {
    let sizes: Vec<(String, usize)> = sources()
        .iter()
        .map(|s| (s.file.clone(), s.code.lines().count()))
        .collect();
    let listed: Vec<_> = sizes.iter().filter(|(_, n)| *n > MAX_FILE_LINES).collect();
    println!("files over {MAX_FILE_LINES} lines (test modules not counted): {listed:#?}");
    let big = over(sizes, MAX_FILE_LINES);
    assert!(big.is_empty(), "split these by job: {big:#?}");
}

#[test]
fn no_function_is_over_80_lines() {
    let mut all: Vec<(usize, String)> = Vec::new();
    let mut sizes = Vec::new();
    for src in sources() {
        for (name, line, len) in functions(&src.code) {
            all.push((len, format!("{}:{line} fn {name}", src.file)));
            sizes.push((format!("{} fn {name}", src.file), len));
        }
    }
    all.sort_by(|a, b| b.cmp(a));
    println!("longest functions: {:#?}", &all[..all.len().min(5)]);
    let long = over(sizes, MAX_FN_LINES);
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines: {long:#?}"
    );
}

#[test]
fn modules_import_each_other_in_no_cycle() {
    let graph = module_graph(&sources());
    let found = cycles(&graph);
    println!("modules: {}, cycles: {found:?}", graph.len());
    assert!(
        found.is_empty(),
        "modules that import each other: {found:#?}"
    );
}

/// The checker itself: each rule catches what it is for.
#[test]
fn the_checker_sees_functions_paths_and_cycles() {
    let code = "fn short() {\n    let s = \"}\";\n}\n\
                pub async fn longer<T: Into<u8>>(x: T) -> Result<(), ()> {\n    \
                // }\n    let c = '}';\n    let r = r#\"}\"#;\n    Ok(())\n}\n\
                trait T { fn no_body(&self); }\n";
    let fns = functions(code);
    assert_eq!(
        fns,
        vec![("short".into(), 1, 3), ("longer".into(), 4, 6)],
        "{fns:?}"
    );
    assert_eq!(
        expand_use_tree("crate::{a::B,c::{d,self},e}"),
        vec![
            vec!["crate", "a", "B"],
            vec!["crate", "c", "d"],
            vec!["crate", "c"],
            vec!["crate", "e"]
        ]
    );
    let src = |file: &str, module: &[&str], code: &str| Source {
        file: file.into(),
        module: module.iter().map(|s| s.to_string()).collect(),
        code: code.into(),
    };
    let graph = module_graph(&[
        src("lib.rs", &[], "pub mod a;\npub mod b;\n"),
        src("a/mod.rs", &["a"], "use child::X;\nuse crate::b::Y;\n"),
        src("a/child.rs", &["a", "child"], "use super::Z;\n"),
        src("b.rs", &["b"], "fn f() { crate::a::go() }\n"),
        src("c.rs", &["c"], "fn f() { crate::a::child::go() }\n"),
    ]);
    assert_eq!(cycles(&graph), vec![vec!["a".to_string(), "b".into()]]);
    assert!(
        !graph["a::child"].contains("a"),
        "a child naming its parent is no edge"
    );
}
