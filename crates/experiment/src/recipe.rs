//! Typed recipes: what to train (method, data, nets, schedule), independent of any command
//! line. A recipe is saved in its run folder (`recipe.json`) so an interrupted run can be
//! continued with [`crate::resume`].
use crate::error::{ExperimentError, Result, ensure};
use crate::summary::Selection;
use adapt_datasets::pair::{DomainShaping, Fit, PairProfile, digit_box_for, paper_binarizes};
use adapt_datasets::{DataRef, DomainProfile, PairSpec};
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
    /// The DANN paper's recipe as the TensorFlow 1 reproduction in pumpikano/tf-dann runs it: no BatchNorm, Glorot init, binarised MNIST,
    /// the pixel mean of both training sets subtracted, the paper's unpadded MNIST net.
    #[default]
    Paper,
    /// BatchNorm after every convolution and hidden fully connected layer, PyTorch init, MNIST
    /// not binarised.
    Bn,
    /// adapt's own recipe (docs/recipe.md): the paper's net and schedules, batches of 64 per
    /// domain, information maximisation on the target's predictions beside the domain loss,
    /// random translations of up to 2 pixels of every training image, a moving average of the
    /// weights as the evaluated model, and the switches [`Preset::recommended_switches`] decides
    /// from the two domains' images (digit box, binarisation, colour jitter, self-training,
    /// per-domain BatchNorm).
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

    /// The recommended recipe's switches for a pair, each decided from the two domains'
    /// label-free profiles (never from a dataset's name), with the statistic behind it:
    ///
    /// * per-domain BatchNorm when either domain is in colour: colour against grey strokes is
    ///   the shift a joint BatchNorm lets the domain classifier exploit;
    /// * random recolouring of the source when a grey source meets a colour target;
    /// * self-training on the weight average's confident target predictions when a colour source
    ///   meets a grey target: the target's appearance lies inside the source's, so source-only's
    ///   confident predictions there are nearly all right;
    /// * a grey domain binarised when the other is in colour (the DANN paper's MNIST-M blends
    ///   binarised strokes into photos);
    /// * a grey domain whose digits fill their frame drawn into a box of the other grey domain's
    ///   digit side ([`digit_box_for`]).
    ///
    /// The measurements behind each rule are in docs/results/recipe.md.
    pub fn recommended_switches(profile: &PairProfile, size: usize) -> RecommendedSwitches {
        let (s, t) = (&profile.source, &profile.target);
        let colour = |p: &DomainProfile| {
            format!("{} (channel spread {:.3})", if p.colour() { "colour" } else { "grey" }, p.colour_spread)
        };
        let (sc, tc) = (colour(s), colour(t));
        let on_off = |b: bool| if b { "on" } else { "off" }.to_string();
        let bn = s.colour() || t.colour();
        let jitter = !s.colour() && t.colour();
        let pseudo = s.colour() && !t.colour();
        let binarize = [paper_binarizes(s) && t.colour(), paper_binarizes(t) && s.colour()];
        let boxes = [digit_box_for(s, t, size), digit_box_for(t, s, size)];
        let decisions = vec![
            Decision::new("bn_per_domain", on_off(bn), format!("source {sc}, target {tc}: on when either is colour")),
            Decision::new(
                "colour_jitter",
                on_off(jitter),
                format!("source {sc}, target {tc}: on for a grey source and a colour target"),
            ),
            Decision::new(
                "target_pseudo_label",
                if pseudo { format!("{RECOMMENDED_PSEUDO_LABEL_WEIGHT}") } else { "0".into() },
                format!("source {sc}, target {tc}: on for a colour source and a grey target"),
            ),
            Decision::new(
                "binarize",
                format!("source {}, target {}", on_off(binarize[0]), on_off(binarize[1])),
                "a grey domain with its digits inside a margin of a plain ground, beside a colour one, is binarised"
                    .to_string(),
            ),
            digit_box_decision("source_digit_box", s, t, boxes[0]),
            digit_box_decision("target_digit_box", t, s, boxes[1]),
        ];
        RecommendedSwitches {
            bn_per_domain: bn,
            colour_jitter: jitter,
            target_pseudo_label_weight: if pseudo { RECOMMENDED_PSEUDO_LABEL_WEIGHT } else { 0.0 },
            binarize,
            digit_boxes: boxes,
            decisions,
        }
    }
}

/// What [`Preset::recommended_switches`] decided for a pair.
#[derive(Debug, Clone, PartialEq)]
pub struct RecommendedSwitches {
    pub bn_per_domain: bool,
    pub colour_jitter: bool,
    pub target_pseudo_label_weight: f64,
    /// Source, target.
    pub binarize: [bool; 2],
    /// Source, target.
    pub digit_boxes: [Option<usize>; 2],
    pub decisions: Vec<Decision>,
}

/// One setting a recipe decided from the data, and the statistic behind it; written in
/// `recipe.json`, printed, and listed in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The setting (`net`, `colour_jitter`, ...).
    pub setting: String,
    /// Its value, in words.
    pub value: String,
    /// The statistic behind it.
    pub because: String,
}

impl Decision {
    pub fn new(setting: &str, value: String, because: String) -> Self {
        Self { setting: setting.into(), value, because }
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.setting, self.value, self.because)
    }
}

/// A domain's frame and mean ink box, for the decisions' reasons.
fn frame(p: &DomainProfile) -> String {
    let [c, h, w] = p.shape;
    let ink = p.ink_box.map_or("no ink".to_string(), |b| {
        format!("mean ink box {:.1}x{:.1} at ({:.1}, {:.1})", b.height, b.width, b.top, b.left)
    });
    format!("{c}x{h}x{w}, {ink}")
}

/// The DANN nets' choice ([`DigitNet::for_profiles`]) and why.
pub fn net_decision(profile: &PairProfile) -> Decision {
    let net = profile.net();
    let size = net.image_size();
    Decision::new(
        "net",
        format!("{} ({size}x{size})", net.as_str()),
        format!(
            "source {}, target {}: the 28-pixel net when both fit 28x28, or crop to it keeping their ink box \
             within {:.0} % of its height",
            frame(&profile.source),
            frame(&profile.target),
            100.0 * adapt_datasets::pair::SMALL_NET_INK_HEIGHT
        ),
    )
}

/// How each domain's frame reaches `spec`'s input ([`Fit::for_profile`]) and why.
pub fn fit_decisions(profile: &PairProfile, spec: &PairSpec) -> Vec<Decision> {
    let size = spec.image_size;
    let fit = |f: Fit| match f {
        Fit::Resize => "resize",
        Fit::Crop => "centre crop",
        Fit::Pad => "zero pad",
    };
    vec![
        Decision::new(
            "source_fit",
            fit(spec.source_input.fit).into(),
            format!(
                "{} to {size}: pad or crop within {} px (a crop only keeping the ink box), else resize",
                frame(&profile.source),
                adapt_datasets::pair::MAX_FIT_MARGIN
            ),
        ),
        Decision::new(
            "target_fit",
            fit(spec.target_input.fit).into(),
            format!("{} to {size}: as for the source", frame(&profile.target)),
        ),
    ]
}

/// The digit box [`digit_box_for`] gave domain `p` beside `o` (`box_side`), and why.
fn digit_box_decision(setting: &str, p: &DomainProfile, o: &DomainProfile, box_side: Option<usize>) -> Decision {
    let ground = |d: &DomainProfile| match d.digit_fraction() {
        Some(f) => format!("digit side {:.0} px ({f:.2} of its frame)", d.digit_side.unwrap_or_default()),
        None => "a colour or textured ground".to_string(),
    };
    let ink = |d: &DomainProfile| d.ink_box.map_or("no ink".into(), |i| format!("ink box {:.1} px high", i.height));
    Decision::new(
        setting,
        box_side.map_or("none".into(), |b| b.to_string()),
        format!(
            "{}, {} against {}, {}{}",
            ground(p),
            ink(p),
            ground(o),
            ink(o),
            box_side
                .map_or(String::new(), |b| format!(": drawn into a {b}x{b} box, the other's ink height at the input"))
        ),
    )
}

/// The recommended recipe's weight of information maximisation on the target predictions.
pub const RECOMMENDED_IM_WEIGHT: f64 = 1.0;
/// The recommended recipe's weight of target pseudo-labels, where it uses them
/// ([`Preset::recommended_switches`]).
pub const RECOMMENDED_PSEUDO_LABEL_WEIGHT: f64 = 1.0;
/// The recommended recipe's length: 3000 steps of 64 + 64 (about 29 epochs of USPS, 3.5 of MNIST),
/// which keeps a run within minutes on two CPU cores.
pub const RECOMMENDED_STEPS: usize = 3000;
/// The recommended recipe's weight average: the last ~500 steps, as VADA / DIRT-T average theirs.
pub const RECOMMENDED_WEIGHT_AVERAGE_DECAY: f64 = 0.998;
/// The recommended recipe's augmentation: training images of both domains moved by up to 2 pixels
/// each way (self-ensembling's translation range for digits).
pub const RECOMMENDED_INPUT_SHIFT: usize = 2;

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
    /// The net, decided from the images ([`DigitNet::for_profiles`]).
    #[serde(default)]
    pub net: DigitNet,
    /// How the source's images reach the net (binarisation, digit box, fit).
    #[serde(default)]
    pub source_input: DomainShaping,
    /// How the target's images reach the net.
    #[serde(default)]
    pub target_input: DomainShaping,
    /// What the recipe decided from the data, and why (for the report; changes nothing).
    #[serde(default)]
    pub decisions: Vec<Decision>,
    /// Weight of information maximisation on the target's predictions (DANN runs; 0: the paper's
    /// objective).
    pub target_im_weight: f64,
    /// Source and target in separate passes, BatchNorm running statistics from the target only
    /// (with a BatchNorm net; [`adapt_train::TrainConfig::separate_domain_passes`]).
    #[serde(default)]
    pub separate_domain_passes: bool,
    /// Source-only trains the preset's own net (no per-domain BatchNorm, one joint pass) while
    /// the adapted run uses per-domain BatchNorm: set where the preset chose it for the pair
    /// ([`Preset::recommended_switches`]), off once `set_bn_per_domain` asks for one net for both.
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
    /// `preset` on `source -> target` whose training images `profile` measured: 8600 steps of
    /// 32 + 32 (the paper's step count at batch 64), momentum 0.9, lr 0.01 annealed, the lambda
    /// schedule, the last step reported; the recommended preset takes [`RECOMMENDED_STEPS`] batches
    /// of 64 + 64 with the extras of [`Preset::Recommended`], its switches decided by
    /// [`Preset::recommended_switches`].
    pub fn new(
        source: &DataRef,
        target: &DataRef,
        profile: &PairProfile,
        methods: Vec<Method>,
        preset: Preset,
        seed: u64,
    ) -> Self {
        let recommended = preset == Preset::Recommended;
        let net = profile.net();
        let spec = match preset {
            Preset::Bn => PairSpec::dann_bn(source, target, profile),
            Preset::Paper | Preset::Recommended => PairSpec::dann_paper(source, target, profile),
        };
        let mut decisions = vec![net_decision(profile)];
        decisions.extend(fit_decisions(profile, &spec));
        let (mut source_input, mut target_input) = (spec.source_input, spec.target_input);
        let switches = recommended.then(|| Preset::recommended_switches(profile, net.image_size()));
        if let Some(sw) = &switches {
            source_input.binarize = sw.binarize[0];
            target_input.binarize = sw.binarize[1];
            source_input.digit_box = sw.digit_boxes[0];
            target_input.digit_box = sw.digit_boxes[1];
            decisions.extend(sw.decisions.iter().cloned());
        } else {
            let b = |on: bool| if on { "on" } else { "off" };
            decisions.push(Decision::new(
                "binarize",
                format!("source {}, target {}", b(source_input.binarize), b(target_input.binarize)),
                if preset == Preset::Paper {
                    "the paper's preset binarises grey digits drawn inside a margin of a plain ground, as its \
                     reference code binarised MNIST"
                        .into()
                } else {
                    "the BatchNorm preset binarises nothing".into()
                },
            ));
        }
        let mut recipe = Self {
            source: source.as_string(),
            target: target.as_string(),
            methods,
            preset,
            model: preset.model(net),
            steps: if recommended { RECOMMENDED_STEPS } else { 8600 },
            batch_size: if recommended { 64 } else { 32 },
            lr: 0.01,
            seed,
            select: Selection::Last,
            net,
            source_input,
            target_input,
            decisions,
            target_im_weight: if recommended { RECOMMENDED_IM_WEIGHT } else { 0.0 },
            separate_domain_passes: false,
            source_only_preset_net: false,
            weight_average_decay: if recommended { RECOMMENDED_WEIGHT_AVERAGE_DECAY } else { 0.0 },
            input_shift: if recommended { RECOMMENDED_INPUT_SHIFT } else { 0 },
            standardize_inputs: false,
            source_colour_jitter: switches.as_ref().is_some_and(|s| s.colour_jitter),
            target_vat_weight: 0.0,
            vat_radius: default_vat_radius(),
            target_pseudo_label_weight: switches.as_ref().map_or(0.0, |s| s.target_pseudo_label_weight),
            pseudo_label_threshold: default_pseudo_label_threshold(),
        };
        let bn_per_domain = switches.as_ref().is_some_and(|s| s.bn_per_domain);
        recipe.apply_bn_per_domain(bn_per_domain);
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
        self.pair()?;
        let side = self.net.image_size();
        ensure(self.input_shift < side, || {
            format!("a shift of {} pixels does not fit the net's {side}x{side} input", self.input_shift)
        })
    }

    /// Per-domain BatchNorm on (a BatchNorm net, source and target in separate passes) or off
    /// (the preset's net, one pass for both domains), whatever the preset chose for the pair.
    pub fn set_bn_per_domain(&mut self, on: bool) -> Result<()> {
        self.apply_bn_per_domain(on);
        self.source_only_preset_net = false;
        Ok(())
    }

    /// The net and whether domains pass separately, for a run of `method`.
    pub fn net_for(&self, method: Method) -> Result<(DigitNetConfig, bool)> {
        if method == Method::SourceOnly && self.source_only_preset_net {
            let batch_norm = self.preset.model(self.net).batch_norm;
            return Ok((DigitNetConfig { batch_norm, ..self.model.clone() }, false));
        }
        Ok((self.model.clone(), self.separate_domain_passes))
    }

    fn apply_bn_per_domain(&mut self, on: bool) {
        self.model.batch_norm = on || self.preset.model(self.net).batch_norm;
        self.separate_domain_passes = on;
    }

    /// The pair, checked: two different data sources.
    pub fn pair(&self) -> Result<(DataRef, DataRef)> {
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
    /// Training images moved by up to this many pixels each way (ours; the authors: 0).
    #[serde(default)]
    pub input_shift: usize,
    /// How the source's images reach the 32x32 input (fit, digit box), decided from the data.
    #[serde(default)]
    pub source_input: DomainShaping,
    /// How the target's images reach it.
    #[serde(default)]
    pub target_input: DomainShaping,
    /// What the recipe decided from the data, and why.
    #[serde(default)]
    pub decisions: Vec<Decision>,
}

/// Default GTA length: the ablation's runs must fit a CPU session; the authors train for 100 epochs.
pub const GTA_DEFAULT_STEPS: usize = 2000;

/// The default GTA shift: training images moved by up to 2 pixels (with the digit box, it took
/// full GTA on USPS -> MNIST from 82 % to 93.7 %; docs/results/gta.md).
pub const GTA_DEFAULT_SHIFT: usize = 2;

impl GtaRecipe {
    /// The recipe that measured best on `source -> target` whose images `profile` measured: the
    /// authors' normalisation, training images moved by up to [`GTA_DEFAULT_SHIFT`] pixels, each
    /// frame fitted to 32x32 ([`Fit::for_profile`]) and a frame-filling grey domain drawn at the
    /// other's digit scale ([`digit_box_for`]).
    pub fn new(source: &DataRef, target: &DataRef, profile: &PairProfile, variant: GtaVariant, seed: u64) -> Self {
        let spec = PairSpec::gta(source, target, profile);
        let mut decisions = fit_decisions(profile, &spec);
        let (mut source_input, mut target_input) = (spec.source_input, spec.target_input);
        source_input.digit_box = digit_box_for(&profile.source, &profile.target, 32);
        target_input.digit_box = digit_box_for(&profile.target, &profile.source, 32);
        decisions.push(digit_box_decision(
            "source_digit_box",
            &profile.source,
            &profile.target,
            source_input.digit_box,
        ));
        decisions.push(digit_box_decision(
            "target_digit_box",
            &profile.target,
            &profile.source,
            target_input.digit_box,
        ));
        Self {
            source: source.as_string(),
            target: target.as_string(),
            variant,
            steps: GTA_DEFAULT_STEPS,
            batch_size: 100,
            seed,
            preset: GtaPreset::Authors,
            epochs: None,
            input_shift: GTA_DEFAULT_SHIFT,
            source_input,
            target_input,
            decisions,
        }
    }

    /// [`GtaRecipe::new`] at `epochs` epochs.
    pub fn authors(
        source: &DataRef,
        target: &DataRef,
        profile: &PairProfile,
        variant: GtaVariant,
        seed: u64,
        epochs: usize,
    ) -> Self {
        Self { epochs: Some(epochs), ..Self::new(source, target, profile, variant, seed) }
    }

    /// The digit box of whichever domain's digits fill their frame set to `side` (`--digit-box`),
    /// an error when neither does; `None` removes both boxes.
    pub fn set_digit_box(&mut self, side: Option<usize>, profile: &PairProfile) -> Result<()> {
        match side {
            None => (self.source_input.digit_box, self.target_input.digit_box) = (None, None),
            Some(b) => {
                let (s, t) = (profile.source.fills_frame(), profile.target.fills_frame());
                ensure(s || t, || {
                    format!(
                        "a digit box needs a domain whose digits fill their frame; neither does (source: {}; \
                         target: {})",
                        profile.source.describe(),
                        profile.target.describe()
                    )
                })?;
                if s {
                    self.source_input.digit_box = Some(b);
                }
                if t {
                    self.target_input.digit_box = Some(b);
                }
            }
        }
        Ok(())
    }

    pub fn pair(&self) -> Result<(DataRef, DataRef)> {
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
        for b in [self.source_input.digit_box, self.target_input.digit_box].into_iter().flatten() {
            ensure((1..=32).contains(&b), || format!("a digit box of {b} does not fit the 32x32 input"))?;
        }
        ensure(self.input_shift < 32, || {
            format!("a shift of {} pixels does not fit the 32x32 input", self.input_shift)
        })?;
        self.pair().map(|_| ())
    }
}

/// Two different data sources: built-in dataset names or paths ([`DataRef::parse`]).
pub fn parse_pair(source: &str, target: &str) -> Result<(DataRef, DataRef)> {
    let (s, t) = (DataRef::parse(source), DataRef::parse(target));
    ensure(s != t, || format!("source and target are both '{s}': adaptation needs two domains"))?;
    Ok((s, t))
}

/// A `SOURCE:TARGET` item of `--pairs`, each a built-in dataset's name or a path (split at the
/// last `:`, so a path may hold colons).
pub fn parse_pair_item(text: &str) -> Result<(DataRef, DataRef)> {
    let Some((source, target)) = text.rsplit_once(':') else {
        return Err(ExperimentError::Invalid(format!(
            "--pairs takes SOURCE:TARGET items (e.g. mnist:usps), got '{text}'"
        )));
    };
    Ok((DataRef::parse(source.trim()), DataRef::parse(target.trim())))
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
    /// The settings decided from the data, with their reasons (none for the toy).
    pub fn decisions(&self) -> &[Decision] {
        match self {
            Recipe::Digits(r) => &r.decisions,
            Recipe::Gta(r) => &r.decisions,
            Recipe::Toy(_) => &[],
        }
    }

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
pub(crate) mod tests {
    use super::*;
    use adapt_datasets::stats::InkBox;

    /// Profiles as measured on the shared copies (docs/results/recipe.md), rounded.
    pub(crate) fn profile(kind: &str) -> DomainProfile {
        let (shape, spread, share, side, ink) = match kind {
            "mnist" => ([1, 28, 28], 0.0, 0.82, Some(20.0), (6.1, 8.1, 17.1, 12.5)),
            "usps" => ([1, 16, 16], 0.0, 0.62, Some(16.0), (1.1, 3.6, 13.9, 8.8)),
            "mnist-m" => ([3, 32, 32], 0.171, 0.41, None, (7.4, 8.3, 18.2, 16.1)),
            other => panic!("no profile for {other}"),
        };
        let (top, left, height, width) = ink;
        DomainProfile {
            name: kind.into(),
            shape,
            images: 2000,
            colour_spread: spread,
            ground_share: share,
            ground_level: 0.0,
            digit_side: side,
            ink_box: Some(InkBox { top, left, height, width }),
        }
    }

    pub(crate) fn pair_profile(s: &str, t: &str) -> (DataRef, DataRef, PairProfile) {
        (DataRef::parse(s), DataRef::parse(t), PairProfile { source: profile(s), target: profile(t) })
    }

    #[test]
    fn the_recommended_switches_follow_the_data() {
        let recipe = |s: &str, t: &str| {
            let (s, t, p) = pair_profile(s, t);
            DigitRecipe::new(&s, &t, &p, vec![Method::SourceOnly, Method::Dann], Preset::Recommended, 0)
        };
        let mu = recipe("mnist", "usps");
        assert_eq!((mu.net, mu.target_input.digit_box, mu.source_input.digit_box), (DigitNet::Mnist, Some(20), None));
        assert!(!mu.source_colour_jitter && !mu.separate_domain_passes && mu.target_pseudo_label_weight == 0.0);
        assert!(!mu.source_input.binarize && !mu.target_input.binarize);
        assert_eq!(recipe("usps", "mnist").source_input.digit_box, Some(20));
        let mm = recipe("mnist", "mnist-m");
        assert_eq!((mm.net, mm.target_input.fit), (DigitNet::Mnist, Fit::Crop));
        assert!(mm.source_colour_jitter && mm.separate_domain_passes && mm.source_only_preset_net);
        assert!(mm.source_input.binarize && !mm.target_input.binarize && mm.target_pseudo_label_weight == 0.0);
        let back = recipe("mnist-m", "mnist");
        assert!(!back.source_colour_jitter && back.separate_domain_passes);
        assert_eq!(back.target_pseudo_label_weight, RECOMMENDED_PSEUDO_LABEL_WEIGHT);
        assert!(back.target_input.binarize);
        for d in ["bn_per_domain", "colour_jitter", "target_pseudo_label", "net", "source_fit", "target_digit_box"] {
            assert!(mm.decisions.iter().any(|x| x.setting == d), "{d} missing from {:?}", mm.decisions);
        }
        // The paper's preset: grey digits inside a margin binarised, frame-filling ones not.
        let (s, t, p) = pair_profile("mnist", "usps");
        let paper = DigitRecipe::new(&s, &t, &p, vec![Method::Dann], Preset::Paper, 0);
        assert!(paper.source_input.binarize && !paper.target_input.binarize);
        assert_eq!((paper.target_input.digit_box, paper.target_input.fit), (None, Fit::Resize));
    }

    #[test]
    fn gta_epochs_set_the_length_from_the_source_size() {
        let mut r = {
            let (s, t, p) = pair_profile("usps", "mnist");
            GtaRecipe::authors(&s, &t, &p, GtaVariant::Full, 0, 10)
        };
        assert_eq!((r.preset, r.epochs, r.batch_size), (GtaPreset::Authors, Some(10), 100));
        // 6684 USPS training images in batches of 100: 67 iterations an epoch, the last one short.
        r.resolve_length(6684).unwrap();
        assert_eq!(r.steps, 670);
        r.batch_size = 64;
        r.resolve_length(128).unwrap();
        assert_eq!(r.steps, 20);
        assert!(r.resolve_length(0).is_err());
        // Without epochs the steps stay as given.
        let mut plain = {
            let (s, t, p) = pair_profile("usps", "mnist");
            GtaRecipe::new(&s, &t, &p, GtaVariant::Full, 0)
        };
        plain.resolve_length(6684).unwrap();
        assert_eq!(plain.steps, GTA_DEFAULT_STEPS);
    }

    #[test]
    fn gta_recipes_validate_and_old_ones_keep_their_meaning() {
        let ok = {
            let (s, t, p) = pair_profile("usps", "mnist");
            GtaRecipe::authors(&s, &t, &p, GtaVariant::Full, 0, 10)
        };
        ok.validate().unwrap();
        for bad in [
            GtaRecipe { epochs: Some(0), ..ok.clone() },
            GtaRecipe { source_input: DomainShaping { digit_box: Some(33), ..ok.source_input }, ..ok.clone() },
            GtaRecipe { target_input: DomainShaping { digit_box: Some(0), ..ok.target_input }, ..ok.clone() },
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
        assert_eq!((old.preset, old.epochs, old.source_input.digit_box, old.steps), (GtaPreset::Unit, None, None, 12));
        assert_eq!(old.input_shift, 0, "recipes from before the shift trained on unmoved images");
        GtaRecipe { input_shift: 2, ..ok.clone() }.validate().unwrap();
        assert_eq!(GtaPreset::Unit.normalization(), (0.5, 0.5));
        assert_eq!(GtaPreset::Authors.normalization(), (0.44, 0.19));
        let json = serde_json::to_string(&Recipe::Gta(ok)).unwrap();
        assert!(json.contains(r#""preset":"authors""#) && json.contains(r#""epochs":10"#), "{json}");
    }

    #[test]
    fn a_pairs_item_splits_at_its_last_colon_and_needs_one() {
        let (s, t) = parse_pair_item("/data/c:d: usps").unwrap();
        assert_eq!(s, DataRef::parse("/data/c:d"));
        assert_eq!(t, DataRef::parse("usps"));
        let err = parse_pair_item("mnist-usps").unwrap_err().to_string();
        assert_eq!(err, "--pairs takes SOURCE:TARGET items (e.g. mnist:usps), got 'mnist-usps'");
    }
}
