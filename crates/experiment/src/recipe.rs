//! Typed recipes: what to train (method, data, nets, schedule), independent of any command
//! line. A recipe is saved in its run folder (`recipe.json`) so an interrupted run can be
//! continued with [`crate::resume`].
use crate::error::{Result, ensure};
use crate::summary::Selection;
use adapt_datasets::DatasetId;
use adapt_models::digits::{ConvPadding, DigitNet, DigitNetConfig};
use adapt_models::init::InitScheme;
use adapt_train::{GtaVariant, Method};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What to train; `kind` tags it in `recipe.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Recipe {
    Toy(ToyRecipe),
    Digits(DigitRecipe),
    Gta(GtaRecipe),
}

/// Source-only and/or DANN on the 2D rotated moons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToyRecipe {
    /// Trained in this order with the same data and seed; two or more make a comparison.
    pub methods: Vec<Method>,
    pub seed: u64,
    pub steps: usize,
    /// Points per domain in each batch.
    pub batch_size: usize,
    /// Base learning rate before annealing.
    pub lr: f64,
}

/// Loop sizes and rates every DANN-family recipe has, checked before any data is read.
fn check_dann(methods: &[Method], steps: usize, batch_size: usize, lr: f64) -> Result<()> {
    ensure(!methods.is_empty(), || "the recipe names no method".into())?;
    ensure(methods.iter().enumerate().all(|(i, m)| !methods[..i].contains(m)), || {
        format!("the recipe names a method twice ({methods:?}): its runs would share one folder")
    })?;
    ensure(steps >= 1, || format!("steps must be at least 1, got {steps}"))?;
    ensure(batch_size >= 1, || format!("the batch size must be at least 1, got {batch_size}"))?;
    ensure(lr.is_finite() && lr > 0.0, || format!("the learning rate must be a positive finite number, got {lr}"))
}

impl ToyRecipe {
    pub fn validate(&self) -> Result<()> {
        check_dann(&self.methods, self.steps, self.batch_size, self.lr)
    }

    /// The toy preset: batches of 64 source + 64 target points (of 150 each), 3000 steps, lr
    /// 0.05 annealed as in the paper, the paper's lambda schedule.
    pub fn new(methods: Vec<Method>, seed: u64) -> Self {
        Self { methods, seed, steps: 3000, batch_size: 64, lr: 0.05 }
    }
}

/// Named recipes for the digit runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// The DANN paper's recipe as seed 002 runs it: no BatchNorm, Glorot init, binarised MNIST,
    /// the pixel mean of both training sets subtracted, the paper's unpadded MNIST net.
    #[default]
    Paper,
    /// BatchNorm after every convolution and hidden fully connected layer, PyTorch init, MNIST
    /// not binarised.
    Bn,
    /// adapt's own recipe, found by measurement (README, "A default that adapts"): the paper's
    /// net and schedules, batches of 64 per domain, USPS drawn into MNIST's 20x20 digit box,
    /// MNIST binarised only when paired with MNIST-M (which was made from binarised MNIST),
    /// information maximisation on the target's predictions beside the domain loss, random
    /// translations of up to 2 pixels of every training image, a moving average of the
    /// weights as the evaluated model, random recolouring of grey source images when the target
    /// is MNIST-M ([`Preset::colour_jitter`]), self-training on the average's confident target
    /// predictions on MNIST-M -> MNIST ([`Preset::target_pseudo_label_weight`]) and, on the MNIST-M
    /// pairs, BatchNorm with each domain's own statistics for the adapted run
    /// ([`Preset::bn_per_domain`]).
    Recommended,
}

impl Preset {
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::Paper => "paper",
            Preset::Bn => "bn",
            Preset::Recommended => "recommended",
        }
    }

    /// The nets' settings for a pair that uses `net`.
    pub fn model(self, net: DigitNet) -> DigitNetConfig {
        match self {
            // The SVHN net's third convolution needs the padding: unpadded, 32 pixels shrink to 0.
            Preset::Paper | Preset::Recommended => DigitNetConfig {
                init: InitScheme::Glorot,
                padding: if net == DigitNet::Mnist { ConvPadding::Valid } else { ConvPadding::Same },
                ..DigitNetConfig::default()
            },
            Preset::Bn => DigitNetConfig { batch_norm: true, ..DigitNetConfig::default() },
        }
    }

    /// Whether `source -> target` trains a BatchNorm net with per-domain statistics
    /// ([`DigitRecipe::separate_domain_passes`]). The recommended recipe does so when MNIST-M,
    /// coloured backgrounds against MNIST's grey strokes, is on either side: without it MNIST ->
    /// MNIST-M lost 10 points (65.4 against 75.3 %), and MNIST-M -> MNIST, a tie with
    /// source-only either way, moved from 97.8 to 98.0 % (README, "A default that adapts"). The
    /// grey pairs keep the paper's net, which their measured results use. Source-only keeps it
    /// too ([`DigitRecipe::source_only_preset_net`]): on MNIST -> MNIST-M the per-domain net
    /// trained on source labels alone reached 39.1 %, the plain one 49.9 %.
    pub fn bn_per_domain(self, source: DatasetId, target: DatasetId) -> bool {
        self == Preset::Recommended && (source == DatasetId::MnistM || target == DatasetId::MnistM)
    }

    /// Whether `source -> target` recolours the source training images at random
    /// ([`DigitRecipe::source_colour_jitter`]). The recommended recipe does so when a grey
    /// source of one colour scheme (white strokes on black) meets MNIST-M, whose strokes and
    /// grounds come in every colour and either polarity: on MNIST -> MNIST-M (seed 0) DANN went
    /// from 75.7 to 91.7 %. A colour source keeps its colours: on MNIST-M -> MNIST (seed 0) the
    /// jitter put DANN at 97.0 % against 98.2 % without (README, "A default that adapts").
    pub fn colour_jitter(self, source: DatasetId, target: DatasetId) -> bool {
        self == Preset::Recommended && target == DatasetId::MnistM && source != DatasetId::MnistM
    }

    /// The weight of self-training on the weight average's confident target predictions
    /// ([`DigitRecipe::target_pseudo_label_weight`]) on `source -> target`. The recommended
    /// recipe uses [`RECOMMENDED_PSEUDO_LABEL_WEIGHT`] on MNIST-M -> MNIST, where source-only
    /// already reaches 98 %, so the teacher's confident predictions are nearly all right: over 3
    /// seeds it moved DANN from 97.9 +- 0.3 to 98.2 +- 0.1 %, above source-only (97.9 +- 0.1) on
    /// every seed. Elsewhere it is off: on MNIST -> MNIST-M, starting near 50 %, it lost 2.5 to
    /// 23 points, and on MNIST-M -> USPS (seed 0) it gave 95.6 % against 96.3 % without (README,
    /// "A default that adapts").
    pub fn target_pseudo_label_weight(self, source: DatasetId, target: DatasetId) -> f64 {
        let on = self == Preset::Recommended && source == DatasetId::MnistM && target == DatasetId::Mnist;
        if on { RECOMMENDED_PSEUDO_LABEL_WEIGHT } else { 0.0 }
    }

    /// MNIST pixels binarised (reference 002's `mnist > 0`) on `source -> target`.
    pub fn binarize_mnist(self, source: DatasetId, target: DatasetId) -> bool {
        match self {
            Preset::Paper => true,
            Preset::Bn => false,
            Preset::Recommended => source == DatasetId::MnistM || target == DatasetId::MnistM,
        }
    }
}

/// The recommended recipe's weight of information maximisation on the target predictions.
pub const RECOMMENDED_IM_WEIGHT: f64 = 1.0;
/// The recommended recipe's weight of target pseudo-labels, where it uses them
/// ([`Preset::target_pseudo_label_weight`]).
pub const RECOMMENDED_PSEUDO_LABEL_WEIGHT: f64 = 1.0;
/// The recommended recipe's length: 3000 steps of 64 + 64 (about 29 epochs of USPS, 3.5 of MNIST),
/// which keeps a run within minutes on two CPU cores.
pub const RECOMMENDED_STEPS: usize = 3000;
/// The recommended recipe's weight average: the last ~500 steps, as VADA / DIRT-T average theirs.
pub const RECOMMENDED_WEIGHT_AVERAGE_DECAY: f64 = 0.998;
/// The recommended recipe's augmentation: training images of both domains moved by up to 2 pixels
/// each way (self-ensembling's translation range for digits).
pub const RECOMMENDED_INPUT_SHIFT: usize = 2;
/// USPS drawn into a box of this side (MNIST's digits fill a 20x20 box of their 28x28 frame).
pub const RECOMMENDED_USPS_BOX: usize = 20;

/// Source-only and/or DANN with the paper's digit nets on a digit pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DigitRecipe {
    pub source: String,
    pub target: String,
    pub methods: Vec<Method>,
    pub preset: Preset,
    /// The nets' settings (the preset's, unless changed).
    pub model: DigitNetConfig,
    pub steps: usize,
    /// Images per domain in each batch.
    pub batch_size: usize,
    pub lr: f64,
    pub seed: u64,
    /// Which weights the run reports.
    pub select: Selection,
    /// MNIST pixels `>= 1` become 255, the others 0.
    pub binarize_mnist: bool,
    /// USPS resized into a box of this side and zero-padded to the net's input (None: resized
    /// to the whole input).
    pub usps_digit_box: Option<usize>,
    /// Weight of information maximisation on the target's predictions (DANN runs; 0: the paper's
    /// objective).
    pub target_im_weight: f64,
    /// Source and target in separate passes, BatchNorm running statistics from the target only
    /// (with a BatchNorm net; [`adapt_train::TrainConfig::separate_domain_passes`]).
    #[serde(default)]
    pub separate_domain_passes: bool,
    /// Source-only trains the preset's own net (no per-domain BatchNorm, one joint pass) while
    /// the adapted run uses per-domain BatchNorm: set where the preset chose it for the pair
    /// ([`Preset::bn_per_domain`]), off once `set_bn_per_domain` asks for one net for both.
    #[serde(default)]
    pub source_only_preset_net: bool,
    /// Decay of the moving average of the weights that is evaluated and reported (both
    /// methods; 0: the last step's weights, as in the paper).
    #[serde(default)]
    pub weight_average_decay: f64,
    /// Training images of both domains moved by up to this many pixels each way (0: as loaded).
    #[serde(default)]
    pub input_shift: usize,
    /// Source training images recoloured at random, channel by channel (contrast, polarity,
    /// offset; [`adapt_train::batches::MixedSampler::with_source_colour_jitter`]).
    #[serde(default)]
    pub source_colour_jitter: bool,
    /// Every image of both domains standardised on its own (per channel mean 0, std 1) instead
    /// of the training sets' mean subtracted.
    #[serde(default)]
    pub standardize_inputs: bool,
    /// Weight of virtual adversarial training on the target's inputs (DANN runs; 0: off).
    #[serde(default)]
    pub target_vat_weight: f64,
    /// Per-image L2 radius of that perturbation.
    #[serde(default = "default_vat_radius")]
    pub vat_radius: f64,
    /// Weight of self-training on the weight average's confident target predictions (DANN
    /// runs; 0: off; [`adapt_train::TrainConfig::target_pseudo_label_weight`]).
    #[serde(default)]
    pub target_pseudo_label_weight: f64,
    /// The teacher's top probability a target image needs to get a pseudo-label.
    #[serde(default = "default_pseudo_label_threshold")]
    pub pseudo_label_threshold: f64,
}

fn default_pseudo_label_threshold() -> f64 {
    adapt_train::dann::DEFAULT_PSEUDO_LABEL_THRESHOLD
}

fn default_vat_radius() -> f64 {
    adapt_train::losses::VatSettings::default().radius
}

impl DigitRecipe {
    /// `preset` on `source -> target`: 8600 steps of 32 + 32 (the paper's step count at batch
    /// 64), momentum 0.9, lr 0.01 annealed, the lambda schedule, the last step reported; the
    /// recommended preset takes [`RECOMMENDED_STEPS`] batches of 64 + 64 with the extras of
    /// [`Preset::Recommended`].
    pub fn new(source: DatasetId, target: DatasetId, methods: Vec<Method>, preset: Preset, seed: u64) -> Self {
        let recommended = preset == Preset::Recommended;
        let mut recipe = Self {
            source: source.name().into(),
            target: target.name().into(),
            methods,
            preset,
            model: preset.model(DigitNet::for_pair(source, target)),
            steps: if recommended { RECOMMENDED_STEPS } else { 8600 },
            batch_size: if recommended { 64 } else { 32 },
            lr: 0.01,
            seed,
            select: Selection::Last,
            binarize_mnist: preset.binarize_mnist(source, target),
            usps_digit_box: recommended.then_some(RECOMMENDED_USPS_BOX),
            target_im_weight: if recommended { RECOMMENDED_IM_WEIGHT } else { 0.0 },
            separate_domain_passes: false,
            source_only_preset_net: false,
            weight_average_decay: if recommended { RECOMMENDED_WEIGHT_AVERAGE_DECAY } else { 0.0 },
            input_shift: if recommended { RECOMMENDED_INPUT_SHIFT } else { 0 },
            standardize_inputs: false,
            source_colour_jitter: preset.colour_jitter(source, target),
            target_vat_weight: 0.0,
            vat_radius: default_vat_radius(),
            target_pseudo_label_weight: preset.target_pseudo_label_weight(source, target),
            pseudo_label_threshold: default_pseudo_label_threshold(),
        };
        let bn_per_domain = preset.bn_per_domain(source, target);
        recipe.apply_bn_per_domain(source, target, bn_per_domain);
        recipe.source_only_preset_net = bn_per_domain;
        recipe
    }

    pub fn validate(&self) -> Result<()> {
        check_dann(&self.methods, self.steps, self.batch_size, self.lr)?;
        ensure(self.target_im_weight.is_finite() && self.target_im_weight >= 0.0, || {
            format!("the target information-maximisation weight must be finite and >= 0, got {}", self.target_im_weight)
        })?;
        let d = self.weight_average_decay;
        ensure(d == 0.0 || (d > 0.0 && d < 1.0), || {
            format!("the weight-average decay must be 0 (off) or between 0 and 1, got {d}")
        })?;
        ensure(self.target_vat_weight.is_finite() && self.target_vat_weight >= 0.0, || {
            format!("the target virtual adversarial weight must be finite and >= 0, got {}", self.target_vat_weight)
        })?;
        ensure(self.vat_radius.is_finite() && self.vat_radius > 0.0, || {
            format!("the virtual adversarial radius must be a positive number, got {}", self.vat_radius)
        })?;
        ensure(self.target_pseudo_label_weight.is_finite() && self.target_pseudo_label_weight >= 0.0, || {
            format!("the target pseudo-label weight must be finite and >= 0, got {}", self.target_pseudo_label_weight)
        })?;
        ensure(self.target_pseudo_label_weight == 0.0 || self.weight_average_decay > 0.0, || {
            "target pseudo-labels come from the weight average: --target-pseudo-label needs --weight-average above 0"
                .to_string()
        })?;
        let t = self.pseudo_label_threshold;
        ensure(t.is_finite() && t > 0.0 && t <= 1.0, || {
            format!("the pseudo-label threshold must be in (0, 1], got {t}")
        })?;
        let (source, target) = self.pair()?;
        let side = DigitNet::for_pair(source, target).image_size();
        ensure(self.input_shift < side, || {
            format!("a shift of {} pixels does not fit the net's {side}x{side} input", self.input_shift)
        })
    }

    /// Per-domain BatchNorm on (a BatchNorm net, source and target in separate passes) or off
    /// (the preset's net, one pass for both domains), whatever the preset chose for the pair.
    pub fn set_bn_per_domain(&mut self, on: bool) -> Result<()> {
        let (source, target) = self.pair()?;
        self.apply_bn_per_domain(source, target, on);
        self.source_only_preset_net = false;
        Ok(())
    }

    /// The net and whether domains pass separately, for a run of `method`.
    pub fn net_for(&self, method: Method) -> Result<(DigitNetConfig, bool)> {
        if method == Method::SourceOnly && self.source_only_preset_net {
            let (source, target) = self.pair()?;
            let batch_norm = self.preset.model(DigitNet::for_pair(source, target)).batch_norm;
            return Ok((DigitNetConfig { batch_norm, ..self.model.clone() }, false));
        }
        Ok((self.model.clone(), self.separate_domain_passes))
    }

    fn apply_bn_per_domain(&mut self, source: DatasetId, target: DatasetId, on: bool) {
        self.model.batch_norm = on || self.preset.model(DigitNet::for_pair(source, target)).batch_norm;
        self.separate_domain_passes = on;
    }

    /// The pair, checked: two different known digit datasets.
    pub fn pair(&self) -> Result<(DatasetId, DatasetId)> {
        parse_pair(&self.source, &self.target)
    }
}

/// How a GTA run's images become inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GtaPreset {
    /// `(p - 0.5) / 0.5` for both domains (inputs in `[-1, 1]`, the range D and G use): adapt's
    /// GTA since its MNIST -> MNIST-M runs.
    #[default]
    Unit,
    /// The authors' `main.py`: `(p - 0.44) / 0.19` for both domains; D and G still see `[-1, 1]`.
    Authors,
}

impl GtaPreset {
    pub fn as_str(self) -> &'static str {
        match self {
            GtaPreset::Unit => "unit",
            GtaPreset::Authors => "authors",
        }
    }

    /// The per-channel `(mean, std)` the inputs are normalised with.
    pub fn normalization(self) -> (f32, f32) {
        match self {
            GtaPreset::Unit => (adapt_datasets::pair::GTA_MEAN, adapt_datasets::pair::GTA_STD),
            GtaPreset::Authors => (GTA_AUTHORS_MEAN, GTA_AUTHORS_STD),
        }
    }
}

/// The authors' normalisation mean (`main.py`: `Normalize(mean=[0.44]*3, std=[0.19]*3)`).
pub const GTA_AUTHORS_MEAN: f32 = 0.44;
/// See [`GTA_AUTHORS_MEAN`].
pub const GTA_AUTHORS_STD: f32 = 0.19;

/// Generate To Adapt (or its ablation rows) on a digit pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GtaRecipe {
    pub source: String,
    pub target: String,
    pub variant: GtaVariant,
    /// Iterations (with `epochs`: derived from it once the data is loaded, see
    /// [`GtaRecipe::resolve_length`]).
    pub steps: usize,
    /// Images per domain in each iteration (the authors: 100).
    pub batch_size: usize,
    pub seed: u64,
    /// Input normalisation (absent in recipes written before it existed: [`GtaPreset::Unit`]).
    #[serde(default)]
    pub preset: GtaPreset,
    /// Length in epochs of the source training set: `steps = epochs * ceil(n / batch_size)` for
    /// the `n` source training images (the authors' unit; their loader iterates the source).
    #[serde(default)]
    pub epochs: Option<usize>,
    /// USPS resized into a box of this side and zero-padded to 32x32 (None: resized to 32x32).
    #[serde(default)]
    pub usps_digit_box: Option<usize>,
    /// Training images moved by up to this many pixels each way (ours; the authors: 0).
    #[serde(default)]
    pub input_shift: usize,
}

/// Default GTA length: the ablation's runs must fit a CPU session; the authors train for 100 epochs.
pub const GTA_DEFAULT_STEPS: usize = 2000;

impl GtaRecipe {
    pub fn new(source: DatasetId, target: DatasetId, variant: GtaVariant, seed: u64) -> Self {
        Self {
            source: source.name().into(),
            target: target.name().into(),
            variant,
            steps: GTA_DEFAULT_STEPS,
            batch_size: 100,
            seed,
            preset: GtaPreset::Unit,
            epochs: None,
            usps_digit_box: None,
            input_shift: 0,
        }
    }

    /// The authors' recipe on `source -> target`: their normalisation, `epochs` epochs.
    pub fn authors(source: DatasetId, target: DatasetId, variant: GtaVariant, seed: u64, epochs: usize) -> Self {
        Self { preset: GtaPreset::Authors, epochs: Some(epochs), ..Self::new(source, target, variant, seed) }
    }

    pub fn pair(&self) -> Result<(DatasetId, DatasetId)> {
        parse_pair(&self.source, &self.target)
    }

    /// Iterations in one epoch of `source_images` source training images.
    pub fn iterations_per_epoch(&self, source_images: usize) -> usize {
        source_images.div_ceil(self.batch_size.max(1))
    }

    /// Sets `steps` from `epochs` (when given) for `source_images` source training images.
    pub fn resolve_length(&mut self, source_images: usize) -> Result<()> {
        if let Some(e) = self.epochs {
            ensure(source_images > 0, || "the source has no training images: an epoch has no length".into())?;
            self.steps = e * self.iterations_per_epoch(source_images);
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<()> {
        ensure(self.steps >= 1, || format!("steps must be at least 1, got {}", self.steps))?;
        ensure(self.batch_size >= 1, || format!("the batch size must be at least 1, got {}", self.batch_size))?;
        ensure(self.epochs != Some(0), || "epochs must be at least 1, got 0".into())?;
        if let Some(b) = self.usps_digit_box {
            ensure((1..=32).contains(&b), || format!("a USPS digit box of {b} does not fit the 32x32 input"))?;
        }
        ensure(self.input_shift < 32, || {
            format!("a shift of {} pixels does not fit the 32x32 input", self.input_shift)
        })?;
        self.pair().map(|_| ())
    }
}

/// Two different known digit datasets.
pub fn parse_pair(source: &str, target: &str) -> Result<(DatasetId, DatasetId)> {
    let s = DatasetId::parse(source)?;
    let t = DatasetId::parse(target)?;
    ensure(s != t, || format!("source and target are both '{}': adaptation needs two domains", s.name()))?;
    Ok((s, t))
}

/// What a run folder's `recipe.json` holds: the recipe, the data folder it was trained on
/// (evaluation reads the same data unless told otherwise) and its checkpoint interval (a resumed
/// run keeps it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub recipe: Recipe,
    pub data_dir: Option<PathBuf>,
    pub checkpoint_every: usize,
}

impl RunRecord {
    pub fn new(recipe: Recipe, opts: &RunOptions) -> Self {
        Self { recipe, data_dir: opts.data_dir.clone(), checkpoint_every: opts.checkpoint_every }
    }

    /// The record of the run folder `dir` (its `recipe.json`), its recipe valid; `Ok(None)` when
    /// the folder has none.
    pub fn read(dir: &std::path::Path) -> Result<Option<Self>> {
        let path = dir.join(crate::files::RECIPE_FILE);
        let Some(record) = crate::files::read_json::<Self>(&path)? else { return Ok(None) };
        record.recipe.validate().map_err(|e| crate::ExperimentError::file(&path, e))?;
        Ok(Some(record))
    }
}

impl Recipe {
    /// Checks that need no data (see each recipe's `validate`).
    pub fn validate(&self) -> Result<()> {
        match self {
            Recipe::Toy(r) => r.validate(),
            Recipe::Digits(r) => r.validate(),
            Recipe::Gta(r) => r.validate(),
        }
    }
}

/// How a run is carried out: none of it changes what is learned.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Run folder (default `runs/<timestamp>-<method>-<source>-<target>`).
    pub out: Option<PathBuf>,
    /// Folder with one sub-folder per dataset (else the Hugging Face cache).
    pub data_dir: Option<PathBuf>,
    /// No progress bar.
    pub quiet: bool,
    /// Continue from the folder's checkpoints instead of starting afresh.
    pub resume: bool,
    /// Steps between checkpoints (0: a tenth of the run).
    pub checkpoint_every: usize,
    /// Stop right after the checkpoint at this step, as an interrupted run would.
    pub stop_after: Option<usize>,
}

impl RunOptions {
    /// Steps between checkpoints: `checkpoint_every`, or a tenth of the run when it is 0, rounded
    /// up to a multiple of `log_every` (so a resumed run writes the same metrics records).
    pub fn checkpoint_interval(&self, steps: usize, log_every: usize) -> usize {
        let every = if self.checkpoint_every == 0 { (steps / 10).max(log_every) } else { self.checkpoint_every };
        every.div_ceil(log_every) * log_every
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gta_epochs_set_the_length_from_the_source_size() {
        let mut r = GtaRecipe::authors(DatasetId::Usps, DatasetId::Mnist, GtaVariant::Full, 0, 10);
        assert_eq!((r.preset, r.epochs, r.batch_size), (GtaPreset::Authors, Some(10), 100));
        // 6684 USPS training images in batches of 100: 67 iterations an epoch, the last one short.
        r.resolve_length(6684).unwrap();
        assert_eq!(r.steps, 670);
        r.batch_size = 64;
        r.resolve_length(128).unwrap();
        assert_eq!(r.steps, 20);
        assert!(r.resolve_length(0).is_err());
        // Without epochs the steps stay as given.
        let mut plain = GtaRecipe::new(DatasetId::Usps, DatasetId::Mnist, GtaVariant::Full, 0);
        plain.resolve_length(6684).unwrap();
        assert_eq!(plain.steps, GTA_DEFAULT_STEPS);
    }

    #[test]
    fn gta_recipes_validate_and_old_ones_keep_their_meaning() {
        let ok = GtaRecipe::authors(DatasetId::Usps, DatasetId::Mnist, GtaVariant::Full, 0, 10);
        ok.validate().unwrap();
        for bad in [
            GtaRecipe { epochs: Some(0), ..ok.clone() },
            GtaRecipe { usps_digit_box: Some(33), ..ok.clone() },
            GtaRecipe { usps_digit_box: Some(0), ..ok.clone() },
            GtaRecipe { input_shift: 32, ..ok.clone() },
            GtaRecipe { target: "usps".into(), ..ok.clone() },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        // A recipe.json written before the presets: (p - 0.5) / 0.5, steps as written.
        let old: Recipe = serde_json::from_str(
            r#"{"kind":"gta","source":"mnist","target":"mnist-m","variant":"full","steps":12,"batch_size":16,"seed":0}"#,
        )
        .unwrap();
        let Recipe::Gta(old) = old else { panic!("not a GTA recipe") };
        assert_eq!((old.preset, old.epochs, old.usps_digit_box, old.steps), (GtaPreset::Unit, None, None, 12));
        assert_eq!(old.input_shift, 0, "recipes from before the shift trained on unmoved images");
        GtaRecipe { input_shift: 2, ..ok.clone() }.validate().unwrap();
        assert_eq!(GtaPreset::Unit.normalization(), (0.5, 0.5));
        assert_eq!(GtaPreset::Authors.normalization(), (0.44, 0.19));
        let json = serde_json::to_string(&Recipe::Gta(ok)).unwrap();
        assert!(json.contains(r#""preset":"authors""#) && json.contains(r#""epochs":10"#), "{json}");
    }
}
