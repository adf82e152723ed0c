//! Images from a path: a class-folder tree (torchvision's `ImageFolder` layout), optionally split
//! into `train/` and `test/`, a flat folder of unlabelled images, or a list file (an `ImageList` of
//! `relative/path LABEL` lines, as in the Transfer-Learning-Library, or a CSV with `path` and
//! `label` columns).
//!
//! Loading runs in two passes. [`scan_image_source`] walks the folder or reads the list, resolves
//! every label and reads every image's header (size, colour type, bit depth), without decoding a
//! pixel: every problem a path can have (a corrupt header, an image of 0 pixels or over
//! [`FolderOptions::max_pixels`], a label outside the classes, a path escaping the list's folder,
//! a symbolic-link loop, a non-UTF-8 name, too many images) is an error naming the file, found
//! before anything large is allocated. [`load_image_source`] then fixes the stored size and
//! channel count from the headers, allocates the `f32` buffer once and decodes into it in
//! parallel, one file at a time per thread.
//!
//! Image order is deterministic, since training results depend on it: within a split, images are
//! ordered by file name (the stem compared as a number when it is all digits, else as a string),
//! ties by the relative path; list files keep their line order. [`export_class_folders`] names
//! files by their index, so loading an export gives back the exported order exactly.
//!
//! Entries whose name starts with `.` (`.DS_Store`, macOS `._x.png` resource forks,
//! `.ipynb_checkpoints/`) are skipped in folders, as are files without an image extension
//! (`png`, `jpg`, `jpeg`, `bmp`, `gif`, `tif`, `tiff`, `webp`, any case).
mod decode;
mod export;
pub mod list;
mod scan;

pub use export::{ExportSummary, export_class_folders};
pub use scan::{ScannedImage, SourceScan, scan_image_source};

use crate::raw::format_err;
use crate::{ImageDataset, Result, Split};
use std::fmt;
use std::path::{Path, PathBuf};

/// File extensions (lower case) taken as images in folders.
pub const IMAGE_EXTENSIONS: [&str; 8] = ["png", "jpg", "jpeg", "bmp", "gif", "tif", "tiff", "webp"];

/// How the images at a path are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FolderLayout {
    /// `DIR/<class>/**/*.png`: one folder per class, images anywhere below it.
    ClassFolders,
    /// `DIR/train/<class>/..` and `DIR/test/<class>/..`: class folders per split (`test/` may be
    /// absent).
    SplitClassFolders,
    /// `DIR/*.png`: unlabelled images.
    Flat,
    /// A text file of `relative/path LABEL` lines (or `relative/path` alone: unlabelled).
    ImageList,
    /// A CSV file whose header has a `path` and an optional `label` column.
    Csv,
}

impl FolderLayout {
    /// The kebab-case name used in JSON and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            FolderLayout::ClassFolders => "class-folders",
            FolderLayout::SplitClassFolders => "split-class-folders",
            FolderLayout::Flat => "flat",
            FolderLayout::ImageList => "image-list",
            FolderLayout::Csv => "csv",
        }
    }
}

impl fmt::Display for FolderLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Limits and the class set a load must respect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderOptions {
    /// The class names labels must come from (the source's, when loading a target); `None`: the
    /// data's own (sorted folder names, or the list's labels).
    pub classes: Option<Vec<String>>,
    /// An image whose width x height exceeds this is refused from its header.
    pub max_pixels: u64,
    /// Longest side of the stored images; larger images are resized down to it.
    pub max_side: usize,
    /// Most images (or list lines holding a path) a source may have.
    pub max_images: usize,
}

impl Default for FolderOptions {
    fn default() -> Self {
        Self { classes: None, max_pixels: 50_000_000, max_side: 64, max_images: 2_000_000 }
    }
}

/// A loaded folder or list file: its images per split, its classes and how it was converted.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSource {
    /// Canonical path of the folder or list file.
    pub root: PathBuf,
    pub layout: FolderLayout,
    /// Sorted class-folder names; or the list's label names, sorted (when every label is an
    /// integer: `"0"..="N-1"`, N the largest label plus one); or [`FolderOptions::classes`] when
    /// given. Empty for unlabelled data loaded without classes.
    pub classes: Vec<String>,
    /// False for a flat folder and a list without labels: the labels are then all 0, meaningless.
    pub labelled: bool,
    /// `Split::Train`: the whole data when there are no split folders.
    pub train: ImageDataset,
    /// `DIR/test` of [`FolderLayout::SplitClassFolders`].
    pub test: Option<ImageDataset>,
    /// Per image of `train`, in its order: the path relative to `root` (to the list file's folder
    /// for a list).
    pub train_paths: Vec<PathBuf>,
    pub test_paths: Vec<PathBuf>,
    /// Every conversion applied while loading (resizing, channel replication, alpha and bit-depth
    /// reduction) and the files skipped, in words with counts, for reports. Empty when every file
    /// was an image and was stored as it is.
    pub conversions: Vec<String>,
}

impl ImageSource {
    /// Number of images over both splits.
    pub fn len(&self) -> usize {
        self.train.len() + self.test.as_ref().map_or(0, ImageDataset::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks that this can be a labelled source: labelled, at least 2 classes, every class with
    /// at least one training image, and not empty.
    pub fn check_source(&self) -> Result<()> {
        let root = &self.root;
        if self.is_empty() {
            return Err(format_err(root, "holds no images"));
        }
        if !self.labelled {
            return Err(format_err(
                root,
                format!(
                    "holds unlabelled images ({}); a source needs labels (class folders or a LABEL column)",
                    self.layout
                ),
            ));
        }
        if self.classes.len() < 2 {
            return Err(format_err(
                root,
                format!("has {} class ({:?}); a classifier needs at least 2", self.classes.len(), self.classes),
            ));
        }
        let counts = self.train.label_histogram(self.classes.len());
        let empty: Vec<&str> =
            self.classes.iter().zip(&counts).filter(|(_, n)| **n == 0).map(|(c, _)| c.as_str()).collect();
        if !empty.is_empty() {
            return Err(format_err(
                root,
                format!("class {} has no training images (classes: {})", quoted(&empty), self.classes.join(", ")),
            ));
        }
        Ok(())
    }

    /// Checks that this can be the target of a source with `source_classes`: not empty; when
    /// labelled, every class with an image is one of the source's (an error naming those that are
    /// not), and the labels index `source_classes` (the classes are the same list, as they are
    /// when loaded with [`FolderOptions::classes`] set to the source's, or after
    /// [`ImageSource::relabel`]).
    pub fn check_target(&self, source_classes: &[String]) -> Result<()> {
        let root = &self.root;
        if self.is_empty() {
            return Err(format_err(root, "holds no images"));
        }
        if !self.labelled {
            return Ok(());
        }
        let mut used = self.train.label_histogram(self.classes.len());
        if let Some(t) = &self.test {
            for (u, n) in used.iter_mut().zip(t.label_histogram(self.classes.len())) {
                *u += n;
            }
        }
        let missing: Vec<&str> = self
            .classes
            .iter()
            .zip(&used)
            .filter(|(c, n)| **n > 0 && !source_classes.contains(c))
            .map(|(c, _)| c.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(format_err(
                root,
                format!(
                    "class {} is not one of the source's classes ({})",
                    quoted(&missing),
                    source_classes.join(", ")
                ),
            ));
        }
        if self.classes != source_classes {
            return Err(format_err(
                root,
                "labels index this data's own classes, not the source's: load it with \
                 FolderOptions::classes set to the source's classes, or call ImageSource::relabel",
            ));
        }
        Ok(())
    }

    /// Re-indexes the labels (of both splits) into `classes`, which becomes `self.classes`: an
    /// error naming the classes with images that `classes` lacks. Unlabelled data only takes the
    /// class list.
    pub fn relabel(&mut self, classes: &[String]) -> Result<()> {
        if self.labelled {
            let map: Vec<Option<u32>> =
                self.classes.iter().map(|c| classes.iter().position(|k| k == c).map(|i| i as u32)).collect();
            let mut missing: Vec<&str> = Vec::new();
            for ds in std::iter::once(&self.train).chain(self.test.as_ref()) {
                for &l in &ds.labels {
                    if map[l as usize].is_none() && !missing.contains(&self.classes[l as usize].as_str()) {
                        missing.push(&self.classes[l as usize]);
                    }
                }
            }
            if !missing.is_empty() {
                return Err(format_err(
                    &self.root,
                    format!("class {} is not one of the classes {}", quoted(&missing), classes.join(", ")),
                ));
            }
            for ds in std::iter::once(&mut self.train).chain(self.test.as_mut()) {
                for l in &mut ds.labels {
                    *l = map[*l as usize].expect("checked above");
                }
            }
        }
        self.classes = classes.to_vec();
        Ok(())
    }
}

/// `'a'` or `'a', 'b'`, for messages naming classes.
fn quoted(names: &[&str]) -> String {
    let q: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    let (head, more) =
        if q.len() > 10 { (&q[..10], format!(" and {} more", q.len() - 10)) } else { (&q[..], String::new()) };
    format!("{}{more}", head.join(", "))
}

/// Loads the folder or list file at `path` (see the [module docs](self)): scans it
/// ([`scan_image_source`]), then decodes every image into one buffer.
pub fn load_image_source(path: &Path, opts: &FolderOptions) -> Result<ImageSource> {
    let scan = scan_image_source(path, opts)?;
    decode::load_scanned(scan, opts)
}

/// `~` and `~/rest` with `$HOME` put in (a quoted argument reaches the program unexpanded).
pub(crate) fn expand_home(path: &Path) -> PathBuf {
    let Some(s) = path.to_str() else { return path.to_path_buf() };
    let rest = if s == "~" {
        ""
    } else if let Some(r) = s.strip_prefix("~/") {
        r
    } else {
        return path.to_path_buf();
    };
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(rest),
        None => path.to_path_buf(),
    }
}

/// Whether `path` has one of the [`IMAGE_EXTENSIONS`] (any case).
pub(crate) fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// The dataset name of a source: the folder's name or the list file's stem.
pub(crate) fn source_name(root: &Path, is_file: bool) -> String {
    let part = if is_file { root.file_stem() } else { root.file_name() };
    part.map(|p| p.to_string_lossy().into_owned()).unwrap_or_else(|| root.display().to_string())
}

/// The split a dataset of this source holds.
pub(crate) fn split_of(test: bool) -> Split {
    if test { Split::Test } else { Split::Train }
}
