//! List files: an `ImageList` (`relative/path LABEL` lines, as the Transfer-Learning-Library
//! writes them) or a CSV with a `path` and an optional `label` column. Both are read streaming,
//! line by line with a bounded line length, so a list of millions of lines is refused at
//! [`FolderOptions::max_images`] entries without being held in memory.
//!
//! The parsers ([`parse_image_list`], [`parse_csv_list`]) only split text into entries; the
//! paths and labels are checked against the file system and the classes when the list is
//! scanned (see [`super::scan_image_source`]).
use super::scan::{Found, Item};
use super::{FolderLayout, FolderOptions, has_image_extension, quoted};
use crate::files::{EntryKind, entry_kind, require_regular};
use crate::raw::{format_err, io_err};
use crate::{DatasetError, Result};
use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

/// Longest line of a list file in bytes (a path is at most a few thousand).
pub const MAX_LINE: usize = 64 << 10;

/// Most labels (`0..N-1`) an all-integer list may imply when no class names are given: a larger
/// index is far more likely a wrong column than a real class.
pub const MAX_INDEX_CLASSES: u64 = 100_000;

/// One entry of a list file, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// 1-based line the entry starts on.
    pub line: usize,
    pub path: String,
    pub label: Option<String>,
}

/// Reads one line of at most [`MAX_LINE`] bytes (newline included) into `buf`; `Ok(false)` at the
/// end of the input.
fn read_line(reader: &mut impl BufRead, buf: &mut Vec<u8>, file: &Path, line: usize) -> Result<bool> {
    buf.clear();
    let n = reader.by_ref().take(MAX_LINE as u64 + 1).read_until(b'\n', buf).map_err(|e| io_err(file, e))?;
    if n > MAX_LINE {
        return Err(format_err(file, format!("line {line} is longer than {MAX_LINE} bytes: not a list file")));
    }
    Ok(n > 0)
}

/// The line without its line ending, as UTF-8 (a byte-order mark dropped from line 1).
fn line_text<'a>(buf: &'a [u8], file: &Path, line: usize) -> Result<&'a str> {
    let text = std::str::from_utf8(buf).map_err(|e| {
        format_err(file, format!("line {line} is not UTF-8 text (invalid byte at column {})", e.valid_up_to() + 1))
    })?;
    let text = if line == 1 { text.strip_prefix('\u{feff}').unwrap_or(text) } else { text };
    Ok(text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(text))
}

fn too_many(file: &Path, max: usize, line: usize) -> DatasetError {
    format_err(
        file,
        format!("lists more than {max} images (the limit, FolderOptions::max_images); stopped reading at line {line}"),
    )
}

/// Parses an `ImageList`: per line `relative/path LABEL` (the last whitespace-separated token is
/// the label, so paths may hold spaces) or `relative/path` alone; every line must agree on
/// whether it has a label. Blank lines and lines starting with `#` are skipped. More than
/// `max_entries` entries is an error.
pub fn parse_image_list(mut reader: impl BufRead, file: &Path, max_entries: usize) -> Result<Vec<ListEntry>> {
    let mut out: Vec<ListEntry> = Vec::new();
    let mut buf = Vec::new();
    let mut line = 0;
    while read_line(&mut reader, &mut buf, file, line + 1)? {
        line += 1;
        let text = line_text(&buf, file, line)?.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        if text.chars().any(|c| c.is_control() && c != '\t') {
            return Err(format_err(file, format!("line {line} holds a control character")));
        }
        let split = text.char_indices().rev().find(|(_, c)| c.is_whitespace());
        let (path, label) = match split {
            Some((i, c)) => (text[..i].trim_end(), Some(&text[i + c.len_utf8()..])),
            None => (text, None),
        };
        if let Some(first) = out.first()
            && first.label.is_some() != label.is_some()
        {
            let (with, without) = if label.is_some() { (line, first.line) } else { (first.line, line) };
            return Err(format_err(
                file,
                format!(
                    "line {line}: line {with} has a label and line {without} has none; every line must agree \
                     (`relative/path LABEL`, or `relative/path` alone for unlabelled images)"
                ),
            ));
        }
        if let Some(l) = label
            && has_image_extension(Path::new(l))
        {
            return Err(format_err(
                file,
                format!(
                    "line {line}: label '{l}' looks like a file name; the label is the line's last \
                     word, so an unlabelled list cannot hold paths with spaces (use a CSV with a path column)"
                ),
            ));
        }
        if out.len() == max_entries {
            return Err(too_many(file, max_entries, line));
        }
        out.push(ListEntry { line, path: path.to_string(), label: label.map(str::to_string) });
    }
    Ok(out)
}

/// Parses a CSV list (RFC 4180: comma-separated, fields optionally in double quotes with `""`
/// for a quote, quoted fields may span lines). The first record is the header; it must name a
/// `path` column and may name a `label` column (any case, any order; other columns are ignored).
/// Fields are trimmed of surrounding spaces. Blank lines are skipped. More than `max_entries`
/// records is an error.
pub fn parse_csv_list(mut reader: impl BufRead, file: &Path, max_entries: usize) -> Result<Vec<ListEntry>> {
    let mut csv = Csv { line: 0, buf: Vec::new(), file };
    let Some((header_line, header)) = csv.record(&mut reader)? else {
        return Err(format_err(file, "is empty; a CSV list needs a header with a `path` column"));
    };
    // A corrupt column name would not be found, and a label column not found reads as unlabelled.
    if let Some(i) = header.iter().position(|h| h.chars().any(char::is_control)) {
        return Err(format_err(file, format!("line {header_line}: header field {} holds a control character", i + 1)));
    }
    let column = |name: &str| -> Result<Option<usize>> {
        let found: Vec<usize> = (0..header.len()).filter(|&i| header[i].trim().eq_ignore_ascii_case(name)).collect();
        match found[..] {
            [] => Ok(None),
            [i] => Ok(Some(i)),
            _ => Err(format_err(file, format!("line {header_line}: the header names a `{name}` column twice"))),
        }
    };
    let Some(path_col) = column("path")? else {
        return Err(format_err(
            file,
            format!("line {header_line}: the header ({}) has no `path` column", header.join(",")),
        ));
    };
    let label_col = column("label")?;
    let mut out = Vec::new();
    while let Some((line, fields)) = csv.record(&mut reader)? {
        let field = |col: usize, name: &str| -> Result<String> {
            let v = fields.get(col).ok_or_else(|| {
                format_err(
                    file,
                    format!(
                        "line {line}: {} fields, but the header's `{name}` column is field {}",
                        fields.len(),
                        col + 1
                    ),
                )
            })?;
            let v = v.trim();
            if v.is_empty() {
                return Err(format_err(file, format!("line {line}: empty {name}")));
            }
            if v.chars().any(char::is_control) {
                return Err(format_err(file, format!("line {line}: the {name} holds a control character")));
            }
            Ok(v.to_string())
        };
        let path = field(path_col, "path")?;
        let label = label_col.map(|c| field(c, "label")).transpose()?;
        if out.len() == max_entries {
            return Err(too_many(file, max_entries, line));
        }
        out.push(ListEntry { line, path, label });
    }
    Ok(out)
}

/// Longest CSV record in bytes (a quoted field spanning lines cannot grow without bound).
const MAX_RECORD: usize = 1 << 20;

struct Csv<'a> {
    line: usize,
    buf: Vec<u8>,
    file: &'a Path,
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    Start,
    Unquoted,
    Quoted,
    /// A quote inside a quoted field: the end of the field, or the first of `""`.
    QuoteSeen,
}

impl Csv<'_> {
    /// The next non-blank record and the line it starts on.
    fn record(&mut self, reader: &mut impl BufRead) -> Result<Option<(usize, Vec<String>)>> {
        let file = self.file;
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut state = State::Start;
        let mut start = 0;
        let mut bytes = 0;
        loop {
            if !read_line(reader, &mut self.buf, file, self.line + 1)? {
                return match state {
                    State::Quoted => {
                        Err(format_err(file, format!("line {start}: a quoted field is not closed before the end")))
                    }
                    _ if start == 0 => Ok(None),
                    _ => {
                        fields.push(field);
                        Ok(Some((start, fields)))
                    }
                };
            }
            self.line += 1;
            let line = self.line;
            let text = line_text(&self.buf, file, line)?;
            if state == State::Start && fields.is_empty() && text.trim().is_empty() {
                continue;
            }
            if start == 0 {
                start = line;
            }
            bytes += text.len() + 1;
            if bytes > MAX_RECORD {
                return Err(format_err(file, format!("line {start}: a record longer than {MAX_RECORD} bytes")));
            }
            for c in text.chars() {
                state = match (state, c) {
                    (State::Start, '"') => State::Quoted,
                    (State::Start | State::Unquoted | State::QuoteSeen, ',') => {
                        fields.push(std::mem::take(&mut field));
                        State::Start
                    }
                    (State::Start | State::Unquoted, _) if c == '"' => {
                        return Err(format_err(
                            file,
                            format!("line {line}: a quote inside an unquoted field (quote the whole field)"),
                        ));
                    }
                    (State::Start | State::Unquoted, _) => {
                        field.push(c);
                        State::Unquoted
                    }
                    (State::Quoted, '"') => State::QuoteSeen,
                    (State::Quoted, _) => {
                        field.push(c);
                        State::Quoted
                    }
                    (State::QuoteSeen, '"') => {
                        field.push('"');
                        State::Quoted
                    }
                    (State::QuoteSeen, _) => {
                        return Err(format_err(file, format!("line {line}: text after a closing quote")));
                    }
                };
            }
            if state == State::Quoted {
                field.push('\n');
                continue;
            }
            fields.push(field);
            return Ok(Some((start, fields)));
        }
    }
}

/// Reads and resolves the list file `root` (canonical): entries, then every path (relative to
/// the list's folder, which it may not leave) and label (into the classes).
pub(crate) fn scan_list(root: &Path, opts: &FolderOptions) -> Result<Found> {
    require_regular(root).map_err(|e| io_err(root, e))?;
    let reader = BufReader::new(std::fs::File::open(root).map_err(|e| io_err(root, e))?);
    let csv = root.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let (layout, entries) = if csv {
        (FolderLayout::Csv, parse_csv_list(reader, root, opts.max_images)?)
    } else {
        (FolderLayout::ImageList, parse_image_list(reader, root, opts.max_images)?)
    };
    if entries.is_empty() {
        return Err(format_err(root, "lists no images"));
    }
    let base = root.parent().unwrap_or(root);
    let mut first_line: HashMap<PathBuf, usize> = HashMap::with_capacity(entries.len());
    let mut first_file: HashMap<PathBuf, (usize, PathBuf)> = HashMap::with_capacity(entries.len());
    let mut paths = Vec::with_capacity(entries.len());
    for e in &entries {
        let (rel, canon) = resolve_path(root, base, e)?;
        if let Some(first) = first_line.insert(rel.clone(), e.line) {
            return Err(format_err(
                root,
                format!("line {}: {} is listed again (first on line {first})", e.line, rel.display()),
            ));
        }
        // Two names of one file (a symbolic link beside its target) would load the image twice.
        if let Some((first, first_rel)) = first_file.insert(canon, (e.line, rel.clone())) {
            return Err(format_err(
                root,
                format!(
                    "line {}: {} is the same file as {} on line {first} (through a symbolic link); it would load twice",
                    e.line,
                    rel.display(),
                    first_rel.display()
                ),
            ));
        }
        paths.push(rel);
    }
    let labelled = entries[0].label.is_some();
    let (classes, labels) = if labelled {
        resolve_labels(root, &entries, opts.classes.as_deref())?
    } else {
        (opts.classes.clone().unwrap_or_default(), vec![0; entries.len()])
    };
    let train: Vec<Item> =
        paths.into_iter().zip(labels).zip(&entries).map(|((p, l), e)| (p, l, Some(e.line))).collect();
    Ok(Found { layout, classes, labelled, train, test: None, notes: Vec::new() })
}

/// The entry's path normalised (`.` and `..` resolved lexically, `\` taken as a separator like
/// `/`), checked to name a regular file inside `base` (symbolic links followed).
fn resolve_path(root: &Path, base: &Path, e: &ListEntry) -> Result<(PathBuf, PathBuf)> {
    let line = e.line;
    let raw = e.path.as_str();
    let err = |problem: String| format_err(root, format!("line {line}: {problem}"));
    let drive = raw.len() >= 2 && raw.as_bytes()[0].is_ascii_alphabetic() && raw.as_bytes()[1] == b':';
    if raw.starts_with(['/', '\\']) || drive || Path::new(raw).is_absolute() {
        return Err(err(format!("'{raw}' is an absolute path; paths are relative to the list's folder")));
    }
    let mut rel = PathBuf::new();
    for part in raw.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => {
                if !rel.pop() {
                    return Err(err(format!("'{raw}' leads outside the list's folder {}", base.display())));
                }
            }
            p => rel.push(p),
        }
    }
    // `rel` holds only normal components now; a platform prefix would still make it absolute.
    if rel.as_os_str().is_empty() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(err(format!("'{raw}' does not name a file inside the list's folder")));
    }
    let abs = base.join(&rel);
    match entry_kind(&abs) {
        EntryKind::Regular(_) => {}
        EntryKind::Missing => return Err(err(format!("{}: no such file", abs.display()))),
        other => return Err(err(format!("{}: {}, not an image file", abs.display(), other.describe()))),
    }
    let canon = abs.canonicalize().map_err(|e| err(format!("{}: {e}", abs.display())))?;
    if !canon.starts_with(base) {
        return Err(err(format!(
            "'{raw}' resolves to {} through a symbolic link, outside the list's folder {}",
            canon.display(),
            base.display()
        )));
    }
    Ok((rel, canon))
}

/// The class list and per-entry labels. With `given` classes a label is one of their names, or
/// an integer index into them (a name wins, for classes named by digits). Without, all-integer
/// labels are indices (classes `"0"..="N-1"`), and otherwise the sorted distinct labels are the
/// classes.
fn resolve_labels(root: &Path, entries: &[ListEntry], given: Option<&[String]>) -> Result<(Vec<String>, Vec<u32>)> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    fn label(e: &ListEntry) -> &str {
        e.label.as_deref().expect("labelled lists have labels on every line")
    }
    if let Some(classes) = given {
        let labels = entries
            .iter()
            .map(|e| {
                let l = label(e);
                if let Some(i) = classes.iter().position(|c| c == l) {
                    return Ok(i as u32);
                }
                match l.parse::<u64>() {
                    Ok(i) if digits(l) && i < classes.len() as u64 => Ok(i as u32),
                    _ => Err(format_err(
                        root,
                        format!(
                            "line {}: label '{l}' is neither one of the classes ({}) nor an index below {}",
                            e.line,
                            quoted(&classes.iter().map(String::as_str).collect::<Vec<_>>()),
                            classes.len()
                        ),
                    )),
                }
            })
            .collect::<Result<Vec<u32>>>()?;
        return Ok((classes.to_vec(), labels));
    }
    if entries.iter().all(|e| digits(label(e))) {
        let mut labels = Vec::with_capacity(entries.len());
        for e in entries {
            let l = label(e);
            match l.parse::<u64>() {
                Ok(i) if i < MAX_INDEX_CLASSES => labels.push(i as u32),
                _ => {
                    return Err(format_err(
                        root,
                        format!(
                            "line {}: label {l} is an index past {} classes; give the class names \
                             (FolderOptions::classes) or use names as labels",
                            e.line, MAX_INDEX_CLASSES
                        ),
                    ));
                }
            }
        }
        let n = labels.iter().max().map_or(0, |m| m + 1);
        return Ok(((0..n).map(|i| i.to_string()).collect(), labels));
    }
    let names: BTreeSet<&str> = entries.iter().map(label).collect();
    let classes: Vec<String> = names.into_iter().map(str::to_string).collect();
    let index: HashMap<&str, u32> = classes.iter().enumerate().map(|(i, c)| (c.as_str(), i as u32)).collect();
    let labels = entries.iter().map(|e| index[label(e)]).collect();
    Ok((classes, labels))
}
