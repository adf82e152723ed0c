//! Digit experiments (the DANN paper's): source-only and DANN between any two digit datasets,
//! with the paper's networks and recipe, in one run folder with feature plots and a report.
use crate::dann_run::{ANALYSIS_POINTS, MethodRun, train_and_evaluate};
use crate::error::{Context, Result};
use crate::files::{RECIPE_FILE, REPORT_FILE, RunLock, create_dir, run_folder_path, write_json};
use crate::pair::DomainData;
use crate::recipe::{DigitRecipe, Preset, Recipe, RunOptions, RunRecord, net_for_pair};
use crate::summary::{RunKind, RunSummary, Selection};
use crate::weights::{RunConfig, WeightsInfo};
use adapt_datasets::preprocess::channel_mean;
use adapt_datasets::validation_split;
use adapt_datasets::{DatasetId, ImageDataset, Preprocess, Split};
use adapt_eval::plots::{self, DomainPoint, ScatterPanel};
use adapt_eval::report::{Report, percent};
use adapt_eval::{TsneConfig, predict, principal_scores, tsne};
use adapt_models::ParamStore;
use adapt_models::digits::{ConvPadding, DigitDann, DigitNet, DigitNetConfig};
use adapt_train::optim::SgdSettings;
use adapt_train::{Method, TrainConfig};
use candle_core::Device;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

/// Everything that defines one digit run; written to `config.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// One in this many source training images is held out for validation.
pub const VALIDATION_FRACTION: usize = 12;
/// The held-out split is the same for every run seed, so runs differ only in what they learn.
const VALIDATION_SEED: u64 = 0x5eed_0da7a;
/// Seed 002 keeps every non-zero MNIST pixel (`images > 0` on `[0, 1]` floats).
const MNIST_BINARIZE_THRESHOLD: f32 = 1.0;

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

fn load(
    id: DatasetId,
    split: Split,
    size: usize,
    binarize_mnist: bool,
    data_dir: Option<&Path>,
    notes: &mut Vec<String>,
) -> Result<ImageDataset> {
    let mut ds =
        adapt_datasets::load(id.name(), split, data_dir).context(|| format!("loading {} {split}", id.name()))?;
    shape_steps(id, &ds, size, binarize_mnist && id == DatasetId::Mnist).apply(&mut ds)?;
    if let Some(p) = ds.partial {
        notes.push(format!(
            "{} {split}: {} of {} listed images present; training on those",
            id.name(),
            p.loaded,
            p.listed
        ));
    }
    Ok(ds)
}

/// A loaded pair, with what the loaders had to say (e.g. a partial dataset).
pub struct LoadedPair {
    pub data: DomainData,
    pub mean: Vec<f32>,
    pub notes: Vec<String>,
}

/// Loads and preprocesses the four splits of `source -> target` and holds out the source
/// validation split. `mean`: the pixel mean to subtract (None: computed over both training sets).
pub fn load_pair(
    source: DatasetId,
    target: DatasetId,
    size: usize,
    binarize_mnist: bool,
    mean: Option<Vec<f32>>,
    data_dir: Option<&Path>,
) -> Result<LoadedPair> {
    let mut notes = Vec::new();
    let mut source_train = load(source, Split::Train, size, binarize_mnist, data_dir, &mut notes)?;
    let mut target_train = load(target, Split::Train, size, binarize_mnist, data_dir, &mut notes)?;
    let mut source_test = load(source, Split::Test, size, binarize_mnist, data_dir, &mut notes)?;
    let mut target_test = load(target, Split::Test, size, binarize_mnist, data_dir, &mut notes)?;
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
    Ok(LoadedPair { data, mean, notes })
}

impl DigitRunConfig {
    /// The run of `method` in `recipe`, with the pixel mean its data was normalised with.
    pub fn new(recipe: &DigitRecipe, method: Method, pixel_mean: Vec<f32>) -> Result<Self> {
        let (source, target) = recipe.pair()?;
        let net = net_for_pair(source, target);
        Ok(Self {
            source: source.name().into(),
            target: target.name().into(),
            net,
            preset: recipe.preset,
            binarize_mnist: recipe.preset.binarize_mnist(),
            model: recipe.model.clone(),
            image_size: net.input_size(),
            pixel_mean,
            train: TrainConfig {
                method,
                steps: recipe.steps,
                batch_size: recipe.batch_size,
                seed: recipe.seed,
                sgd: SgdSettings { lr: recipe.lr, ..SgdSettings::default() },
                log_every: 50,
                ..TrainConfig::default()
            },
        })
    }

    /// The network, its parameters created (and initialised as `model.init` says) in `params`.
    pub fn build_model(&self, params: &ParamStore, device: &Device) -> Result<DigitDann> {
        Ok(DigitDann::build(self.net, &self.model, params, params.seed(), device)?)
    }

    /// Loads this run's data with its recorded pixel mean.
    pub fn load_data(&self, data_dir: Option<&Path>) -> Result<LoadedPair> {
        let (source, target) = crate::recipe::parse_pair(&self.source, &self.target)?;
        load_pair(source, target, self.image_size, self.binarize_mnist, Some(self.pixel_mean.clone()), data_dir)
    }

    /// How each domain's images became the net's input, for the weights' metadata.
    pub fn input_description(&self) -> Result<serde_json::Value> {
        let (source, target) = crate::recipe::parse_pair(&self.source, &self.target)?;
        Ok(describe_input(&[source, target], self.image_size, self.binarize_mnist, &self.pixel_mean, &[1.0]))
    }
}

/// The preprocessing of each dataset in `ids` at `size`, as JSON: the steps in the order they
/// are applied, then `(x - mean) / std` per channel, NCHW f32.
pub fn describe_input(
    ids: &[DatasetId],
    size: usize,
    binarize_mnist: bool,
    mean: &[f32],
    std: &[f32],
) -> serde_json::Value {
    let domains: Vec<serde_json::Value> = ids
        .iter()
        .map(|&id| {
            let native = match id {
                DatasetId::Mnist => 28,
                DatasetId::Usps => 16,
                _ => 32,
            };
            let mut steps = Vec::new();
            if binarize_mnist && id == DatasetId::Mnist {
                steps.push(format!("binarise: raw pixels >= {MNIST_BINARIZE_THRESHOLD} of 255 become 255, others 0"));
            }
            if id == DatasetId::MnistM && native == 32 && size == 28 {
                steps.push("centre crop 32x32 -> 28x28".to_string());
            } else if native == 28 && size == 32 {
                steps.push("zero-pad 28x28 -> 32x32, centred".to_string());
            } else if native != size {
                steps.push(format!(
                    "bilinear resize {native}x{native} -> {size}x{size} (half-pixel centres, as PyTorch align_corners=False)"
                ));
            }
            steps.push("grey to RGB by copying the channel (RGB unchanged)".to_string());
            steps.push("divide by 255".to_string());
            serde_json::json!({ "dataset": id.name(), "native_size": native, "steps": steps })
        })
        .collect();
    serde_json::json!({
        "layout": format!("[N, 3, {size}, {size}] f32"),
        "domains": domains,
        "normalisation": { "mean": mean, "std": std, "formula": "(x - mean) / std per channel, after the steps" },
    })
}

/// 2D views of the features of the first 500 source and 500 target test images: PCA and t-SNE,
/// each fitted once on the union of both domains.
pub struct FeatureViews {
    pub pca: Vec<DomainPoint>,
    pub tsne: Vec<DomainPoint>,
}

pub fn feature_views(model: &DigitDann, data: &DomainData, device: &Device, seed: u64) -> Result<FeatureViews> {
    let n = ANALYSIS_POINTS;
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
    for (file, kind, pick) in [
        ("features_pca.png", "PCA", (|v: &FeatureViews| &v.pca) as fn(&FeatureViews) -> &Vec<DomainPoint>),
        ("features_tsne.png", "t-SNE", |v: &FeatureViews| &v.tsne),
    ] {
        let mut panels = Vec::new();
        for (method, v) in views {
            for by_domain in [true, false] {
                panels.push(ScatterPanel {
                    title: format!("{method}: {kind} by {}", if by_domain { "domain" } else { "class" }),
                    points: pick(v).clone(),
                    by_domain,
                });
            }
        }
        plots::scatter_panels(&dir.join(file), &panels)?;
    }
    Ok(())
}

/// What [`run`] returns besides the summaries.
pub struct DigitRun {
    pub summaries: Vec<RunSummary>,
    /// What the loaders had to say (e.g. a dataset only partly present).
    pub notes: Vec<String>,
}

/// Trains the recipe's methods on its pair in one run folder and writes its report.
pub fn run(recipe: &DigitRecipe, opts: &RunOptions, device: &Device) -> Result<DigitRun> {
    recipe.validate()?;
    let (source, target) = recipe.pair()?;
    let net = net_for_pair(source, target);
    let loaded =
        load_pair(source, target, net.input_size(), recipe.preset.binarize_mnist(), None, opts.data_dir.as_deref())?;
    let data = &loaded.data;
    data.check_batch(recipe.batch_size)?;
    let methods = &recipe.methods;
    let label = if methods.len() > 1 { "compare" } else { methods[0].as_str() };
    let dir = run_folder_path(opts.out.as_deref(), label, source.name(), target.name());
    create_dir(&dir)?;
    let _lock = RunLock::acquire(&dir)?;
    write_json(&dir.join(RECIPE_FILE), &RunRecord::new(Recipe::Digits(recipe.clone()), opts))?;
    let mut summaries = Vec::new();
    let mut views = Vec::new();
    for &method in methods {
        let cfg = DigitRunConfig::new(recipe, method, loaded.mean.clone())?;
        let sub = if methods.len() > 1 { dir.join(method.as_str()) } else { dir.clone() };
        let params = ParamStore::new(cfg.train.seed);
        let model = cfg.build_model(&params, device)?;
        let info = WeightsInfo { input: cfg.input_description()?, config: RunConfig::Digits(cfg.clone()) };
        let run = MethodRun {
            kind: RunKind::Digits,
            train: &cfg.train,
            select: recipe.select,
            config: &info.config,
            info: &info,
        };
        let (summary, _) = train_and_evaluate(&run, &model, &params, data, &sub, device, opts)?;
        views.push((summary.method.clone(), feature_views(&model, data, device, cfg.train.seed)?));
        summaries.push(summary);
    }
    write_feature_plots(&dir, &views)?;
    write_report(&dir, &summaries, recipe, net)?;
    Ok(DigitRun { summaries, notes: loaded.notes })
}

fn write_report(dir: &Path, summaries: &[RunSummary], recipe: &DigitRecipe, net: DigitNet) -> Result<()> {
    let (source, target) = (&summaries[0].source, &summaries[0].target);
    let size = net.input_size();
    let mut report = Report::new(&format!("{source} -> {target}"));
    report.paragraph(&format!(
        "The paper's {} network ({} convolutions) on {size}x{size} RGB inputs, preset `{}`{}, pixel mean of both \
         training sets subtracted. \
         Seed {}. One in {VALIDATION_FRACTION} source training images is held out as a source validation split. \
         Target labels are used for the test accuracies below only, never for training or for choosing a model; \
         the reported weights are {}.",
        if net == DigitNet::Mnist { "MNIST" } else { "SVHN" },
        match recipe.model.padding {
            ConvPadding::Same => "zero-padded",
            ConvPadding::Valid => "unpadded",
        },
        recipe.preset.as_str(),
        if recipe.preset == Preset::Paper { " (binarised MNIST, as seed 002)" } else { "" },
        recipe.seed,
        match recipe.select {
            Selection::Last => "those of the last step",
            Selection::SourceVal => "those of the checkpoint with the best source validation accuracy",
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
    report.write(&dir.join(REPORT_FILE))?;
    Ok(())
}
