//! A source -> target pair of digit datasets made into network inputs in one call: the DANN
//! paper's and the Generate-To-Adapt recipes, with the source validation hold-out, and a
//! description of every step that a user of another framework can follow to feed a trained
//! network the same inputs.
//!
//! [`load_digit_pair`] loads the four splits (source train, target train, source test, target
//! test, in that order), brings each to 3 x `image_size` x `image_size` ([`shape_steps`]),
//! normalises all four with one mean and std ([`Normalization`]) and holds one in
//! [`VALIDATION_FRACTION`] source training images out for validation.
use crate::preprocess::{self, InputStep, Preprocess};
use crate::registry::{self, DatasetId};
use crate::rows::{Rows, validation_split};
use crate::stats::{InputStats, InputWarning, compare_inputs};
use crate::{DatasetError, ImageDataset, Partial, Result, Split};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// One in this many source training images is held out for validation: the DANN reference code
/// (seed 002) trains on 55000 MNIST images and keeps 5000.
pub const VALIDATION_FRACTION: usize = 12;

/// The held-out split is the same for every run seed, so runs differ only in what they learn.
pub const VALIDATION_SEED: u64 = 0x5eed_0da7a;

/// Seed 002 keeps every non-zero MNIST pixel (`images > 0` on `[0, 1]` floats); on raw pixels
/// that is `>= 1`.
pub const MNIST_BINARIZE_THRESHOLD: f32 = 1.0;

/// Generate To Adapt's input normalisation `(p - 0.5) / 0.5`: inputs in `[-1, 1]`, the range its
/// generator's images are in too.
pub const GTA_MEAN: f32 = 0.5;
/// See [`GTA_MEAN`].
pub const GTA_STD: f32 = 0.5;

/// Which of the DANN paper's two networks a pair uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DigitNet {
    /// 3x28x28 input: for pairs of MNIST, MNIST-M and USPS.
    Mnist,
    /// 3x32x32 input: for any pair with SVHN or SynDigits.
    Svhn,
}

impl DigitNet {
    /// The paper's net for `source -> target`: the MNIST net when both are MNIST, MNIST-M or USPS.
    pub fn for_pair(source: DatasetId, target: DatasetId) -> Self {
        let small = |d: DatasetId| matches!(d, DatasetId::Mnist | DatasetId::MnistM | DatasetId::Usps);
        if small(source) && small(target) { DigitNet::Mnist } else { DigitNet::Svhn }
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

/// How both domains' values are normalised, after they are brought to `[0, 1]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Normalization {
    /// The per-channel mean over the source and target training images (the source's validation
    /// images included) is subtracted from all four splits; nothing is divided. Seed 002's.
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
    pub source: DatasetId,
    pub target: DatasetId,
    /// Side both domains are brought to.
    pub image_size: usize,
    /// Binarise MNIST (raw pixels `>=` [`MNIST_BINARIZE_THRESHOLD`] become 255, the others 0);
    /// other datasets are never binarised.
    pub binarize_mnist: bool,
    pub normalization: Normalization,
    /// USPS digits fill their 16x16 frame while MNIST's sit in a 20x20 box centred in 28x28:
    /// with `Some(b)`, USPS is resized to `b x b` and zero-padded (centred) to `image_size`, so
    /// both domains draw digits at one scale; `None` resizes USPS to the whole input.
    #[serde(default)]
    pub usps_digit_box: Option<usize>,
}

impl PairSpec {
    /// The DANN paper's recipe as its reference implementation (seed 002) runs it: the net's input
    /// size, binarised MNIST, the training mean subtracted.
    pub fn dann_paper(source: DatasetId, target: DatasetId) -> Self {
        Self {
            source,
            target,
            image_size: DigitNet::for_pair(source, target).image_size(),
            binarize_mnist: true,
            normalization: Normalization::TrainMean,
            usps_digit_box: None,
        }
    }

    /// The DANN recipe with BatchNorm nets (seed 000): as [`PairSpec::dann_paper`] on plain (not
    /// binarised) MNIST.
    pub fn dann_bn(source: DatasetId, target: DatasetId) -> Self {
        Self { binarize_mnist: false, ..Self::dann_paper(source, target) }
    }

    /// Generate To Adapt: 32x32 whatever the pair, no binarisation, `(x - 0.5) / 0.5`.
    pub fn gta(source: DatasetId, target: DatasetId) -> Self {
        Self {
            source,
            target,
            image_size: 32,
            binarize_mnist: false,
            normalization: Normalization::Fixed { mean: vec![GTA_MEAN], std: vec![GTA_STD] },
            usps_digit_box: None,
        }
    }

    /// The paper's net for this pair.
    pub fn net(&self) -> DigitNet {
        DigitNet::for_pair(self.source, self.target)
    }

    fn check(&self) -> Result<()> {
        let bad =
            |what: String| Err(DatasetError::InvalidParameters(format!("{} -> {}: {what}", self.source, self.target)));
        if self.image_size == 0 {
            return bad("image size 0".into());
        }
        if let Some(b) = self.usps_digit_box
            && (b == 0 || b > self.image_size)
        {
            return bad(format!("a USPS digit box of {b} does not fit a {0}x{0} input", self.image_size));
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

/// The shape steps of one dataset of a pair: `/255`, 3 channels at `size x size`. MNIST-M's 32x32
/// images are MNIST digits padded by 2 pixels, so MNIST (28 high) pads 28 -> 32 and MNIST-M crops
/// 32 -> 28: the digits keep one scale in both domains. Other sizes (USPS 16 -> 28/32) are
/// resized bilinearly (see [`PairSpec::usps_digit_box`] for USPS into a digit box). `height` is
/// the loaded images' height.
pub fn shape_steps(id: DatasetId, height: usize, size: usize, binarize: bool) -> Preprocess {
    let mut pre = Preprocess::rgb(size);
    if binarize {
        pre.binarize = Some(MNIST_BINARIZE_THRESHOLD);
    }
    if height == 28 && size == 32 {
        pre.resize = None;
        pre.pad_to = Some(32);
    }
    if id == DatasetId::MnistM && height == 32 && size == 28 {
        pre.resize = None;
        pre.crop_to = Some(28);
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

/// What the loaders' pixel values are for `id`.
fn raw_pixels(id: DatasetId) -> String {
    let what = match id {
        DatasetId::Mnist => "8-bit grey, ink 255 on 0",
        DatasetId::Usps => {
            "grey, ink 255 on 0; the ESL text's values v in [-1, 1] loaded as round((v + 1) * 127.5), \
             other copies as stored"
        }
        DatasetId::MnistM | DatasetId::Svhn | DatasetId::SynDigits => "8-bit RGB",
    };
    format!("{what}, as f32 in [0, 255]")
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
/// Exactly the runner's earlier digit pipeline: per split, load, then [`shape_steps`] (binarising
/// MNIST when asked); the mean over both shaped training sets where the spec asks for it; all four
/// splits normalised in place; then the source training set split by [`validation_split`] with
/// [`VALIDATION_SEED`], `len / VALIDATION_FRACTION` rows held out.
pub fn load_digit_pair(spec: &PairSpec, data_dir: Option<&Path>) -> Result<DomainPair> {
    spec.check()?;
    let mut notes = Vec::new();
    let mut load = |id: DatasetId, split: Split| -> Result<Shaped> {
        let mut ds = registry::load_id(id, split, data_dir)?;
        let original = [ds.channels, ds.height, ds.width];
        let mut pre = shape_steps(id, ds.height, spec.image_size, spec.binarize_mnist && id == DatasetId::Mnist);
        if let (DatasetId::Usps, Some(b)) = (id, spec.usps_digit_box) {
            pre.resize = Some(b);
            pre.pad_to = Some(spec.image_size);
        }
        let steps = pre.plan(&ds.name, original)?;
        for step in &steps {
            step.apply(&mut ds)?;
        }
        if let Some(p) = ds.partial {
            notes.push(format!(
                "{} {split}: {} of {} listed images present; using those",
                id.name(),
                p.loaded,
                p.listed
            ));
        }
        Ok(Shaped { ds, original, steps })
    };
    let mut source_train = load(spec.source, Split::Train)?;
    let mut target_train = load(spec.target, Split::Train)?;
    let mut source_test = load(spec.source, Split::Test)?;
    let mut target_test = load(spec.target, Split::Test)?;

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
    let domain = |id: DatasetId, train: &Shaped, test: &Shaped, splits: Vec<SplitInput>| {
        let with_norm = |s: &[InputStep]| s.iter().cloned().chain([normalize.clone()]).collect::<Vec<_>>();
        DomainInput {
            dataset: id.name().into(),
            raw_pixels: raw_pixels(id),
            original_shape: train.original,
            splits,
            steps: with_norm(&train.steps),
            test_steps: (test.steps != train.steps).then(|| with_norm(&test.steps)),
        }
    };
    let held_out = source_train.ds.len() / VALIDATION_FRACTION;
    let source_all = source_train.ds.len();
    let source = domain(
        spec.source,
        &source_train,
        &source_test,
        vec![
            split("train", source_all - held_out, &source_train.ds, source_train.ds.partial),
            split("validation", held_out, &source_train.ds, None),
            split("test", source_test.ds.len(), &source_test.ds, source_test.ds.partial),
        ],
    );
    let target = domain(
        spec.target,
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
        source_name: spec.source.name().into(),
        target_name: spec.target.name().into(),
        source_train: Arc::new(source_fit),
        source_val: Some(Arc::new(source_val)),
        target_train: Arc::new(target_train.ds),
        source_test: Arc::new(source_test.ds),
        target_test: Arc::new(target_test.ds),
        mean,
        std,
        input: Some(input),
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use DatasetId::*;

    #[test]
    fn nets_and_sizes_follow_the_paper() {
        for (s, t) in [(Mnist, MnistM), (MnistM, Mnist), (Mnist, Usps), (Usps, Mnist), (Usps, MnistM)] {
            assert_eq!(DigitNet::for_pair(s, t), DigitNet::Mnist, "{s} -> {t}");
        }
        for (s, t) in [(Svhn, Mnist), (Mnist, Svhn), (SynDigits, Svhn), (Usps, SynDigits)] {
            assert_eq!(DigitNet::for_pair(s, t), DigitNet::Svhn, "{s} -> {t}");
        }
        assert_eq!((DigitNet::Mnist.image_size(), DigitNet::Svhn.image_size()), (28, 32));
        assert_eq!(serde_json::to_string(&DigitNet::Svhn).unwrap(), r#""svhn""#);
        assert_eq!(serde_json::from_str::<DigitNet>(r#""mnist""#).unwrap(), DigitNet::Mnist);
    }

    #[test]
    fn the_recipes() {
        let p = PairSpec::dann_paper(Mnist, MnistM);
        assert_eq!((p.image_size, p.binarize_mnist, &p.normalization), (28, true, &Normalization::TrainMean));
        assert_eq!(p.net(), DigitNet::Mnist);
        assert_eq!(PairSpec::dann_paper(Svhn, Mnist).image_size, 32);
        let bn = PairSpec::dann_bn(Mnist, Usps);
        assert_eq!((bn.image_size, bn.binarize_mnist, &bn.normalization), (28, false, &Normalization::TrainMean));
        let g = PairSpec::gta(Mnist, MnistM);
        assert_eq!((g.image_size, g.binarize_mnist), (32, false));
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
    fn shape_steps_keep_the_digit_scale() {
        let mnist32 = shape_steps(Mnist, 28, 32, true);
        assert_eq!(
            (mnist32.pad_to, mnist32.resize, mnist32.binarize),
            (Some(32), None, Some(MNIST_BINARIZE_THRESHOLD))
        );
        let mnist_m28 = shape_steps(MnistM, 32, 28, false);
        assert_eq!((mnist_m28.crop_to, mnist_m28.resize, mnist_m28.binarize), (Some(28), None, None));
        assert_eq!(shape_steps(Usps, 16, 28, false).resize, Some(28));
        assert_eq!(shape_steps(Svhn, 32, 28, false).resize, Some(28), "only MNIST-M is a padded MNIST");
        let plan = shape_steps(Svhn, 32, 32, false).plan("svhn", [3, 32, 32]).unwrap();
        assert_eq!(plan, [InputStep::Scale { divide_by: 255.0 }]);
    }
}
