//! `cargo xtask train`: the command line turned into a recipe; a flag the chosen experiment does
//! not use is an error that names it.
use crate::device::{self, DeviceChoice};
use adapt_datasets::DataRef;
use adapt_datasets::pair::PairProfile;
use adapt_experiment::recipe::{DigitRecipe, GtaRecipe, Preset, Recipe, RunOptions, ToyRecipe};
use adapt_experiment::toy::{TOY_SOURCE, TOY_TARGET};
use adapt_experiment::{Outcome, Selection};
use adapt_models::digits::ConvPadding;
use adapt_models::init::InitScheme;
use adapt_train::{GtaVariant, Method};
use anyhow::{Result, bail};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MethodChoice {
    /// Train on source labels only.
    SourceOnly,
    /// Domain-adversarial training (gradient reversal).
    Dann,
    /// Source-only, then DANN with the same seed, side by side.
    Compare,
    /// Generate To Adapt (Sankaranarayanan et al. 2018), digit pairs only.
    Gta,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PresetChoice {
    /// The DANN paper's recipe as its reference code runs it (no BatchNorm, Glorot init,
    /// binarised MNIST, unpadded MNIST net).
    Paper,
    /// BatchNorm after every convolution and hidden layer, PyTorch init, MNIST not binarised.
    Bn,
    /// adapt's recipe: batches of 64 + 64, USPS in MNIST's digit box, information maximisation
    /// on the target predictions.
    Recommended,
}

impl From<PresetChoice> for Preset {
    fn from(c: PresetChoice) -> Self {
        match c {
            PresetChoice::Paper => Preset::Paper,
            PresetChoice::Bn => Preset::Bn,
            PresetChoice::Recommended => Preset::Recommended,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InitChoice {
    /// PyTorch's default initialisation.
    Pytorch,
    /// Glorot-uniform weights and zero biases (TensorFlow's default, the reference code's).
    Glorot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PaddingChoice {
    /// 2 pixels of zeros, sizes kept (pumpikano/tf-dann's TensorFlow net).
    Same,
    /// No padding (the paper's Caffe nets).
    Valid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SelectChoice {
    /// The weights after the last step (the paper's protocol).
    Last,
    /// The checkpoint with the best accuracy on a held-out source validation split.
    SourceVal,
}

impl From<SelectChoice> for Selection {
    fn from(c: SelectChoice) -> Self {
        match c {
            SelectChoice::Last => Selection::Last,
            SelectChoice::SourceVal => Selection::SourceVal,
        }
    }
}

/// The run's command line. Flags without a value take the recipe's default.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// Method to train (default: source-only and DANN side by side).
    #[arg(long, value_enum)]
    pub method: Option<MethodChoice>,
    /// Labelled source dataset (default moons).
    #[arg(long)]
    pub source: Option<String>,
    /// Unlabelled target dataset (default moons-rotated).
    #[arg(long)]
    pub target: Option<String>,
    /// Folder with one sub-folder per dataset (else ADAPT_DATA_DIR, else the Hugging Face cache).
    #[arg(long, env = "ADAPT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Training steps.
    #[arg(long, conflicts_with = "epochs")]
    pub steps: Option<usize>,
    /// Epochs of the source training set (--method gta), instead of --steps.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// GTA's input normalisation (--method gta; default authors).
    #[arg(long, value_enum)]
    pub gta_preset: Option<crate::ablation::GtaPresetChoice>,
    /// The frame-filling domain resized into a box of this side, zero-padded to 32x32 (--method
    /// gta; default: decided from the data).
    #[arg(long, alias = "digit-box")]
    pub usps_box: Option<usize>,
    /// Examples per domain in each batch.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Base learning rate before annealing (DANN and source-only).
    #[arg(long, allow_hyphen_values = true)]
    pub lr: Option<f64>,
    #[arg(long, allow_hyphen_values = true)]
    pub seed: Option<u64>,
    /// Recipe for digit pairs (default: recommended without --method, paper with one).
    #[arg(long, value_enum)]
    pub preset: Option<PresetChoice>,
    /// Starting weights of the digit nets, instead of the preset's.
    #[arg(long, value_enum)]
    pub init: Option<InitChoice>,
    /// Border handling of the digit nets' 5x5 convolutions, instead of the preset's.
    #[arg(long, value_enum)]
    pub padding: Option<PaddingChoice>,
    /// Weight of information maximisation on the target's predictions (digit DANN runs; default:
    /// the preset's).
    #[arg(long, allow_hyphen_values = true)]
    pub target_im: Option<f64>,
    /// BatchNorm in the digit nets, with source and target in separate passes and the running
    /// statistics from the target only (`--bn-per-domain=false`: off; default: the preset's
    /// choice for the pair, on for the recommended recipe when MNIST-M is source or target).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub bn_per_domain: Option<bool>,
    /// Decay of the moving average of the weights that is evaluated and reported (digit DANN
    /// runs; 0: the last step's weights; default: the preset's).
    #[arg(long, allow_hyphen_values = true)]
    pub weight_average: Option<f64>,
    /// Move each training image (both domains) by up to this many pixels each way, a fresh random
    /// offset per image and step (digit DANN runs: default the preset's; GTA: default 2).
    #[arg(long)]
    pub shift: Option<usize>,
    /// Standardise every image of both domains on its own (per channel mean 0, std 1) instead of
    /// subtracting the training sets' mean (digit DANN runs).
    #[arg(long)]
    pub standardize: bool,
    /// Recolour the source training images at random, channel by channel: contrast, polarity
    /// and offset (digit DANN runs; default: the preset's).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub colour_jitter: Option<bool>,
    /// Weight of virtual adversarial training on the target's inputs (digit DANN runs; VADA's
    /// smoothness term; default: the preset's).
    #[arg(long, allow_hyphen_values = true)]
    pub target_vat: Option<f64>,
    /// Per-image L2 radius of the virtual adversarial perturbation (default 3.5).
    #[arg(long, allow_hyphen_values = true)]
    pub vat_radius: Option<f64>,
    /// Weight of self-training on the weight average's confident target predictions (digit
    /// DANN runs; needs a weight average; default: the preset's).
    #[arg(long, allow_hyphen_values = true)]
    pub target_pseudo_label: Option<f64>,
    /// Top probability of the weight average a target image needs for a pseudo-label (default
    /// 0.95).
    #[arg(long, allow_hyphen_values = true)]
    pub pseudo_label_threshold: Option<f64>,
    /// Which weights to report (digit DANN runs; default last). Target labels are never used to choose.
    #[arg(long, value_enum)]
    pub select: Option<SelectChoice>,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    pub device: DeviceChoice,
    /// Run folder (default runs/<timestamp>-<method>-<source>-<target>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the interrupted run in this folder from its checkpoints, with its saved settings.
    #[arg(long, conflicts_with = "out")]
    pub resume: Option<PathBuf>,
    /// Steps between checkpoints (default: a tenth of the run, rounded to the log interval).
    #[arg(long)]
    pub checkpoint_every: Option<usize>,
    /// Stop right after the checkpoint at this step, as if interrupted (for testing --resume).
    #[arg(long, hide = true)]
    pub stop_after: Option<usize>,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// The experiment family a command line asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Toy,
    Digits,
    Gta,
}

fn canonical_toy(name: &str) -> Option<&'static str> {
    match name.to_ascii_lowercase().replace('_', "-").as_str() {
        "moons" | "toy" => Some(TOY_SOURCE),
        "moons-rotated" | "rotated-moons" => Some(TOY_TARGET),
        _ => None,
    }
}

/// Fails naming every given flag in `flags` (`(name, given)`) that `what` does not use.
fn reject(flags: &[(&str, bool)], what: &str) -> Result<()> {
    let unused: Vec<&str> = flags.iter().filter(|(_, given)| *given).map(|(name, _)| *name).collect();
    if !unused.is_empty() {
        bail!("{} {} not used by {what}", unused.join(", "), if unused.len() == 1 { "is" } else { "are" });
    }
    Ok(())
}

impl TrainArgs {
    fn family(&self) -> Result<Family> {
        let source = self.source.as_deref().unwrap_or(TOY_SOURCE);
        let target = self.target.as_deref().unwrap_or(TOY_TARGET);
        let gta = self.method == Some(MethodChoice::Gta);
        match (canonical_toy(source), canonical_toy(target)) {
            (Some(_), Some(_)) if gta => bail!("Generate To Adapt runs on digit pairs (32x32 RGB), not on the 2D toy"),
            (Some(TOY_SOURCE), Some(TOY_TARGET)) => Ok(Family::Toy),
            (Some(_), Some(_)) => bail!("the toy experiment adapts from '{TOY_SOURCE}' to '{TOY_TARGET}'"),
            _ => Ok(if gta { Family::Gta } else { Family::Digits }),
        }
    }

    fn methods(&self) -> Vec<Method> {
        match self.method.unwrap_or(MethodChoice::Compare) {
            MethodChoice::SourceOnly => vec![Method::SourceOnly],
            MethodChoice::Dann => vec![Method::Dann],
            MethodChoice::Compare | MethodChoice::Gta => vec![Method::SourceOnly, Method::Dann],
        }
    }

    /// Values that are wrong whatever the experiment, checked before any data is read.
    fn check_values(&self) -> Result<()> {
        if let Some(lr) = self.lr
            && !(lr.is_finite() && lr > 0.0)
        {
            bail!("--lr must be a positive finite number, got {lr}");
        }
        if let Some(d) = self.weight_average
            && !(d == 0.0 || (d > 0.0 && d < 1.0))
        {
            bail!("--weight-average must be 0 (off) or between 0 and 1, got {d}");
        }
        let sizes = [("--steps", self.steps), ("--batch-size", self.batch_size), ("--epochs", self.epochs)];
        // The net's side (28 or 32) is decided from the images; no shift fits the larger one.
        if let Some(s) = self.shift
            && s >= 32
        {
            bail!("a shift of {s} pixels does not fit the largest net's 32x32 input");
        }
        for (flag, v) in sizes.into_iter().chain([("--usps-box", self.usps_box)]) {
            if v == Some(0) {
                bail!("{flag} must be at least 1");
            }
        }
        Ok(())
    }

    /// The flags only GTA uses, with whether each was given.
    fn gta_flags(&self) -> [(&'static str, bool); 3] {
        [
            ("--epochs", self.epochs.is_some()),
            ("--gta-preset", self.gta_preset.is_some()),
            ("--usps-box", self.usps_box.is_some()),
        ]
    }

    /// The flags both digit families (DANN and GTA) take, with whether each was given.
    fn digit_image_flags(&self) -> [(&'static str, bool); 1] {
        [("--shift", self.shift.is_some())]
    }

    /// The flags only the DANN digit recipes use, with whether each was given.
    fn digit_net_flags(&self) -> [(&'static str, bool); 13] {
        [
            ("--preset", self.preset.is_some()),
            ("--init", self.init.is_some()),
            ("--padding", self.padding.is_some()),
            ("--select", self.select.is_some()),
            ("--target-im", self.target_im.is_some()),
            ("--bn-per-domain", self.bn_per_domain.is_some()),
            ("--weight-average", self.weight_average.is_some()),
            ("--standardize", self.standardize),
            ("--colour-jitter", self.colour_jitter.is_some()),
            ("--target-vat", self.target_vat.is_some()),
            ("--vat-radius", self.vat_radius.is_some()),
            ("--target-pseudo-label", self.target_pseudo_label.is_some()),
            ("--pseudo-label-threshold", self.pseudo_label_threshold.is_some()),
        ]
    }

    /// The recipe this command line asks for.
    pub fn recipe(&self) -> Result<Recipe> {
        self.check_values()?;
        let seed = self.seed.unwrap_or(0);
        match self.family()? {
            Family::Toy => {
                let mut flags = self.digit_net_flags().to_vec();
                flags.extend(self.digit_image_flags());
                flags.extend(self.gta_flags());
                reject(&flags, "the 2D toy (it has its own net and reports its last step)")?;
                let mut r = ToyRecipe::new(self.methods(), seed);
                r.steps = self.steps.unwrap_or(r.steps);
                r.batch_size = self.batch_size.unwrap_or(r.batch_size);
                r.lr = self.lr.unwrap_or(r.lr);
                Ok(Recipe::Toy(r))
            }
            Family::Gta => {
                let mut flags = vec![("--lr", self.lr.is_some())];
                flags.extend(self.digit_net_flags());
                reject(&flags, "--method gta (the authors' Adam settings, nets and last-iteration protocol)")?;
                let (source, target, profile) = self.profiled_pair()?;
                let mut r = GtaRecipe::new(&source, &target, &profile, GtaVariant::Full, seed);
                r.steps = self.steps.unwrap_or(r.steps);
                r.batch_size = self.batch_size.unwrap_or(r.batch_size);
                r.epochs = self.epochs;
                r.preset = self.gta_preset.map_or(r.preset, Into::into);
                if self.usps_box.is_some() {
                    r.set_digit_box(self.usps_box, &profile)?;
                }
                r.input_shift = self.shift.unwrap_or(r.input_shift);
                r.validate()?;
                Ok(Recipe::Gta(r))
            }
            Family::Digits => {
                reject(&self.gta_flags(), "the DANN digit recipes (GTA flags)")?;
                let (source, target, profile) = self.profiled_pair()?;
                // Without --method a digit pair gets source-only beside the recommended recipe;
                // a method named alone keeps the paper's recipe unless --preset says otherwise.
                let default = if self.method.is_none() { PresetChoice::Recommended } else { PresetChoice::Paper };
                let preset = Preset::from(self.preset.unwrap_or(default));
                let mut r = DigitRecipe::new(&source, &target, &profile, self.methods(), preset, seed);
                if let Some(init) = self.init {
                    r.model.init = match init {
                        InitChoice::Pytorch => InitScheme::Pytorch,
                        InitChoice::Glorot => InitScheme::Glorot,
                    };
                }
                if let Some(padding) = self.padding {
                    r.model.padding = match padding {
                        PaddingChoice::Same => ConvPadding::Same,
                        PaddingChoice::Valid => ConvPadding::Valid,
                    };
                }
                r.steps = self.steps.unwrap_or(r.steps);
                r.batch_size = self.batch_size.unwrap_or(r.batch_size);
                r.lr = self.lr.unwrap_or(r.lr);
                r.select = self.select.map_or(Selection::Last, Selection::from);
                r.target_im_weight = self.target_im.unwrap_or(r.target_im_weight);
                r.weight_average_decay = self.weight_average.unwrap_or(r.weight_average_decay);
                r.input_shift = self.shift.unwrap_or(r.input_shift);
                r.standardize_inputs |= self.standardize;
                r.source_colour_jitter = self.colour_jitter.unwrap_or(r.source_colour_jitter);
                r.target_vat_weight = self.target_vat.unwrap_or(r.target_vat_weight);
                r.vat_radius = self.vat_radius.unwrap_or(r.vat_radius);
                r.target_pseudo_label_weight = self.target_pseudo_label.unwrap_or(r.target_pseudo_label_weight);
                r.pseudo_label_threshold = self.pseudo_label_threshold.unwrap_or(r.pseudo_label_threshold);
                if let Some(on) = self.bn_per_domain {
                    r.set_bn_per_domain(on)?;
                }
                Ok(Recipe::Digits(r))
            }
        }
    }

    /// The pair (built-in names or paths) and its label-free profiles, which the recipes decide
    /// from; a name that is neither a dataset nor an existing path is refused before any loading.
    fn profiled_pair(&self) -> Result<(DataRef, DataRef, PairProfile)> {
        let (source, target) =
            (self.source.as_deref().unwrap_or(TOY_SOURCE), self.target.as_deref().unwrap_or(TOY_TARGET));
        let (s, t) = adapt_experiment::recipe::parse_pair(source, target)?;
        for (name, data) in [(source, &s), (target, &t)] {
            if let DataRef::Path(p) = data
                && !p.exists()
            {
                bail!(
                    "'{name}' is neither a dataset nor an existing folder or list file; known datasets: \
                     {TOY_SOURCE}, {TOY_TARGET} (2D toy); mnist, mnist-m, svhn, usps, syn-digits (digits); or give \
                     a path (a folder of class folders, a flat folder of images, a list file)"
                );
            }
        }
        let profile = PairProfile::measure(&s, &t, self.data_dir.as_deref())?;
        Ok((s, t, profile))
    }

    /// How the run is carried out.
    pub fn options(&self) -> RunOptions {
        RunOptions {
            out: self.out.clone(),
            data_dir: self.data_dir.clone(),
            quiet: self.quiet,
            resume: false,
            checkpoint_every: self.checkpoint_every.unwrap_or(0),
            stop_after: self.stop_after,
        }
    }
}

/// Runs `train`: a fresh recipe, or `--resume` of a run folder with its saved recipe.
pub fn run(args: &TrainArgs) -> Result<Outcome> {
    let device = device::select(args.device)?;
    let outcome = match &args.resume {
        Some(dir) => {
            // The saved recipe decides what is trained: a flag that would change it is refused
            // rather than silently ignored.
            let mut flags = vec![
                ("--method", args.method.is_some()),
                ("--source", args.source.is_some()),
                ("--target", args.target.is_some()),
                ("--steps", args.steps.is_some()),
                ("--batch-size", args.batch_size.is_some()),
                ("--lr", args.lr.is_some()),
                ("--seed", args.seed.is_some()),
                ("--checkpoint-every", args.checkpoint_every.is_some()),
            ];
            flags.extend(args.digit_net_flags());
            flags.extend(args.digit_image_flags());
            flags.extend(args.gta_flags());
            reject(&flags, "--resume (it continues the run with its saved recipe)")?;
            adapt_experiment::resume(dir, &args.options(), &device)?
        }
        None => {
            let recipe = args.recipe()?;
            recipe.decisions().iter().for_each(|d| eprintln!("decided: {d}"));
            adapt_experiment::run(&recipe, &args.options(), &device)?
        }
    };
    for note in &outcome.notes {
        eprintln!("note: {note}");
    }
    Ok(outcome)
}
