//! A source -> target pair of digit datasets made into network inputs in one call: the DANN
//! paper's and the Generate-To-Adapt recipes, with the source validation hold-out, and a
//! description of every step that a user of another framework can follow to feed a trained
//! network the same inputs.
//!
//! [`load_digit_pair`] loads the four splits (source train, target train, source test, target
//! test, in that order), brings each to 3 x `image_size` x `image_size` ([`shape_steps`]),
//! normalises all four with one mean and std ([`Normalization`]) and holds one in
//! [`VALIDATION_FRACTION`] source training images out for validation.
use crate::data_ref::DataRef;
use crate::preprocess::{self, InputStep, Preprocess};
use crate::profile::DomainProfile;
use crate::registry::{self, DatasetId};
use crate::rows::{Rows, validation_split};
use crate::stats::{InputStats, InputWarning, compare_inputs};
use crate::{DatasetError, ImageDataset, Partial, Result, Split};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// One in this many source training images is held out for validation: the DANN reference code
/// (pumpikano/tf-dann) trains on 55000 MNIST images and keeps 5000.
pub const VALIDATION_FRACTION: usize = 12;

/// The held-out split is the same for every run seed, so runs differ only in what they learn.
pub const VALIDATION_SEED: u64 = 0x5eed_0da7a;

/// pumpikano/tf-dann keeps every non-zero MNIST pixel (`images > 0` on `[0, 1]` floats); on raw pixels
/// that is `>= 1`.
pub const MNIST_BINARIZE_THRESHOLD: f32 = 1.0;

/// Generate To Adapt's input normalisation `(p - 0.5) / 0.5`: inputs in `[-1, 1]`, the range its
/// generator's images are in too.
pub const GTA_MEAN: f32 = 0.5;
/// See [`GTA_MEAN`].
pub const GTA_STD: f32 = 0.5;

/// Which of the DANN paper's two networks a pair uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DigitNet {
    /// 3x28x28 input (the paper's net for MNIST -> MNIST-M).
    #[default]
    Mnist,
    /// 3x32x32 input (the paper's net for its pairs with street-view and synthetic digits).
    Svhn,
}

/// A domain's images fit the 28-pixel net when a centred crop to 28 keeps their mean ink box and
/// that box is at most this fraction of the crop's height: digits at MNIST's scale (its trimmed
/// ink box is 0.61 of its frame), not street numbers filling theirs.
pub const SMALL_NET_INK_HEIGHT: f64 = 0.75;

impl DigitNet {
    /// The 28-pixel net when each domain is at most 28 pixels high and wide, or holds its digits
    /// inside a centred 28x28 crop at MNIST's scale ([`SMALL_NET_INK_HEIGHT`]); else the 32-pixel
    /// net. Decided from the images, never from a dataset's name.
    pub fn for_profiles(source: &DomainProfile, target: &DomainProfile) -> Self {
        let fits = |p: &DomainProfile| {
            let [_, h, w] = p.shape;
            (h <= 28 && w <= 28)
                || (p.crop_keeps_ink(28) && p.ink_box.is_some_and(|b| b.height <= SMALL_NET_INK_HEIGHT * 28.0))
        };
        if fits(source) && fits(target) { DigitNet::Mnist } else { DigitNet::Svhn }
    }

    /// Side of the net's square input: 28 or 32.
    pub fn image_size(self) -> usize {
        match self {
            DigitNet::Mnist => 28,
            DigitNet::Svhn => 32,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DigitNet::Mnist => "mnist",
            DigitNet::Svhn => "svhn",
        }
    }
}

/// How a domain's frame reaches the net's input side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fit {
    /// Bilinear resize (also when the sizes already agree: then nothing happens).
    #[default]
    Resize,
    /// Centred crop: the frame is a few pixels larger and its border holds no ink.
    Crop,
    /// Zero padding, centred: the frame is a few pixels smaller.
    Pad,
}

/// A crop or pad changes each side by at most this many pixels (2 per edge, the border MNIST-M's
/// and SVHN's 32-pixel frames add to a 28-pixel digit); larger changes resize.
pub const MAX_FIT_MARGIN: usize = 4;

impl Fit {
    /// The fit of `profile`'s frame to `size`: pad or crop within [`MAX_FIT_MARGIN`] (a crop only
    /// when it keeps the mean ink box), else resize.
    pub fn for_profile(profile: &DomainProfile, size: usize) -> Self {
        let [_, h, w] = profile.shape;
        let side = h.max(w);
        if h == size && w == size {
            Fit::Resize
        } else if side < size && size - side <= MAX_FIT_MARGIN {
            Fit::Pad
        } else if h.min(w) > size && side - size <= MAX_FIT_MARGIN && profile.crop_keeps_ink(size) {
            Fit::Crop
        } else {
            Fit::Resize
        }
    }

    /// The factor the fit scales the digits by, from a frame of `side` to `size`.
    pub fn scale(self, side: usize, size: usize) -> f64 {
        match self {
            Fit::Resize => size as f64 / side.max(1) as f64,
            Fit::Crop | Fit::Pad => 1.0,
        }
    }
}

/// What one domain's images go through on their way to the net, before the normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DomainShaping {
    /// Raw pixels `>=` [`MNIST_BINARIZE_THRESHOLD`] become 255, the others 0.
    #[serde(default)]
    pub binarize: bool,
    /// The frame is resized into a centred box of this side and zero-padded to the input, so that
    /// both domains draw digits at one scale (`None`: the frame is fitted as `fit` says).
    #[serde(default)]
    pub digit_box: Option<usize>,
    #[serde(default)]
    pub fit: Fit,
}

/// A grey domain whose digits fill their frame on a plain ground, beside a domain whose digits do
/// not, is drawn into a centred box: the side at which its mean ink box is as high as the other
/// domain's at the input (the other's ink box scaled by its own fit). Returns that side.
pub fn digit_box_for(profile: &DomainProfile, other: &DomainProfile, size: usize) -> Option<usize> {
    if profile.colour() || !profile.fills_frame() || other.fills_frame() {
        return None;
    }
    let (own, theirs) = (profile.ink_box?, other.ink_box?);
    let other_side = other.shape[1].max(other.shape[2]);
    let target_height = theirs.height * Fit::for_profile(other, size).scale(other_side, size);
    let side = (target_height * profile.shape[1] as f64 / own.height).round() as usize;
    (side >= 1 && side <= size).then_some(side)
}

/// Both domains' label-free profiles, measured on their training images before any step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairProfile {
    pub source: DomainProfile,
    pub target: DomainProfile,
}

impl PairProfile {
    /// Loads both domains' training images and measures them ([`DomainProfile::measure`]).
    pub fn measure(source: &DataRef, target: &DataRef, data_dir: Option<&Path>) -> Result<Self> {
        let s = load_domain(source, data_dir, None, false)?;
        let t = load_domain(target, data_dir, Some(&s.classes), false)?;
        Ok(Self {
            source: DomainProfile::measure(&source.as_string(), &s.train)?,
            target: DomainProfile::measure(&target.as_string(), &t.train)?,
        })
    }

    /// The net both domains fit ([`DigitNet::for_profiles`]).
    pub fn net(&self) -> DigitNet {
        DigitNet::for_profiles(&self.source, &self.target)
    }
}

/// One domain loaded: a built-in dataset's train and test splits, or a folder / list file.
#[derive(Debug, Clone)]
pub struct LoadedDomain {
    pub train: ImageDataset,
    /// The test split; `None` when the data has none (a folder without `train/` and `test/`).
    pub test: Option<ImageDataset>,
    /// Class names, label `i` is `classes[i]`.
    pub classes: Vec<String>,
    /// False for unlabelled images (a flat folder, a list without labels).
    pub labelled: bool,
    /// What the folder loader converted (sizes, channels), in words.
    pub conversions: Vec<String>,
}

/// The class names of the built-in digit datasets.
pub fn digit_classes() -> Vec<String> {
    (0..10).map(|d| d.to_string()).collect()
}

/// Loads `data`: a built-in dataset (its train split, and its test split with `with_test`), or a
/// folder or list file through [`crate::image_folder`]. `classes`: the source's, for a target
/// (its labels are then indices into them, and a class the source lacks is an error).
pub fn load_domain(
    data: &DataRef,
    data_dir: Option<&Path>,
    classes: Option<&[String]>,
    with_test: bool,
) -> Result<LoadedDomain> {
    match data {
        DataRef::Builtin(id) => {
            let train = registry::load_id(*id, Split::Train, data_dir)?;
            let test = if with_test { Some(registry::load_id(*id, Split::Test, data_dir)?) } else { None };
            let mut train = train;
            let mut test = test;
            let own = digit_classes();
            let classes = match classes {
                Some(source) if source != own.as_slice() => {
                    // A built-in target beside a folder source: its digits are indexed into the
                    // source's classes, every digit present must be one of them.
                    let map: Vec<Option<u32>> =
                        own.iter().map(|c| source.iter().position(|k| k == c).map(|i| i as u32)).collect();
                    for ds in std::iter::once(&mut train).chain(test.as_mut()) {
                        for l in &mut ds.labels {
                            *l = map[*l as usize].ok_or_else(|| {
                                DatasetError::InvalidParameters(format!(
                                    "{id}: class '{l}' is not one of the source's classes {}",
                                    source.join(", ")
                                ))
                            })?;
                        }
                    }
                    source.to_vec()
                }
                _ => own,
            };
            Ok(LoadedDomain { train, test, classes, labelled: true, conversions: Vec::new() })
        }
        DataRef::Path(path) => {
            let opts = crate::image_folder::FolderOptions::default();
            let mut src = crate::image_folder::load_image_source(path, &opts)?;
            match classes {
                None => src.check_source()?,
                Some(source_classes) => {
                    src.check_target(source_classes)?;
                    src.relabel(source_classes)?;
                }
            }
            Ok(LoadedDomain {
                train: src.train,
                test: src.test,
                classes: src.classes,
                labelled: src.labelled,
                conversions: src.conversions,
            })
        }
    }
}
/// How both domains' values are normalised, after they are brought to `[0, 1]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Normalization {
    /// The per-channel mean over the source and target training images (the source's validation
    /// images included) is subtracted from all four splits; nothing is divided, as in pumpikano/tf-dann.
    TrainMean,
    /// `(x - mean) / std` per channel, one value per channel or one for all.
    Fixed { mean: Vec<f32>, std: Vec<f32> },
    /// Every image standardised on its own ([`InputStep::Standardize`]): nothing is computed
    /// over a training set, so the same image always becomes the same input.
    PerImage { epsilon: f32 },
}

/// The epsilon [`Normalization::PerImage`] uses in adapt's recipes: far below the deviation of
/// any image with a digit in it (pixels in `[0, 1]`), so only a blank image meets it.
pub const STANDARDIZE_EPSILON: f32 = 1e-3;

/// Everything that decides how a pair's images become inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairSpec {
    pub source: DataRef,
    pub target: DataRef,
    /// Side both domains are brought to.
    pub image_size: usize,
    pub normalization: Normalization,
    #[serde(default)]
    pub source_input: DomainShaping,
    #[serde(default)]
    pub target_input: DomainShaping,
}

/// The DANN reference code binarised the digits it took from a plain ground with a margin around
/// them (`mnist > 0`, Ganin & Lempitsky, "Unsupervised Domain Adaptation by Backpropagation",
/// 2015): the paper's preset does so for every such grey domain.
pub fn paper_binarizes(p: &DomainProfile) -> bool {
    !p.colour() && p.inside_margin()
}

impl PairSpec {
    /// The DANN paper's recipe as its reference implementation runs it: the net's input size,
    /// grey digits drawn inside a margin binarised ([`paper_binarizes`]), the training mean
    /// subtracted, each frame fitted by [`Fit::for_profile`].
    pub fn dann_paper(source: &DataRef, target: &DataRef, profile: &PairProfile) -> Self {
        let image_size = profile.net().image_size();
        let shaping = |p: &DomainProfile| DomainShaping {
            binarize: paper_binarizes(p),
            digit_box: None,
            fit: Fit::for_profile(p, image_size),
        };
        Self {
            source: source.clone(),
            target: target.clone(),
            image_size,
            normalization: Normalization::TrainMean,
            source_input: shaping(&profile.source),
            target_input: shaping(&profile.target),
        }
    }

    /// The DANN recipe with BatchNorm nets: as [`PairSpec::dann_paper`], nothing binarised.
    pub fn dann_bn(source: &DataRef, target: &DataRef, profile: &PairProfile) -> Self {
        let mut spec = Self::dann_paper(source, target, profile);
        spec.source_input.binarize = false;
        spec.target_input.binarize = false;
        spec
    }

    /// Generate To Adapt: 32x32 whatever the pair, no binarisation, `(x - 0.5) / 0.5`.
    pub fn gta(source: &DataRef, target: &DataRef, profile: &PairProfile) -> Self {
        let shaping =
            |p: &DomainProfile| DomainShaping { binarize: false, digit_box: None, fit: Fit::for_profile(p, 32) };
        Self {
            source: source.clone(),
            target: target.clone(),
            image_size: 32,
            normalization: Normalization::Fixed { mean: vec![GTA_MEAN], std: vec![GTA_STD] },
            source_input: shaping(&profile.source),
            target_input: shaping(&profile.target),
        }
    }

    fn check(&self) -> Result<()> {
        let bad =
            |what: String| Err(DatasetError::InvalidParameters(format!("{} -> {}: {what}", self.source, self.target)));
        if self.image_size == 0 {
            return bad("image size 0".into());
        }
        for shaping in [&self.source_input, &self.target_input] {
            if let Some(b) = shaping.digit_box
                && (b == 0 || b > self.image_size)
            {
                return bad(format!("a digit box of {b} does not fit a {0}x{0} input", self.image_size));
            }
        }
        if let Normalization::Fixed { mean, std } = &self.normalization {
            for (name, v) in [("mean", mean), ("std", std)] {
                if v.len() != 1 && v.len() != 3 {
                    return bad(format!("{name} has {} values; give one per RGB channel or one for all", v.len()));
                }
            }
            if let Some(s) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
                return bad(format!("std {s} is not a positive number"));
            }
        }
        if let Normalization::PerImage { epsilon } = self.normalization
            && !(epsilon.is_finite() && epsilon > 0.0)
        {
            return bad(format!("the standardisation epsilon {epsilon} is not a positive number"));
        }
        Ok(())
    }
}

/// The shape steps of one domain of a pair: `/255`, 3 channels at `size x size`, the frame fitted
/// as `shaping.fit` says (a crop or pad only where this split's images allow it, else a resize),
/// or resized into `shaping.digit_box` and zero-padded. `height` is the loaded images' height.
pub fn shape_steps(shaping: &DomainShaping, height: usize, size: usize) -> Preprocess {
    let mut pre = Preprocess::rgb(size);
    if shaping.binarize {
        pre.binarize = Some(MNIST_BINARIZE_THRESHOLD);
    }
    match shaping.fit {
        Fit::Pad if height <= size => {
            pre.resize = None;
            pre.pad_to = Some(size);
        }
        Fit::Crop if height >= size => {
            pre.resize = None;
            pre.crop_to = Some(size);
        }
        _ => {}
    }
    if let Some(b) = shaping.digit_box {
        pre.crop_to = None;
        pre.resize = Some(b);
        pre.pad_to = Some(size);
    }
    pre
}

/// A source -> target pair ready for training and evaluation.
#[derive(Clone)]
pub struct DomainPair {
    pub source_name: String,
    pub target_name: String,
    pub source_train: Arc<dyn Rows>,
    /// Held out from the source training set, for model selection without target labels.
    pub source_val: Option<Arc<dyn Rows>>,
    pub target_train: Arc<dyn Rows>,
    pub source_test: Arc<dyn Rows>,
    pub target_test: Arc<dyn Rows>,
    /// The mean subtracted from every split, as the spec gave it or as computed: one value per
    /// channel, or one for all. Empty when nothing was subtracted.
    pub mean: Vec<f32>,
    /// The std divided by after the mean (`[1.0]` for [`Normalization::TrainMean`]); same layout
    /// (empty for [`Normalization::PerImage`]).
    pub std: Vec<f32>,
    /// How each domain's images became these inputs; `None` for pairs not made from images.
    pub input: Option<InputDescription>,
    /// Things the caller should tell the user, such as splits that were only partly present
    /// (`"mnist-m train: 30000 of 59001 listed images present; using those"`).
    pub notes: Vec<String>,
    /// Class names: label `i` is `classes[i]` in both domains (the source's classes).
    pub classes: Vec<String>,
    /// False when the target's images carry no labels: its test accuracy is then unknown.
    pub target_labelled: bool,
    /// How the test splits were formed, in words, for reports.
    pub protocol: String,
}

impl DomainPair {
    /// [`compare_inputs`] on the first `max_images` source and target training inputs.
    pub fn compare_inputs(&self, max_images: usize) -> Result<Vec<InputWarning>> {
        let s = InputStats::of_first(self.source_train.as_ref(), max_images)?;
        let t = InputStats::of_first(self.target_train.as_ref(), max_images)?;
        Ok(compare_inputs(&s, &t))
    }
}

/// How a pair's images became the network's inputs, complete enough to redo in another framework:
/// for each domain its dataset, splits, original image shape and every step in order, the last one
/// the normalisation. Serialises (JSON, TOML) for weights' metadata and reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputDescription {
    pub source: DomainInput,
    pub target: DomainInput,
    /// The inputs' `[C, H, W]`, the same for both domains.
    pub input_shape: [usize; 3],
    pub normalization: NormalizationUsed,
    pub validation: ValidationHoldOut,
}

/// One domain's images and steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainInput {
    /// Canonical dataset name (`mnist-m`).
    pub dataset: String,
    /// What the loaded pixel values are, before the first step.
    pub raw_pixels: String,
    /// `[C, H, W]` as loaded.
    pub original_shape: [usize; 3],
    pub splits: Vec<SplitInput>,
    /// Applied in order to every split of the domain; the last is the normalisation.
    pub steps: Vec<InputStep>,
    /// The test split's steps, where its images have another size than the training images'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_steps: Option<Vec<InputStep>>,
}

/// One split of one domain as used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitInput {
    /// `train`, `validation` (held out from the source's `train`) or `test`.
    pub split: String,
    pub images: usize,
    /// The file or folder loaded (or `hf://datasets/OWNER/NAME`).
    pub origin: String,
    /// Set when only part of the listed images were present (counts of the whole split as
    /// loaded, before any hold-out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<Partial>,
}

/// The normalisation applied (per channel), and where its values came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NormalizationUsed {
    /// `train_mean`, `fixed` or `per_image` (whose mean and std are each image's own, so
    /// these lists are empty).
    pub kind: String,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// How the values were obtained, in words.
    pub origin: String,
}

/// How the source validation images were chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationHoldOut {
    /// `held_out = source train images / one_in`, rounded down.
    pub one_in: usize,
    pub held_out: usize,
    pub seed: u64,
    pub rule: String,
}

impl fmt::Display for DomainInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [c, h, w] = self.original_shape;
        let splits: Vec<String> = self.splits.iter().map(|s| format!("{} {}", s.split, s.images)).collect();
        write!(f, "{} ({}; {c}x{h}x{w}, {}): ", self.dataset, splits.join(", "), self.raw_pixels)?;
        let steps: Vec<String> = self.steps.iter().map(|s| s.to_string()).collect();
        f.write_str(&steps.join(" -> "))?;
        if let Some(t) = &self.test_steps {
            let steps: Vec<String> = t.iter().map(|s| s.to_string()).collect();
            write!(f, "; test images: {}", steps.join(" -> "))?;
        }
        Ok(())
    }
}

/// Two lines, one per domain, then the normalisation's origin and the hold-out rule.
impl fmt::Display for InputDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [c, h, w] = self.input_shape;
        writeln!(f, "source {}", self.source)?;
        writeln!(f, "target {}", self.target)?;
        writeln!(f, "inputs {c}x{h}x{w}; normalisation: {}", self.normalization.origin)?;
        write!(f, "validation: {}", self.validation.rule)
    }
}

/// What the loaders' pixel values are for `data`.
fn raw_pixels(data: &DataRef, channels: usize) -> String {
    let what = match data.builtin() {
        Some(DatasetId::Mnist) => "8-bit grey, ink 255 on 0",
        Some(DatasetId::Usps) => {
            "grey, ink 255 on 0; the ESL text's values v in [-1, 1] loaded as round((v + 1) * 127.5), \
             other copies as stored"
        }
        Some(DatasetId::MnistM | DatasetId::Svhn | DatasetId::SynDigits) => "8-bit RGB",
        None if channels == 1 => "8-bit grey, decoded from the image files",
        None => "8-bit RGB, decoded from the image files",
    };
    format!("{what}, as f32 in [0, 255]")
}

/// A source without a test split keeps one in this many of its images as its test set (seeded,
/// [`SOURCE_TEST_SEED`]) before the validation hold-out.
pub const SOURCE_TEST_FRACTION: usize = 6;

/// The seed of that hold-out, the same for every run seed.
pub const SOURCE_TEST_SEED: u64 = 0x7e57_5eed;

/// `ds` split into (kept, held out) with `held` images held out, by the seeded shuffle of
/// [`validation_split`], both in the shuffled order.
fn hold_out(ds: ImageDataset, held: usize, seed: u64) -> Result<(ImageDataset, ImageDataset)> {
    if held == 0 || held >= ds.len() {
        return Err(DatasetError::InvalidParameters(format!(
            "{}: {} images are too few to hold {held} out as a test set (give it train/ and test/ folders)",
            ds.origin,
            ds.len()
        )));
    }
    let ds = Arc::new(ds);
    let (kept, test) = validation_split(ds.clone(), held, seed)?;
    let take = |idx: &[usize], split: Split| {
        let (images, labels) = ds.gather(idx);
        ImageDataset {
            name: ds.name.clone(),
            split,
            images,
            labels,
            channels: ds.channels,
            height: ds.height,
            width: ds.width,
            origin: ds.origin.clone(),
            partial: None,
        }
    };
    Ok((take(kept.indices(), Split::Train), take(test.indices(), Split::Test)))
}

/// One value per channel from one for all (none from none).
fn per_channel(v: &[f32], c: usize) -> Vec<f32> {
    if v.is_empty() {
        return Vec::new();
    }
    (0..c).map(|ch| if v.len() == 1 { v[0] } else { v[ch] }).collect()
}

/// A loaded, shaped split and what it went through.
struct Shaped {
    ds: ImageDataset,
    original: [usize; 3],
    steps: Vec<InputStep>,
}

/// Loads `source -> target` as `spec` says. `data_dir` as for [`crate::load`].
///
/// Per split: load ([`load_domain`]), then [`shape_steps`]; the mean over both shaped training
/// sets where the spec asks for it; all four splits normalised in place; then the source training
/// set split by [`validation_split`] with [`VALIDATION_SEED`], `len / VALIDATION_FRACTION` rows held
/// out. Data without a test split: a source keeps one in [`SOURCE_TEST_FRACTION`] images as its test
/// set; a target is used transductively (trained on without labels, its accuracy reported on the
/// same images, the Office-31 protocol).
pub fn load_digit_pair(spec: &PairSpec, data_dir: Option<&Path>) -> Result<DomainPair> {
    spec.check()?;
    let mut notes = Vec::new();
    let source = load_domain(&spec.source, data_dir, None, true)?;
    let target = load_domain(&spec.target, data_dir, Some(&source.classes), true)?;
    for (data, d) in [(&spec.source, &source), (&spec.target, &target)] {
        notes.extend(d.conversions.iter().map(|c| format!("{data}: {c}")));
    }
    let (classes, target_labelled) = (source.classes.clone(), target.labelled);
    let mut protocol = Vec::new();
    let (source_train, source_test) = match source.test {
        Some(test) => {
            protocol.push(format!("source {}: its own test split", spec.source));
            (source.train, test)
        }
        None => {
            let held = (source.train.len() / SOURCE_TEST_FRACTION).max(1);
            protocol.push(format!(
                "source {}: no test split, {held} of its {} images held out as its test set (one in \
                 {SOURCE_TEST_FRACTION}, seed {SOURCE_TEST_SEED:#x})",
                spec.source,
                source.train.len()
            ));
            hold_out(source.train, held, SOURCE_TEST_SEED)?
        }
    };
    let (target_train, target_test) = match target.test {
        Some(test) => {
            protocol.push(format!("target {}: its own test split", spec.target));
            (target.train, test)
        }
        None => {
            protocol.push(format!(
                "target {}: no test split, transductive: trained on its {} images without labels{}",
                spec.target,
                target.train.len(),
                if target.labelled {
                    ", its accuracy reported on the same images"
                } else {
                    "; unlabelled, so no target accuracy"
                }
            ));
            let mut test = target.train.clone();
            test.split = Split::Test;
            (target.train, test)
        }
    };
    let mut shape = |data: &DataRef, shaping: &DomainShaping, mut ds: ImageDataset| -> Result<Shaped> {
        let original = [ds.channels, ds.height, ds.width];
        let pre = shape_steps(shaping, ds.height, spec.image_size);
        let steps = pre.plan(&ds.name, original)?;
        for step in &steps {
            step.apply(&mut ds)?;
        }
        if let Some(p) = ds.partial {
            notes.push(format!("{data} {}: {} of {} listed images present; using those", ds.split, p.loaded, p.listed));
        }
        Ok(Shaped { ds, original, steps })
    };
    let mut source_train = shape(&spec.source, &spec.source_input, source_train)?;
    let mut target_train = shape(&spec.target, &spec.target_input, target_train)?;
    let mut source_test = shape(&spec.source, &spec.source_input, source_test)?;
    let mut target_test = shape(&spec.target, &spec.target_input, target_test)?;
    let c = source_train.ds.channels;
    let (mean, std, normalization, last_step) = match &spec.normalization {
        Normalization::TrainMean => {
            let mean = preprocess::channel_mean(&[&source_train.ds, &target_train.ds])?;
            let origin = format!(
                "mean per channel over the {} {} and {} {} training images (validation images included) after \
                 the steps before it, subtracted; std 1",
                source_train.ds.len(),
                spec.source,
                target_train.ds.len(),
                spec.target
            );
            let step = InputStep::Normalize { mean: per_channel(&mean, c), std: vec![1.0; c] };
            (mean, vec![1.0], ("train_mean", origin), step)
        }
        Normalization::Fixed { mean, std } => {
            let step = InputStep::Normalize { mean: per_channel(mean, c), std: per_channel(std, c) };
            (mean.clone(), std.clone(), ("fixed", "fixed values given by the recipe".to_string()), step)
        }
        Normalization::PerImage { epsilon } => {
            let origin = "each image's own per-channel mean and standard deviation (instance normalisation)";
            (vec![], vec![], ("per_image", origin.to_string()), InputStep::Standardize { epsilon: *epsilon })
        }
    };
    for s in [&mut source_train, &mut target_train, &mut source_test, &mut target_test] {
        last_step.apply(&mut s.ds)?;
    }
    let input_shape = [source_train.ds.channels, source_train.ds.height, source_train.ds.width];
    let target_shape = [target_train.ds.channels, target_train.ds.height, target_train.ds.width];
    if input_shape != target_shape {
        return Err(DatasetError::InvalidParameters(format!(
            "{} -> {}: the source inputs are {input_shape:?} and the target inputs {target_shape:?}",
            spec.source, spec.target
        )));
    }
    let normalize = last_step;

    let split = |split: &str, images: usize, ds: &ImageDataset, partial: Option<Partial>| SplitInput {
        split: split.into(),
        images,
        origin: ds.origin.clone(),
        partial,
    };
    let domain = |data: &DataRef, train: &Shaped, test: &Shaped, splits: Vec<SplitInput>| {
        let with_norm = |s: &[InputStep]| s.iter().cloned().chain([normalize.clone()]).collect::<Vec<_>>();
        DomainInput {
            dataset: data.as_string(),
            raw_pixels: raw_pixels(data, train.original[0]),
            original_shape: train.original,
            splits,
            steps: with_norm(&train.steps),
            test_steps: (test.steps != train.steps).then(|| with_norm(&test.steps)),
        }
    };
    let held_out = source_train.ds.len() / VALIDATION_FRACTION;
    let source_all = source_train.ds.len();
    let source = domain(
        &spec.source,
        &source_train,
        &source_test,
        vec![
            split("train", source_all - held_out, &source_train.ds, source_train.ds.partial),
            split("validation", held_out, &source_train.ds, None),
            split("test", source_test.ds.len(), &source_test.ds, source_test.ds.partial),
        ],
    );
    let target = domain(
        &spec.target,
        &target_train,
        &target_test,
        vec![
            split("train", target_train.ds.len(), &target_train.ds, target_train.ds.partial),
            split("test", target_test.ds.len(), &target_test.ds, target_test.ds.partial),
        ],
    );
    let input = InputDescription {
        source,
        target,
        input_shape,
        normalization: NormalizationUsed {
            kind: normalization.0.into(),
            mean: per_channel(&mean, c),
            std: per_channel(&std, c),
            origin: normalization.1,
        },
        validation: ValidationHoldOut {
            one_in: VALIDATION_FRACTION,
            held_out,
            seed: VALIDATION_SEED,
            rule: format!(
                "{held_out} of the {source_all} source training images held out: the indices 0..{source_all} \
                 shuffled by Rust's rand StdRng::seed_from_u64({VALIDATION_SEED:#x}) with SliceRandom::shuffle, \
                 the last {held_out} held out and the others trained on, in that shuffled order"
            ),
        },
    };
    let (source_fit, source_val) = validation_split(Arc::new(source_train.ds), held_out, VALIDATION_SEED)?;
    Ok(DomainPair {
        source_name: spec.source.as_string(),
        target_name: spec.target.as_string(),
        source_train: Arc::new(source_fit),
        source_val: Some(Arc::new(source_val)),
        target_train: Arc::new(target_train.ds),
        source_test: Arc::new(source_test.ds),
        target_test: Arc::new(target_test.ds),
        mean,
        std,
        input: Some(input),
        notes,
        classes,
        target_labelled,
        protocol: protocol.join("; "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::InkBox;

    /// A profile with `shape`, colour or grey, a digit side (plain ground) and a mean ink box.
    fn profile(shape: [usize; 3], colour: bool, digit_side: Option<f64>, ink: (f64, f64, f64, f64)) -> DomainProfile {
        let (top, left, height, width) = ink;
        DomainProfile {
            name: "p".into(),
            shape,
            images: 100,
            colour_spread: if colour { 0.2 } else { 0.0 },
            ground_share: if digit_side.is_some() { 0.8 } else { 0.1 },
            ground_level: 0.0,
            digit_side,
            ink_box: Some(InkBox { top, left, height, width }),
        }
    }

    fn mnist() -> DomainProfile {
        profile([1, 28, 28], false, Some(20.0), (6.1, 8.1, 17.1, 12.5))
    }
    fn usps() -> DomainProfile {
        profile([1, 16, 16], false, Some(16.0), (1.1, 3.6, 13.9, 8.8))
    }
    fn mnist_m() -> DomainProfile {
        profile([3, 32, 32], true, None, (7.4, 8.3, 18.2, 16.1))
    }
    /// Street numbers: digits filling most of a textured 32-pixel frame.
    fn street() -> DomainProfile {
        profile([3, 32, 32], true, None, (1.0, 9.0, 30.0, 14.0))
    }

    #[test]
    fn the_net_follows_the_images() {
        assert_eq!(DigitNet::for_profiles(&mnist(), &usps()), DigitNet::Mnist);
        assert_eq!(DigitNet::for_profiles(&mnist(), &mnist_m()), DigitNet::Mnist, "MNIST-M crops to 28");
        assert_eq!(DigitNet::for_profiles(&street(), &mnist()), DigitNet::Svhn, "digits filling 32 px");
        assert_eq!((DigitNet::Mnist.image_size(), DigitNet::Svhn.image_size()), (28, 32));
        assert_eq!(serde_json::to_string(&DigitNet::Svhn).unwrap(), r#""svhn""#);
        assert_eq!(serde_json::from_str::<DigitNet>(r#""mnist""#).unwrap(), DigitNet::Mnist);
    }

    #[test]
    fn fits_and_digit_boxes() {
        assert_eq!(Fit::for_profile(&mnist_m(), 28), Fit::Crop);
        assert_eq!(Fit::for_profile(&mnist(), 32), Fit::Pad);
        assert_eq!(Fit::for_profile(&usps(), 28), Fit::Resize);
        assert_eq!(Fit::for_profile(&street(), 28), Fit::Resize, "a crop would cut its ink");
        // USPS fills its frame, MNIST's digits sit in a 20-pixel box: USPS is drawn at that scale.
        assert_eq!(digit_box_for(&usps(), &mnist(), 28), Some(20));
        assert_eq!(digit_box_for(&usps(), &mnist(), 32), Some(20), "MNIST is padded, not scaled, to 32");
        assert_eq!(digit_box_for(&mnist(), &usps(), 28), None);
        // Against MNIST-M's digits (cropped, not scaled): its ink box is 18.2 px high.
        assert_eq!(digit_box_for(&usps(), &mnist_m(), 28), Some(21));
        assert_eq!(digit_box_for(&mnist_m(), &usps(), 28), None, "a colour domain is not boxed");
    }

    #[test]
    fn the_recipes() {
        let (s, t) = (DataRef::from(DatasetId::Mnist), DataRef::from(DatasetId::MnistM));
        let pp = PairProfile { source: mnist(), target: mnist_m() };
        let p = PairSpec::dann_paper(&s, &t, &pp);
        assert_eq!((p.image_size, &p.normalization), (28, &Normalization::TrainMean));
        assert!(p.source_input.binarize && !p.target_input.binarize);
        assert_eq!(p.target_input.fit, Fit::Crop);
        let bn = PairSpec::dann_bn(&s, &t, &pp);
        assert!(!bn.source_input.binarize && !bn.target_input.binarize);
        let g = PairSpec::gta(&s, &t, &pp);
        assert_eq!((g.image_size, g.source_input.binarize, g.source_input.fit), (32, false, Fit::Pad));
        assert_eq!(g.normalization, Normalization::Fixed { mean: vec![0.5], std: vec![0.5] });
        // Serialised with the datasets' names, and read back with either spelling.
        let json = serde_json::to_string(&g).unwrap();
        assert!(json.contains(r#""target":"mnist-m""#) && json.contains(r#""kind":"fixed""#), "{json}");
        assert_eq!(serde_json::from_str::<PairSpec>(&json.replace("mnist-m", "mnist_m")).unwrap(), g);
        let toml = toml::to_string(&p).unwrap();
        assert_eq!(toml::from_str::<PairSpec>(&toml).unwrap(), p);
        // Values no normalisation can use.
        for (mean, std) in [(vec![0.5], vec![0.0]), (vec![0.5, 0.5], vec![0.5]), (vec![0.5], vec![-1.0])] {
            let bad = PairSpec { normalization: Normalization::Fixed { mean, std }, ..g.clone() };
            let e = load_digit_pair(&bad, Some(Path::new("/nonexistent"))).err().expect("rejected before loading");
            assert!(e.to_string().contains("mnist -> mnist-m"), "{e}");
        }
    }

    #[test]
    fn a_source_without_a_test_split_holds_one_out_by_a_seeded_shuffle() {
        let px: Vec<u8> = (0..60u8).collect();
        let ds = ImageDataset::from_u8("s", Split::Train, &px, (0..15).collect(), [1, 2, 2]).unwrap();
        let (kept, test) = hold_out(ds.clone(), 5, SOURCE_TEST_SEED).unwrap();
        assert_eq!((kept.len(), test.len(), kept.split, test.split), (10, 5, Split::Train, Split::Test));
        let mut all: Vec<u32> = kept.labels.iter().chain(&test.labels).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..15).collect::<Vec<u32>>(), "every image once");
        // Pixels travel with their labels; the same seed holds the same images out.
        for (i, &l) in test.labels.iter().enumerate() {
            assert_eq!(test.image(i), ds.image(l as usize));
        }
        assert_eq!(hold_out(ds.clone(), 5, SOURCE_TEST_SEED).unwrap().1.labels, test.labels);
        assert!(hold_out(ds.clone(), 15, SOURCE_TEST_SEED).unwrap_err().to_string().contains("too few"));
    }

    #[test]
    fn shape_steps_keep_the_digit_scale() {
        let pad = DomainShaping { binarize: true, digit_box: None, fit: Fit::Pad };
        let mnist32 = shape_steps(&pad, 28, 32);
        assert_eq!(
            (mnist32.pad_to, mnist32.resize, mnist32.binarize),
            (Some(32), None, Some(MNIST_BINARIZE_THRESHOLD))
        );
        let crop = DomainShaping { fit: Fit::Crop, ..Default::default() };
        let mnist_m28 = shape_steps(&crop, 32, 28);
        assert_eq!((mnist_m28.crop_to, mnist_m28.resize, mnist_m28.binarize), (Some(28), None, None));
        assert_eq!(shape_steps(&DomainShaping::default(), 16, 28).resize, Some(28));
        let boxed = shape_steps(&DomainShaping { digit_box: Some(20), ..Default::default() }, 16, 28);
        assert_eq!((boxed.resize, boxed.pad_to), (Some(20), Some(28)));
        let plan = shape_steps(&DomainShaping::default(), 32, 32).plan("svhn", [3, 32, 32]).unwrap();
        assert_eq!(plan, [InputStep::Scale { divide_by: 255.0 }]);
    }
}
