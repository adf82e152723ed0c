//! MNIST-M in Ganin & Lempitsky's release layout: `mnist_m_train/00000000.png ...` (32x32 RGB)
//! with `mnist_m_train_labels.txt` holding one `name label` line per image; the same for `test`.
//!
//! A folder with fewer PNGs than label lines (the shared copy has the first 30000 of 59001
//! training images) loads the images that are present, in list order, and reports
//! [`Partial`](crate::Partial) counts rather than failing: the missing files are a known
//! truncation, not corruption. Fewer than half of the listed images present is an error
//! ([`MIN_PRESENT_FRACTION`]): that is a wrong folder or a broken copy, not a truncation.
//! Present-but-undecodable PNGs, listed names that are not regular files, and a file listed
//! twice are errors.
use crate::files::{EntryKind, entry_kind, read_text};
use crate::raw::{decode_image, format_err, io_err, read_file};
use crate::{ImageDataset, Partial, Result, Split};
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One line of a label list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelEntry {
    pub file: String,
    pub label: u32,
}

/// Parses a Ganin label list: `name label` per line; blank lines are ignored, labels must be 0..9,
/// names must be plain file names (no path separators, so a list cannot point outside its folder)
/// and each may appear once. A leading byte-order mark is ignored.
pub fn parse_labels(path: &Path, text: &str) -> Result<Vec<LabelEntry>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    let mut first_line: HashMap<&str, usize> = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(file), Some(label), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format_err(path, format!("line {}: expected 'name label', found '{line}'", i + 1)));
        };
        if file.contains(['/', '\\']) || file == ".." || file == "." {
            return Err(format_err(path, format!("line {}: file name '{file}' must not contain a path", i + 1)));
        }
        if file.chars().any(char::is_control) {
            return Err(format_err(path, format!("line {}: file name {file:?} holds a control character", i + 1)));
        }
        let label: u32 = label
            .parse()
            .map_err(|_| format_err(path, format!("line {}: label '{label}' is not an integer", i + 1)))?;
        if label > 9 {
            return Err(format_err(path, format!("line {}: label {label} is out of range 0..9", i + 1)));
        }
        if let Some(first) = first_line.insert(file, i + 1) {
            return Err(format_err(path, format!("line {}: {file} is listed again (first on line {first})", i + 1)));
        }
        out.push(LabelEntry { file: file.to_string(), label });
    }
    if out.is_empty() {
        return Err(format_err(path, "label list is empty"));
    }
    Ok(out)
}

/// A list of more than this many bytes is not MNIST-M's (its training list is 885 kB): refused
/// before it is read.
pub const MAX_LABEL_LIST: u64 = 64 << 20;

/// At least this fraction of the listed images must be present (the shared training folder has
/// 30000 of 59001, 51 %); fewer is an error naming how many are there.
pub const MIN_PRESENT_FRACTION: f64 = 0.5;

/// The label list and image folder of `split` in `folder`.
pub fn split_paths(folder: &Path, split: Split) -> (PathBuf, PathBuf) {
    let s = split.as_str();
    (folder.join(format!("mnist_m_{s}_labels.txt")), folder.join(format!("mnist_m_{s}")))
}

/// Loads `split` from a Ganin-layout folder (e.g. `DATA/mnist_m`).
pub fn load_folder(folder: &Path, split: Split) -> Result<ImageDataset> {
    let (labels_path, images_dir) = split_paths(folder, split);
    let text = read_text(&labels_path, MAX_LABEL_LIST).map_err(|e| io_err(&labels_path, e))?;
    let entries = parse_labels(&labels_path, &text)?;
    if entry_kind(&images_dir) != EntryKind::Directory {
        return Err(format_err(&images_dir, format!("image folder missing (listed in {})", labels_path.display())));
    }
    let mut present: Vec<&LabelEntry> = Vec::with_capacity(entries.len());
    for e in &entries {
        let p = images_dir.join(&e.file);
        match entry_kind(&p) {
            EntryKind::Regular(_) => present.push(e),
            EntryKind::Missing => {}
            other => {
                return Err(format_err(
                    &p,
                    format!("{}, not an image file (listed in {})", other.describe(), labels_path.display()),
                ));
            }
        }
    }
    if present.is_empty() {
        return Err(format_err(
            &images_dir,
            format!("none of the {} images listed in {} exist", entries.len(), labels_path.display()),
        ));
    }
    if (present.len() as f64) < MIN_PRESENT_FRACTION * entries.len() as f64 {
        return Err(format_err(
            &images_dir,
            format!(
                "only {} of the {} images listed in {} exist (fewer than half: a wrong folder or a broken copy)",
                present.len(),
                entries.len(),
                labels_path.display()
            ),
        ));
    }
    // PNG decoding dominates loading time (tens of thousands of small files): decode in parallel.
    let decoded: Vec<(Vec<u8>, usize, usize)> = present
        .par_iter()
        .map(|e| {
            let p = images_dir.join(&e.file);
            let bytes = read_file(&p)?;
            decode_image(&p, &bytes, 3)
        })
        .collect::<Result<_>>()?;
    let (h, w) = (decoded[0].1, decoded[0].2);
    let mut pixels = Vec::with_capacity(decoded.len() * 3 * h * w);
    for ((px, ph, pw), e) in decoded.iter().zip(&present) {
        if (*ph, *pw) != (h, w) {
            return Err(format_err(
                &images_dir.join(&e.file),
                format!("image is {pw}x{ph}, the first image ({}) is {w}x{h}", present[0].file),
            ));
        }
        pixels.extend_from_slice(px);
    }
    let labels = present.iter().map(|e| e.label).collect();
    let mut ds = ImageDataset::from_u8("mnist-m", split, &pixels, labels, [3, h, w])?;
    ds.origin = folder.display().to_string();
    if present.len() < entries.len() {
        ds.partial = Some(Partial { loaded: present.len(), listed: entries.len() });
    }
    Ok(ds)
}
