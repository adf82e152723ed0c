//! Digit experiments (the DANN paper's): source-only and DANN between any two loaded digit
//! datasets, with the paper's networks and recipe.
use crate::experiment::{DomainData, train_and_evaluate};
use crate::run_dir;
use crate::train::{MethodChoice, RunSummary, TrainArgs};
use adapt_datasets::preprocess::channel_mean;
use adapt_datasets::validation_split;
use adapt_datasets::{DatasetId, ImageDataset, Preprocess, Split};
use adapt_eval::plots::{self, DomainPoint, ScatterPanel};
use adapt_eval::report::{Report, percent};
use adapt_eval::{TsneConfig, predict, principal_scores, tsne};
use adapt_models::ParamStore;
use adapt_models::digits::{ConvPadding, DigitDann, DigitNetConfig};
use adapt_models::init::InitScheme;
use adapt_train::optim::SgdSettings;
use adapt_train::{Method, TrainConfig};
use anyhow::{Context, Result, bail};
use candle_core::Device;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

pub use adapt_models::digits::DigitNet;

/// Named recipes for the digit runs (`--preset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// The paper's recipe as its reference implementation runs it (seed 002): binarised MNIST,
    /// pixel mean of both training sets subtracted, TensorFlow's default initialisation
    /// (Glorot-uniform weights, zero biases), no BatchNorm or dropout; the convolutions unpadded
    /// as in the paper's own (Caffe) nets, which trained without the loss spikes and occasional
    /// divergence of seed 002's padded variant.
    #[default]
    Paper,
    /// The paper's recipe with BatchNorm after every convolution and hidden layer (seed 000), on
    /// plain (not binarised) MNIST, PyTorch's initialisation.
    Bn,
}

impl Preset {
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::Paper => "paper",
            Preset::Bn => "bn",
        }
    }

    /// The nets' settings; `--init` and `--padding` override them.
    fn model(self, net: DigitNet, args: &TrainArgs) -> DigitNetConfig {
        let preset = match self {
            // The SVHN net's third convolution needs the padding: unpadded, 32 pixels shrink to 0.
            Preset::Paper => DigitNetConfig {
                init: InitScheme::Glorot,
                padding: if net == DigitNet::Mnist { ConvPadding::Valid } else { ConvPadding::Same },
                ..DigitNetConfig::default()
            },
            Preset::Bn => DigitNetConfig { batch_norm: true, ..DigitNetConfig::default() },
        };
        DigitNetConfig {
            init: args.init.map_or(preset.init, InitScheme::from),
            padding: args.padding.map_or(preset.padding, ConvPadding::from),
            ..preset
        }
    }
}

/// `--init`: the digit nets' starting weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum InitChoice {
    /// PyTorch's default initialisation.
    Pytorch,
    /// Glorot-uniform weights and zero biases (TensorFlow's default, the reference code's).
    Glorot,
}

impl From<InitChoice> for InitScheme {
    fn from(c: InitChoice) -> Self {
        match c {
            InitChoice::Pytorch => InitScheme::Pytorch,
            InitChoice::Glorot => InitScheme::Glorot,
        }
    }
}

/// `--padding`: border handling of the digit nets' 5x5 convolutions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PaddingChoice {
    /// 2 pixels of zeros, sizes kept (seed 002's TensorFlow net).
    Same,
    /// No padding (the paper's Caffe nets).
    Valid,
}

impl From<PaddingChoice> for ConvPadding {
    fn from(c: PaddingChoice) -> Self {
        match c {
            PaddingChoice::Same => ConvPadding::Same,
            PaddingChoice::Valid => ConvPadding::Valid,
        }
    }
}

/// Everything that defines one digit run; written to `config.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DigitRunConfig {
    pub source: String,
    pub target: String,
    pub net: DigitNet,
    pub preset: Preset,
    /// MNIST pixels `>= 1` become 255, the others 0 (seed 002's `mnist > 0`).
    pub binarize_mnist: bool,
    pub model: DigitNetConfig,
    /// Pixel size both domains are brought to (28 or 32).
    pub image_size: usize,
    /// Per-channel mean subtracted from both domains (over source + target training images).
    pub pixel_mean: Vec<f32>,
    pub train: TrainConfig,
}

fn net_for(source: DatasetId, target: DatasetId) -> DigitNet {
    let small = |d: DatasetId| matches!(d, DatasetId::Mnist | DatasetId::MnistM | DatasetId::Usps);
    if small(source) && small(target) { DigitNet::Mnist } else { DigitNet::Svhn }
}

/// `/255`, 3 channels at `size x size`. MNIST-M's 32x32 images are MNIST digits padded by 2
/// pixels, so MNIST pads 28 -> 32 and MNIST-M crops 32 -> 28: the digits keep one scale in both
/// domains. Other sizes (USPS 16 -> 28/32) are resized bilinearly.
fn shape_steps(id: DatasetId, ds: &ImageDataset, size: usize, binarize: bool) -> Preprocess {
    let mut pre = Preprocess::rgb(size);
    if binarize {
        pre.binarize = Some(MNIST_BINARIZE_THRESHOLD);
    }
    if ds.height == 28 && size == 32 {
        pre.resize = None;
        pre.pad_to = Some(32);
    }
    if id == DatasetId::MnistM && ds.height == 32 && size == 28 {
        pre.resize = None;
        pre.crop_to = Some(28);
    }
    pre
}

/// One in this many source training images is held out for validation.
pub const VALIDATION_FRACTION: usize = 12;
/// The held-out split is the same for every run seed, so runs differ only in what they learn.
const VALIDATION_SEED: u64 = 0x5eed_0da7a;

/// Seed 002 keeps every non-zero MNIST pixel (`images > 0` on `[0, 1]` floats).
const MNIST_BINARIZE_THRESHOLD: f32 = 1.0;

fn load(
    id: DatasetId,
    split: Split,
    size: usize,
    binarize_mnist: bool,
    data_dir: Option<&Path>,
) -> Result<ImageDataset> {
    let mut ds =
        adapt_datasets::load(id.name(), split, data_dir).with_context(|| format!("loading {} {split}", id.name()))?;
    shape_steps(id, &ds, size, binarize_mnist && id == DatasetId::Mnist).apply(&mut ds)?;
    if let Some(p) = ds.partial {
        eprintln!("note: {} {split}: {} of {} listed images present; training on those", id.name(), p.loaded, p.listed);
    }
    Ok(ds)
}

/// The paper's recipe: batches of 32 + 32, momentum 0.9, lr 0.01 annealed, lambda schedule,
/// 8600 steps for MNIST -> MNIST-M (the paper's step count at batch 64).
pub fn preset(args: &TrainArgs, method: Method) -> TrainConfig {
    TrainConfig {
        method,
        steps: args.steps.unwrap_or(8600),
        batch_size: args.batch_size.unwrap_or(32),
        seed: args.seed,
        sgd: SgdSettings { lr: args.lr.unwrap_or(0.01), ..SgdSettings::default() },
        log_every: 50,
        ..TrainConfig::default()
    }
}

/// The network of `cfg`, its parameters created in `params`.
pub fn build_model(cfg: &DigitRunConfig, params: &ParamStore, device: &Device) -> Result<DigitDann> {
    Ok(DigitDann::build(cfg.net, &cfg.model, params, params.seed(), device)?)
}

/// Loads and preprocesses the four splits of `source -> target` and holds out the source
/// validation split. `mean`: the pixel mean to subtract (None: computed over both training sets).
pub fn load_data(
    source: DatasetId,
    target: DatasetId,
    size: usize,
    binarize_mnist: bool,
    mean: Option<Vec<f32>>,
    data_dir: Option<&Path>,
) -> Result<(DomainData, Vec<f32>)> {
    let mut source_train = load(source, Split::Train, size, binarize_mnist, data_dir)?;
    let mut target_train = load(target, Split::Train, size, binarize_mnist, data_dir)?;
    let mut source_test = load(source, Split::Test, size, binarize_mnist, data_dir)?;
    let mut target_test = load(target, Split::Test, size, binarize_mnist, data_dir)?;
    // Seed 002's normalisation: the pixel mean over both training sets, subtracted everywhere.
    let mean = match mean {
        Some(m) => m,
        None => channel_mean(&[&source_train, &target_train])?,
    };
    for ds in [&mut source_train, &mut target_train, &mut source_test, &mut target_test] {
        adapt_datasets::preprocess::subtract_mean(ds, &mean)?;
    }
    // Seed 002 trains on 55000 MNIST images and keeps 5000 for validation: one in twelve is held
    // out from every source (with either selection rule, so the choice never changes training).
    let source_all: Arc<dyn adapt_datasets::Rows> = Arc::new(source_train);
    let held_out = source_all.len() / VALIDATION_FRACTION;
    let (source_fit, source_val) = validation_split(source_all, held_out, VALIDATION_SEED)?;
    let data = DomainData {
        source_name: source.name().into(),
        target_name: target.name().into(),
        source_train: Arc::new(source_fit),
        source_val: Some(Arc::new(source_val)),
        target_train: Arc::new(target_train),
        source_test: Arc::new(source_test),
        target_test: Arc::new(target_test),
    };
    Ok((data, mean))
}

/// 2D views of the features of the first 500 source and 500 target test images: PCA and t-SNE,
/// each fitted once on the union of both domains.
pub struct FeatureViews {
    pub pca: Vec<DomainPoint>,
    pub tsne: Vec<DomainPoint>,
}

pub fn feature_views(model: &DigitDann, data: &DomainData, device: &Device, seed: u64) -> Result<FeatureViews> {
    let n = crate::experiment::ANALYSIS_POINTS;
    let s = predict(model, data.source_test.as_ref(), Some(n), device, 250, true)?;
    let t = predict(model, data.target_test.as_ref(), Some(n), device, 250, true)?;
    let mut all = s.features.clone();
    all.extend(&t.features);
    let labels: Vec<(u32, bool)> = (0..s.classes.len())
        .map(|i| (data.source_test.label(i), false))
        .chain((0..t.classes.len()).map(|i| (data.target_test.label(i), true)))
        .collect();
    let to_points = |coords: Vec<[f64; 2]>| -> Vec<DomainPoint> {
        coords
            .into_iter()
            .zip(&labels)
            .map(|(c, &(label, is_target))| DomainPoint { x: c[0], y: c[1], label, is_target })
            .collect()
    };
    // Randomised PCA: the exact subspace iteration of `Pca` takes most of a minute on 1000 x 2352.
    let pca_coords = principal_scores(&all, s.feature_dim, 2, seed).chunks_exact(2).map(|c| [c[0], c[1]]).collect();
    let tsne_coords = tsne(&all, s.feature_dim, &TsneConfig { seed, ..TsneConfig::default() })?;
    Ok(FeatureViews { pca: to_points(pca_coords), tsne: to_points(tsne_coords) })
}

/// Both views of every method, by domain and by class.
pub fn write_feature_plots(dir: &Path, views: &[(String, FeatureViews)]) -> Result<()> {
    for (file, pick) in [
        ("features_pca.png", (|v: &FeatureViews| &v.pca) as fn(&FeatureViews) -> &Vec<DomainPoint>),
        ("features_tsne.png", |v: &FeatureViews| &v.tsne),
    ] {
        let mut panels = Vec::new();
        for (method, v) in views {
            let kind = if file.contains("pca") { "PCA" } else { "t-SNE" };
            panels.push(ScatterPanel {
                title: format!("{method}: {kind} by domain"),
                points: pick(v).clone(),
                by_domain: true,
            });
            panels.push(ScatterPanel {
                title: format!("{method}: {kind} by class"),
                points: pick(v).clone(),
                by_domain: false,
            });
        }
        plots::scatter_panels(&dir.join(file), &panels)?;
    }
    Ok(())
}

pub fn run(args: &TrainArgs, source: DatasetId, target: DatasetId, device: &Device) -> Result<Vec<RunSummary>> {
    let methods = match args.method {
        MethodChoice::Compare => vec![Method::SourceOnly, Method::Dann],
        MethodChoice::SourceOnly => vec![Method::SourceOnly],
        MethodChoice::Dann => vec![Method::Dann],
        MethodChoice::Gta => bail!("--method gta is dispatched before the DANN experiments"),
    };
    let net = net_for(source, target);
    let size = if net == DigitNet::Mnist { 28 } else { 32 };
    let recipe = args.preset;
    let binarize_mnist = recipe == Preset::Paper;
    let (data, mean) = load_data(source, target, size, binarize_mnist, None, args.data_dir.as_deref())?;
    let label = if methods.len() > 1 { "compare" } else { methods[0].as_str() };
    let dir = run_dir::create(args.out.as_deref(), label, source.name(), target.name())?;
    args.save(&dir)?;
    let mut summaries = Vec::new();
    let mut views = Vec::new();
    for &method in &methods {
        let cfg = DigitRunConfig {
            source: source.name().into(),
            target: target.name().into(),
            net,
            preset: recipe,
            binarize_mnist,
            model: recipe.model(net, args),
            image_size: size,
            pixel_mean: mean.clone(),
            train: preset(args, method),
        };
        let sub = if methods.len() > 1 { dir.join(method.as_str()) } else { dir.clone() };
        let params = ParamStore::new(cfg.train.seed);
        let model = build_model(&cfg, &params, device)?;
        let toml = toml::to_string_pretty(&cfg)?;
        let (summary, _) =
            train_and_evaluate(&model, &params, &cfg.train, &toml, &data, &sub, device, &args.run_options())?;
        views.push((summary.method.clone(), feature_views(&model, &data, device, cfg.train.seed)?));
        summaries.push(summary);
    }
    write_feature_plots(&dir, &views)?;
    let padding = recipe.model(net, args).padding;
    write_report(&dir, &summaries, net, size, padding, args)?;
    Ok(summaries)
}

fn write_report(
    dir: &Path,
    summaries: &[RunSummary],
    net: DigitNet,
    size: usize,
    padding: ConvPadding,
    args: &TrainArgs,
) -> Result<()> {
    let (source, target) = (&summaries[0].source, &summaries[0].target);
    let mut report = Report::new(&format!("{source} -> {target}"));
    report.paragraph(&format!(
        "The paper's {} network ({} convolutions) on {size}x{size} RGB inputs, preset `{}`{}, pixel mean of both \
         training sets subtracted. \
         Seed {}. One in {VALIDATION_FRACTION} source training images is held out as a source validation split. \
         Target labels are used for the test accuracies below only, never for training or for choosing a model; \
         the reported weights are {}.",
        if net == DigitNet::Mnist { "MNIST" } else { "SVHN" },
        match padding {
            ConvPadding::Same => "zero-padded",
            ConvPadding::Valid => "unpadded",
        },
        args.preset.as_str(),
        if args.preset == Preset::Paper { " (binarised MNIST, as seed 002)" } else { "" },
        args.seed,
        match args.select {
            crate::experiment::Selection::Last => "those of the last step".to_string(),
            crate::experiment::Selection::SourceVal =>
                "those of the checkpoint with the best source validation accuracy".to_string(),
        }
    ));
    report.table(
        &["method", "source acc", "target acc", "domain acc", "A-distance", "reported step", "steps", "seconds"],
        &summaries
            .iter()
            .map(|s| {
                vec![
                    s.method.clone(),
                    percent(s.source_acc),
                    percent(s.target_acc),
                    percent(s.domain_acc),
                    format!("{:.2}", s.a_distance),
                    s.selected_step.to_string(),
                    s.steps.to_string(),
                    format!("{:.0}", s.seconds),
                ]
            })
            .collect::<Vec<_>>(),
    );
    report.paragraph(
        "Domain accuracy: the model's own domain classifier on both test sets (50 % = cannot tell the domains apart). \
         A-distance: proxy A-distance 2(1 - 2 err) of a linear domain classifier trained on frozen features of \
         500 + 500 test images (0: indistinguishable, 2: separable).",
    );
    report.heading("Features");
    report.paragraph(
        "Features of 500 source and 500 target test images; PCA and t-SNE each fitted once on their union. \
         Left: coloured by domain; right: by class.",
    );
    report.image("feature t-SNE", "features_tsne.png");
    report.image("feature PCA", "features_pca.png");
    report.heading("Training curves");
    for s in summaries {
        let rel = if summaries.len() > 1 { format!("{}/curves.png", s.method) } else { "curves.png".into() };
        report.image(&format!("{} curves", s.method), &rel);
    }
    report.write(&dir.join("report.md"))?;
    Ok(())
}
