//! Generate To Adapt (Sankaranarayanan et al., CVPR 2018) experiments: `cargo xtask train
//! --method gta` (the full method) and `cargo xtask ablation gta` (seed 001's three rows).
//!
//! Inputs are 32x32 RGB (MNIST zero-padded from 28), `/255`, then `(p - 0.5) / 0.5` as the
//! authors normalise them; D sees images in the same `[-1, 1]` range. Each run writes `config.toml`,
//! `metrics.jsonl`, `model.safetensors`, `curves.png`, `features_tsne.png` (F's embeddings after
//! the first epoch and at the end), `generated.png` (G's images from source and from target
//! embeddings), `summary.json` and `report.md`.
use crate::digits::load_data;
use crate::experiment::{ANALYSIS_POINTS, DomainData, RunOptions, Selection, open_run_folder, previous_seconds};
use crate::report::mean_std;
use crate::run_dir;
use crate::train::{RunSummary, TrainArgs, read_summary};
use adapt_datasets::{DatasetId, ImageDataset, Rows, Split};
use adapt_eval::plots::{self, DomainPoint, ScatterPanel, Series};
use adapt_eval::report::{Report, percent};
use adapt_eval::{TsneConfig, accuracy, adjusted_rand_index, proxy_a_distance, tsne};
use adapt_models::ParamStore;
use adapt_models::gta::{GtaModel, GtaNetConfig, sample_noise};
use adapt_train::batches::MixedSampler;
use adapt_train::checkpoint::{CHECKPOINT_FILE, CheckpointPolicy};
use adapt_train::log::{MetricsWriter, Progress};
use adapt_train::{GtaConfig, GtaHooks, GtaStepMetrics, GtaVariant, train_gta};
use anyhow::{Context, Result, bail};
use candle_core::{D, DType, Device, Tensor};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Everything that defines one GTA run; written to `config.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GtaRunConfig {
    pub source: String,
    pub target: String,
    pub image_size: usize,
    /// Per-channel mean subtracted from both domains (over source + target training images).
    pub pixel_mean: Vec<f32>,
    pub model: GtaNetConfig,
    pub train: GtaConfig,
}

/// Default length: the ablation's runs must fit a CPU session; the authors train for 100 epochs.
pub const DEFAULT_STEPS: usize = 2000;

#[derive(Debug, Clone, clap::Args)]
pub struct GtaAblationArgs {
    #[arg(long, default_value = "mnist")]
    pub source: String,
    #[arg(long, default_value = "mnist-m")]
    pub target: String,
    /// Seeds per row (0, 1, ...).
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    /// Iterations per run.
    #[arg(long, default_value_t = DEFAULT_STEPS)]
    pub steps: usize,
    /// Images per domain in each iteration (the authors: 100).
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Folder for the runs and `ablation.md`.
    #[arg(long, default_value = "runs/ablation-gta")]
    pub out: PathBuf,
    /// Folder with one sub-folder per dataset (else ADAPT_DATA_DIR, else the Hugging Face cache).
    #[arg(long, env = "ADAPT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[arg(long)]
    pub quiet: bool,
}

fn parse_pair(source: &str, target: &str) -> Result<(DatasetId, DatasetId)> {
    let s = DatasetId::parse(source).map_err(anyhow::Error::from)?;
    let t = DatasetId::parse(target).map_err(anyhow::Error::from)?;
    if s == t {
        bail!("source and target are both '{}': adaptation needs two domains", s.name());
    }
    Ok((s, t))
}

/// The authors' input normalisation `(p - 0.5) / 0.5`: pixels in `[-1, 1]`, the range D sees too.
/// With the DANN preprocessing (only the pixel mean subtracted, values in about `[-0.45, 0.55]`)
/// stream 1's classifier loss fell to 0.4 and then climbed back to 2-3 within 300 iterations, in
/// adapt and in a PyTorch probe of the same F + C alike; at `[-1, 1]` the probe trained stably.
pub const INPUT_MEAN: f32 = 0.5;
pub const INPUT_STD: f32 = 0.5;

/// Rows of another dataset multiplied by a constant.
struct Scaled {
    inner: Arc<dyn Rows>,
    factor: f32,
}

impl Rows for Scaled {
    fn len(&self) -> usize {
        self.inner.len()
    }

    fn row_shape(&self) -> Vec<usize> {
        self.inner.row_shape()
    }

    fn copy_row(&self, i: usize, out: &mut [f32]) {
        self.inner.copy_row(i, out);
        out.iter_mut().for_each(|v| *v *= self.factor);
    }

    fn label(&self, i: usize) -> u32 {
        self.inner.label(i)
    }
}

/// 32x32 RGB in `[-1, 1]` ([`INPUT_MEAN`], [`INPUT_STD`]); returns the mean for the config.
fn load(source: DatasetId, target: DatasetId, data_dir: Option<&Path>) -> Result<(DomainData, Vec<f32>)> {
    let (d, mean) = load_data(source, target, 32, false, Some(vec![INPUT_MEAN]), data_dir)?;
    let scale = |rows: Arc<dyn Rows>| -> Arc<dyn Rows> { Arc::new(Scaled { inner: rows, factor: 1.0 / INPUT_STD }) };
    let data = DomainData {
        source_name: d.source_name,
        target_name: d.target_name,
        source_train: scale(d.source_train),
        source_val: d.source_val.map(scale),
        target_train: scale(d.target_train),
        source_test: scale(d.source_test),
        target_test: scale(d.target_test),
    };
    Ok((data, mean))
}

/// Up to `n` test rows of `rows` as one `[n, C, H, W]` tensor, with their labels.
fn first_rows(rows: &dyn Rows, n: usize, device: &Device) -> Result<(Tensor, Vec<u32>)> {
    let idx: Vec<usize> = (0..n.min(rows.len())).collect();
    let (data, labels) = rows.gather(&idx);
    let mut shape = vec![idx.len()];
    shape.extend(rows.row_shape());
    Ok((Tensor::from_vec(data, shape, device)?, labels))
}

/// Class accuracy and adjusted Rand index of F + C on `rows`.
fn test_accuracy(model: &GtaModel, rows: &dyn Rows, device: &Device) -> Result<(f64, f64)> {
    let mut predicted = Vec::with_capacity(rows.len());
    let mut truth = Vec::with_capacity(rows.len());
    let shape_tail = rows.row_shape();
    for start in (0..rows.len()).step_by(500) {
        let idx: Vec<usize> = (start..(start + 500).min(rows.len())).collect();
        let (data, labels) = rows.gather(&idx);
        let mut shape = vec![idx.len()];
        shape.extend(&shape_tail);
        let x = Tensor::from_vec(data, shape, device)?;
        predicted.extend(model.classify(&x)?.argmax(D::Minus1)?.to_vec1::<u32>()?);
        truth.extend(labels);
    }
    Ok((accuracy(&predicted, &truth)?, adjusted_rand_index(&predicted, &truth)?))
}

/// F's embeddings of test images, row-major, with each row's (label, is_target).
struct Embeddings {
    values: Vec<f32>,
    dim: usize,
    rows: Vec<(u32, bool)>,
}

/// F's embeddings of the first 500 source and 500 target test images.
fn embeddings(model: &GtaModel, data: &DomainData, device: &Device) -> Result<Embeddings> {
    let (xs, ys) = first_rows(data.source_test.as_ref(), ANALYSIS_POINTS, device)?;
    let (xt, yt) = first_rows(data.target_test.as_ref(), ANALYSIS_POINTS, device)?;
    let es = model.embed(&xs)?;
    let dim = es.dim(1)?;
    let mut all = es.flatten_all()?.to_vec1::<f32>()?;
    let n_source = all.len() / dim;
    all.extend(model.embed(&xt)?.flatten_all()?.to_vec1::<f32>()?);
    let labels = ys.into_iter().map(|y| (y, false)).chain(yt.into_iter().map(|y| (y, true))).collect();
    debug_assert_eq!(n_source, ANALYSIS_POINTS.min(data.source_test.len()));
    Ok(Embeddings { values: all, dim, rows: labels })
}

fn tsne_points(emb: &Embeddings, seed: u64) -> Result<Vec<DomainPoint>> {
    let coords = tsne(&emb.values, emb.dim, &TsneConfig { seed, ..TsneConfig::default() })?;
    Ok(coords
        .into_iter()
        .zip(&emb.rows)
        .map(|(c, &(label, is_target))| DomainPoint { x: c[0], y: c[1], label, is_target })
        .collect())
}

/// G's images from the first source and target test images (one row per digit class where the
/// source has it), as a grid: rows of source-embedding images, then rows of target-embedding ones.
fn write_generated(model: &GtaModel, data: &DomainData, seed: u64, path: &Path, device: &Device) -> Result<()> {
    const PER_DOMAIN: usize = 40;
    let (xs, ys) = first_rows(data.source_test.as_ref(), PER_DOMAIN, device)?;
    let (xt, yt) = first_rows(data.target_test.as_ref(), PER_DOMAIN, device)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let noise_dim = model.config().noise_dim;
    let ys_t = Tensor::new(ys.as_slice(), device)?;
    let from_source =
        model.generate(&xs, Some(&ys_t), &sample_noise(xs.dim(0)?, noise_dim, &mut rng, device)?, false)?;
    let from_target = model.generate(&xt, None, &sample_noise(xt.dim(0)?, noise_dim, &mut rng, device)?, false)?;
    // Both rows, then the inputs they came from, mapped from [-1, 1] to [0, 255]; the labels under
    // the images are the true classes (for target rows: used only to label this picture).
    let images = Tensor::cat(&[&from_source, &from_target], 0)?;
    let pixels: Vec<f32> = ((images + 1.0)? * 127.5)?.clamp(0.0, 255.0)?.flatten_all()?.to_vec1::<f32>()?;
    let labels: Vec<u32> = ys.iter().chain(&yt).copied().collect();
    let ds = ImageDataset {
        name: "generated".into(),
        split: Split::Test,
        images: pixels,
        labels,
        channels: 3,
        height: 32,
        width: 32,
        origin: "generator".into(),
        partial: None,
    };
    let indices: Vec<usize> = (0..ds.labels.len()).collect();
    adapt_datasets::preview::grid(&ds, &indices, 20)
        .save(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn write_curves(path: &Path, curve: &[GtaStepMetrics]) -> Result<()> {
    let series = |name: &str, f: &dyn Fn(&GtaStepMetrics) -> Option<f64>| Series {
        name: name.into(),
        points: curve.iter().filter_map(|r| f(r).map(|v| (r.step as f64, v))).collect(),
    };
    plots::curves(
        path,
        &[
            (
                "losses".into(),
                vec![
                    series("D loss", &|r| r.d_loss),
                    series("G loss", &|r| r.g_loss),
                    series("C loss", &|r| Some(r.c_loss)),
                    series("F loss", &|r| Some(r.f_loss)),
                ],
            ),
            (
                "accuracies".into(),
                vec![
                    series("C on source batch", &|r| Some(r.label_acc)),
                    series("D real called real", &|r| r.d_real_acc),
                    series("D fake called fake", &|r| r.d_fake_acc),
                ],
            ),
            ("learning rate (D, F, C)".into(), vec![series("lr", &|r| Some(r.lr))]),
        ],
    )?;
    Ok(())
}

/// Trains one variant in `dir` and evaluates it.
#[allow(clippy::too_many_arguments)]
fn run_variant(
    variant: GtaVariant,
    data: &DomainData,
    mean: &[f32],
    steps: usize,
    batch_size: usize,
    seed: u64,
    dir: &Path,
    device: &Device,
    opts: &RunOptions,
) -> Result<RunSummary> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cfg = GtaRunConfig {
        source: data.source_name.clone(),
        target: data.target_name.clone(),
        image_size: 32,
        pixel_mean: mean.to_vec(),
        model: GtaNetConfig::default(),
        train: GtaConfig {
            variant,
            steps,
            batch_size,
            seed,
            input_mean: mean.to_vec(),
            input_std: vec![INPUT_STD],
            // Short runs (tests) log, and may checkpoint, every iteration or few.
            log_every: (steps / 10).clamp(1, 25),
            ..GtaConfig::default()
        },
    };
    let config_toml = toml::to_string_pretty(&cfg)?;
    let (ckpt_path, metrics_path) = (dir.join(CHECKPOINT_FILE), dir.join("metrics.jsonl"));
    let params = ParamStore::new(seed);
    let model = GtaModel::new(&cfg.model, params.var_builder(DType::F32, device))?;
    let mut sampler = MixedSampler::new(data.source_train.clone(), data.target_train.clone(), batch_size, seed)?;
    let (resume, mut curve) = open_run_folder::<GtaStepMetrics>(dir, &config_toml, &params, device, opts.resume, &[])?;
    let resumed_at = resume.as_ref().map(|r| r.step);
    let mut metrics = MetricsWriter::append(&metrics_path)?;
    let progress = Progress::new(steps as u64, variant.method_name(), !opts.quiet);
    let epoch = data.source_train.len().div_ceil(batch_size).min(steps);
    let every = opts.checkpoint_interval(steps, cfg.train.log_every);
    // A run resumed past its first epoch no longer has those embeddings: its report shows the end only.
    let mut first_epoch = None;
    let mut first_epoch_err = None;
    let mut on_record = |r: &GtaStepMetrics| {
        curve.push(*r);
        if first_epoch.is_none() && first_epoch_err.is_none() && r.step >= epoch && resumed_at.is_none_or(|s| s < epoch)
        {
            match embeddings(&model, data, device) {
                Ok(e) => first_epoch = Some((r.step, e)),
                Err(e) => first_epoch_err = Some(e),
            }
        }
    };
    let mut on_checkpoint = |step: usize| -> adapt_train::Result<()> {
        match opts.stop_after {
            Some(s) if s == step => {
                Err(adapt_train::TrainError::Config(format!("stopped after iteration {step} as asked (--stop-after)")))
            }
            _ => Ok(()),
        }
    };
    let seconds = if resumed_at == Some(steps) {
        // A finished run asked to resume (e.g. stopped before its summary was written): nothing
        // left to train, report it again.
        previous_seconds(dir)
    } else {
        let hooks = GtaHooks {
            metrics: Some(&mut metrics),
            progress: Some(&progress),
            checkpoint: Some(CheckpointPolicy { path: ckpt_path.clone(), every }),
            resume,
            on_record: Some(&mut on_record),
            on_checkpoint: Some(&mut on_checkpoint),
        };
        train_gta(&model, &params, &mut sampler, device, &cfg.train, hooks)
            .with_context(|| format!("training {} (run folder {})", variant.method_name(), dir.display()))?
            .seconds
    };
    if let Some(e) = first_epoch_err {
        return Err(e.context("embedding the test images after the first epoch"));
    }
    params.save(&dir.join("model.safetensors"))?;
    write_curves(&dir.join("curves.png"), &curve)?;

    let (source_acc, _) = test_accuracy(&model, data.source_test.as_ref(), device)?;
    let (target_acc, target_ari) = test_accuracy(&model, data.target_test.as_ref(), device)?;
    let last = embeddings(&model, data, device)?;
    let split = last.rows.iter().filter(|(_, t)| !t).count() * last.dim;
    let a = proxy_a_distance(&last.values[..split], &last.values[split..], last.dim, seed)?;
    let mut panels = Vec::new();
    let mut views = Vec::new();
    if let Some((step, e)) = &first_epoch {
        views.push((format!("step {step} (first epoch)"), tsne_points(e, seed)?));
    }
    views.push((format!("step {steps} (end)"), tsne_points(&last, seed)?));
    for (title, pts) in views {
        panels.push(ScatterPanel { title: format!("{title}: by domain"), points: pts.clone(), by_domain: true });
        panels.push(ScatterPanel { title: format!("{title}: by class"), points: pts, by_domain: false });
    }
    plots::scatter_panels(&dir.join("features_tsne.png"), &panels)?;
    if variant != GtaVariant::Stream1 {
        write_generated(&model, data, seed, &dir.join("generated.png"), device)?;
    }
    let summary = RunSummary {
        method: variant.method_name().into(),
        source: data.source_name.clone(),
        target: data.target_name.clone(),
        seed,
        source_acc,
        target_acc,
        // GTA has no domain classifier of its own: this is the held-out accuracy of the linear
        // domain classifier behind the A-distance, on F's embeddings.
        domain_acc: 1.0 - a.test_error,
        a_distance: a.a_distance,
        target_ari,
        source_val_acc: None,
        selected_step: steps,
        selection: Selection::Last,
        seconds,
        steps,
        resumed_at,
        run_dir: dir.display().to_string(),
    };
    summary.write(dir)?;
    write_report(dir, &summary, variant, first_epoch.is_some())?;
    Ok(summary)
}

fn write_report(dir: &Path, s: &RunSummary, variant: GtaVariant, has_first_epoch: bool) -> Result<()> {
    let mut report = Report::new(&format!("Generate To Adapt: {} -> {} ({})", s.source, s.target, s.method));
    report.paragraph(&format!(
        "{}. 32x32 RGB inputs scaled to [-1, 1] as (p - 0.5) / 0.5; Adam lr 5e-4, beta1 0.8, batches of 100 + 100, \
         adv_weight 0.1, alpha 0.3, lr/(1 + 1e-4 i) on D, F and C. Seed {}, {} iterations. Target labels are used for the \
         test accuracy only; the reported model is the last iteration's.",
        variant.description(),
        s.seed,
        s.steps
    ));
    report.table(
        &["method", "source acc", "target acc", "domain acc (linear, on F)", "A-distance", "seconds"],
        &[vec![
            s.method.clone(),
            percent(s.source_acc),
            percent(s.target_acc),
            percent(s.domain_acc),
            format!("{:.2}", s.a_distance),
            format!("{:.0}", s.seconds),
        ]],
    );
    report.heading("Training curves");
    report.image("curves", "curves.png");
    report.heading("Embeddings (t-SNE)");
    report.paragraph(if has_first_epoch {
        "F's embeddings of 500 source and 500 target test images after the first epoch and at the end."
    } else {
        "F's embeddings of 500 source and 500 target test images at the end (the run is shorter than one epoch)."
    });
    report.image("t-SNE", "features_tsne.png");
    if variant != GtaVariant::Stream1 {
        report.heading("Generated images");
        report.paragraph(
            "G's outputs: the first two rows from source test embeddings (with their class code), the last two from \
             target test embeddings (with the target code). Labels printed under the images are the true classes.",
        );
        report.image("generated", "generated.png");
    }
    report.write(&dir.join("report.md"))?;
    Ok(())
}

/// `cargo xtask train --method gta`: the full method on one pair.
pub fn train(args: &TrainArgs, device: &Device) -> Result<Vec<RunSummary>> {
    let (source, target) = parse_pair(&args.source, &args.target)?;
    let (data, mean) = load(source, target, args.data_dir.as_deref())?;
    let dir = run_dir::create(args.out.as_deref(), "gta", source.name(), target.name())?;
    args.save(&dir)?;
    let steps = args.steps.unwrap_or(DEFAULT_STEPS);
    let batch = args.batch_size.unwrap_or(100);
    let opts = args.run_options();
    Ok(vec![run_variant(GtaVariant::Full, &data, &mean, steps, batch, args.seed, &dir, device, &opts)?])
}

/// `cargo xtask ablation gta`: stream 1 only, + C1, + C1 + C2, over seeds.
pub fn ablation(args: &GtaAblationArgs) -> Result<serde_json::Value> {
    if args.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    let device = Device::Cpu;
    let (source, target) = parse_pair(&args.source, &args.target)?;
    let (data, mean) = load(source, target, args.data_dir.as_deref())?;
    let opts =
        RunOptions { quiet: args.quiet, resume: true, checkpoint_every: 0, stop_after: None, select: Selection::Last };
    let mut runs = Vec::new();
    for seed in 0..args.seeds {
        for variant in GtaVariant::ALL {
            let dir = args
                .out
                .join(format!("{}-{}", source.name(), target.name()))
                .join(format!("seed{seed}"))
                .join(variant.method_name());
            let summary = match read_summary::<RunSummary>(&dir) {
                Some(s) if s.steps == args.steps => s,
                // An interrupted run continues from its checkpoint.
                _ => run_variant(variant, &data, &mean, args.steps, args.batch_size, seed, &dir, &device, &opts)?,
            };
            runs.push(summary);
        }
    }
    let mut md = format!(
        "# Generate To Adapt ablation: {} -> {}, target test accuracy (%)\n\n{} iterations of {} + {}, mean ± std over {} seed(s).\n\n\
         | row | method | target acc | source acc | A-distance |\n|---|---|---|---|---|\n",
        source.name(),
        target.name(),
        args.steps,
        args.batch_size,
        args.batch_size,
        args.seeds
    );
    for variant in GtaVariant::ALL {
        let rows: Vec<&RunSummary> = runs.iter().filter(|r| r.method == variant.method_name()).collect();
        let pick = |f: fn(&RunSummary) -> f64| mean_std(&rows.iter().map(|r| f(r)).collect::<Vec<_>>());
        let (t, ts) = pick(|r| 100.0 * r.target_acc);
        let (s, _) = pick(|r| 100.0 * r.source_acc);
        let (a, _) = pick(|r| r.a_distance);
        md.push_str(&format!(
            "| {} | {} | {t:.1} ± {ts:.1} | {s:.1} | {a:.2} |\n",
            variant.description(),
            variant.method_name()
        ));
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let path = args.out.join("ablation.md");
    std::fs::write(&path, &md).with_context(|| format!("cannot write {}", path.display()))?;
    println!("{md}");
    println!("written: {}", path.display());
    Ok(serde_json::json!({ "runs": runs }))
}
