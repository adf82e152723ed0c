//! Full training steps on random data, timed: what `cargo xtask bench` measures.
//!
//! One DANN step is exactly the PyTorch reference (`dann_torch_bench.py`): forward of `batch`
//! source plus `batch` target images, label cross-entropy on the source half, domain
//! cross-entropy on all of them through the gradient reversal layer, backward, and an SGD update
//! with momentum 0.9 and lr 0.01. One GTA step is a full iteration (D, G, C, F updates, each with
//! its own Adam), as `xtask/peer/gta_torch_bench.py` does it.
use crate::error::{ExperimentError, Result, ensure};
use adapt_kernels::{self as kernels, Backend};
use adapt_models::ParamStore;
use adapt_models::digits::{DigitNetConfig, mnist_dann, svhn_dann};
use adapt_models::gta::{GtaModel, GtaNetConfig};
use adapt_train::optim::{MomentumSgd, SgdSettings};
use adapt_train::{GtaConfig, GtaTrainer};
use candle_core::{DType, Device, Tensor};
use candle_nn::Optimizer;
use serde::Serialize;
use std::time::Instant;

/// Which network to time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchNet {
    /// The paper's MNIST DANN, 3x28x28 inputs.
    Mnist,
    /// The paper's SVHN DANN, 3x32x32 inputs.
    Svhn,
    /// One Generate To Adapt iteration (F, C, G, D; 3x32x32).
    Gta,
}

impl BenchNet {
    pub fn name(self) -> &'static str {
        match self {
            BenchNet::Mnist => "mnist",
            BenchNet::Svhn => "svhn",
            BenchNet::Gta => "gta",
        }
    }

    fn input_size(self) -> usize {
        if self == BenchNet::Mnist { 28 } else { 32 }
    }
}

/// What to time.
#[derive(Debug, Clone)]
pub struct StepBench {
    pub net: BenchNet,
    pub backend: Backend,
    /// Images per domain (a step sees twice as many).
    pub batch: usize,
    /// Timed steps.
    pub steps: usize,
    /// Untimed steps first.
    pub warmup: usize,
    /// GRL coefficient of the DANN steps.
    pub lambda: f64,
}

/// Milliseconds per step spent in one kernel family.
#[derive(Debug, Clone, Serialize)]
pub struct KernelTime {
    pub kernel: &'static str,
    pub ms_per_step: f64,
    pub calls_per_step: f64,
}

/// What [`run_bench`] measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub net: &'static str,
    pub images_per_s: f64,
    pub ms_per_step: f64,
    pub median_ms_per_step: f64,
    /// Peak resident set size of the process (`VmHWM`), where `/proc` has it.
    pub peak_rss_mb: Option<f64>,
    /// CPU time (all threads) per step, where `/proc` has it: steadier than wall time on a
    /// shared machine.
    pub cpu_ms_per_step: Option<f64>,
    pub threads: usize,
    pub batch_per_domain: usize,
    pub steps: usize,
    pub warmup: usize,
    pub loss: f32,
    /// Where the step's time goes: the adapt-kernels families (the rest is candle's elementwise
    /// ops, losses, copies, allocation and the optimiser).
    pub kernels: Vec<KernelTime>,
}

/// Peak resident set size of this process in MiB (`VmHWM`), if /proc is there.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// CPU time (user + system) this process has used so far, in seconds, if /proc is there.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on every Linux architecture Rust targets.
    Some(ticks / 100.0)
}

pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// One training step of `net` on fixed random data, returning its (label / C) loss.
type Step = Box<dyn FnMut() -> Result<f32>>;

fn step_fn(spec: &StepBench, dev: &Device) -> Result<Step> {
    let (n, hw) = (spec.batch, spec.net.input_size());
    let ys = Tensor::from_vec((0..n).map(|i| (i % 10) as u32).collect::<Vec<_>>(), n, dev)?;
    if spec.net == BenchNet::Gta {
        let params = ParamStore::new(0);
        let cfg = GtaNetConfig { backend: spec.backend, ..GtaNetConfig::default() };
        let model = GtaModel::new(&cfg, params.var_builder(DType::F32, dev))?;
        let mut trainer = GtaTrainer::new(&model, &params, &GtaConfig { batch_size: n, ..GtaConfig::default() })?;
        let xs = Tensor::randn(0f32, 1.0, (n, 3, hw, hw), dev)?;
        let xt = Tensor::randn(0f32, 1.0, (n, 3, hw, hw), dev)?;
        return Ok(Box::new(move || Ok(trainer.step(&xs, &ys, &xt)?.c)));
    }
    let cfg = DigitNetConfig { backend: spec.backend, ..Default::default() };
    let params = ParamStore::new(0);
    let vb = params.var_builder(DType::F32, dev);
    let model = match spec.net {
        BenchNet::Mnist => mnist_dann(&cfg, vb)?,
        _ => svhn_dann(&cfg, vb)?,
    };
    let mut opt = MomentumSgd::new(
        params.trainable_vars(""),
        SgdSettings { lr: 0.01, momentum: 0.9, weight_decay: 0.0, nesterov: false },
    )?;
    let x = Tensor::randn(0f32, 1.0, (2 * n, 3, hw, hw), dev)?;
    let yd = Tensor::from_vec((0..2 * n).map(|i| u32::from(i >= n)).collect::<Vec<_>>(), 2 * n, dev)?;
    let lambda = spec.lambda;
    Ok(Box::new(move || {
        let out = model.forward_mixed(&x, n, lambda, true)?;
        let loss = (candle_nn::loss::cross_entropy(&out.class_logits, &ys)?
            + candle_nn::loss::cross_entropy(&out.domain_logits, &yd)?)?;
        opt.backward_step(&loss)?;
        Ok(loss.to_scalar::<f32>()?)
    }))
}

/// Times `spec.steps` steps after `spec.warmup` untimed ones, on the CPU.
pub fn run_bench(spec: &StepBench) -> Result<BenchResult> {
    ensure(spec.steps > 0 && spec.batch > 0, || "the bench needs at least one step and one image".into())?;
    let dev = Device::Cpu;
    let mut step = step_fn(spec, &dev)?;
    for _ in 0..spec.warmup {
        step()?;
    }
    let mut times = Vec::with_capacity(spec.steps);
    let mut loss = f32::NAN;
    kernels::profile::reset();
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    for _ in 0..spec.steps {
        let t = Instant::now();
        loss = step()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu_ms_per_step = cpu_seconds().zip(cpu0).map(|(b, a)| (b - a) * 1e3 / spec.steps as f64);
    if !loss.is_finite() {
        return Err(ExperimentError::Invalid(format!("the bench's loss is not finite ({loss})")));
    }
    let per_step = |total: f64| total / spec.steps as f64;
    let kernels = kernels::profile::snapshot()
        .into_iter()
        .filter(|(_, _, calls)| *calls > 0)
        .map(|(kernel, total, calls)| KernelTime {
            kernel: kernel.name(),
            ms_per_step: per_step(total.as_secs_f64() * 1e3),
            calls_per_step: per_step(calls as f64),
        })
        .collect();
    Ok(BenchResult {
        net: spec.net.name(),
        images_per_s: (spec.steps * 2 * spec.batch) as f64 / elapsed,
        ms_per_step: per_step(elapsed * 1e3),
        median_ms_per_step: median(&mut times),
        peak_rss_mb: peak_rss_mb(),
        cpu_ms_per_step,
        threads: kernels::num_threads(),
        batch_per_domain: spec.batch,
        steps: spec.steps,
        warmup: spec.warmup,
        loss,
        kernels,
    })
}
