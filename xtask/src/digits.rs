//! Digit experiments (the DANN paper's): source-only and DANN between any two loaded digit
//! datasets, with the paper's networks and recipe.
use crate::experiment::{DomainData, train_and_evaluate};
use crate::run_dir;
use crate::train::{MethodChoice, RunSummary, TrainArgs};
use adapt_datasets::preprocess::channel_mean;
use adapt_datasets::{DatasetId, ImageDataset, Preprocess, Split};
use adapt_eval::plots::{self, DomainPoint, ScatterPanel};
use adapt_eval::report::{Report, percent};
use adapt_eval::{Pca, predict};
use adapt_models::ParamStore;
use adapt_models::digits::{DigitNetConfig, mnist_dann, svhn_dann};
use adapt_train::optim::SgdSettings;
use adapt_train::{Method, TrainConfig};
use anyhow::{Context, Result};
use candle_core::{DType, Device, ModuleT};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

/// Which of the paper's two networks a pair uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DigitNet {
    /// 3x28x28 input: for MNIST, MNIST-M and USPS pairs.
    Mnist,
    /// 3x32x32 input: for any pair with SVHN or SynDigits.
    Svhn,
}

/// Everything that defines one digit run; written to `config.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DigitRunConfig {
    pub source: String,
    pub target: String,
    pub net: DigitNet,
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

/// `/255`, 3 channels at `size x size`: zero padding for smaller MNIST-like digits going to 32
/// (the usual 28 -> 32), bilinear resizing otherwise (MNIST-M 32 -> 28, USPS 16 -> 28/32).
fn shape_steps(ds: &ImageDataset, size: usize) -> Preprocess {
    let mut pre = Preprocess::rgb(size);
    if ds.height == 28 && size == 32 {
        pre.resize = None;
        pre.pad_to = Some(32);
    }
    pre
}

fn load(id: DatasetId, split: Split, size: usize, data_dir: Option<&Path>) -> Result<ImageDataset> {
    let mut ds =
        adapt_datasets::load(id.name(), split, data_dir).with_context(|| format!("loading {} {split}", id.name()))?;
    shape_steps(&ds, size).apply(&mut ds)?;
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

fn feature_points<F: ModuleT, L: ModuleT, D: ModuleT>(
    model: &adapt_models::Dann<F, L, D>,
    data: &DomainData,
    device: &Device,
) -> Result<Vec<DomainPoint>> {
    let n = 500;
    let s = predict(model, data.source_test.as_ref(), Some(n), device, 250, true)?;
    let t = predict(model, data.target_test.as_ref(), Some(n), device, 250, true)?;
    let mut all = s.features.clone();
    all.extend(&t.features);
    let pca = Pca::fit(&all, s.feature_dim, 2)?;
    let mut pts = Vec::new();
    for (feats, rows, is_target) in [(&s.features, &data.source_test, false), (&t.features, &data.target_test, true)] {
        for (i, c) in pca.transform(feats).into_iter().enumerate() {
            pts.push(DomainPoint { x: c[0], y: c[1], label: rows.label(i), is_target });
        }
    }
    Ok(pts)
}

pub fn run(args: &TrainArgs, source: DatasetId, target: DatasetId, device: &Device) -> Result<Vec<RunSummary>> {
    let methods = match args.method {
        MethodChoice::Compare => vec![Method::SourceOnly, Method::Dann],
        MethodChoice::SourceOnly => vec![Method::SourceOnly],
        MethodChoice::Dann => vec![Method::Dann],
    };
    let net = net_for(source, target);
    let size = if net == DigitNet::Mnist { 28 } else { 32 };
    let data_dir = args.data_dir.as_deref();
    let mut source_train = load(source, Split::Train, size, data_dir)?;
    let mut target_train = load(target, Split::Train, size, data_dir)?;
    let mut source_test = load(source, Split::Test, size, data_dir)?;
    let mut target_test = load(target, Split::Test, size, data_dir)?;
    // Seed 002's normalisation: the pixel mean over both training sets, subtracted everywhere.
    let mean = channel_mean(&[&source_train, &target_train])?;
    for ds in [&mut source_train, &mut target_train, &mut source_test, &mut target_test] {
        adapt_datasets::preprocess::subtract_mean(ds, &mean)?;
    }
    let data = DomainData {
        source_name: source.name().into(),
        target_name: target.name().into(),
        source_train: Arc::new(source_train),
        target_train: Arc::new(target_train),
        source_test: Arc::new(source_test),
        target_test: Arc::new(target_test),
    };
    let label = if methods.len() > 1 { "compare" } else { methods[0].as_str() };
    let dir = run_dir::create(args.out.as_deref(), label, source.name(), target.name())?;
    let mut summaries = Vec::new();
    let mut panels = Vec::new();
    for &method in &methods {
        let cfg = DigitRunConfig {
            source: source.name().into(),
            target: target.name().into(),
            net,
            model: DigitNetConfig::default(),
            image_size: size,
            pixel_mean: mean.clone(),
            train: preset(args, method),
        };
        let sub = if methods.len() > 1 { dir.join(method.as_str()) } else { dir.clone() };
        let params = ParamStore::new(cfg.train.seed);
        let vb = params.var_builder(DType::F32, device);
        let toml = toml::to_string_pretty(&cfg)?;
        let (summary, points) = match net {
            DigitNet::Mnist => {
                let model = mnist_dann(&cfg.model, vb)?;
                let (s, _) = train_and_evaluate(&model, &params, &cfg.train, &toml, &data, &sub, device, args.quiet)?;
                (s, feature_points(&model, &data, device)?)
            }
            DigitNet::Svhn => {
                let model = svhn_dann(&cfg.model, vb)?;
                let (s, _) = train_and_evaluate(&model, &params, &cfg.train, &toml, &data, &sub, device, args.quiet)?;
                (s, feature_points(&model, &data, device)?)
            }
        };
        panels.push(ScatterPanel {
            title: format!("{}: features by domain", summary.method),
            points: points.clone(),
            by_domain: true,
        });
        panels.push(ScatterPanel { title: format!("{}: features by class", summary.method), points, by_domain: false });
        summaries.push(summary);
    }
    plots::scatter_panels(&dir.join("features_pca.png"), &panels)?;
    let mut report = Report::new(&format!("{} -> {}", source.name(), target.name()));
    report.paragraph(&format!(
        "The paper's {} network on {size}x{size} RGB inputs, pixel mean of both training sets subtracted. Seed {}. \
         Target labels are used for the accuracies below only, never for training or model choice (the reported model is the last step).",
        if net == DigitNet::Mnist { "MNIST" } else { "SVHN" },
        args.seed
    ));
    report.table(
        &["method", "source acc", "target acc", "domain acc", "steps", "seconds"],
        &summaries
            .iter()
            .map(|s| {
                vec![
                    s.method.clone(),
                    percent(s.source_acc),
                    percent(s.target_acc),
                    percent(s.domain_acc),
                    s.steps.to_string(),
                    format!("{:.0}", s.seconds),
                ]
            })
            .collect::<Vec<_>>(),
    );
    report.heading("Features");
    report.paragraph(
        "PCA of the feature extractor's output for 500 source and 500 target test images, fitted on their union.",
    );
    report.image("feature PCA", "features_pca.png");
    report.heading("Training curves");
    for s in &summaries {
        let rel = if summaries.len() > 1 { format!("{}/curves.png", s.method) } else { "curves.png".into() };
        report.image(&format!("{} curves", s.method), &rel);
    }
    report.write(&dir.join("report.md"))?;
    Ok(summaries)
}
