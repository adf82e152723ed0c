//! Datasets for unsupervised domain adaptation.
//!
//! * [`toy`]: the DANN authors' 2D experiment, two interleaving moons and a rotated copy.
//! * The digit benchmarks of the DANN and Generate-To-Adapt papers: MNIST, MNIST-M, SVHN, USPS and
//!   SynDigits, loaded from their original file formats in a data directory (see [`registry`]) or
//!   from the Hugging Face Hub cache ([`hub`]), plus generators for the two datasets that were
//!   generated in the first place ([`mnist_m_gen`], [`syn_digits`]).
//! * [`preprocess`]: padding, grey to RGB, resizing, scaling, mean subtraction, binarisation, and
//!   the [`InputStep`](preprocess::InputStep)s they resolve to for a given image size.
//! * [`pair`]: a source -> target digit pair made into network inputs in one call
//!   ([`load_digit_pair`]), the DANN and GTA recipes ([`PairSpec`]), and a description of the
//!   steps another framework can follow ([`InputDescription`]).
//! * [`stats`]: label-free input statistics and a source/target comparison ([`compare_inputs`]).
//!
//! Every loader returns plain Rust data (`Vec<f32>` + `Vec<u32>` with shapes), so this crate does
//! not depend on candle; the training crates turn batches into tensors.
//!
//! Cargo features, both on by default:
//!
//! * `hub`: the Hugging Face Hub client ([`hub`]) and Hub-layout parquet files ([`parquet_hub`]),
//!   from the HF cache or a local dataset folder. Without it a dataset that would come from the
//!   Hub, or a folder holding only parquet files, is a [`DatasetError::FeatureDisabled`] error.
//! * `generators`: the MNIST-M and SynDigits generators ([`mnist_m_gen`], [`syn_digits`]) and the
//!   contact sheets ([`preview`]), with the fonts they draw with.
//!
//! The simplest entry point is [`load`]:
//!
//! ```no_run
//! use adapt_datasets::{load, Split};
//! let mnist = adapt_datasets::load("mnist", Split::Train, None)?;
//! assert_eq!(mnist.shape(), [60000, 1, 28, 28]);
//! # Ok::<(), adapt_datasets::DatasetError>(())
//! ```
pub mod cards;
pub mod catalog;
pub mod data_ref;
pub mod dataset_id;
pub mod error;
pub mod files;
#[cfg(feature = "hub")]
pub mod hub;
pub mod idx;
pub mod image_folder;
pub mod mat;
pub mod mnist;
pub mod mnist_m;
#[cfg(feature = "generators")]
pub mod mnist_m_gen;
pub mod pair;
pub mod parquet_hub;
pub mod preprocess;
#[cfg(feature = "generators")]
pub mod preview;
pub mod profile;
pub mod registry;
pub mod rows;
pub mod stats;
pub mod svhn;
#[cfg(feature = "generators")]
pub mod syn_digits;
pub mod toy;
pub mod usps;
pub mod verify;

mod raw;

pub use data_ref::DataRef;
pub use error::{DatasetError, Result};
pub use image_folder::{
    ExportSummary, FolderLayout, FolderOptions, ImageSource, ScannedImage, SourceScan, export_class_folders,
    load_image_source, scan_image_source,
};
pub use pair::{DigitNet, DomainPair, InputDescription, Normalization, PairSpec, load_digit_pair};
pub use preprocess::Preprocess;
pub use profile::DomainProfile;
pub use registry::{DatasetId, Origin};
pub use rows::{Rows, Subset, validation_split};
pub use stats::{InputStats, InputWarning, compare_inputs};

use std::fmt;
use std::path::Path;

/// A split of a dataset. `Extra` exists only for SVHN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Test,
    Extra,
}

impl Split {
    /// The lower-case name used in file names, JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
            Split::Extra => "extra",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Split {
    type Err = DatasetError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "train" => Ok(Split::Train),
            "test" | "t10k" => Ok(Split::Test),
            "extra" => Ok(Split::Extra),
            other => {
                Err(DatasetError::InvalidParameters(format!("unknown split '{other}'; known: train, test, extra")))
            }
        }
    }
}

/// A set that was only partly present on disk: MNIST-M's shared training folder holds the first
/// 30000 of the 59001 listed PNGs, for example. The loaded images are the present ones, in list order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Partial {
    /// Images actually loaded.
    pub loaded: usize,
    /// Images the dataset's label list names.
    pub listed: usize,
}

/// Images as `f32 [N, C, H, W]` (row-major, image-major) plus one `u32` label per image.
///
/// Loaders return raw pixel values in `[0, 255]` (white ink on black for the grey datasets, as in
/// MNIST); [`Preprocess`] scales, pads, resizes and normalises them.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageDataset {
    /// Canonical dataset name (`mnist`, `mnist-m`, ...), or whatever a generator or caller set.
    pub name: String,
    pub split: Split,
    pub images: Vec<f32>,
    pub labels: Vec<u32>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Where the data came from (a file or folder path, or `hf://datasets/OWNER/NAME`).
    pub origin: String,
    /// Set when only part of the listed images were present.
    pub partial: Option<Partial>,
}

impl ImageDataset {
    /// Builds a dataset from `u8` pixels `[N, C, H, W]`, checking that the sizes agree.
    pub fn from_u8(
        name: impl Into<String>,
        split: Split,
        pixels: &[u8],
        labels: Vec<u32>,
        [channels, height, width]: [usize; 3],
    ) -> Result<Self> {
        let per = channels * height * width;
        if per == 0 || pixels.len() != per * labels.len() {
            return Err(DatasetError::InvalidParameters(format!(
                "{} pixels do not make {} images of {channels}x{height}x{width}",
                pixels.len(),
                labels.len()
            )));
        }
        Ok(Self {
            name: name.into(),
            split,
            images: pixels.iter().map(|&p| p as f32).collect(),
            labels,
            channels,
            height,
            width,
            origin: String::new(),
            partial: None,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// `[N, C, H, W]`.
    pub fn shape(&self) -> [usize; 4] {
        [self.len(), self.channels, self.height, self.width]
    }

    /// Floats per image, `C * H * W`.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The `i`-th image, `[C, H, W]`.
    pub fn image(&self, i: usize) -> &[f32] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// How many images carry each label `0..classes` (labels >= `classes` are not counted).
    pub fn label_histogram(&self, classes: usize) -> Vec<usize> {
        let mut h = vec![0; classes];
        for &l in &self.labels {
            if let Some(c) = h.get_mut(l as usize) {
                *c += 1;
            }
        }
        h
    }

    /// Smallest and largest pixel value (`(0, 0)` when empty).
    pub fn pixel_range(&self) -> (f32, f32) {
        if self.images.is_empty() {
            return (0.0, 0.0);
        }
        self.images.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)))
    }

    /// Applies `pre` in place; see [`Preprocess::apply`].
    pub fn preprocess(&mut self, pre: &Preprocess) -> Result<()> {
        pre.apply(self)
    }
}

/// Loads one split of a digit dataset by name (`mnist`, `mnist-m`, `svhn`, `usps`, `syn-digits`;
/// underscore spellings accepted).
///
/// `data_dir` (else the `ADAPT_DATA_DIR` environment variable) is a folder holding one folder per
/// dataset (`mnist/`, `mnist_m/`, ...). When the dataset's folder exists the files there are used,
/// whatever format they are in; otherwise the Hugging Face Hub copy is used (from the local HF cache
/// when present, which needs no network; `HF_HUB_OFFLINE=1` forbids downloading).
///
/// Pixels are raw values in `[0, 255]`; apply a [`Preprocess`] for the paper's normalisations.
pub fn load(name: &str, split: Split, data_dir: Option<&Path>) -> Result<ImageDataset> {
    let id = DatasetId::parse(name)?;
    registry::load_id(id, split, data_dir)
}

/// [`load`] followed by [`Preprocess::apply`].
pub fn load_with(name: &str, split: Split, data_dir: Option<&Path>, pre: &Preprocess) -> Result<ImageDataset> {
    let mut ds = load(name, split, data_dir)?;
    pre.apply(&mut ds)?;
    Ok(ds)
}
