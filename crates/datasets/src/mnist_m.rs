//! MNIST-M in Ganin & Lempitsky's release layout: `mnist_m_train/00000000.png ...` (32x32 RGB)
//! with `mnist_m_train_labels.txt` holding one `name label` line per image; the same for `test`.
//!
//! A folder with fewer PNGs than label lines (the shared copy has the first 30000 of 59001
//! training images) loads the images that are present, in list order, and reports
//! [`Partial`](crate::Partial) counts rather than failing: the missing files are a known
//! truncation, not corruption. Present-but-undecodable PNGs are errors.
use crate::raw::{decode_image, format_err, io_err, read_file};
use crate::{ImageDataset, Partial, Result, Split};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// One line of a label list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelEntry {
    pub file: String,
    pub label: u32,
}

/// Parses a Ganin label list: `name label` per line; blank lines are ignored, labels must be 0..9,
/// names must be plain file names (no path separators, so a list cannot point outside its folder).
pub fn parse_labels(path: &Path, text: &str) -> Result<Vec<LabelEntry>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(file), Some(label), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format_err(path, format!("line {}: expected 'name label', found '{line}'", i + 1)));
        };
        if file.contains(['/', '\\']) || file == ".." {
            return Err(format_err(path, format!("line {}: file name '{file}' must not contain a path", i + 1)));
        }
        let label: u32 = label
            .parse()
            .map_err(|_| format_err(path, format!("line {}: label '{label}' is not an integer", i + 1)))?;
        if label > 9 {
            return Err(format_err(path, format!("line {}: label {label} is out of range 0..9", i + 1)));
        }
        out.push(LabelEntry { file: file.to_string(), label });
    }
    if out.is_empty() {
        return Err(format_err(path, "label list is empty"));
    }
    Ok(out)
}

/// The label list and image folder of `split` in `folder`.
pub fn split_paths(folder: &Path, split: Split) -> (PathBuf, PathBuf) {
    let s = split.as_str();
    (folder.join(format!("mnist_m_{s}_labels.txt")), folder.join(format!("mnist_m_{s}")))
}

/// Loads `split` from a Ganin-layout folder (e.g. `DATA/mnist_m`).
pub fn load_folder(folder: &Path, split: Split) -> Result<ImageDataset> {
    let (labels_path, images_dir) = split_paths(folder, split);
    let text = String::from_utf8(read_file(&labels_path)?)
        .map_err(|_| format_err(&labels_path, "label list is not UTF-8 text"))?;
    let entries = parse_labels(&labels_path, &text)?;
    if !images_dir.is_dir() {
        return Err(format_err(&images_dir, format!("image folder missing (listed in {})", labels_path.display())));
    }
    let present: Vec<&LabelEntry> = entries.iter().filter(|e| images_dir.join(&e.file).is_file()).collect();
    if present.is_empty() {
        return Err(format_err(
            &images_dir,
            format!("none of the {} images listed in {} exist", entries.len(), labels_path.display()),
        ));
    }
    // PNG decoding dominates loading time (tens of thousands of small files): decode in parallel.
    let decoded: Vec<(Vec<u8>, usize, usize)> = present
        .par_iter()
        .map(|e| {
            let p = images_dir.join(&e.file);
            let bytes = std::fs::read(&p).map_err(|err| io_err(&p, err))?;
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
