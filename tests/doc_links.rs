//! Every relative link in README.md, docs/**/*.md and results/**/*.md resolves: the file or folder
//! it names exists, and an `#anchor` into a Markdown file matches one of that file's headings
//! under GitHub's slug rules (or an HTML `id` / `name` in it). Links with a scheme (`https:`,
//! `mailto:`) are not followed.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

/// The Markdown files the test reads, relative to the repository root.
fn markdown_files(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from("README.md")];
    for dir in ["docs", "results"] {
        collect(root, Path::new(dir), &mut files);
    }
    files.sort();
    files
}

fn collect(root: &Path, rel: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(root.join(rel)) else { return };
    let mut entries: Vec<_> = entries.map(|e| e.unwrap()).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let rel = rel.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            collect(root, &rel, files);
        } else if kind.is_file() && rel.extension().is_some_and(|e| e == "md") {
            files.push(rel);
        }
    }
}

/// The lines of `text` outside fenced code blocks, with their line numbers (from 1).
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fence: Option<&str> = None;
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m));
        match (fence, marker) {
            (None, Some(m)) => fence = Some(m),
            (Some(f), Some(m)) if f == m => fence = None,
            (None, None) => lines.push((i + 1, line)),
            _ => {}
        }
    }
    lines
}

/// `line` with its inline code spans blanked out, so that a bracket inside backticks is not
/// read as a link.
fn without_code_spans(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '`' {
            out.push(c);
            continue;
        }
        let mut ticks = 1;
        while chars.peek() == Some(&'`') {
            chars.next();
            ticks += 1;
        }
        let rest: String = chars.clone().collect();
        let closing = "`".repeat(ticks);
        match rest.find(&closing) {
            Some(end) => {
                out.push_str(&" ".repeat(ticks * 2 + rest[..end].chars().count()));
                for _ in 0..end + ticks {
                    chars.next();
                }
            }
            None => out.push_str(&closing),
        }
    }
    out
}

/// GitHub's anchor for a heading's text: markup removed, lower case, every character that is not
/// a letter, a digit, `-`, `_` or a space dropped, spaces turned into hyphens.
fn slug(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    // `[text](target)` shows as `text`.
    while let Some(open) = rest.find('[') {
        text.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find("](").and_then(|close| after[close + 2..].find(')').map(|end| (close, close + 2 + end))) {
            Some((close, end)) => {
                text.push_str(&after[..close]);
                rest = &after[end + 1..];
            }
            None => {
                text.push('[');
                rest = after;
            }
        }
    }
    text.push_str(rest);
    text.to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors a Markdown file defines: its headings' slugs (a repeated slug gets `-1`, `-2`, ...)
/// and the `id="..."` / `name="..."` attributes of its HTML.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut anchors = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        let trimmed = line.trim_start();
        let level = trimmed.chars().take_while(|&c| c == '#').count();
        if (1..=6).contains(&level) && trimmed[level..].starts_with([' ', '\t']) {
            let heading = trimmed[level..].trim().trim_end_matches('#').trim();
            let base = slug(heading);
            let n = seen.entry(base.clone()).or_insert(0);
            anchors.insert(if *n == 0 { base.clone() } else { format!("{base}-{n}") });
            *n += 1;
        }
        for attr in ["id=\"", "name=\""] {
            let mut rest = line;
            while let Some(at) = rest.find(attr) {
                let value = &rest[at + attr.len()..];
                let Some(end) = value.find('"') else { break };
                anchors.insert(value[..end].to_string());
                rest = &value[end..];
            }
        }
    }
    anchors
}

/// The link targets of a Markdown file with their line numbers: inline links and images
/// `[text](target "title")`, and reference definitions `[label]: target`.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (number, line) in prose_lines(text) {
        let line = without_code_spans(line);
        let trimmed = line.trim_start();
        if trimmed.starts_with('[')
            && let Some(close) = trimmed.find("]:")
            && !trimmed[..close].contains("](")
        {
            if let Some(target) = trimmed[close + 2..].split_whitespace().next() {
                found.push((number, target.trim_matches(['<', '>']).to_string()));
            }
            continue;
        }
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            let dest = &rest[at + 2..];
            let mut depth = 0usize;
            let mut end = dest.len();
            for (i, c) in dest.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' if depth == 0 => {
                        end = i;
                        break;
                    }
                    ')' => depth -= 1,
                    _ => {}
                }
            }
            let target = dest[..end].trim();
            let target = match target.strip_prefix('<') {
                Some(t) => t.split('>').next().unwrap_or(""),
                None => target.split_whitespace().next().unwrap_or(""),
            };
            found.push((number, target.to_string()));
            rest = &dest[end.min(dest.len())..];
        }
    }
    found
}

fn is_external(target: &str) -> bool {
    if target.starts_with("//") {
        return true;
    }
    let scheme: String =
        target.chars().take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')).collect();
    !scheme.is_empty() && target[scheme.len()..].starts_with(':')
}

/// `%20` and the like decoded, as a browser does before asking for the file.
fn percent_decoded(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `base.join(rel)` with `.` and `..` folded; `None` when it climbs out of the repository.
fn normalised(base: &Path, rel: &str) -> Option<PathBuf> {
    let mut parts: Vec<Component> = base.components().collect();
    for part in Path::new(rel).components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::Normal(_) => parts.push(part),
            Component::RootDir | Component::Prefix(_) => parts.clear(),
        }
    }
    Some(parts.iter().collect())
}

/// What is wrong with one link of `file`, if anything.
fn check(root: &Path, file: &Path, target: &str, cache: &mut BTreeMap<PathBuf, BTreeSet<String>>) -> Option<String> {
    if target.is_empty() {
        return Some("an empty link target".into());
    }
    if is_external(target) {
        return None;
    }
    let (path, anchor) = match target.split_once('#') {
        Some((p, a)) => (p, Some(a)),
        None => (target, None),
    };
    let path = path.split('?').next().unwrap_or("");
    let resolved = if path.is_empty() {
        file.to_path_buf()
    } else if let Some(from_root) = path.strip_prefix('/') {
        normalised(Path::new(""), &percent_decoded(from_root))?
    } else {
        match normalised(file.parent().unwrap_or(Path::new("")), &percent_decoded(path)) {
            Some(p) => p,
            None => return Some("points outside the repository".into()),
        }
    };
    let full = root.join(&resolved);
    if !full.exists() {
        return Some(format!("{} does not exist", resolved.display()));
    }
    let anchor = anchor.filter(|a| !a.is_empty())?;
    if full.is_dir() || full.extension().is_none_or(|e| e != "md") {
        return None;
    }
    let known =
        cache.entry(resolved.clone()).or_insert_with(|| anchors(&std::fs::read_to_string(&full).unwrap_or_default()));
    let wanted = percent_decoded(anchor).to_lowercase();
    (!known.contains(&wanted)).then(|| format!("no heading of {} has the anchor #{anchor}", resolved.display()))
}

#[test]
fn every_relative_link_in_the_documentation_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = markdown_files(root);
    assert!(files.iter().any(|f| f.starts_with("docs")), "no Markdown files under docs/");
    let mut cache = BTreeMap::new();
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(root.join(file)).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for (line, target) in links(&text) {
            if let Some(problem) = check(root, file, &target, &mut cache) {
                broken.push(format!("{}:{line}: ({target}): {problem}", file.display()));
            }
        }
    }
    assert!(broken.is_empty(), "{} broken link(s):\n{}", broken.len(), broken.join("\n"));
}

#[test]
fn slugs_follow_github() {
    assert_eq!(slug("Set-up: two commands"), "set-up-two-commands");
    assert_eq!(slug("MNIST -> MNIST-M (the DANN paper's experiment)"), "mnist---mnist-m-the-dann-papers-experiment");
    assert_eq!(slug("`cargo xtask train`"), "cargo-xtask-train");
    assert_eq!(slug("Weights files [(PyTorch)](x.md)"), "weights-files-pytorch");
    assert_eq!(slug("Mean ± std"), "mean--std");
    let a = anchors("# Results\n## Results\n```\n# not a heading\n```\n<a id=\"here\"></a>\n");
    assert_eq!(a, ["here", "results", "results-1"].into_iter().map(String::from).collect());
}

#[test]
fn links_are_found_outside_code_and_broken_ones_named() {
    let text =
        "See [a](docs/a.md#x) and `[b](nowhere.md)`.\n```\n[c](nowhere.md)\n```\n[ref]: ../up.md\n![img](p.png \"t\")";
    let found: Vec<_> = links(text).into_iter().map(|(_, t)| t).collect();
    assert_eq!(found, ["docs/a.md#x", "../up.md", "p.png"]);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cache = BTreeMap::new();
    let e = check(root, Path::new("docs/x.md"), "missing.md", &mut cache).unwrap();
    assert!(e.contains("docs/missing.md"), "{e}");
    let e = check(root, Path::new("x.md"), "README.md#no-such-heading", &mut cache).unwrap();
    assert!(e.contains("README.md") && e.contains("#no-such-heading"), "{e}");
    assert!(check(root, Path::new("x.md"), "https://example.org/a", &mut cache).is_none());
    assert!(check(root, Path::new("x.md"), "../../outside.md", &mut cache).is_some());
}
