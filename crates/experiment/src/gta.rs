//! Generate To Adapt (Sankaranarayanan et al., CVPR 2018) experiments: `cargo xtask train
//! --method gta` (the full method) and `cargo xtask ablation gta` (seed 001's three rows).
//!
//! Inputs are 32x32 RGB (MNIST zero-padded from 28), `/255`, then `(p - 0.5) / 0.5` as the
//! authors normalise them; D sees images in the same `[-1, 1]` range. Each run writes `config.toml`,
//! `metrics.jsonl`, `model.safetensors`, `curves.png`, `features_tsne.png` (F's embeddings after
//! the first epoch and at the end), `generated.png` (G's images from source and from target
//! embeddings), `summary.json` and `report.md`.
use crate::dann_run::{ANALYSIS_POINTS, previous_seconds};
use crate::error::{Context, ExperimentError, Result, ensure};
use crate::files::{
    METRICS_FILE, MODEL_FILE, RECIPE_FILE, REPORT_FILE, RunLock, create_dir, open_run_folder, run_folder_path,
    write_json,
};
use crate::recipe::{GtaRecipe, Recipe, RunOptions, RunRecord};
use crate::summary::{RunKind, RunSummary, Selection};
use crate::weights::{RunConfig, WeightsInfo, WeightsStep, save_weights};
use adapt_datasets::{DomainPair, ImageDataset, PairSpec, Rows, Split, load_digit_pair};
use adapt_eval::plots::{self, DomainPoint, ScatterPanel, Series};
use adapt_eval::report::{Report, percent};
use adapt_eval::{TsneConfig, accuracy, adjusted_rand_index, proxy_a_distance, tsne};
use adapt_models::ParamStore;
use adapt_models::gta::{GtaModel, GtaNetConfig, sample_noise};
use adapt_train::batches::MixedSampler;
use adapt_train::checkpoint::{CHECKPOINT_FILE, CheckpointPolicy};
use adapt_train::log::{MetricsWriter, Progress};
use adapt_train::{GtaConfig, GtaHooks, GtaStepMetrics, GtaVariant, train_gta};
use candle_core::{D, DType, Device, Tensor};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Everything that defines one GTA run; written to `config.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GtaRunConfig {
    pub source: String,
    pub target: String,
    pub image_size: usize,
    /// Per-channel mean subtracted from both domains (over source + target training images).
    pub pixel_mean: Vec<f32>,
    pub model: GtaNetConfig,
    pub train: GtaConfig,
}

/// The authors' input normalisation `(p - 0.5) / 0.5`: pixels in `[-1, 1]`, the range D sees too.
/// With the DANN preprocessing (only the pixel mean subtracted, values in about `[-0.45, 0.55]`)
/// stream 1's classifier loss fell to 0.4 and then climbed back to 2-3 within 300 iterations, in
/// adapt and in a PyTorch probe of the same F + C alike; at `[-1, 1]` the probe trained stably.
pub const INPUT_MEAN: f32 = 0.5;
pub const INPUT_STD: f32 = 0.5;

/// 32x32 RGB in `[-1, 1]` ([`INPUT_MEAN`], [`INPUT_STD`]).
pub fn load_data(recipe: &GtaRecipe, data_dir: Option<&Path>) -> Result<DomainPair> {
    let (source, target) = recipe.pair()?;
    Ok(load_digit_pair(&PairSpec::gta(source, target), data_dir)?)
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
fn embeddings(model: &GtaModel, data: &DomainPair, device: &Device) -> Result<Embeddings> {
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
fn write_generated(model: &GtaModel, data: &DomainPair, seed: u64, path: &Path, device: &Device) -> Result<()> {
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
    adapt_datasets::preview::grid(&ds, &indices, 20).save(path).map_err(|e| ExperimentError::file(path, e))?;
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

impl GtaRunConfig {
    /// The run of `recipe`, with the input mean its data was normalised with.
    pub fn new(recipe: &GtaRecipe, mean: &[f32]) -> Result<Self> {
        let (source, target) = recipe.pair()?;
        let steps = recipe.steps;
        Ok(Self {
            source: source.name().into(),
            target: target.name().into(),
            image_size: 32,
            pixel_mean: mean.to_vec(),
            model: GtaNetConfig::default(),
            train: GtaConfig {
                variant: recipe.variant,
                steps,
                batch_size: recipe.batch_size,
                seed: recipe.seed,
                input_mean: mean.to_vec(),
                input_std: vec![INPUT_STD],
                // Short runs (tests) log, and may checkpoint, every iteration or few.
                log_every: (steps / 10).clamp(1, 25),
                ..GtaConfig::default()
            },
        })
    }

    /// F, C, G and D with this run's seeded starting weights.
    pub fn build_model(&self, params: &ParamStore, device: &Device) -> Result<GtaModel> {
        Ok(GtaModel::new(&self.model, params.var_builder(DType::F32, device))?)
    }

    /// Loads this run's data as it was trained on.
    pub fn load_data(&self, data_dir: Option<&Path>) -> Result<DomainPair> {
        let (source, target) = crate::recipe::parse_pair(&self.source, &self.target)?;
        Ok(load_digit_pair(&PairSpec::gta(source, target), data_dir)?)
    }
}

/// F + C's accuracies and F's A-distance on the test sets, as a summary whose run fields the
/// caller fills in.
pub fn evaluate_model(model: &GtaModel, data: &DomainPair, device: &Device, seed: u64) -> Result<GtaEval> {
    let (source_acc, _) = test_accuracy(model, data.source_test.as_ref(), device)?;
    let (target_acc, target_ari) = test_accuracy(model, data.target_test.as_ref(), device)?;
    let last = embeddings(model, data, device)?;
    let split = last.rows.iter().filter(|(_, t)| !t).count() * last.dim;
    let a = proxy_a_distance(&last.values[..split], &last.values[split..], last.dim, seed)?;
    Ok(GtaEval { source_acc, target_acc, target_ari, a_distance: a.a_distance, domain_acc: 1.0 - a.test_error })
}

/// What [`evaluate_model`] measures.
pub struct GtaEval {
    pub source_acc: f64,
    pub target_acc: f64,
    pub target_ari: f64,
    pub a_distance: f64,
    /// GTA has no domain classifier of its own: the held-out accuracy of the linear domain
    /// classifier behind the A-distance, on F's embeddings.
    pub domain_acc: f64,
}

/// Trains the recipe's variant in `dir` (which the caller holds the [`RunLock`] of) on `data`
/// and evaluates it.
pub fn run_in(
    recipe: &GtaRecipe,
    data: &DomainPair,
    mean: &[f32],
    dir: &Path,
    device: &Device,
    opts: &RunOptions,
) -> Result<RunSummary> {
    create_dir(dir)?;
    let cfg = GtaRunConfig::new(recipe, mean)?;
    let (variant, steps, batch_size, seed) = (recipe.variant, recipe.steps, recipe.batch_size, recipe.seed);
    let input =
        serde_json::to_value(&data.input).map_err(|e| ExperimentError::Invalid(format!("input description: {e}")))?;
    let info = WeightsInfo { input, config: RunConfig::Gta(cfg.clone()) };
    let (ckpt_path, metrics_path) = (dir.join(CHECKPOINT_FILE), dir.join(METRICS_FILE));
    let params = ParamStore::new(seed);
    let model = cfg.build_model(&params, device)?;
    let mut sampler = MixedSampler::new(data.source_train.clone(), data.target_train.clone(), batch_size, seed)?;
    let schedule = crate::files::RecordSchedule { every: cfg.train.log_every, steps };
    let (resume, mut curve) =
        open_run_folder::<RunConfig, GtaStepMetrics>(dir, &info.config, schedule, &params, device, opts.resume, &[])?;
    if let Some(r) = &resume {
        adapt_train::checkpoint::check_resume(&ckpt_path, r, steps, &sampler)?;
    }
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
        previous_seconds(dir)?
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
            .context(|| format!("training {} (run folder {})", variant.method_name(), dir.display()))?
            .seconds
    };
    if let Some(e) = first_epoch_err {
        return Err(e).context(|| "embedding the test images after the first epoch".into());
    }
    save_weights(&params, &dir.join(MODEL_FILE), &info, WeightsStep { step: steps, selection: Selection::Last })?;
    write_curves(&dir.join("curves.png"), &curve)?;

    let eval = evaluate_model(&model, data, device, seed)?;
    let last = embeddings(&model, data, device)?;
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
        kind: RunKind::Gta,
        method: variant.method_name().into(),
        source: data.source_name.clone(),
        target: data.target_name.clone(),
        seed,
        source_acc: eval.source_acc,
        target_acc: eval.target_acc,
        domain_acc: eval.domain_acc,
        a_distance: eval.a_distance,
        target_ari: eval.target_ari,
        source_val_acc: None,
        selected_step: steps,
        selection: Selection::Last,
        weights: MODEL_FILE.into(),
        seconds,
        steps,
        resumed_at,
        run_dir: dir.display().to_string(),
        recommended: false,
        selected: true,
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
    report.write(&dir.join(REPORT_FILE))?;
    Ok(())
}

/// Trains the recipe in a run folder of its own.
pub fn run(recipe: &GtaRecipe, opts: &RunOptions, device: &Device) -> Result<(RunSummary, Vec<String>)> {
    recipe.validate()?;
    let (source, target) = recipe.pair()?;
    let data = load_data(recipe, opts.data_dir.as_deref())?;
    let (mean, notes) = (data.mean.clone(), data.notes.clone());
    crate::pair::check_batch(&data, recipe.batch_size)?;
    let dir = run_folder_path(opts.out.as_deref(), "gta", source.name(), target.name());
    create_dir(&dir)?;
    let _lock = RunLock::acquire(&dir)?;
    write_json(&dir.join(RECIPE_FILE), &RunRecord::new(Recipe::Gta(recipe.clone()), opts))?;
    Ok((run_in(recipe, &data, &mean, &dir, device, opts)?, notes))
}

/// The GTA ablation: stream 1 only, + C1, + C1 + C2, for each seed.
#[derive(Debug, Clone)]
pub struct GtaAblation {
    pub source: String,
    pub target: String,
    /// Seeds 0, 1, ... per row.
    pub seeds: u64,
    pub steps: usize,
    pub batch_size: usize,
    /// Folder for the runs and `ablation.md`.
    pub out: std::path::PathBuf,
}

/// The ablation's runs (finished ones read back, interrupted ones resumed) and its table.
pub fn ablation(spec: &GtaAblation, opts: &RunOptions, device: &Device) -> Result<(Vec<RunSummary>, String)> {
    ensure(spec.seeds > 0, || "the ablation needs at least one seed".into())?;
    let (source, target) = crate::recipe::parse_pair(&spec.source, &spec.target)?;
    let recipe_of = |variant, seed| GtaRecipe {
        steps: spec.steps,
        batch_size: spec.batch_size,
        ..GtaRecipe::new(source, target, variant, seed)
    };
    recipe_of(GtaVariant::Full, 0).validate()?;
    let data = load_data(&recipe_of(GtaVariant::Full, 0), opts.data_dir.as_deref())?;
    let mean = data.mean.clone();
    crate::pair::check_batch(&data, spec.batch_size)?;
    let opts = RunOptions { resume: true, out: None, ..opts.clone() };
    let mut runs = Vec::new();
    for seed in 0..spec.seeds {
        for variant in GtaVariant::ALL {
            let dir = spec
                .out
                .join(format!("{}-{}", source.name(), target.name()))
                .join(format!("seed{seed}"))
                .join(variant.method_name());
            let summary = match RunSummary::read(&dir)? {
                Some(s) if s.steps == spec.steps => s,
                // An interrupted run continues from its checkpoint.
                _ => {
                    create_dir(&dir)?;
                    let _lock = RunLock::acquire(&dir)?;
                    run_in(&recipe_of(variant, seed), &data, &mean, &dir, device, &opts)?
                }
            };
            runs.push(summary);
        }
    }
    let table = crate::aggregate::gta_ablation_table(spec, &runs);
    create_dir(&spec.out)?;
    crate::files::write_atomic(&spec.out.join("ablation.md"), &table)?;
    Ok((runs, table))
}
