//! Generate To Adapt end to end on small networks and a synthetic two-domain problem: what each
//! optimizer step may change, the ablation variants, resuming, and a short run that learns.
use adapt_datasets::{ImageDataset, Rows, Split};
use adapt_models::ParamStore;
use adapt_models::gta::{GtaModel, GtaNetConfig};
use adapt_train::batches::MixedSampler;
use adapt_train::gta::{Adam, GtaConfig, GtaHooks, GtaStepMetrics, GtaTrainer, GtaVariant, train_gta};
use adapt_train::log::{MetricsWriter, Progress};
use candle_core::{DType, Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::Arc;

type R = adapt_train::Result<()>;

/// Narrow networks: the architecture (and the 32x32 geometry) of the paper, a fraction of the
/// channels, so a step takes milliseconds.
fn tiny_net() -> GtaNetConfig {
    GtaNetConfig { classes: 2, noise_dim: 8, ngf: 4, ndf: 8, ..Default::default() }
}

/// Two classes, a horizontal or a vertical bar with pixel noise. The source draws a bright bar
/// on a dark background; the target a dark bar on a bright, tinted background (a domain shift
/// of colour and contrast, same shapes).
fn domain(n: usize, target: bool, seed: u64) -> ImageDataset {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut images = Vec::with_capacity(n * 3 * 32 * 32);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let class = (i % 2) as u32;
        let pos = rng.random_range(8..24usize);
        let tint = [rng.random_range(0.5..0.9f32), rng.random_range(0.5..0.9f32), rng.random_range(0.5..0.9f32)];
        for (c, tint) in tint.iter().enumerate() {
            for y in 0..32usize {
                for x in 0..32usize {
                    let on_bar = if class == 0 { y.abs_diff(pos) <= 2 } else { x.abs_diff(pos) <= 2 };
                    let v = match (target, on_bar) {
                        (false, true) => 0.9,
                        (false, false) => 0.1,
                        (true, true) => 0.1 * (c as f32 + 1.0),
                        (true, false) => *tint,
                    };
                    images.push((v + rng.random_range(-0.05..0.05f32)).clamp(0.0, 1.0));
                }
            }
        }
        labels.push(class);
    }
    ImageDataset {
        name: if target { "bars-target".into() } else { "bars-source".into() },
        split: Split::Train,
        images,
        labels,
        channels: 3,
        height: 32,
        width: 32,
        origin: String::new(),
        partial: None,
    }
}

fn setup(seed: u64) -> candle_core::Result<(ParamStore, GtaModel)> {
    let store = ParamStore::new(seed);
    let model = GtaModel::new(&tiny_net(), store.var_builder(DType::F32, &Device::Cpu))?;
    Ok((store, model))
}

fn batch(ds: &ImageDataset, idx: std::ops::Range<usize>) -> candle_core::Result<(Tensor, Tensor)> {
    let (x, y) = ds.gather(&idx.clone().collect::<Vec<_>>());
    Ok((Tensor::from_vec(x, (idx.len(), 3, 32, 32), &Device::Cpu)?, Tensor::from_vec(y, idx.len(), &Device::Cpu)?))
}

fn trainable(store: &ParamStore) -> HashMap<String, Vec<f32>> {
    let buffers = ["running_mean", "running_var"];
    store
        .named_vars()
        .into_iter()
        .filter(|(k, _)| !buffers.iter().any(|b| k.ends_with(b)))
        .map(|(k, v)| (k, v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

/// [`trainable`] of any store.
fn trainable_of(store: &dyn adapt_models::NamedParams) -> HashMap<String, Vec<f32>> {
    store
        .trainable_named_vars("")
        .into_iter()
        .map(|(k, v)| (k, v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

/// After each optimizer step of an iteration, exactly its own network's parameters changed and
/// every other parameter is bit-identical.
#[test]
fn each_optimizer_changes_only_its_network() -> R {
    let (store, model) = setup(1)?;
    let (src, tgt) = (domain(8, false, 1), domain(8, true, 2));
    let (sx, sy) = batch(&src, 0..8)?;
    let (tx, _) = batch(&tgt, 0..8)?;
    for variant in GtaVariant::ALL {
        let cfg = GtaConfig { variant, batch_size: 8, ..Default::default() };
        let mut trainer = GtaTrainer::new(&model, &store, &cfg)?;
        let mut before = trainable(&store);
        let mut order = Vec::new();
        trainer.step_observed(&sx, &sy, &tx, &mut |net| {
            let now = trainable(&store);
            for (name, values) in &now {
                let changed = before[name] != *values;
                // Without the auxiliary loss nothing reaches D's class head.
                let expected = name.starts_with(net) && !(variant == GtaVariant::C1 && name.starts_with("D.class"));
                assert_eq!(
                    changed,
                    expected,
                    "{variant:?}: after the {net} step, {name} {}",
                    if changed { "changed" } else { "did not change" }
                );
            }
            order.push(net);
            before = now;
        })?;
        let want: &[&str] = if variant == GtaVariant::Stream1 { &["C.", "F."] } else { &["D.", "G.", "C.", "F."] };
        assert_eq!(order, want, "{variant:?}: update order");
    }
    Ok(())
}

/// The per-step losses: D and G only with stream 2, all finite, C's and F's equal for stream 1.
#[test]
fn step_losses_per_variant() -> R {
    let (src, tgt) = (domain(6, false, 3), domain(10, true, 4));
    let (sx, sy) = batch(&src, 0..6)?;
    // Target batches may differ in size from source batches.
    let (tx, _) = batch(&tgt, 0..10)?;
    for variant in GtaVariant::ALL {
        let (store, model) = setup(2)?;
        let mut trainer = GtaTrainer::new(&model, &store, &GtaConfig { variant, ..Default::default() })?;
        let l = trainer.step(&sx, &sy, &tx)?;
        assert_eq!(l.d.is_some(), variant.adversarial(), "{variant:?}");
        assert_eq!(l.g.is_some(), variant.adversarial());
        assert!(l.c.is_finite() && l.f.is_finite() && l.d.unwrap_or(0.0).is_finite() && l.g.unwrap_or(0.0).is_finite());
        // Two classes at initialisation: the classification loss is about ln 2.
        assert!((l.c - 2f32.ln()).abs() < 0.3, "{variant:?}: C loss {}", l.c);
        if variant == GtaVariant::Stream1 {
            // F's loss is C's, evaluated after C's update.
            assert!((l.f - l.c).abs() < 0.05, "{l:?}");
        } else {
            // D's loss has at least its three real/fake terms of about ln 2 each.
            assert!(l.d.unwrap() > 1.5, "{l:?}");
            assert!(l.f > l.c - 0.05);
            let acc = l.d_fake_acc.unwrap();
            assert!((0.0..=1.0).contains(&acc));
        }
        assert_eq!(trainer.iteration(), 1);
    }
    // Labels must match the source batch.
    let (store, model) = setup(2)?;
    let mut trainer = GtaTrainer::new(&model, &store, &GtaConfig::default())?;
    assert!(trainer.step(&sx, &sy.narrow(0, 0, 5)?, &tx).is_err());
    // A store without the model's variables is a configuration error.
    assert!(GtaTrainer::new(&model, &ParamStore::new(0), &GtaConfig::default()).is_err());
    Ok(())
}

/// Saving parameters, optimizer state and the iteration, then continuing in a fresh trainer,
/// gives the parameters of an uninterrupted run (up to the last bits: the CPU kernels sum weight
/// gradients over per-thread partial sums, whose order depends on the scheduling).
#[test]
fn resumed_training_matches_an_unbroken_run() -> R {
    let (src, tgt) = (domain(12, false, 5), domain(12, true, 6));
    let batches: Vec<_> = (0..4)
        .map(|i| {
            let (sx, sy) = batch(&src, 3 * i..3 * i + 3).unwrap();
            let (tx, _) = batch(&tgt, 3 * i..3 * i + 3).unwrap();
            (sx, sy, tx)
        })
        .collect();
    let cfg = GtaConfig { batch_size: 3, lr_decay: 0.1, ..Default::default() };
    let (store_a, model_a) = setup(7)?;
    let mut a = GtaTrainer::new(&model_a, &store_a, &cfg)?;
    for (sx, sy, tx) in &batches {
        a.step(sx, sy, tx)?;
    }

    let (store_b, model_b) = setup(7)?;
    let mut b = GtaTrainer::new(&model_b, &store_b, &cfg)?;
    for (sx, sy, tx) in &batches[..2] {
        b.step(sx, sy, tx)?;
    }
    let params = store_b.tensors();
    let mut opt_state = HashMap::new();
    for (prefix, opt) in b.optimizers() {
        opt_state.extend(opt.unwrap().state_tensors(&format!("opt.{prefix}"))?);
    }
    let iteration = b.iteration();
    drop(b);

    let (store_c, model_c) = setup(99)?;
    store_c.assign(&params, "checkpoint")?;
    let mut c = GtaTrainer::new(&model_c, &store_c, &cfg)?;
    for (prefix, opt) in c.optimizers_mut() {
        let opt: &mut Adam = opt.unwrap();
        opt.load_state_tensors(&opt_state, &format!("opt.{prefix}"))?;
    }
    c.set_iteration(iteration);
    for (sx, sy, tx) in &batches[2..] {
        c.step(sx, sy, tx)?;
    }
    assert_same_parameters(&store_a, &store_c, "after resuming")?;
    // Not just equal because nothing moved: four steps changed the parameters.
    let (_, fresh) = setup(7)?;
    let moved = fresh.classify(&batches[0].0)?.sub(&model_c.classify(&batches[0].0)?)?.abs()?.max_all()?;
    assert!(moved.to_scalar::<f32>()? > 1e-3);
    Ok(())
}

/// Parameters of two stores, compared; D's convolution biases (and the running means they feed)
/// are left out: a BatchNorm follows them, so their true gradient is 0 and the computed one
/// rounding noise that Adam scales up to learning-rate-sized steps.
fn assert_same_parameters(a: &ParamStore, b: &ParamStore, what: &str) -> R {
    let (ta, tb) = (a.tensors(), b.tensors());
    for (name, t) in &ta {
        if (name.starts_with("D.conv") && name.ends_with(".bias"))
            || (name.starts_with("D.bn") && name.ends_with("running_mean"))
        {
            continue;
        }
        let (x, y) = (t.flatten_all()?.to_vec1::<f32>()?, tb[name].flatten_all()?.to_vec1::<f32>()?);
        let worst = x.iter().zip(&y).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-5, "{name} differs by {worst} {what}");
    }
    Ok(())
}

/// A run interrupted after its second checkpoint and resumed from the file ends where an unbroken
/// run ends, with the same metrics records; a checkpoint of another variant is refused by name.
#[test]
fn checkpoint_file_resumes_an_interrupted_run() -> R {
    let src: Arc<dyn Rows> = Arc::new(domain(48, false, 20));
    let tgt: Arc<dyn Rows> = Arc::new(domain(48, true, 21));
    let cfg = GtaConfig { steps: 12, batch_size: 8, log_every: 2, lr_decay: 0.05, ..Default::default() };
    let dir = std::env::temp_dir().join(format!("adapt-gta-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let progress = Progress::new(cfg.steps as u64, "gta", false);
    let run = |path: &std::path::Path,
               store: &ParamStore,
               model: &GtaModel,
               resume: Option<adapt_train::checkpoint::Resume>,
               stop_at: Option<usize>|
     -> adapt_train::Result<Vec<GtaStepMetrics>> {
        let mut sampler = MixedSampler::new(src.clone(), tgt.clone(), 8, 4)?;
        let mut records = Vec::new();
        let mut on_record = |r: &GtaStepMetrics| records.push(*r);
        let mut stop = |step: usize| match stop_at {
            Some(s) if s == step => Err(adapt_train::TrainError::Config(format!("interrupted at {step}"))),
            _ => Ok(()),
        };
        let hooks = GtaHooks {
            checkpoint: Some(adapt_train::checkpoint::CheckpointPolicy { path: path.to_path_buf(), every: 4 }),
            resume,
            on_checkpoint: Some(&mut stop),
            ..GtaHooks::quiet(&progress, &mut on_record)
        };
        train_gta(model, store, &mut sampler, &Device::Cpu, &cfg, hooks)?;
        Ok(records)
    };
    let (store_a, model_a) = setup(5)?;
    let unbroken = run(&dir.join("a.safetensors"), &store_a, &model_a, None, None)?;

    let path = dir.join("b.safetensors");
    let (store_b, model_b) = setup(5)?;
    let err = run(&path, &store_b, &model_b, None, Some(8)).unwrap_err();
    assert!(err.to_string().contains("interrupted at 8"), "{err}");
    let (store_c, model_c) = setup(77)?;
    let resume = adapt_train::checkpoint::load(&path, &store_c, &Device::Cpu)?;
    assert_eq!(resume.step, 8);
    assert!(resume.optimizer_state.keys().any(|k| k.starts_with("optim.adam.G.")));
    let rest = run(&path, &store_c, &model_c, Some(resume), None)?;
    assert_eq!(rest.iter().map(|r| r.step).collect::<Vec<_>>(), vec![10, 12]);
    assert_eq!(rest[..], unbroken[4..], "the resumed records are the unbroken run's");
    assert_same_parameters(&store_a, &store_c, "after resuming from the file")?;

    // Stream 1 has no D or G optimizers: a full-GTA checkpoint does not fit it.
    let (store_d, model_d) = setup(5)?;
    let resume = adapt_train::checkpoint::load(&path, &store_d, &Device::Cpu)?;
    let stream1 = GtaConfig { variant: GtaVariant::Stream1, ..cfg.clone() };
    let mut sampler = MixedSampler::new(src.clone(), tgt.clone(), 8, 4)?;
    let err = GtaTrainer::new(&model_d, &store_d, &stream1)?.restore(&path, &resume, &mut sampler).unwrap_err();
    assert!(err.to_string().contains("b.safetensors") && err.to_string().contains("another method"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

/// The four networks on a candle-nn `VarMap` train in the shared loop with no hooks but a
/// checkpoint, and the checkpoint restores them into another `VarMap`.
#[test]
fn a_var_map_model_trains_and_checkpoints() -> R {
    use adapt_models::NamedParams;
    let src: Arc<dyn Rows> = Arc::new(domain(16, false, 30));
    let tgt: Arc<dyn Rows> = Arc::new(domain(16, true, 31));
    let cfg = GtaConfig { steps: 4, batch_size: 4, log_every: 2, ..Default::default() };
    let build = || -> candle_core::Result<(candle_nn::VarMap, GtaModel)> {
        let vm = candle_nn::VarMap::new();
        let model = GtaModel::new(&tiny_net(), NamedParams::var_builder(&vm, DType::F32, &Device::Cpu))?;
        Ok((vm, model))
    };
    let (vm, model) = build()?;
    let before = trainable_of(&vm);
    let dir = std::env::temp_dir().join(format!("adapt-gta-varmap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ckpt.safetensors");
    let hooks = GtaHooks {
        checkpoint: Some(adapt_train::checkpoint::CheckpointPolicy { path: path.clone(), every: 2 }),
        ..GtaHooks::default()
    };
    let mut sampler = MixedSampler::new(src, tgt, 4, 2)?;
    let outcome = train_gta(&model, &vm, &mut sampler, &Device::Cpu, &cfg, hooks)?;
    assert_eq!((outcome.steps, outcome.last.step), (4, 4));
    let after = trainable_of(&vm);
    for net in ["F.", "C.", "G.", "D."] {
        assert!(after.iter().any(|(k, v)| k.starts_with(net) && before[k] != *v), "{net} did not train");
    }
    let (other, _) = build()?;
    let resume = adapt_train::checkpoint::load(&path, &other, &Device::Cpu)?;
    assert_eq!(resume.step, 4);
    assert_eq!(trainable_of(&other), after);
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

/// A short full-GTA run on the bars problem: the classifier learns the source, every loss stays
/// finite, the metrics file gets its records, and the helpers for grids and t-SNE work.
#[test]
fn short_run_moves_the_classifier() -> R {
    let src: Arc<dyn Rows> = Arc::new(domain(64, false, 10));
    let tgt: Arc<dyn Rows> = Arc::new(domain(64, true, 11));
    let (store, model) = setup(3)?;
    let cfg = GtaConfig {
        steps: 40,
        batch_size: 16,
        log_every: 10,
        adam: adapt_train::optim::AdamSettings { lr: 2e-3, ..adapt_train::optim::AdamSettings::gta() },
        ..Default::default()
    };
    let mut sampler = MixedSampler::new(src, tgt, 16, 0)?;
    let dir = std::env::temp_dir().join(format!("adapt-gta-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("metrics.jsonl");
    let mut writer = MetricsWriter::append(&path)?;
    let progress = Progress::new(cfg.steps as u64, "gta", false);
    let (probe_x, probe_y) = batch(&domain(32, false, 12), 0..32)?;
    let accuracy = |m: &GtaModel| -> f32 {
        let pred = m.classify(&probe_x).unwrap().argmax(1).unwrap();
        pred.eq(&probe_y).unwrap().to_dtype(DType::F32).unwrap().mean_all().unwrap().to_scalar::<f32>().unwrap()
    };
    let acc_before = accuracy(&model);
    let mut records = Vec::new();
    let mut on_record = |r: &GtaStepMetrics| records.push(*r);
    let hooks = GtaHooks { metrics: Some(&mut writer), ..GtaHooks::quiet(&progress, &mut on_record) };
    let outcome = train_gta(&model, &store, &mut sampler, &Device::Cpu, &cfg, hooks)?;
    let acc_after = accuracy(&model);
    assert_eq!(outcome.steps, 40);
    assert_eq!(records.iter().map(|r| r.step).collect::<Vec<_>>(), vec![10, 20, 30, 40]);
    let (first, last) = (records[0], records[3]);
    assert!(last.c_loss < 0.5 * first.c_loss, "C loss {} -> {}", first.c_loss, last.c_loss);
    assert!(acc_after >= 0.9 && acc_after > acc_before, "held-out source accuracy {acc_before} -> {acc_after}");
    for r in &records {
        assert!(r.d_loss.unwrap().is_finite() && r.g_loss.unwrap().is_finite() && r.f_loss.is_finite());
    }
    assert!((last.lr - cfg.decayed_lr(39)).abs() < 1e-15);
    let lines = std::fs::read_to_string(&path).unwrap();
    assert_eq!(lines.lines().count(), 4);
    assert!(lines.lines().next().unwrap().contains("\"d_loss\""));

    // Grids and t-SNE inputs.
    let trainer = GtaTrainer::new(&model, &store, &cfg)?;
    let (tx, _) = batch(&domain(5, true, 13), 0..5)?;
    let (gs, gt) = trainer.generate(&probe_x.narrow(0, 0, 4)?, &probe_y.narrow(0, 0, 4)?, &tx, 0)?;
    assert_eq!((gs.dims(), gt.dims()), (&[4, 3, 32, 32][..], &[5, 3, 32, 32][..]));
    assert_eq!(model.embed(&tx)?.dims(), &[5, 16]);
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

/// One GTA iteration at the paper's sizes (batch 100 per domain, `nz` 512, `ngf` = `ndf` = 64)
/// on random data: `cargo test -p adapt-train --test gta -- --ignored --nocapture step_timing`.
#[test]
#[ignore = "timing at the paper's sizes, seconds per step"]
fn step_timing() -> R {
    let batch: usize = std::env::var("GTA_TIMING_BATCH").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let steps: usize = std::env::var("GTA_TIMING_STEPS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let store = ParamStore::new(0);
    let model = GtaModel::new(&GtaNetConfig::default(), store.var_builder(DType::F32, &Device::Cpu))?;
    let mut trainer = GtaTrainer::new(&model, &store, &GtaConfig { batch_size: batch, ..Default::default() })?;
    let sx = Tensor::rand(0f32, 1.0, (batch, 3, 32, 32), &Device::Cpu)?;
    let sy = Tensor::from_vec((0..batch as u32).map(|i| i % 10).collect::<Vec<_>>(), batch, &Device::Cpu)?;
    let tx = Tensor::rand(0f32, 1.0, (batch, 3, 32, 32), &Device::Cpu)?;
    trainer.step(&sx, &sy, &tx)?;
    let start = std::time::Instant::now();
    for _ in 0..steps {
        trainer.step(&sx, &sy, &tx)?;
    }
    let s = start.elapsed().as_secs_f64() / steps as f64;
    println!(
        "{{\"impl\":\"adapt\",\"batch\":{batch},\"ms_per_step\":{:.1},\"images_per_s\":{:.1}}}",
        s * 1e3,
        2.0 * batch as f64 / s
    );
    Ok(())
}
