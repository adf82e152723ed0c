//! Writing datasets as a class-folder tree that [`super::load_image_source`] reads back exactly.
use super::scan::check_class_names;
use crate::files::{EntryKind, entry_kind};
use crate::raw::{format_err, io_err};
use crate::{DatasetError, ImageDataset, Result, Split};
use image::ExtendedColorType;
use image::ImageEncoder;
use image::codecs::png::PngEncoder;
use rayon::prelude::*;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// What [`export_class_folders`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExportSummary {
    /// The folder written (as given).
    pub dir: PathBuf,
    /// Images written, over all splits.
    pub images: usize,
    /// Images per split, in the order the sets were given.
    pub splits: Vec<(Split, usize)>,
    /// Per class (indexed like `classes`), images over all splits.
    pub per_class: Vec<usize>,
}

/// Writes each set as `DIR/<split>/<class>/<NNNNNNN>.png`, `NNNNNNN` the image's index in its set
/// (7 digits, more past ten million), losslessly as 8-bit grey (1 channel) or RGB (3 channels).
///
/// Loading `DIR/<split>` (or `DIR` itself, whose `train/` and `test/` make a split layout) gives
/// back the pixels, labels and order exactly, with the classes sorted by name: pass
/// [`super::FolderOptions::classes`] to keep another class order. A class without images in a
/// split gets no folder there.
///
/// Everything is checked before anything is written: pixel values must be integers in
/// `[0, 255]`, labels below `classes.len()`, class names usable as folder names, one set per
/// split, and `dir` must not exist or be an empty folder. The tree is written into a temporary
/// sibling folder that is renamed to `dir` at the end, so `dir` is either absent or complete.
pub fn export_class_folders(sets: &[&ImageDataset], classes: &[String], dir: &Path) -> Result<ExportSummary> {
    if sets.is_empty() {
        return Err(DatasetError::InvalidParameters("nothing to export: no datasets given".into()));
    }
    check_class_names(classes)?;
    for c in classes {
        if c.starts_with('.') || c.contains(['/', '\\', ':', '\0']) {
            return Err(DatasetError::InvalidParameters(format!(
                "class name '{c}' cannot be a folder name (no leading '.', '/', '\\' or ':')"
            )));
        }
    }
    for (i, ds) in sets.iter().enumerate() {
        check_set(ds, classes)?;
        if let Some(other) = sets[..i].iter().find(|o| o.split == ds.split) {
            return Err(DatasetError::InvalidParameters(format!(
                "{} and {} are both the {} split; export one set per split",
                ds.name, other.name, ds.split
            )));
        }
    }
    match entry_kind(dir) {
        EntryKind::Missing => {}
        EntryKind::Directory => {
            let mut entries = std::fs::read_dir(dir).map_err(|e| io_err(dir, e))?;
            if entries.next().is_some() {
                return Err(format_err(dir, "exists and is not empty; export into a new folder"));
            }
        }
        other => return Err(format_err(dir, format!("exists and is {}, not a folder", other.describe()))),
    }
    let name = dir.file_name().ok_or_else(|| format_err(dir, "names no folder to export into"))?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| io_err(&parent, e))?;
    let tmp = parent.join(format!(".{}.partial-{}", name.to_string_lossy(), std::process::id()));
    if entry_kind(&tmp).exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| io_err(&tmp, e))?;
    }
    let written = write_tree(sets, classes, &tmp).and_then(|summary| {
        if entry_kind(dir) == EntryKind::Directory {
            // Empty, checked above; a rename cannot replace a folder on every platform.
            std::fs::remove_dir(dir).map_err(|e| io_err(dir, e))?;
        }
        std::fs::rename(&tmp, dir).map_err(|e| io_err(dir, e))?;
        Ok(summary)
    });
    match written {
        Ok(mut summary) => {
            summary.dir = dir.to_path_buf();
            Ok(summary)
        }
        Err(e) => {
            // The partial tree is useless; the error that caused it is the one to report.
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

fn check_set(ds: &ImageDataset, classes: &[String]) -> Result<()> {
    let what = || format!("{} ({})", ds.name, ds.split);
    if ds.channels != 1 && ds.channels != 3 {
        return Err(DatasetError::InvalidParameters(format!(
            "{}: {} channels; only grey (1) and RGB (3) images can be exported",
            what(),
            ds.channels
        )));
    }
    if ds.height == 0 || ds.width == 0 || ds.images.len() != ds.len() * ds.image_len() {
        return Err(DatasetError::InvalidParameters(format!(
            "{}: {} values do not make {} images of {}x{}x{}",
            what(),
            ds.images.len(),
            ds.len(),
            ds.channels,
            ds.height,
            ds.width
        )));
    }
    if let Some((i, l)) = ds.labels.iter().enumerate().find(|(_, l)| **l as usize >= classes.len()) {
        return Err(DatasetError::InvalidParameters(format!(
            "{}: image {i} has label {l}, but there are {} classes",
            what(),
            classes.len()
        )));
    }
    if let Some(k) = ds.images.iter().position(|v| !(0.0..=255.0).contains(v) || v.fract() != 0.0) {
        return Err(DatasetError::InvalidParameters(format!(
            "{}: image {} holds the value {}; only integer pixel values in [0, 255] can be exported losslessly \
             (export the raw data, before preprocessing)",
            what(),
            k / ds.image_len(),
            ds.images[k]
        )));
    }
    Ok(())
}

fn write_tree(sets: &[&ImageDataset], classes: &[String], tmp: &Path) -> Result<ExportSummary> {
    let mut per_class = vec![0; classes.len()];
    let mut splits = Vec::new();
    for ds in sets {
        let split_dir = tmp.join(ds.split.as_str());
        let counts = ds.label_histogram(classes.len());
        for (c, &n) in classes.iter().zip(&counts) {
            if n > 0 {
                let d = split_dir.join(c);
                std::fs::create_dir_all(&d).map_err(|e| io_err(&d, e))?;
            }
        }
        (0..ds.len()).into_par_iter().try_for_each(|i| {
            let path = split_dir.join(&classes[ds.labels[i] as usize]).join(format!("{i:07}.png"));
            write_png(&path, ds, i)
        })?;
        for (p, n) in per_class.iter_mut().zip(counts) {
            *p += n;
        }
        splits.push((ds.split, ds.len()));
    }
    Ok(ExportSummary { dir: tmp.to_path_buf(), images: splits.iter().map(|s| s.1).sum(), splits, per_class })
}

fn write_png(path: &Path, ds: &ImageDataset, i: usize) -> Result<()> {
    let (h, w) = (ds.height, ds.width);
    let img = ds.image(i);
    // Planar [C, H, W] to the interleaved rows PNG stores; values were checked to be 0..=255.
    let mut px = vec![0u8; img.len()];
    let plane = h * w;
    for (p, out) in px.chunks_exact_mut(ds.channels).enumerate() {
        for (c, o) in out.iter_mut().enumerate() {
            *o = img[c * plane + p] as u8;
        }
    }
    let colour = if ds.channels == 1 { ExtendedColorType::L8 } else { ExtendedColorType::Rgb8 };
    let file = std::fs::File::create(path).map_err(|e| io_err(path, e))?;
    let mut out = BufWriter::new(file);
    PngEncoder::new(&mut out)
        .write_image(&px, w as u32, h as u32, colour)
        .map_err(|e| format_err(path, format!("cannot encode PNG: {e}")))?;
    out.flush().map_err(|e| io_err(path, e))
}
