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
    // Zeroed rather than removed: a DANN checkpoint without its buffers is refused.
    for v in saved.velocity.values_mut() {
        *v = v.zeros_like().unwrap();
    }
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

/// Rewrites the checkpoint at `path` after `edit` changed its tensors or metadata, with a digest
/// that matches the new contents: what a buggy writer would leave, so that the checks behind the
/// digest are what is tested.
fn reseal(
    path: &Path,
    edit: impl FnOnce(
        &mut std::collections::HashMap<String, candle_core::Tensor>,
        &mut std::collections::HashMap<String, String>,
    ),
) {
    use adapt_models::tensor_file::{DIGEST_KEY, digest};
    let bytes = std::fs::read(path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta = header.metadata().clone().unwrap();
    let mut tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap();
    edit(&mut tensors, &mut meta);
    let views: Vec<(&str, &candle_core::Tensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    meta.insert(DIGEST_KEY.into(), digest(&meta, &views));
    safetensors::serialize_to_file(views, Some(meta), path).unwrap();
}

fn interrupted_at_30(name: &str) -> (PathBuf, PathBuf, Vec<u8>) {
    let dir = tmp_dir(name);
    run(&dir, &config(0.05), false, Some(30)).err().expect("interrupted");
    let path = dir.join(checkpoint::CHECKPOINT_FILE);
    let good = std::fs::read(&path).unwrap();
    (dir, path, good)
}

fn poison(t: &candle_core::Tensor, value: f32) -> candle_core::Tensor {
    let mut v = values(t);
    v[0] = value;
    candle_core::Tensor::from_vec(v, t.shape(), &Device::Cpu).unwrap()
}

#[test]
fn nan_in_a_weight_or_a_momentum_buffer_is_refused_naming_the_file_and_the_tensor() {
    let (dir, path, good) = interrupted_at_30("nan-weights");
    for (name, value) in [("features.fc0.weight", f32::NAN), ("optim.velocity.label.fc0.weight", f32::INFINITY)] {
        std::fs::write(&path, &good).unwrap();
        reseal(&path, |t, _| {
            let p = poison(&t[name], value);
            t.insert(name.into(), p);
        });
        let params = fresh_params(0);
        let before = params.tensors();
        let err = checkpoint::load(&path, &params, &Device::Cpu).expect_err("non-finite value loaded").to_string();
        assert!(err.contains("checkpoint.safetensors") && err.contains(name) && err.contains("non-finite"), "{err}");
        assert_eq!(values(&before["features.fc0.weight"]), values(&params.tensors()["features.fc0.weight"]));
        // The run does not resume from it either.
        let err = run(&dir, &config(0.05), true, None).err().expect("resumed from NaN").to_string();
        assert!(err.contains(name), "{err}");
    }
    // A run whose weights went non-finite writes no checkpoint: the last one stays the good one.
    std::fs::write(&path, &good).unwrap();
    let params = fresh_params(0);
    checkpoint::load(&path, &params, &Device::Cpu).unwrap();
    let var = params.get("label.fc0.bias").unwrap();
    var.set(&poison(var.as_tensor(), f32::NAN)).unwrap();
    let data = RotatedMoons::generate(&RotatedMoonsConfig::default()).unwrap();
    let sampler = MixedSampler::new(Arc::new(data.source_train), Arc::new(data.target_train), 16, 7).unwrap();
    let opt = <adapt_train::optim::MomentumSgd as candle_nn::Optimizer>::new(
        params.trainable_vars(""),
        SgdSettings::default(),
    )
    .unwrap();
    let err = checkpoint::save(&path, &params, &opt, 40, 60, sampler.state_after(40)).unwrap_err().to_string();
    assert!(err.contains("checkpoint.safetensors") && err.contains("label.fc0.bias"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), good, "the last good checkpoint was replaced");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn metadata_that_does_not_fit_the_run_is_refused() {
    let (dir, path, good) = interrupted_at_30("metadata");
    let cfg = config(0.05);
    // An I32 tensor for an F32 parameter (same shape): not converted, refused.
    reseal(&path, |t, _| {
        let w = &t["features.fc0.weight"];
        let as_int = w.to_dtype(candle_core::DType::I32).unwrap();
        t.insert("features.fc0.weight".into(), as_int);
    });
    let err = checkpoint::load(&path, &fresh_params(0), &Device::Cpu).expect_err("wrong dtype loaded").to_string();
    assert!(
        err.contains("checkpoint.safetensors") && err.contains("features.fc0.weight") && err.contains("I32"),
        "{err}"
    );
    // Sampler offsets past the data, epochs the run never reached, and an edited step: the
    // checkpoint parses, the run refuses to continue from it.
    let sampler = |source: (u64, usize)| {
        format!(
            "{{\"source\":{{\"epoch\":{},\"offset\":{}}},\"target\":{{\"epoch\":3,\"offset\":30}}}}",
            source.0, source.1
        )
    };
    for (what, key, value, expect) in [
        ("offset", "sampler", sampler((3, 99_999_999)), "offset 99999999"),
        ("epoch", "sampler", sampler((u64::MAX, 30)), "epoch 18446744073709551615"),
        ("step", "step", "20".to_string(), "sampler position"),
        ("step 0", "step", "0".to_string(), "step 0"),
    ] {
        std::fs::write(&path, &good).unwrap();
        reseal(&path, |_, m| {
            m.insert(key.into(), value.clone());
        });
        let err = run(&dir, &cfg, true, None).err().unwrap_or_else(|| panic!("{what}: resumed")).to_string();
        assert!(err.contains("checkpoint.safetensors") && err.contains(expect), "{what}: {err}");
    }
    // Without a matching digest any edit is refused, whatever it is.
    let mut bad = good.clone();
    let at = bad.windows(9).position(|w| w == b"\"step\":\"3").unwrap();
    bad[at + 8] = b'2';
    std::fs::write(&path, &bad).unwrap();
    let err = checkpoint::load(&path, &fresh_params(0), &Device::Cpu).expect_err("edited").to_string();
    assert!(err.contains("digest"), "{err}");
    // The untouched file still resumes.
    std::fs::write(&path, &good).unwrap();
    run(&dir, &cfg, true, None).unwrap();
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_dann_checkpoint_without_a_momentum_buffer_is_refused() {
    let (dir, path, _) = interrupted_at_30("no-velocity");
    reseal(&path, |t, _| {
        t.remove("optim.velocity.domain.fc0.weight");
    });
    let err = run(&dir, &config(0.05), true, None).err().expect("resumed without momentum").to_string();
    assert!(
        err.contains("checkpoint.safetensors") && err.contains("no momentum buffer for 'domain.fc0.weight'"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn an_averaging_run_reports_its_average_and_resumes_to_the_same_one() {
    let cfg = TrainConfig { weight_average_decay: 0.9, ..config(0.05) };
    let unbroken_dir = tmp_dir("average-unbroken");
    let averaged = run(&unbroken_dir, &cfg, false, None).unwrap();
    let dir = tmp_dir("average-resumed");
    run(&dir, &cfg, false, Some(30)).err().expect("the run is interrupted");
    let resumed = run(&dir, &cfg, true, None).unwrap();
    let (a, b) = (averaged.tensors(), resumed.tensors());
    for (name, t) in &a {
        assert_eq!(values(t), values(&b[name]), "{name}: the resumed average differs");
    }
    // What the run returns is the average, not the trained weights the checkpoint keeps, and
    // not what the same run without an average ends with.
    let trained = fresh_params(cfg.seed);
    checkpoint::load(&unbroken_dir.join(checkpoint::CHECKPOINT_FILE), &trained, &Device::Cpu).unwrap();
    let plain = run(&tmp_dir("average-plain"), &config(0.05), false, None).unwrap().tensors();
    let trained = trained.tensors();
    assert!(a.iter().any(|(n, t)| values(t) != values(&trained[n])), "the average equals the trained weights");
    for (n, t) in &trained {
        assert_eq!(values(t), values(&plain[n]), "{n}: averaging changed the training itself");
    }
}
