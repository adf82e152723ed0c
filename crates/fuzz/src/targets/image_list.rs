//! The `image-list` target: list files naming a user's images, an `ImageList` (`path LABEL`
//! lines) or a CSV with a header, read through [`adapt_datasets::image_folder::load_image_source`]
//! and, once that loads, parsed again by [`parse_image_list`] / [`parse_csv_list`] alone.
//!
//! A case writes a few tiny RGB PNGs under `data/img/`, a list naming them (labels as class
//! names, as indices, against given classes, or none), then one corruption of the list's text,
//! paths, labels, encoding or file kind. Beside `data/` the case leaves two files of its own for
//! [`Target::load`]: which list to load, and the class names to load it with (when given).
use super::dataset::{pick, write};
use super::image_folder::{Item, encode, expected_fp, source_fp};
use crate::mutate::{self, Kind};
use crate::{Case, Rng, Target, fingerprint};
use adapt_datasets::image_folder::list::{MAX_INDEX_CLASSES, MAX_LINE, parse_csv_list, parse_image_list};
use adapt_datasets::image_folder::{FolderOptions, load_image_source, scan_image_source};
use rand::Rng as _;
use std::path::{Path, PathBuf};

/// `ImageList` and CSV list files over a folder of tiny PNGs.
pub struct ImageList;

/// Most entries a list may have here: small, so that a list past the limit stays a small case.
const MAX_IMAGES: usize = 8;

const CLASSES: [&str; 4] = ["ant", "bee", "cow", "dog"];

#[derive(Clone, Copy, PartialEq)]
enum Labels {
    /// Class names, the classes their sorted distinct set.
    Names,
    /// Integer indices, the classes `"0"..="max"`.
    Indices,
    /// Names or indices into classes given with the options.
    Given,
    None,
}

/// One line's worth: the path as written, the label as written, and what a load gives for it.
struct Entry {
    path: String,
    label: Option<String>,
    /// The path relative to `data/` the load reports.
    rel: PathBuf,
    class: u32,
    hwc: Vec<u8>,
}

fn options(classes: Option<Vec<String>>) -> FolderOptions {
    FolderOptions { classes, max_pixels: 4096, max_side: 64, max_images: MAX_IMAGES }
}

/// A CSV field, quoted when it holds a comma, a quote or surrounding space.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"']) || s.trim() != s { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) {
    let _ = std::os::unix::fs::symlink(target, link);
}

#[cfg(not(unix))]
fn symlink(_target: &Path, link: &Path) {
    let _ = std::fs::write(link, b"");
}

impl Target for ImageList {
    fn name(&self) -> &'static str {
        "image-list"
    }

    fn make(&self, rng: &mut Rng, dir: &Path) -> Case {
        let data = dir.join("data");
        let op = rng.random_range(0..22);
        let csv = if op == 6 { true } else { rng.random_bool(0.5) };
        let list_name = if csv { "list.csv" } else { "list.txt" };
        let list = data.join(list_name);
        let mut labels = pick(rng, &[Labels::Names, Labels::Indices, Labels::Given, Labels::None]);
        if op == 4 {
            labels = Labels::Given;
        }
        if matches!(op, 5 | 16) && labels == Labels::None {
            labels = Labels::Names;
        }
        let n = match op {
            5 => rng.random_range(2..=5),
            8 if rng.random_bool(0.5) => MAX_IMAGES,
            _ => rng.random_range(1..=5usize),
        };
        let (h, w) = (rng.random_range(1..=4usize), rng.random_range(1..=4usize));
        let given: Vec<String> = CLASSES[..rng.random_range(2..=4)].iter().map(|c| c.to_string()).collect();
        let mut entries: Vec<Entry> = (0..n)
            .map(|i| {
                let k = i * 2 + rng.random_range(0..2);
                let sub = if rng.random_bool(0.2) { "img/sub" } else { "img" };
                let path = format!("{sub}/{k:03}.png");
                let c = rng.random_range(0..given.len());
                let label = match labels {
                    Labels::Names => Some(given[c].clone()),
                    Labels::Indices => Some(c.to_string()),
                    Labels::Given if rng.random_bool(0.5) => Some(c.to_string()),
                    Labels::Given => Some(given[c].clone()),
                    Labels::None => None,
                };
                Entry { rel: PathBuf::from(&path), path, label, class: c as u32, hwc: mutate::garbage(rng, h * w * 3) }
            })
            .collect();
        // Line order is load order: shuffle so that it is not the files' order.
        for i in (1..entries.len()).rev() {
            entries.swap(i, rng.random_range(0..=i));
        }
        let j = rng.random_range(0..n);
        let pngs: Vec<Vec<u8>> = entries.iter().map(|e| encode(w, h, &e.hwc, false, false)).collect();
        for (e, png) in entries.iter().zip(&pngs) {
            write(&data.join(&e.rel), png);
        }
        let file_j = entries[j].rel.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        let mut names = vec![list_name.to_string()];
        let mut invalid = false;
        let mut what = String::new();
        // Extra lines (path, label) that name no entry of the expected load.
        let mut extra: Vec<(String, Option<String>)> = Vec::new();
        match op {
            1 => {
                let e = &entries[j];
                let again = pick(rng, &["", "./", "img/../"]);
                let path = format!("{again}{}", e.path);
                extra.push((path.clone(), e.label.clone()));
                what = format!("{path} listed twice");
                invalid = true;
            }
            2 => {
                let bad = pick(rng, &["../outside.png", "img/../../outside.png", "../data/img/000.png", ".."]);
                write(&dir.join("outside.png"), &pngs[j]);
                entries[j].path = bad.to_string();
                what = format!("path {bad:?} leaves the list's folder");
                invalid = true;
            }
            3 => {
                let abs = data.join(&entries[j].rel).display().to_string();
                let bad = pick(rng, &[abs.as_str(), "C:\\img\\000.png", "\\img\\000.png", "/img/000.png"]).to_string();
                entries[j].path = bad.clone();
                what = format!("absolute path {bad:?}");
                invalid = true;
            }
            4 => {
                let n_classes = given.len().to_string();
                let bad = pick(rng, &["zebra", n_classes.as_str(), "-1", "Ant"]).to_string();
                entries[j].label = Some(bad.clone());
                what = format!("label {bad:?} outside the given classes");
                invalid = true;
            }
            5 => {
                entries[j].label = None;
                what = format!("line of {} without a label among labelled ones", entries[j].path);
                invalid = true;
            }
            9 => {
                let label = entries[0].label.clone();
                extra.push(("img/gone.png".into(), label));
                what = "a listed file is missing".into();
                invalid = true;
            }
            14 => {
                let p = entries[j].rel.display().to_string();
                let variant = match rng.random_range(0..4) {
                    0 => format!("./{p}"),
                    1 => p.replace('/', "\\"),
                    2 => p.replace('/', "//"),
                    _ => format!("img/../{p}"),
                };
                what = format!("path written as {variant:?}");
                entries[j].path = variant;
            }
            15 => {
                if rng.random_bool(0.5) {
                    write(&dir.join("outside.png"), &pngs[j]);
                    symlink(Path::new("../../outside.png"), &data.join("img").join("link.png"));
                    entries[j].path = "img/link.png".into();
                    what = "img/link.png links outside the list's folder".into();
                    invalid = true;
                } else {
                    let target = entries[j].rel.strip_prefix("img").map(Path::to_path_buf).unwrap_or_default();
                    symlink(&target, &data.join("img").join("alias.png"));
                    if rng.random_bool(0.5) {
                        entries[j].path = "img/alias.png".into();
                        entries[j].rel = PathBuf::from("img/alias.png");
                        what = "img/alias.png links to an image inside the folder".into();
                    } else {
                        extra.push(("img/alias.png".into(), entries[j].label.clone()));
                        what = format!("img/alias.png, a link to {file_j}, listed beside it");
                        invalid = true;
                    }
                }
            }
            16 => {
                let bad = if csv { pick(rng, &["", " "]) } else { pick(rng, &["img/000.png", "x.JPG"]) };
                entries[j].label = Some(bad.to_string());
                what = format!("label {bad:?}");
                invalid = true;
            }
            18 if labels == Labels::Indices => {
                let limit = MAX_INDEX_CLASSES.to_string();
                let bad = pick(rng, &[limit.as_str(), "99999999999999999999999"]).to_string();
                entries[j].label = Some(bad.clone());
                what = format!("label index {bad}");
                invalid = true;
            }
            19 => {
                let ctl = pick(rng, &["\u{1}", "\u{7f}", "\u{0}", "\u{1b}"]);
                entries[j].path = format!("img/{ctl}{}", file_j);
                what = "a control character in a path".into();
                invalid = true;
            }
            21 => {
                if rng.random_bool(0.5) {
                    entries[j].path = "img".into();
                    what = "a line names a folder".into();
                } else {
                    let fifo = data.join("img").join("pipe.png");
                    what = mutate::replace_with(&fifo, Kind::Fifo, b"");
                    entries[j].path = "img/pipe.png".into();
                }
                invalid = true;
            }
            _ => {}
        }
        let labelled = entries[0].label.is_some();
        let header_label = labelled || entries.iter().any(|e| e.label.is_some());
        let mut lines: Vec<String> = Vec::new();
        let mut rows: Vec<(String, Option<String>)> =
            entries.iter().map(|e| (e.path.clone(), e.label.clone())).collect();
        for x in extra {
            let at = rng.random_range(0..=rows.len());
            rows.insert(at, x);
        }
        if op == 8 && n < MAX_IMAGES {
            for m in rows.len()..=MAX_IMAGES + rng.random_range(0..4) {
                rows.push((format!("img/gone{m}.png"), rows[0].1.clone()));
            }
            what = format!("{} lines, more than the limit of {MAX_IMAGES}", rows.len());
            invalid = true;
        } else if op == 8 {
            what = format!("exactly {MAX_IMAGES} lines, the limit");
        }
        let reversed = csv && rng.random_bool(0.3);
        if csv {
            let (p, l) = pick(rng, &[("path", "label"), ("Path", "LABEL"), (" path ", " label ")]);
            let mut head = if !header_label {
                p.to_string()
            } else if reversed {
                format!("{l},{p}")
            } else {
                format!("{p},{l}")
            };
            if rng.random_bool(0.2) {
                head.push_str(",note");
            }
            lines.push(head);
            for (path, label) in &rows {
                let mut fields = vec![csv_field(path)];
                if header_label {
                    let l = label.as_deref().map(csv_field).unwrap_or_default();
                    if reversed { fields.insert(0, l) } else { fields.push(l) }
                }
                lines.push(fields.join(","));
            }
        } else {
            for (path, label) in &rows {
                lines.push(match label {
                    Some(l) => format!("{path} {l}"),
                    None => path.clone(),
                });
            }
        }
        let mut text = lines.join("\n");
        text.push('\n');
        let mut bytes = text.clone().into_bytes();
        let row0 = usize::from(csv);
        match op {
            6 => {
                let p = &entries[j].path;
                let (line, bad) = match rng.random_range(0..4) {
                    0 => (format!("\"{p}"), true),
                    1 => (format!("img/\"{file_j}\""), true),
                    2 => (format!("\"{p}\"x"), true),
                    _ => (format!("\"{p}\""), false),
                };
                let old = &lines[row0 + rows.iter().position(|r| r.0 == *p).unwrap_or(0)];
                let label_part = old.split_once(',').map(|x| if reversed { x.0 } else { x.1 }).unwrap_or("");
                let new = if !header_label {
                    line.clone()
                } else if reversed {
                    format!("{label_part},{line}")
                } else {
                    format!("{line},{label_part}")
                };
                text = text.replacen(&format!("{old}\n"), &format!("{new}\n"), 1);
                bytes = text.clone().into_bytes();
                what = format!("CSV path field written {line:?}");
                invalid |= bad;
            }
            7 => {
                let t = if csv { pick(rng, &["", "\n\n", "path,label\n", "path\n"]) } else { pick(rng, &["", "\n\n", "# a comment only\n"]) };
                bytes = t.as_bytes().to_vec();
                what = format!("list holds {t:?}");
                invalid = true;
            }
            10 => {
                let (b, how, same) = mutate::reencode(rng, &text);
                bytes = b;
                what = format!("list with {how}");
                invalid |= !same;
            }
            11 => {
                let t = if csv {
                    text.lines().map(|l| format!("{l}\n\n")).collect::<String>()
                } else {
                    match rng.random_range(0..4) {
                        0 => text.lines().map(|l| format!("  {l}\t \n")).collect(),
                        1 => text.replace(' ', "\t"),
                        2 => format!("# images and labels\n\n{text}\n\n"),
                        _ => text.replace(' ', "   "),
                    }
                };
                bytes = t.into_bytes();
                what = "list with other whitespace".into();
            }
            17 if csv => {
                let bad = pick(rng, &["file,label", "path,path,label", "label"]);
                let first = text.find('\n').unwrap_or(0);
                text = format!("{bad}{}", &text[first..]);
                bytes = text.clone().into_bytes();
                what = format!("CSV header {bad:?}");
                invalid = true;
            }
            20 => {
                let long = "a".repeat(MAX_LINE + 1);
                bytes = format!("{text}{long}.png\n").into_bytes();
                what = format!("a line of {} bytes", MAX_LINE + 5);
                invalid = true;
            }
            _ => {}
        }
        write(&list, &bytes);
        let _ = std::fs::write(dir.join("which"), list_name);
        if labels == Labels::Given {
            let _ = std::fs::write(dir.join("classes"), given.join("\n"));
        }
        match op {
            12 => {
                let mut kind = Kind::pick(rng);
                if csv && kind == Kind::LinkToCopy {
                    // The copy's name has no `.csv`: it would be read as an ImageList.
                    kind = Kind::Empty;
                }
                what = mutate::replace_with(&list, kind, &bytes);
                invalid |= kind != Kind::LinkToCopy;
            }
            13 => {
                let p = data.join(&entries[j].rel);
                if rng.random_bool(0.5) {
                    let (t, k) = mutate::truncate(rng, &pngs[j]);
                    write(&p, &t);
                    what = format!("{file_j} truncated at byte {k}");
                } else {
                    write(&p, b"not an image\n");
                    what = format!("{file_j} holds text");
                    invalid = true;
                }
                names.push(file_j.clone());
            }
            _ => {}
        }
        if what.is_empty() {
            what = "valid list".into();
        }
        what = format!("{list_name} ({n} images, {:?} labels): {what}", labels as u8);
        let expect = (!invalid).then(|| {
            let (classes, items): (Vec<String>, Vec<Item>) = match labels {
                Labels::None => (vec![], entries.iter().map(|e| (e.hwc.clone(), 0, e.rel.clone())).collect()),
                Labels::Given => {
                    (given.clone(), entries.iter().map(|e| (e.hwc.clone(), e.class, e.rel.clone())).collect())
                }
                Labels::Indices => {
                    let top = entries.iter().map(|e| e.class).max().unwrap_or(0);
                    let classes = (0..=top).map(|i| i.to_string()).collect();
                    (classes, entries.iter().map(|e| (e.hwc.clone(), e.class, e.rel.clone())).collect())
                }
                Labels::Names => {
                    let mut used: Vec<String> = entries.iter().map(|e| given[e.class as usize].clone()).collect();
                    used.sort();
                    used.dedup();
                    let items = entries
                        .iter()
                        .map(|e| {
                            let l = used.iter().position(|c| *c == given[e.class as usize]).unwrap_or(0);
                            (e.hwc.clone(), l as u32, e.rel.clone())
                        })
                        .collect();
                    (used, items)
                }
            };
            let layout = if csv { "csv" } else { "image-list" };
            fingerprint(&(expected_fp(layout, &classes, labels != Labels::None, &items, None, [h, w]), rows.len()))
        });
        Case { what, expect, names }
    }

    fn load(&self, dir: &Path) -> Result<u64, String> {
        let which = std::fs::read_to_string(dir.join("which")).map_err(|e| format!("case without a list: {e}"))?;
        let classes = std::fs::read_to_string(dir.join("classes")).ok().map(|t| t.lines().map(str::to_string).collect());
        let list = dir.join("data").join(which.trim());
        let opts = options(classes);
        let scan = scan_image_source(&list, &opts).map_err(|e| e.to_string())?;
        let src = load_image_source(&list, &opts).map_err(|e| e.to_string())?;
        // The load read a regular file; the parser alone must find the same entries in it.
        let bytes = std::fs::read(&list).map_err(|e| e.to_string())?;
        let entries = if list.extension().is_some_and(|e| e == "csv") {
            parse_csv_list(&bytes[..], &list, MAX_IMAGES)
        } else {
            parse_image_list(&bytes[..], &list, MAX_IMAGES)
        }
        .map_err(|e| e.to_string())?;
        Ok(fingerprint(&(source_fp(&scan, &src, opts.max_side), entries.len())))
    }
}
