//! Checkpoints: an interrupted and resumed run must end bit-identical to an unbroken one, and a
//! run stopped by a non-finite loss must leave its last good checkpoint usable.
use adapt_datasets::toy::{RotatedMoons, RotatedMoonsConfig};
use adapt_models::ParamStore;
use adapt_models::toy::{ToyConfig, toy_dann};
use adapt_train::batches::MixedSampler;
use adapt_train::checkpoint::{self, CheckpointPolicy};
use adapt_train::log::{MetricsWriter, Progress};
use adapt_train::optim::SgdSettings;
use adapt_train::{Method, TrainConfig, TrainError, TrainHooks, train_dann};
use candle_core::{DType, Device};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("adapt-train-ckpt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config(lr: f64) -> TrainConfig {
    TrainConfig {
        method: Method::Dann,
        steps: 60,
        batch_size: 16,
        seed: 7,
        sgd: SgdSettings { lr, ..SgdSettings::default() },
        log_every: 5,
        ..TrainConfig::default()
    }
}

fn fresh_params(seed: u64) -> ParamStore {
    let params = ParamStore::new(seed);
    toy_dann(&ToyConfig::default(), params.var_builder(DType::F32, &Device::Cpu)).unwrap();
    params
}

fn values(t: &candle_core::Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// Runs (or resumes) the toy DANN in `dir`; `interrupt_at` makes the checkpoint hook fail there,
/// as a killed process would stop right after saving.
fn run(dir: &Path, cfg: &TrainConfig, resume: bool, interrupt_at: Option<usize>) -> Result<ParamStore, TrainError> {
    run_poisoned(dir, cfg, resume, interrupt_at, None)
}

/// `poison_at`: after the metrics record of that step, the weights become NaN, as after a blow-up.
fn run_poisoned(
    dir: &Path,
    cfg: &TrainConfig,
    resume: bool,
    interrupt_at: Option<usize>,
    poison_at: Option<usize>,
) -> Result<ParamStore, TrainError> {
    let data = RotatedMoons::generate(&RotatedMoonsConfig::default()).unwrap();
    let device = Device::Cpu;
    let params = ParamStore::new(cfg.seed);
    let model = toy_dann(&ToyConfig::default(), params.var_builder(DType::F32, &device))?;
    let mut sampler =
        MixedSampler::new(Arc::new(data.source_train), Arc::new(data.target_train), cfg.batch_size, cfg.seed)?;
    let path = dir.join(checkpoint::CHECKPOINT_FILE);
    let resume = if resume { Some(checkpoint::load(&path, &params, &device)?) } else { None };
    let mut metrics = MetricsWriter::append(&dir.join("metrics.jsonl"))?;
    let progress = Progress::new(cfg.steps as u64, "test", false);
    let mut on_checkpoint = |step: usize| {
        if Some(step) == interrupt_at { Err(TrainError::Config("interrupted".into())) } else { Ok(()) }
    };
    let hooks = TrainHooks {
        metrics: Some(&mut metrics),
        progress: Some(&progress),
        checkpoint: Some(CheckpointPolicy { path, every: 10 }),
        resume,
        on_record: Some(&mut |r| {
            if Some(r.step) == poison_at {
                for var in params.trainable_vars("") {
                    var.set(&(var.as_tensor() * f64::NAN).unwrap()).unwrap();
                }
            }
        }),
        on_checkpoint: Some(&mut on_checkpoint),
    };
    train_dann(&model, &params, &mut sampler, &device, cfg, hooks)?;
    Ok(params)
}

#[test]
fn resumed_run_ends_with_the_weights_of_an_unbroken_one() {
    let cfg = config(0.05);
    let unbroken_dir = tmp_dir("unbroken");
    let unbroken = run(&unbroken_dir, &cfg, false, None).unwrap();

    let dir = tmp_dir("resumed");
    let err = run(&dir, &cfg, false, Some(30)).err().expect("the run is interrupted");
    assert!(err.to_string().contains("interrupted"), "{err}");
    let resumed = run(&dir, &cfg, true, None).unwrap();

    let (a, b, init) = (unbroken.tensors(), resumed.tensors(), fresh_params(cfg.seed).tensors());
    assert_eq!(a.len(), b.len());
    let mut moved = false;
    for (name, t) in &a {
        assert_eq!(values(t), values(&b[name]), "{name} differs after resume");
        moved |= values(&init[name]) != values(t);
    }
    assert!(moved, "training changed no weight: the comparison proves nothing");
    // The resumed run continues the metrics file with the records of the unbroken run.
    let read = |d: &Path| std::fs::read_to_string(d.join("metrics.jsonl")).unwrap();
    assert_eq!(read(&unbroken_dir), read(&dir));
}

#[test]
fn resume_without_momentum_restored_would_differ() {
    // Guards the test above: dropping the momentum buffers must change the result, so the
    // equality there really depends on the restored optimizer state.
    let cfg = config(0.05);
    let unbroken = run(&tmp_dir("guard-a"), &cfg, false, None).unwrap();
    let dir = tmp_dir("guard-b");
    run(&dir, &cfg, false, Some(30)).err().expect("interrupted");
    let params = fresh_params(cfg.seed);
    let path = dir.join(checkpoint::CHECKPOINT_FILE);
    let mut saved = checkpoint::load(&path, &params, &Device::Cpu).unwrap();
    assert_eq!(saved.step, 30);
    assert!(!saved.velocity.is_empty(), "momentum buffers were not saved");
    saved.velocity.clear();
    let data = RotatedMoons::generate(&RotatedMoonsConfig::default()).unwrap();
    let model = toy_dann(&ToyConfig::default(), params.var_builder(DType::F32, &Device::Cpu)).unwrap();
    let mut sampler =
        MixedSampler::new(Arc::new(data.source_train), Arc::new(data.target_train), cfg.batch_size, cfg.seed).unwrap();
    let progress = Progress::new(60, "test", false);
    let mut ignore = |_: &adapt_train::StepMetrics| {};
    let mut hooks = TrainHooks::quiet(&progress, &mut ignore);
    hooks.resume = Some(saved);
    train_dann(&model, &params, &mut sampler, &Device::Cpu, &cfg, hooks).unwrap();
    let (a, b) = (unbroken.tensors(), params.tensors());
    assert!(a.iter().any(|(n, t)| values(t) != values(&b[n])), "momentum made no difference");
}

#[test]
fn resuming_with_a_different_schedule_is_refused() {
    let cfg = config(0.05);
    let dir = tmp_dir("schedule");
    run(&dir, &cfg, false, Some(10)).err().expect("interrupted");
    let longer = TrainConfig { steps: 120, ..cfg };
    let err = run(&dir, &longer, true, None).err().expect("step counts differ");
    assert!(err.to_string().contains("60 steps"), "{err}");
}

#[test]
fn non_finite_loss_stops_and_keeps_the_last_good_checkpoint() {
    let cfg = config(0.05);
    let dir = tmp_dir("nan");
    let err = run_poisoned(&dir, &cfg, false, None, Some(25)).err().expect("the loss becomes NaN");
    assert!(err.to_string().contains("not finite at step 26"), "{err}");
    assert!(matches!(err, TrainError::NonFiniteLoss { step: 26, .. }), "{err:?}");
    let params = fresh_params(cfg.seed);
    let saved = checkpoint::load(&dir.join(checkpoint::CHECKPOINT_FILE), &params, &Device::Cpu).unwrap();
    assert_eq!(saved.step, 20, "the last good checkpoint is the one before the failure");
    for (name, t) in params.tensors() {
        assert!(values(&t).iter().all(|x| x.is_finite()), "{name} holds non-finite values");
    }
    assert!(!dir.join(".checkpoint.safetensors.tmp").exists(), "temporary file left behind");
    // The kept checkpoint resumes like any other.
    run(&dir, &cfg, true, None).unwrap();
}

#[test]
fn a_diverging_learning_rate_stops_before_any_checkpoint() {
    let dir = tmp_dir("diverge");
    let err = run(&dir, &config(1e30), false, None).err().expect("the loss blows up");
    let TrainError::NonFiniteLoss { step, .. } = err else { panic!("expected a non-finite loss error, got {err}") };
    assert!(step <= 10, "diverged only at step {step}");
    assert!(!dir.join(checkpoint::CHECKPOINT_FILE).exists(), "a checkpoint was written for a failed run");
}

#[test]
fn unusable_checkpoints_are_named_in_the_error() {
    let dir = tmp_dir("corrupt");
    let path = dir.join(checkpoint::CHECKPOINT_FILE);
    let params = fresh_params(0);
    for bytes in [b"garbage".to_vec(), Vec::new()] {
        std::fs::write(&path, bytes).unwrap();
        let err = checkpoint::load(&path, &params, &Device::Cpu).expect_err("rejected").to_string();
        assert!(err.contains("not a readable safetensors file") && err.contains("checkpoint.safetensors"), "{err}");
    }
    // Plain weights (no checkpoint metadata) are not a checkpoint.
    params.save(&path).unwrap();
    let err = checkpoint::load(&path, &params, &Device::Cpu).expect_err("rejected").to_string();
    assert!(err.contains("metadata has no 'format'"), "{err}");
    let missing = checkpoint::load(&dir.join("nope.safetensors"), &params, &Device::Cpu).err().unwrap().to_string();
    assert!(missing.contains("nope.safetensors"), "{missing}");
}
