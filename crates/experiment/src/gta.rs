//! Generate To Adapt (Sankaranarayanan et al., CVPR 2018) experiments: `cargo xtask train
//! --method gta` (the full method) and `cargo xtask ablation gta` (the paper's three ablation
//! rows).
//!
//! Inputs are 32x32 RGB (MNIST zero-padded from 28), `/255`, then normalised as the recipe's
//! [`GtaPreset`] says: `(p - 0.5) / 0.5` by default, the authors' `(p - 0.44) / 0.19` with
//! [`GtaPreset::Authors`]; D and G always work in `[-1, 1]`. Each run writes `config.toml`,
//! `metrics.jsonl`, `model.safetensors`, `curves.png`, `features_tsne.png` (F's embeddings after
//! the first epoch and at the end), `generated.png` (G's images per class from source and from
//! target embeddings; `generated_stepNNNNN.png` the same at every checkpoint, same inputs and
//! noise), `embeddings_first_epoch.json` (so a run resumed later still shows its first epoch),
//! `selection.json` (the label-free validators at every checkpoint, with the
//! target test accuracy each choice would report), `summary.json` and `report.md`.
use crate::dann_run::{ANALYSIS_POINTS, CheckpointScores, SelectionRecord, VALIDATOR_IMAGES, previous_seconds};
use crate::error::{Context, ExperimentError, Result, ensure};
use crate::files::{
    METRICS_FILE, MODEL_FILE, RECIPE_FILE, REPORT_FILE, RunLock, SELECTION_FILE, create_dir, open_run_folder,
    read_json, run_folder_path, write_json,
};
use crate::recipe::{GtaPreset, GtaRecipe, Recipe, RunOptions, RunRecord};
use crate::selection::{ValidatorChoice, validator_choices};
use crate::summary::{RunKind, RunSummary, Selection};
use crate::weights::{RunConfig, WeightsInfo, WeightsStep, save_weights};
use adapt_datasets::pair::{DomainShaping, PairProfile};
use adapt_datasets::{DomainPair, ImageDataset, Normalization, PairSpec, Rows, Split, load_digit_pair};
use adapt_eval::plots::{self, DomainPoint, ScatterPanel, Series};
use adapt_eval::report::{Report, percent};
use adapt_eval::{TsneConfig, accuracy, adjusted_rand_index, proxy_a_distance, tsne};
use adapt_models::ParamStore;
use adapt_models::gta::{GtaModel, GtaNetConfig, sample_noise};
use adapt_train::batches::MixedSampler;
use adapt_train::checkpoint::{CHECKPOINT_FILE, CheckpointPolicy};
use adapt_train::log::{MetricsWriter, Progress};
use adapt_train::{GtaConfig, GtaHooks, GtaStepMetrics, GtaVariant, TrainError, train_gta};
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
    /// The normalisation's std (absent in configs written before the presets: 0.5).
    #[serde(default = "unit_std")]
    pub pixel_std: Vec<f32>,
    /// USPS drawn into a box of this side, zero-padded to 32x32 (None: resized to the input).
    /// How the source's images reach the 32x32 input.
    #[serde(default)]
    pub source_input: DomainShaping,
    /// How the target's images reach it.
    #[serde(default)]
    pub target_input: DomainShaping,
    pub model: GtaNetConfig,
    pub train: GtaConfig,
}

fn unit_std() -> Vec<f32> {
    vec![INPUT_STD]
}

/// The default input normalisation `(p - 0.5) / 0.5`: pixels in `[-1, 1]`, the range D sees too.
/// With the DANN preprocessing (only the pixel mean subtracted, values in about `[-0.45, 0.55]`)
/// stream 1's classifier loss fell to 0.4 and then climbed back to 2-3 within 300 iterations, in
/// adapt and in a PyTorch probe of the same F + C alike; at `[-1, 1]` the probe trained stably.
pub const INPUT_MEAN: f32 = 0.5;
pub const INPUT_STD: f32 = 0.5;

/// The recipe's data: 32x32 RGB normalised as its preset says, USPS in its digit box if any.
pub fn pair_spec(preset: GtaPreset, recipe: &GtaRecipe) -> Result<PairSpec> {
    let (mean, std) = preset.normalization();
    let (source, target) = recipe.pair()?;
    Ok(PairSpec {
        source,
        target,
        image_size: 32,
        normalization: Normalization::Fixed { mean: vec![mean], std: vec![std] },
        source_input: recipe.source_input,
        target_input: recipe.target_input,
    })
}

pub fn load_data(recipe: &GtaRecipe, data_dir: Option<&Path>) -> Result<DomainPair> {
    Ok(load_digit_pair(&pair_spec(recipe.preset, recipe)?, data_dir)?)
}

/// F's embeddings after the first epoch, `(step, embeddings)`, kept for the report of a run resumed
/// after it.
pub const FIRST_EPOCH_FILE: &str = "embeddings_first_epoch.json";

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
#[derive(Serialize, Deserialize)]
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

/// The first `per_class` rows of each class 0..`classes` of `rows` (fewer where a class has fewer),
/// ordered by round: one of each class, then the next of each, and so on.
fn per_class_rows(rows: &dyn Rows, classes: usize, per_class: usize) -> Vec<usize> {
    let mut found: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for i in 0..rows.len() {
        let l = rows.label(i) as usize;
        if l < classes && found[l].len() < per_class {
            found[l].push(i);
            if found.iter().all(|f| f.len() == per_class) {
                break;
            }
        }
    }
    (0..per_class).flat_map(|round| found.iter().filter_map(move |f| f.get(round).copied())).collect()
}

/// Images generated for each class: [`GRID_PER_CLASS`] source and target test images of every
/// class, each row of real inputs followed by the row G made from their embeddings.
pub const GRID_PER_CLASS: usize = 2;

/// `generated.png`: rows of 10 (one image per class), in pairs: real source test images, then G's
/// images from their embeddings (with their class code), [`GRID_PER_CLASS`] times; then the same for
/// target test images (G given the target code). The labels are the true classes (target labels
/// only label the picture), so the count of generated digits that show their class can be read off.
fn write_generated(
    model: &GtaModel,
    data: &DomainPair,
    (mean, std): (f32, f32),
    seed: u64,
    path: &Path,
    device: &Device,
) -> Result<()> {
    let classes = model.config().classes;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let noise_dim = model.config().noise_dim;
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for (rows, is_source) in [(data.source_test.as_ref(), true), (data.target_test.as_ref(), false)] {
        let idx = per_class_rows(rows, classes, GRID_PER_CLASS);
        let (pixels, ys) = rows.gather(&idx);
        let mut shape = vec![idx.len()];
        shape.extend(rows.row_shape());
        let x = Tensor::from_vec(pixels, shape, device)?;
        let noise = sample_noise(idx.len(), noise_dim, &mut rng, device)?;
        let code = Tensor::new(ys.as_slice(), device)?;
        let generated = model.generate(&x, is_source.then_some(&code), &noise, false)?;
        // Real inputs back to [-1, 1], as G's images are.
        let real = ((((x * f64::from(std))? + f64::from(mean))? * 2.0)? - 1.0)?;
        for start in (0..idx.len()).step_by(classes) {
            let n = classes.min(idx.len() - start);
            images.push(real.narrow(0, start, n)?);
            images.push(generated.narrow(0, start, n)?);
            labels.extend_from_slice(&ys[start..start + n]);
            labels.extend_from_slice(&ys[start..start + n]);
        }
    }
    let images = Tensor::cat(&images.iter().collect::<Vec<_>>(), 0)?;
    let pixels: Vec<f32> = ((images + 1.0)? * 127.5)?.clamp(0.0, 255.0)?.flatten_all()?.to_vec1::<f32>()?;
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
    let tmp = path.with_extension("tmp.png");
    adapt_datasets::preview::grid(&ds, &indices, classes).save(&tmp).map_err(|e| ExperimentError::file(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ExperimentError::io(path, e))
}

/// Softmax of F + C on the first `n` rows of `rows`, row-major `[n, classes]`.
fn probabilities(model: &GtaModel, rows: &dyn Rows, n: usize, device: &Device) -> Result<(Vec<f32>, usize, usize)> {
    let n = n.min(rows.len());
    let mut out = Vec::new();
    let mut classes = 0;
    for start in (0..n).step_by(500) {
        let (x, _) = gather_rows(rows, start, (start + 500).min(n), device)?;
        let p = candle_nn::ops::softmax_last_dim(&model.classify(&x)?)?;
        classes = p.dim(1)?;
        out.extend(p.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok((out, n, classes))
}

fn gather_rows(rows: &dyn Rows, start: usize, end: usize, device: &Device) -> Result<(Tensor, Vec<u32>)> {
    let idx: Vec<usize> = (start..end).collect();
    let (data, labels) = rows.gather(&idx);
    let mut shape = vec![idx.len()];
    shape.extend(rows.row_shape());
    Ok((Tensor::from_vec(data, shape, device)?, labels))
}

/// The label-free validators on `model` as it stands: source validation accuracy, and IM, BNM and
/// SND on the first [`VALIDATOR_IMAGES`] target training images; the target test accuracy is
/// recorded for evaluation only. `None` without a source validation split.
pub fn checkpoint_scores(
    model: &GtaModel,
    data: &DomainPair,
    step: usize,
    device: &Device,
) -> Result<Option<CheckpointScores>> {
    let Some(val) = &data.source_val else { return Ok(None) };
    let (p, n, c) = probabilities(model, data.target_train.as_ref(), VALIDATOR_IMAGES, device)?;
    let accuracies =
        (test_accuracy(model, val.as_ref(), device)?.0, test_accuracy(model, data.target_test.as_ref(), device)?.0);
    Ok(Some(CheckpointScores::new(step, (&p, n, c), accuracies)?))
}

/// A run folder's validator record (`selection.json`) and each validator's choice in it.
pub fn read_choices(dir: &Path) -> Result<Vec<ValidatorChoice>> {
    Ok(read_json::<SelectionRecord>(&dir.join(SELECTION_FILE))?.map_or_else(Vec::new, |r| validator_choices(&r)))
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
    /// The run of `recipe` (its length resolved), with the input mean and std its data was
    /// normalised with.
    pub fn new(recipe: &GtaRecipe, mean: &[f32], std: &[f32]) -> Result<Self> {
        let (source, target) = recipe.pair()?;
        let steps = recipe.steps;
        Ok(Self {
            source: source.as_string(),
            target: target.as_string(),
            image_size: 32,
            pixel_mean: mean.to_vec(),
            pixel_std: std.to_vec(),
            source_input: recipe.source_input,
            target_input: recipe.target_input,
            model: GtaNetConfig::default(),
            train: GtaConfig {
                variant: recipe.variant,
                steps,
                batch_size: recipe.batch_size,
                seed: recipe.seed,
                input_mean: mean.to_vec(),
                input_std: std.to_vec(),
                input_shift: recipe.input_shift,
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
        let spec = PairSpec {
            source,
            target,
            image_size: 32,
            normalization: Normalization::Fixed { mean: self.pixel_mean.clone(), std: self.pixel_std.clone() },
            source_input: self.source_input,
            target_input: self.target_input,
        };
        Ok(load_digit_pair(&spec, data_dir)?)
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
    dir: &Path,
    device: &Device,
    opts: &RunOptions,
) -> Result<RunSummary> {
    create_dir(dir)?;
    let cfg = GtaRunConfig::new(recipe, &data.mean, &data.std)?;
    let (variant, steps, batch_size, seed) = (recipe.variant, recipe.steps, recipe.batch_size, recipe.seed);
    let input =
        serde_json::to_value(&data.input).map_err(|e| ExperimentError::Invalid(format!("input description: {e}")))?;
    // G draws from a one-hot class code and D classifies into the ten digits plus "fake": the
    // nets of Sankaranarayanan et al. are built for ten classes.
    ensure(data.classes.len() == 10, || {
        format!(
            "Generate To Adapt's nets are built for 10 classes; {} has {} ({}); use the DANN recipes",
            data.source_name,
            data.classes.len(),
            data.classes.join(", ")
        )
    })?;
    let info = WeightsInfo { input, config: RunConfig::Gta(cfg.clone()), classes: data.classes.clone() };
    let (ckpt_path, metrics_path) = (dir.join(CHECKPOINT_FILE), dir.join(METRICS_FILE));
    let params = ParamStore::new(seed);
    let model = cfg.build_model(&params, device)?;
    let mut sampler = MixedSampler::new(data.source_train.clone(), data.target_train.clone(), batch_size, seed)?
        .with_shift(cfg.train.input_shift)?;
    let schedule = crate::files::RecordSchedule { every: cfg.train.log_every, steps };
    let selection_path = dir.join(SELECTION_FILE);
    let first_epoch_path = dir.join(FIRST_EPOCH_FILE);
    let (resume, mut curve) = open_run_folder::<RunConfig, GtaStepMetrics>(
        dir,
        &info.config,
        schedule,
        &params,
        device,
        opts.resume,
        &[&selection_path, &first_epoch_path],
    )?;
    let mut selection = SelectionRecord::default();
    if let Some(r) = &resume {
        adapt_train::checkpoint::check_resume(&ckpt_path, r, steps, &sampler)?;
        if let Some(saved) = read_json::<SelectionRecord>(&selection_path)? {
            selection = saved;
            selection.history.retain(|(step, _)| *step <= r.step);
            selection.checkpoints.retain(|c| c.step <= r.step);
        }
    }
    let resumed_at = resume.as_ref().map(|r| r.step);
    let mut metrics = MetricsWriter::append(&metrics_path)?;
    let progress = Progress::new(steps as u64, variant.method_name(), !opts.quiet);
    let epoch = data.source_train.len().div_ceil(batch_size).min(steps);
    let every = opts.checkpoint_interval(steps, cfg.train.log_every);
    let norm = (cfg.pixel_mean.first().copied().unwrap_or(0.0), cfg.pixel_std.first().copied().unwrap_or(1.0));
    // A run resumed past its first epoch reads the embeddings it saved then (runs older than that
    // file have none: their report shows the end only).
    let mut first_epoch: Option<(usize, Embeddings)> = match resumed_at {
        Some(s) if s >= epoch => read_json(&first_epoch_path)?,
        _ => None,
    };
    let mut first_epoch_err = None;
    let mut on_record = |r: &GtaStepMetrics| {
        curve.push(*r);
        if first_epoch.is_none() && first_epoch_err.is_none() && r.step >= epoch && resumed_at.is_none_or(|s| s < epoch)
        {
            match embeddings(&model, data, device) {
                Ok(e) => {
                    let saved = (r.step, e);
                    match write_json(&first_epoch_path, &saved) {
                        Ok(()) => first_epoch = Some(saved),
                        Err(e) => first_epoch_err = Some(e),
                    }
                }
                Err(e) => first_epoch_err = Some(e),
            }
        }
    };
    let mut on_checkpoint = |step: usize| -> adapt_train::Result<()> {
        let in_hook = |e: ExperimentError| TrainError::Config(format!("scoring the checkpoint at {step}: {e}"));
        if let Some(scores) = checkpoint_scores(&model, data, step, device).map_err(in_hook)? {
            selection.add(scores);
            write_json(&selection_path, &selection).map_err(in_hook)?;
        }
        if variant.adversarial() {
            // G's images at each checkpoint, with the same inputs and noise: collapse shows as it happens.
            let path = dir.join(format!("generated_step{step:05}.png"));
            write_generated(&model, data, norm, seed, &path, device).map_err(in_hook)?;
        }
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
        write_generated(&model, data, norm, seed, &dir.join("generated.png"), device)?;
    }
    let choices = validator_choices(&selection);
    let summary = RunSummary {
        kind: RunKind::Gta,
        method: variant.method_name().into(),
        source: data.source_name.clone(),
        target: data.target_name.clone(),
        seed,
        source_acc: eval.source_acc,
        target_acc: if data.target_labelled { eval.target_acc } else { 0.0 },
        domain_acc: eval.domain_acc,
        a_distance: eval.a_distance,
        target_ari: if data.target_labelled { eval.target_ari } else { 0.0 },
        source_val_acc: selection.checkpoints.last().map(|c| c.source_val_acc),
        selected_step: steps,
        selection: Selection::Last,
        weights: MODEL_FILE.into(),
        seconds,
        steps,
        resumed_at,
        run_dir: dir.display().to_string(),
        recommended: false,
        selected: true,
        target_labelled: data.target_labelled,
    };
    summary.write(dir)?;
    write_report(dir, &summary, &cfg, &choices, first_epoch.is_some())?;
    Ok(summary)
}

fn write_report(
    dir: &Path,
    s: &RunSummary,
    cfg: &GtaRunConfig,
    choices: &[ValidatorChoice],
    has_first_epoch: bool,
) -> Result<()> {
    let variant = cfg.train.variant;
    let t = &cfg.train;
    let mut report = Report::new(&format!("Generate To Adapt: {} -> {} ({})", s.source, s.target, s.method));
    let boxed = |name: &str, b: Option<usize>| b.map(|b| format!("{name} in a {b}x{b} box"));
    let usps = [boxed("source", cfg.source_input.digit_box), boxed("target", cfg.target_input.digit_box)]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ");
    let usps = if usps.is_empty() { "each frame fitted to 32x32".to_string() } else { usps };
    let shift = match t.input_shift {
        0 => String::new(),
        n => format!("; training images of both domains moved by up to {n} px each way"),
    };
    report.paragraph(&format!(
        "{}. 32x32 RGB inputs normalised as (p - {:?}) / {:?} ({usps}{shift}; D and G see [-1, 1]); Adam lr {}, beta1 {}, \
         batches of {} + {}, adv_weight {}, alpha {}, lr/(1 + {} i) on D, F and C; updates D, G, C, F. Seed {}, {} \
         iterations. Target labels are used for the test accuracy only; the reported model is the last iteration's, \
         the label-free validators' choices are listed beside it.",
        variant.description(),
        cfg.pixel_mean,
        cfg.pixel_std,
        t.adam.lr,
        t.adam.beta1,
        t.batch_size,
        t.batch_size,
        t.adv_weight,
        t.alpha,
        t.lr_decay,
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
    if !choices.is_empty() {
        report.heading("Checkpoint selection");
        report.paragraph(
            "Target test accuracy of the checkpoint each label-free validator chooses (source validation accuracy; \
             IM, BNM and SND on 1000 target training images), of the last checkpoint, and the oracle (target labels: \
             not a selection rule).",
        );
        let rows: Vec<Vec<String>> =
            choices.iter().map(|c| vec![c.validator.clone(), c.step.to_string(), percent(c.target_test_acc)]).collect();
        report.table(&["validator", "step", "target test acc"], &rows);
    }
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
            "Rows in pairs: real test images, one per class, then G's images from their embeddings; the first two \
             pairs are source images (G given their class code), the last two target images (G given the target \
             code). Labels printed under the images are the true classes.",
        );
        report.image("generated", "generated.png");
    }
    report.write(&dir.join(REPORT_FILE))?;
    Ok(())
}

/// Trains the recipe in a run folder of its own (with `epochs`, its length resolved on the data).
pub fn run(recipe: &GtaRecipe, opts: &RunOptions, device: &Device) -> Result<(RunSummary, Vec<String>)> {
    recipe.validate()?;
    let (source, target) = recipe.pair()?;
    let data = load_data(recipe, opts.data_dir.as_deref())?;
    let mut recipe = recipe.clone();
    recipe.resolve_length(data.source_train.len())?;
    let notes = data.notes.clone();
    crate::pair::check_batch(&data, recipe.batch_size)?;
    let dir = run_folder_path(opts.out.as_deref(), "gta", &source.short_name(), &target.short_name());
    create_dir(&dir)?;
    let _lock = RunLock::acquire(&dir)?;
    write_json(&dir.join(RECIPE_FILE), &RunRecord::new(Recipe::Gta(recipe.clone()), opts))?;
    Ok((run_in(&recipe, &data, &dir, device, opts)?, notes))
}

/// The GTA ablation: stream 1 only, + C1, + C1 + C2, for each seed.
#[derive(Debug, Clone)]
pub struct GtaAblation {
    pub source: String,
    pub target: String,
    /// Seeds per row: `first_seed`, `first_seed + 1`, ...
    pub seeds: u64,
    /// The first seed (0 for a whole ablation; another, to train some seeds in a process of
    /// their own: finished runs in `out` are read back, so a later call with `first_seed` 0
    /// tabulates them all).
    pub first_seed: u64,
    /// Iterations per run (replaced by `epochs` when that is given).
    pub steps: usize,
    /// Epochs of the source training set per run.
    pub epochs: Option<usize>,
    pub batch_size: usize,
    pub preset: GtaPreset,
    /// The digit box of a frame-filling domain (`None`: as the data decides,
    /// [`GtaRecipe::new`]).
    pub digit_box: Option<usize>,
    /// The pair's label-free profiles, which the recipes decide from.
    pub profile: PairProfile,
    /// Training images moved by up to this many pixels each way (0: not moved).
    pub input_shift: usize,
    /// Rows to train (default: all three).
    pub variants: Vec<GtaVariant>,
    /// Folder for the runs and `ablation.md`.
    pub out: std::path::PathBuf,
}

impl GtaAblation {
    /// The recipe of one run (its length not yet resolved).
    pub fn recipe(&self, variant: GtaVariant, seed: u64) -> Result<GtaRecipe> {
        let (source, target) = crate::recipe::parse_pair(&self.source, &self.target)?;
        let mut recipe = GtaRecipe {
            steps: self.steps,
            batch_size: self.batch_size,
            preset: self.preset,
            epochs: self.epochs,
            input_shift: self.input_shift,
            ..GtaRecipe::new(&source, &target, &self.profile, variant, seed)
        };
        if self.digit_box.is_some() {
            recipe.set_digit_box(self.digit_box, &self.profile)?;
        }
        Ok(recipe)
    }

    /// The run folder of one row and seed.
    pub fn run_dir(&self, variant: GtaVariant, seed: u64) -> std::path::PathBuf {
        self.out
            .join(format!(
                "{}-{}",
                adapt_datasets::DataRef::parse(&self.source).short_name(),
                adapt_datasets::DataRef::parse(&self.target).short_name()
            ))
            .join(format!("seed{seed}"))
            .join(variant.method_name())
    }
}

/// Checks the ablation, loads its data and resolves its length: with `epochs`, `spec.steps` is
/// set to the resolved number of iterations.
pub(crate) fn prepare_ablation(spec: &mut GtaAblation, opts: &RunOptions) -> Result<DomainPair> {
    check_ablation(spec)?;
    let first = spec.recipe(GtaVariant::Full, 0)?;
    first.validate()?;
    let data = load_data(&first, opts.data_dir.as_deref())?;
    crate::pair::check_batch(&data, spec.batch_size)?;
    let mut resolved = first.clone();
    resolved.resolve_length(data.source_train.len())?;
    spec.steps = resolved.steps;
    Ok(data)
}

/// The checks of an ablation that need no data; the pair's names made canonical.
pub(crate) fn check_ablation(spec: &mut GtaAblation) -> Result<()> {
    ensure(spec.seeds > 0, || "the ablation needs at least one seed".into())?;
    ensure(!spec.variants.is_empty(), || "the ablation needs at least one row".into())?;
    let (source, target) = crate::recipe::parse_pair(&spec.source, &spec.target)?;
    (spec.source, spec.target) = (source.as_string(), target.as_string());
    Ok(())
}

/// One run of a prepared ablation ([`prepare_ablation`]): read back when finished at the
/// ablation's length (`true`), else trained, an interrupted one resumed from its checkpoint.
pub(crate) fn ablation_run(
    spec: &GtaAblation,
    (variant, seed): (GtaVariant, u64),
    data: &DomainPair,
    opts: &RunOptions,
    device: &Device,
) -> Result<(RunSummary, bool)> {
    let dir = spec.run_dir(variant, seed);
    if let Some(s) = RunSummary::read(&dir)?.filter(|s| s.steps == spec.steps) {
        return Ok((s, true));
    }
    let opts = RunOptions { resume: true, out: None, ..opts.clone() };
    let mut recipe = spec.recipe(variant, seed)?;
    recipe.resolve_length(data.source_train.len())?;
    create_dir(&dir)?;
    let _lock = RunLock::acquire(&dir)?;
    write_json(&dir.join(RECIPE_FILE), &RunRecord::new(Recipe::Gta(recipe.clone()), &opts))?;
    Ok((run_in(&recipe, data, &dir, device, &opts)?, false))
}

/// The ablation's runs (finished ones read back, interrupted ones resumed) and its table. With
/// `epochs`, `spec.steps` is set to the resolved length.
pub fn ablation(spec: &mut GtaAblation, opts: &RunOptions, device: &Device) -> Result<(Vec<RunSummary>, String)> {
    let data = prepare_ablation(spec, opts)?;
    let mut runs = Vec::new();
    for seed in spec.first_seed..spec.first_seed.saturating_add(spec.seeds) {
        for variant in GtaVariant::ALL.into_iter().filter(|v| spec.variants.contains(v)) {
            runs.push(ablation_run(spec, (variant, seed), &data, opts, device)?.0);
        }
    }
    let mut choices = Vec::new();
    for r in &runs {
        choices.push(read_choices(Path::new(&r.run_dir))?);
    }
    let table = crate::aggregate::gta_ablation_table(spec, &runs, &choices);
    create_dir(&spec.out)?;
    crate::files::write_atomic(&spec.out.join("ablation.md"), &table)?;
    Ok((runs, table))
}

#[cfg(test)]
mod tests {
    use super::*;
    use adapt_datasets::rows::Rows;

    struct Labels(Vec<u32>);

    impl Rows for Labels {
        fn len(&self) -> usize {
            self.0.len()
        }
        fn row_shape(&self) -> Vec<usize> {
            vec![1]
        }
        fn copy_row(&self, i: usize, out: &mut [f32]) {
            out[0] = i as f32;
        }
        fn label(&self, i: usize) -> u32 {
            self.0[i]
        }
    }

    #[test]
    fn the_image_grid_takes_each_class_in_order() {
        let rows = Labels(vec![2, 0, 0, 1, 2, 9, 1, 0, 2]);
        // One of each class present per round, classes in order; class 9 has one image only.
        assert_eq!(per_class_rows(&rows, 3, 2), vec![1, 3, 0, 2, 6, 4]);
        assert_eq!(per_class_rows(&rows, 10, 1), vec![1, 3, 0, 5]);
        assert!(per_class_rows(&Labels(vec![]), 10, 2).is_empty());
    }

    #[test]
    fn the_presets_normalise_the_data_as_named() {
        let (s, t, p) = crate::recipe::tests::pair_profile("usps", "mnist");
        let recipe = GtaRecipe::new(&s, &t, &p, GtaVariant::Full, 0);
        let authors = pair_spec(GtaPreset::Authors, &recipe).unwrap();
        assert_eq!(authors.normalization, Normalization::Fixed { mean: vec![0.44], std: vec![0.19] });
        // The default draws USPS's frame-filling digits at MNIST's 20-pixel scale, MNIST padded.
        assert_eq!(
            (authors.image_size, authors.source_input.digit_box, authors.source_input.binarize),
            (32, Some(20), false)
        );
        assert_eq!((authors.target_input.digit_box, authors.target_input.fit), (None, adapt_datasets::pair::Fit::Pad));
        assert_eq!((recipe.preset, recipe.input_shift), (GtaPreset::Authors, 2));
        // The unit preset keeps the GTA normalisation of PairSpec::gta.
        let (s, t, p) = crate::recipe::tests::pair_profile("mnist", "mnist-m");
        let recipe = GtaRecipe::new(&s, &t, &p, GtaVariant::Full, 0);
        assert_eq!(pair_spec(GtaPreset::Unit, &recipe).unwrap(), PairSpec::gta(&s, &t, &p));
        // A config written before the std was recorded reads back with 0.5.
        let cfg = GtaRunConfig::new(&recipe, &[0.44], &[0.19]).unwrap();
        assert_eq!((cfg.train.input_mean.clone(), cfg.train.input_std.clone()), (vec![0.44], vec![0.19]));
        let mut old = toml::Value::try_from(&cfg).unwrap();
        old.as_table_mut().unwrap().remove("pixel_std");
        let back: GtaRunConfig = old.try_into().unwrap();
        assert_eq!(back.pixel_std, vec![0.5]);
    }
}
