//! MNIST from its IDX files (`train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`,
//! `t10k-...`). The dotted spelling `train-images.idx3-ubyte` that some mirrors use is accepted too.
use crate::idx::read_idx;
use crate::raw::first_existing;
use crate::raw::{check_labels, format_err};
use crate::{ImageDataset, Result, Split};
use std::path::{Path, PathBuf};

/// The image and label files of `split` in `folder`: `None` when neither is there, an error when
/// only one of them is, when one is not a regular file, or when one is there under two names
/// (gzipped and not, say).
pub fn find_files(folder: &Path, split: Split) -> Result<Option<(PathBuf, PathBuf)>> {
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
        Split::Extra => return Ok(None),
    };
    let names = |kind: &str, n: u8| {
        [
            format!("{prefix}-{kind}-idx{n}-ubyte.gz"),
            format!("{prefix}-{kind}-idx{n}-ubyte"),
            format!("{prefix}-{kind}.idx{n}-ubyte.gz"),
            format!("{prefix}-{kind}.idx{n}-ubyte"),
        ]
    };
    let images = first_existing(folder, &names("images", 3), true)?;
    let labels = first_existing(folder, &names("labels", 1), true)?;
    match (images, labels) {
        (Some(i), Some(l)) => Ok(Some((i, l))),
        (None, None) => Ok(None),
        (Some(i), None) => {
            Err(format_err(&i, format!("has no labels file next to it ({prefix}-labels-idx1-ubyte[.gz] is missing)")))
        }
        (None, Some(l)) => {
            Err(format_err(&l, format!("has no images file next to it ({prefix}-images-idx3-ubyte[.gz] is missing)")))
        }
    }
}

/// Loads `split` of MNIST from the IDX files in `folder`.
pub fn load_idx(folder: &Path, split: Split) -> Result<ImageDataset> {
    let (images_path, labels_path) = find_files(folder, split)?
        .ok_or_else(|| format_err(folder, format!("no IDX image and label files for split '{split}'")))?;
    load_idx_files(&images_path, &labels_path, split)
}

/// Loads an IDX image file `[N, H, W]` and its label file `[N]`.
pub fn load_idx_files(images_path: &Path, labels_path: &Path, split: Split) -> Result<ImageDataset> {
    let images = read_idx(images_path)?;
    if images.dims.len() != 3 || images.dims[1] == 0 || images.dims[2] == 0 {
        return Err(format_err(
            images_path,
            format!("expected image dimensions [N, rows, cols], found {:?}", images.dims),
        ));
    }
    let labels = read_idx(labels_path)?;
    if labels.dims.len() != 1 {
        return Err(format_err(labels_path, format!("expected label dimensions [N], found {:?}", labels.dims)));
    }
    if labels.dims[0] != images.dims[0] {
        return Err(format_err(
            labels_path,
            format!("{} labels for {} images in {}", labels.dims[0], images.dims[0], images_path.display()),
        ));
    }
    let labels: Vec<u32> = labels.data.iter().map(|&l| l as u32).collect();
    check_labels(labels_path, &labels, 10)?;
    let mut ds = ImageDataset::from_u8("mnist", split, &images.data, labels, [1, images.dims[1], images.dims[2]])
        .map_err(|e| format_err(images_path, e.to_string()))?;
    ds.origin = images_path.parent().unwrap_or(images_path).display().to_string();
    Ok(ds)
}
