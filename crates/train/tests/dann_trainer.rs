//! DANN outside the `ParamStore` + `train_dann` path: the per-step [`DannTrainer`] in a loop of
//! one's own, and a model whose parameters live in a candle-nn `VarMap` trained, checkpointed and
//! resumed by the shared loop.
use adapt_datasets::toy::{RotatedMoons, RotatedMoonsConfig};
use adapt_models::init::{InitScheme, reinitialize};
use adapt_models::toy::{ToyConfig, ToyDann, toy_dann};
use adapt_models::{NamedParams, ParamStore};
use adapt_train::batches::MixedSampler;
use adapt_train::checkpoint::{self, CheckpointPolicy};
use adapt_train::log::MetricsWriter;
use adapt_train::optim::SgdSettings;
use adapt_train::{DannTrainer, Method, StepMetrics, TrainConfig, TrainError, TrainHooks, train_dann};
use candle_core::{DType, Device};
use candle_nn::VarMap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

type R = adapt_train::Result<()>;

fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("adapt-dann-trainer-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config() -> TrainConfig {
    TrainConfig {
        method: Method::Dann,
        steps: 40,
        batch_size: 16,
        seed: 3,
        sgd: SgdSettings { lr: 0.05, ..SgdSettings::default() },
        log_every: 5,
        ..TrainConfig::default()
    }
}

fn sampler(cfg: &TrainConfig) -> adapt_train::Result<MixedSampler> {
    let data = RotatedMoons::generate(&RotatedMoonsConfig::default())?;
    MixedSampler::new(Arc::new(data.source_train), Arc::new(data.target_train), cfg.batch_size, cfg.seed)
}

/// Every value of every parameter (copies: the store's tensors share the variables' storage).
fn values(params: &dyn NamedParams) -> HashMap<String, Vec<f32>> {
    params.tensors().into_iter().map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap())).collect()
}

fn store(seed: u64) -> adapt_train::Result<(ParamStore, ToyDann)> {
    let params = ParamStore::new(seed);
    let model = toy_dann(&ToyConfig::default(), params.var_builder(DType::F32, &Device::Cpu))?;
    Ok((params, model))
}

/// A `VarMap` draws from candle's unseeded generator; the Glorot redraw with a seed makes the toy
/// net (fully connected layers only) the same on every call.
fn var_map(seed: u64) -> adapt_train::Result<(VarMap, ToyDann)> {
    let vm = VarMap::new();
    let model = toy_dann(&ToyConfig::default(), NamedParams::var_builder(&vm, DType::F32, &Device::Cpu))?;
    reinitialize(&vm, "", InitScheme::Glorot, seed)?;
    Ok((vm, model))
}

#[test]
fn own_loop_over_the_per_step_api_reproduces_train_dann() -> R {
    let cfg = config();
    let (params_a, model_a) = store(cfg.seed)?;
    let mut records = Vec::new();
    let mut on_record = |r: &StepMetrics| records.push(*r);
    // The quiet library call: no progress bar, no metrics file, no checkpoints.
    let hooks = TrainHooks { on_record: Some(&mut on_record), ..TrainHooks::default() };
    let outcome = train_dann(&model_a, &params_a, &mut sampler(&cfg)?, &Device::Cpu, &cfg, hooks)?;
    assert_eq!(outcome.steps, cfg.steps);

    let (params_b, model_b) = store(cfg.seed)?;
    let mut trainer = DannTrainer::new(&model_b, &params_b, &cfg)?;
    let mut batches = sampler(&cfg)?;
    let mut losses = Vec::new();
    for step in 0..cfg.steps {
        losses.push(trainer.step(&batches.next_batch(&Device::Cpu)?, step)?);
    }
    assert_eq!(trainer.steps_done(), cfg.steps);
    assert_eq!(values(&params_a), values(&params_b), "the per-step loop ended elsewhere than train_dann");
    assert_ne!(values(&params_b), values(&store(cfg.seed)?.0), "training changed nothing: the comparison is empty");

    // Each record averages the steps since the previous one, with the schedules of its last step.
    assert_eq!(records.len(), cfg.steps / cfg.log_every);
    for (record, window) in records.iter().zip(losses.chunks(cfg.log_every)) {
        let label_loss = window.iter().fold(0.0, |sum, l| sum + l.label_loss as f64) / window.len() as f64;
        let correct: usize = window.iter().map(|l| l.label_correct).sum();
        let labelled: usize = window.iter().map(|l| l.labelled).sum();
        let last = window.last().unwrap();
        assert_eq!(record.label_loss, label_loss, "step {}", record.step);
        assert_eq!(record.label_acc, correct as f64 / labelled as f64);
        assert_eq!((record.lambda, record.lr), (last.lambda, last.lr));
    }
    assert_eq!(outcome.last, *records.last().unwrap());
    Ok(())
}

#[test]
fn a_non_finite_loss_stops_the_step_before_its_update_and_names_the_losses() -> R {
    let cfg = config();
    let (params, model) = store(cfg.seed)?;
    let mut trainer = DannTrainer::new(&model, &params, &cfg)?;
    let batch = sampler(&cfg)?.next_batch(&Device::Cpu)?;
    trainer.step(&batch, 0)?;
    let var = params.get("label.fc0.weight").unwrap();
    var.set(&(var.as_tensor() * f64::NAN)?)?;
    let before = values(&params);
    let err = trainer.step(&batch, 1).unwrap_err();
    let TrainError::NonFiniteLoss { step, losses } = &err else { panic!("expected a non-finite loss, got {err}") };
    assert_eq!(*step, 2);
    assert_eq!(losses.iter().map(|(name, _)| *name).collect::<Vec<_>>(), ["label", "domain"]);
    assert!(losses[0].1.is_nan() && losses[1].1.is_finite(), "{losses:?}");
    assert!(err.to_string().contains("label loss NaN"), "{err}");
    // Bit-identical: the NaN weights are NaN again, every other weight is untouched.
    let after = values(&params);
    for (name, v) in &before {
        let same = v.iter().zip(&after[name]).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "{name} changed although the step was refused");
    }
    assert_eq!(trainer.steps_done(), 1);
    Ok(())
}

/// Runs (or resumes) the VarMap toy DANN in `dir`, checkpointing every 10 steps; `stop_at` fails
/// the checkpoint hook there, as a process killed right after saving would stop.
fn run_var_map(dir: &Path, cfg: &TrainConfig, resume: bool, stop_at: Option<usize>) -> adapt_train::Result<VarMap> {
    // A resumed run starts from different weights: the checkpoint must bring back the saved ones.
    let (vm, model) = var_map(if resume { 1234 } else { cfg.seed })?;
    let path = dir.join(checkpoint::CHECKPOINT_FILE);
    let resume = if resume { Some(checkpoint::load(&path, &vm, &Device::Cpu)?) } else { None };
    let mut metrics = MetricsWriter::append(&dir.join("metrics.jsonl"))?;
    let mut stop = |step: usize| match stop_at {
        Some(s) if s == step => Err(TrainError::Config(format!("interrupted at {step}"))),
        _ => Ok(()),
    };
    let hooks = TrainHooks {
        metrics: Some(&mut metrics),
        checkpoint: Some(CheckpointPolicy { path, every: 10 }),
        resume,
        on_checkpoint: Some(&mut stop),
        ..TrainHooks::default()
    };
    train_dann(&model, &vm, &mut sampler(cfg)?, &Device::Cpu, cfg, hooks)?;
    Ok(vm)
}

#[test]
fn a_var_map_model_checkpoints_and_resumes_bit_identically() -> R {
    let cfg = config();
    let unbroken_dir = tmp_dir("unbroken");
    let unbroken = run_var_map(&unbroken_dir, &cfg, false, None)?;

    let dir = tmp_dir("resumed");
    let err = run_var_map(&dir, &cfg, false, Some(20)).err().expect("the run is interrupted");
    assert!(err.to_string().contains("interrupted at 20"), "{err}");
    let saved = checkpoint::load(&dir.join(checkpoint::CHECKPOINT_FILE), &var_map(1234)?.0, &Device::Cpu)?;
    assert_eq!(saved.step, 20);
    assert!(!saved.velocity.is_empty(), "the momentum buffers were not saved");
    let resumed = run_var_map(&dir, &cfg, true, None)?;

    assert_eq!(values(&unbroken), values(&resumed), "the resumed VarMap run ended elsewhere");
    assert_ne!(values(&unbroken), values(&var_map(cfg.seed)?.0), "training changed nothing");
    let read = |d: &Path| std::fs::read_to_string(d.join("metrics.jsonl")).unwrap();
    assert_eq!(read(&unbroken_dir), read(&dir), "the resumed run's records differ");
    assert_eq!(read(&dir).lines().count(), cfg.steps / cfg.log_every);
    // The VarMap's checkpoint is an ordinary one: a ParamStore model loads it as well.
    let (params, _) = store(99)?;
    checkpoint::load(&dir.join(checkpoint::CHECKPOINT_FILE), &params, &Device::Cpu)?;
    assert_eq!(values(&params), values(&resumed));
    std::fs::remove_dir_all(&unbroken_dir).ok();
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

/// The paper's MNIST net with BatchNorm, its parameters drawn from `seed`.
fn bn_digit_net(seed: u64) -> adapt_train::Result<(ParamStore, adapt_models::digits::DigitDann)> {
    use adapt_models::digits::{DigitDann, DigitNetConfig};
    let net = DigitNetConfig { batch_norm: true, ..DigitNetConfig::default() };
    let params = ParamStore::new(seed);
    let model = DigitDann::build(adapt_datasets::DigitNet::Mnist, &net, &params, seed, &Device::Cpu)?;
    Ok((params, model))
}

/// With separate domain passes the BatchNorm running statistics move with the target batches
/// only: after a step they are what one target-only pass of the feature extractor gives.
#[test]
fn separate_domain_passes_keep_running_statistics_from_the_target_only() -> R {
    use candle_core::{ModuleT, Tensor};
    let device = Device::Cpu;
    let build = || bn_digit_net(5);
    let n = 4;
    let source = Tensor::randn(0f32, 1.0, (n, 3, 28, 28), &device)?;
    let target = Tensor::randn(0f32, 1.0, (n, 3, 28, 28), &device)?.affine(3.0, 2.0)?;
    let batch = adapt_train::batches::MixedBatch {
        inputs: Tensor::cat(&[&source, &target], 0)?,
        n_source: n,
        source_labels: Tensor::new(&[0u32, 1, 2, 3], &device)?,
    };
    let cfg = TrainConfig { separate_domain_passes: true, batch_size: n, steps: 10, ..config() };
    let (params, model) = build()?;
    DannTrainer::new(&model, &params, &cfg)?.step(&batch, 0)?;

    let (expected_params, expected_model) = build()?;
    expected_model.feature_extractor.forward_t(&target, true)?;
    for name in ["features.bn0.running_mean", "features.bn1.running_var"] {
        let got = params.get(name).expect(name).flatten_all()?.to_vec1::<f32>()?;
        let want = expected_params.get(name).expect(name).flatten_all()?.to_vec1::<f32>()?;
        let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(diff < 1e-6, "{name} differs from target-only statistics by {diff}");
    }
    // A joint pass moves them with the source too.
    let (joint_params, joint_model) = build()?;
    DannTrainer::new(&joint_model, &joint_params, &TrainConfig { separate_domain_passes: false, ..cfg })?
        .step(&batch, 0)?;
    let joint = joint_params.get("features.bn0.running_mean").unwrap().flatten_all()?.to_vec1::<f32>()?;
    let want = expected_params.get("features.bn0.running_mean").unwrap().flatten_all()?.to_vec1::<f32>()?;
    assert!(joint.iter().zip(&want).any(|(a, b)| (a - b).abs() > 1e-3), "the joint pass should differ");
    Ok(())
}

/// A batch of 4 + 4 MNIST-sized RGB images of fixed patterns, `(a, b, m)` pixel `i` of image
/// set `k` being `((a i + b k) mod m) / m`, the target's then mapped by `x * scale + shift`;
/// also returns the target half.
fn patterned_batch(
    (a, b, m): (usize, usize, usize),
    (scale, shift): (f64, f64),
) -> adapt_train::Result<(adapt_train::batches::MixedBatch, candle_core::Tensor)> {
    use candle_core::Tensor;
    let (device, n) = (Device::Cpu, 4);
    let pixels =
        |k: usize| -> Vec<f32> { (0..n * 3 * 28 * 28).map(|i| ((i * a + k * b) % m) as f32 / m as f32).collect() };
    let source = Tensor::from_vec(pixels(1), (n, 3, 28, 28), &device)?;
    let target = Tensor::from_vec(pixels(2), (n, 3, 28, 28), &device)?.affine(scale, shift)?;
    let batch = adapt_train::batches::MixedBatch {
        inputs: Tensor::cat(&[&source, &target], 0)?,
        n_source: n,
        source_labels: Tensor::new(&[0u32, 1, 2, 3], &device)?,
    };
    Ok((batch, target))
}

/// Virtual adversarial training on the target: its extra training-mode passes leave the
/// BatchNorm running statistics as the target pass set them, the same seed and step draw the
/// same probe (two trainers end bit-identical), and it changes the update (it is in the loss).
#[test]
fn target_virtual_adversarial_training_is_repeatable_and_leaves_the_statistics_alone() -> R {
    use candle_core::ModuleT;
    let build = || bn_digit_net(7);
    let n = 4;
    let (batch, target) = patterned_batch((31, 17, 97), (2.0, -0.5))?;
    let cfg = TrainConfig {
        separate_domain_passes: true,
        target_vat_weight: 1.0,
        vat_radius: 2.0,
        batch_size: n,
        steps: 10,
        ..config()
    };
    let run = |cfg: &TrainConfig, steps: usize| -> adapt_train::Result<HashMap<String, Vec<f32>>> {
        let (params, model) = build()?;
        let mut trainer = DannTrainer::new(&model, &params, cfg)?;
        for step in 0..steps {
            trainer.step(&batch, step)?;
        }
        Ok(values(&params))
    };
    let a = run(&cfg, 2)?;
    assert_eq!(a, run(&cfg, 2)?, "the same seed must give the same run");

    // The statistics after one step: what one target-only pass of the initial net gives.
    let one = run(&cfg, 1)?;
    let (expected_params, expected_model) = build()?;
    expected_model.feature_extractor.forward_t(&target, true)?;
    for name in ["features.bn0.running_mean", "features.bn1.running_var"] {
        let want = expected_params.get(name).expect(name).flatten_all()?.to_vec1::<f32>()?;
        let diff = one[name].iter().zip(&want).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(diff < 1e-6, "{name} moved by the perturbed passes ({diff})");
    }
    // The weights: the loss is part of the update.
    let without = run(&TrainConfig { target_vat_weight: 0.0, ..cfg.clone() }, 2)?;
    let name = "features.conv0.weight";
    let moved = a[name].iter().zip(&without[name]).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(moved > 1e-7, "the virtual adversarial loss did not change the update");
    // A radius that is not a positive number is refused before training.
    let (params, model) = build()?;
    assert!(DannTrainer::new(&model, &params, &TrainConfig { vat_radius: 0.0, ..cfg }).is_err());
    Ok(())
}

/// Self-training on the weight average's confident target predictions: a threshold no
/// prediction reaches leaves the run exactly as without the loss (so the teacher's pass in and
/// out of the averaged weights restores every weight and statistic), a threshold every
/// prediction reaches labels the whole target half and changes the update, and the loss is
/// refused without a weight average to teach.
#[test]
fn target_pseudo_labels_come_from_the_average_and_change_only_the_loss() -> R {
    let build = || bn_digit_net(11);
    let n = 4;
    let (batch, _) = patterned_batch((29, 13, 89), (1.5, -0.2))?;
    let cfg = TrainConfig {
        separate_domain_passes: true,
        weight_average_decay: 0.99,
        target_pseudo_label_weight: 1.0,
        // So that the target's class predictions (and their BatchNorm statistics) are computed
        // with and without the pseudo-label loss alike.
        target_im_weight: 1.0,
        batch_size: n,
        steps: 10,
        ..config()
    };
    // Steps 3..6: past step 0, where the ramp (and so the loss) is 0.
    // The weights after the steps, and the pseudo-labelled rows of each step.
    type Run = (HashMap<String, Vec<f32>>, Vec<usize>);
    let run = |cfg: &TrainConfig| -> adapt_train::Result<Run> {
        let (params, model) = build()?;
        let mut trainer = DannTrainer::new(&model, &params, cfg)?;
        let kept =
            (3..6).map(|step| trainer.step(&batch, step).map(|l| l.pseudo_labelled)).collect::<Result<_, _>>()?;
        Ok((values(&params), kept))
    };
    let (without, _) = run(&TrainConfig { target_pseudo_label_weight: 0.0, ..cfg.clone() })?;
    let (unreached, kept) = run(&TrainConfig { pseudo_label_threshold: 1.0, ..cfg.clone() })?;
    assert_eq!(kept, vec![0, 0, 0]);
    assert_eq!(unreached, without, "a loss on no rows must leave the run as it was");
    // Ten classes: the top probability is always at least 0.1.
    let (labelled, kept) = run(&TrainConfig { pseudo_label_threshold: 0.1, ..cfg.clone() })?;
    assert_eq!(kept, vec![n, n, n]);
    let name = "features.conv0.weight";
    let moved = labelled[name].iter().zip(&without[name]).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(moved > 1e-7, "the pseudo-label loss did not change the update");
    let (params, model) = build()?;
    let no_teacher = TrainConfig { weight_average_decay: 0.0, ..cfg };
    assert!(matches!(DannTrainer::new(&model, &params, &no_teacher), Err(TrainError::Config(_))));
    Ok(())
}
