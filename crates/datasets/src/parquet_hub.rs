//! Parquet files in the Hugging Face Hub layout: an image column stored as a struct
//! `{bytes: binary (PNG/JPEG), path: string}` and an integer label column. The same files load
//! from the Hub cache and from a local dataset folder.
//!
//! Uses the `parquet` crate's row API, which needs none of the Arrow machinery. Finding a split's
//! files needs no parquet reader and is always there; reading them needs the `hub` feature.
use crate::Split;
#[cfg(feature = "hub")]
use crate::dataset_id::DatasetId;
#[cfg(feature = "hub")]
use crate::raw::{check_labels, decode_image, format_err, io_err};
#[cfg(feature = "hub")]
use crate::{DatasetError, ImageDataset, Result};
#[cfg(feature = "hub")]
use parquet::file::reader::{FileReader, SerializedFileReader};
#[cfg(feature = "hub")]
use parquet::record::{Field, Row};
#[cfg(feature = "hub")]
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Whether `rel` (a path relative to a dataset root) is a parquet file of `split`: its file name
/// starts with `train-`/`train.` (Hub data files, `train-00000-of-00001.parquet`) or it sits in a
/// folder named after the split (the Hub's `refs/convert/parquet` layout, `train/0000.parquet`).
fn is_split_file(rel: &Path, split: Split) -> bool {
    if rel.extension().is_none_or(|e| !e.eq_ignore_ascii_case("parquet")) {
        return false;
    }
    let s = split.as_str();
    let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let parent = rel.parent().and_then(|p| p.file_name()).and_then(|n| n.to_str()).unwrap_or("");
    name.starts_with(&format!("{s}-")) || name.starts_with(&format!("{s}.")) || parent == s
}

fn walk(root: &Path, dir: &Path, depth: usize, split: Split, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        // Symbolic links are followed, as the Hub cache's snapshot entries are symlinks to blobs. A
        // split file that is not a regular file (a FIFO, a dangling link) is listed all the same,
        // so that loading it is an error naming it rather than a split silently absent.
        let split_file = is_split_file(p.strip_prefix(root).unwrap_or(&p), split);
        match crate::files::entry_kind(&p) {
            _ if split_file => out.push(p),
            crate::files::EntryKind::Directory if depth < 4 => walk(root, &p, depth + 1, split, out),
            _ => {}
        }
    }
}

/// The parquet files of `split` below `folder`, sorted (shards in order).
pub fn split_files(folder: &Path, split: Split) -> Vec<PathBuf> {
    let mut out = Vec::new();
    walk(folder, folder, 0, split, &mut out);
    out.sort();
    out
}

/// The parquet files of `split` below `folder/config_dir` when that folder exists (SVHN's Hub repo
/// has `cropped_digits/` and `full_numbers/`), else below `folder`.
pub fn split_files_in(folder: &Path, config_dir: &str, split: Split) -> Vec<PathBuf> {
    let sub = folder.join(config_dir);
    if !config_dir.is_empty() && sub.is_dir() { split_files(&sub, split) } else { split_files(folder, split) }
}

#[cfg(feature = "hub")]
fn parquet_err(path: &Path, e: parquet::errors::ParquetError) -> DatasetError {
    format_err(path, format!("corrupt or unsupported parquet file: {e}"))
}

/// The image bytes of a row: a `{bytes, path}` struct (or a bare binary column) named `image` or
/// `img`. No other column is taken for the images: guessing would turn a file of another layout
/// into wrong data.
#[cfg(feature = "hub")]
fn image_bytes(row: &Row) -> Option<&[u8]> {
    row.get_column_iter().filter(|(name, _)| *name == "image" || *name == "img").find_map(|(_, field)| match field {
        Field::Group(g) => g.get_column_iter().find_map(|(n, f)| match (n.as_str(), f) {
            ("bytes", Field::Bytes(b)) => Some(b.data()),
            _ => None,
        }),
        Field::Bytes(b) => Some(b.data()),
        _ => None,
    })
}

/// The label of a row: an integer column named `label` or `labels` (any other integer column, an
/// index say, would be wrong labels that load without a word).
#[cfg(feature = "hub")]
fn label(row: &Row) -> Option<i64> {
    let int = |f: &Field| match *f {
        Field::Byte(v) => Some(v as i64),
        Field::Short(v) => Some(v as i64),
        Field::Int(v) => Some(v as i64),
        Field::Long(v) => Some(v),
        Field::UByte(v) => Some(v as i64),
        Field::UShort(v) => Some(v as i64),
        Field::UInt(v) => Some(v as i64),
        Field::ULong(v) => i64::try_from(v).ok(),
        _ => None,
    };
    row.get_column_iter().filter(|(name, _)| *name == "label" || *name == "labels").find_map(|(_, f)| int(f))
}

/// Reads `(encoded image, label)` pairs from one parquet file.
///
/// The `parquet` crate panics on some corrupt footers (a column chunk of negative length, say):
/// such a panic is caught and becomes an error naming the file.
#[cfg(feature = "hub")]
pub fn read_rows(path: &Path) -> Result<Vec<(Vec<u8>, i64)>> {
    match std::panic::catch_unwind(|| read_rows_unguarded(path)) {
        Ok(r) => r,
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("no message");
            Err(format_err(path, format!("corrupt parquet file (the parquet reader gave up: {why})")))
        }
    }
}

#[cfg(feature = "hub")]
fn read_rows_unguarded(path: &Path) -> Result<Vec<(Vec<u8>, i64)>> {
    crate::files::require_regular(path).map_err(|e| io_err(path, e))?;
    let file = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
    let reader = SerializedFileReader::new(file).map_err(|e| parquet_err(path, e))?;
    let iter = reader.get_row_iter(None).map_err(|e| parquet_err(path, e))?;
    let mut out = Vec::new();
    for (i, row) in iter.enumerate() {
        let row = row.map_err(|e| parquet_err(path, e))?;
        let img = image_bytes(&row).ok_or_else(|| {
            format_err(path, format!("row {i}: no image column ('image' or 'img': a {{bytes, path}} struct or binary)"))
        })?;
        let l = label(&row).ok_or_else(|| format_err(path, format!("row {i}: no integer 'label' column")))?;
        out.push((img.to_vec(), l));
    }
    Ok(out)
}

/// Loads Hub-layout parquet shards `files` (in order) as one split of `id`.
#[cfg(feature = "hub")]
pub fn load_parquet(id: DatasetId, split: Split, files: &[PathBuf]) -> Result<ImageDataset> {
    let channels = id.image_shape()[0];
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    let mut size: Option<(usize, usize, PathBuf)> = None;
    for path in files {
        let rows = read_rows(path)?;
        let decoded: Vec<(Vec<u8>, usize, usize)> = rows
            .par_iter()
            .enumerate()
            .map(|(i, (bytes, _))| {
                decode_image(path, bytes, channels).map_err(|e| format_err(path, format!("row {i}: {e}")))
            })
            .collect::<Result<_>>()?;
        for (i, ((px, h, w), (_, l))) in decoded.into_iter().zip(&rows).enumerate() {
            match &size {
                None => size = Some((h, w, path.clone())),
                Some((sh, sw, first)) if (*sh, *sw) != (h, w) => {
                    return Err(format_err(
                        path,
                        format!("row {i}: image is {w}x{h}, earlier images ({}) are {sw}x{sh}", first.display()),
                    ));
                }
                _ => {}
            }
            if !(0..=9).contains(l) {
                return Err(format_err(path, format!("row {i}: label {l} is out of range 0..9")));
            }
            pixels.extend_from_slice(&px);
            labels.push(*l as u32);
        }
    }
    let Some((h, w, _)) = size else {
        let where_ = files.first().map(|p| p.as_path()).unwrap_or(Path::new("(no parquet files)"));
        return Err(format_err(where_, format!("no rows for split '{split}' of {id}")));
    };
    check_labels(&files[0], &labels, 10)?;
    let mut ds = ImageDataset::from_u8(id.name(), split, &pixels, labels, [channels, h, w])?;
    ds.origin = files[0].parent().unwrap_or(&files[0]).display().to_string();
    Ok(ds)
}
