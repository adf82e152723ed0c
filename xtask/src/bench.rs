//! `cargo xtask bench`: DANN training steps on random data, timed.
//!
//! One step is exactly the PyTorch reference (`dann_torch_bench.py`): forward of `batch` source
//! plus `batch` target images, label cross-entropy on the source half, domain cross-entropy on
//! all of them through the gradient reversal layer (lambda 0.5), backward, and an SGD update with
//! momentum 0.9 and lr 0.01. Reports images per second, milliseconds per step, and the peak
//! resident set size of the process (`VmHWM`).
use adapt_kernels::{self as kernels, Backend};
use adapt_models::ParamStore;
use adapt_models::digits::{DigitNetConfig, mnist_dann, svhn_dann};
use adapt_models::gta::{GtaModel, GtaNetConfig};
use adapt_train::optim::{MomentumSgd, SgdSettings};
use adapt_train::{GtaConfig, GtaTrainer};
use anyhow::{Context, bail};
use candle_core::{DType, Device, Tensor};
use candle_nn::Optimizer;
use serde_json::json;
use std::time::Instant;

/// Which network to benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchNet {
    /// The paper's MNIST DANN, 3x28x28 inputs.
    Mnist,
    /// The paper's SVHN DANN, 3x32x32 inputs.
    Svhn,
    /// One Generate To Adapt iteration (F, C, G, D; 3x32x32; use `--batch 100` for the paper's).
    Gta,
}

/// Convolution / pooling kernels to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchBackend {
    /// The fast CPU kernels (candle's ops elsewhere).
    Auto,
    /// candle's own conv2d and a max-pool built from candle ops.
    Candle,
}

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Network to train.
    #[arg(long, value_enum, default_value = "mnist")]
    pub net: BenchNet,
    /// Timed steps.
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// Worker threads (sets RAYON_NUM_THREADS; must come before any parallel work in the process).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Images per domain (a step sees twice as many).
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Print only the JSON result on stdout (the human line goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Convolution / pooling kernels.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BenchBackend,
    /// GRL coefficient.
    #[arg(long, default_value_t = 0.5)]
    pub lambda: f64,
}

impl Default for BenchArgs {
    fn default() -> Self {
        Self {
            net: BenchNet::Mnist,
            steps: 50,
            warmup: 5,
            threads: None,
            batch: 64,
            json: false,
            backend: BenchBackend::Auto,
            lambda: 0.5,
        }
    }
}

/// Peak resident set size of this process in MiB (`VmHWM`), if /proc is there.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// CPU time (user + system) this process has used so far, in seconds, if /proc is there. On a
/// shared machine the CPU time per step is a steadier figure than the wall time.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on every Linux architecture Rust targets.
    Some(ticks / 100.0)
}

fn median(v: &mut [f64]) -> f64 {
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
type Step = Box<dyn FnMut() -> anyhow::Result<f32>>;

fn step_fn(net: BenchNet, backend: Backend, n: usize, hw: usize, lambda: f64, dev: &Device) -> anyhow::Result<Step> {
    let ys = Tensor::from_vec((0..n).map(|i| (i % 10) as u32).collect::<Vec<_>>(), n, dev)?;
    if net == BenchNet::Gta {
        // One full GTA iteration (D, G, C, F updates, each with its own Adam), as the PyTorch
        // reference `xtask/peer/gta_torch_bench.py` does it.
        let params = ParamStore::new(0);
        let model =
            GtaModel::new(&GtaNetConfig { backend, ..GtaNetConfig::default() }, params.var_builder(DType::F32, dev))?;
        let mut trainer = GtaTrainer::new(&model, &params, &GtaConfig { batch_size: n, ..GtaConfig::default() })?;
        let xs = Tensor::randn(0f32, 1.0, (n, 3, hw, hw), dev)?;
        let xt = Tensor::randn(0f32, 1.0, (n, 3, hw, hw), dev)?;
        return Ok(Box::new(move || Ok(trainer.step(&xs, &ys, &xt)?.c)));
    }
    let cfg = DigitNetConfig { backend, ..Default::default() };
    let params = ParamStore::new(0);
    let vb = params.var_builder(DType::F32, dev);
    let model = match net {
        BenchNet::Mnist => mnist_dann(&cfg, vb)?,
        _ => svhn_dann(&cfg, vb)?,
    };
    let mut opt = MomentumSgd::new(
        params.trainable_vars(""),
        SgdSettings { lr: 0.01, momentum: 0.9, weight_decay: 0.0, nesterov: false },
    )?;
    let x = Tensor::randn(0f32, 1.0, (2 * n, 3, hw, hw), dev)?;
    let yd = Tensor::from_vec((0..2 * n).map(|i| u32::from(i >= n)).collect::<Vec<_>>(), 2 * n, dev)?;
    Ok(Box::new(move || {
        let out = model.forward_mixed(&x, n, lambda, true)?;
        let loss = (candle_nn::loss::cross_entropy(&out.class_logits, &ys)?
            + candle_nn::loss::cross_entropy(&out.domain_logits, &yd)?)?;
        opt.backward_step(&loss)?;
        Ok(loss.to_scalar::<f32>()?)
    }))
}

/// Runs the benchmark, prints a human-readable line, returns the result as JSON.
pub fn run(args: &BenchArgs) -> anyhow::Result<serde_json::Value> {
    if args.steps == 0 || args.batch == 0 {
        bail!("--steps and --batch must be positive");
    }
    let (net_name, hw) = match args.net {
        BenchNet::Mnist => ("mnist", 28),
        BenchNet::Svhn => ("svhn", 32),
        BenchNet::Gta => ("gta", 32),
    };
    if let Some(t) = args.threads {
        if t == 0 {
            bail!("--threads must be positive");
        }
        // SAFETY: set before this benchmark starts any thread of its own; both rayon's global pool
        // (on first use) and candle's matmul read it.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", t.to_string()) };
    }
    let threads = kernels::num_threads();
    if let Some(t) = args.threads
        && t != threads
    {
        bail!("--threads {t} requested but the thread pool already runs {threads} threads");
    }

    let dev = Device::Cpu;
    let backend = match args.backend {
        BenchBackend::Auto => Backend::Auto,
        BenchBackend::Candle => Backend::Candle,
    };
    let n = args.batch;
    let mut step = step_fn(args.net, backend, n, hw, args.lambda, &dev)?;
    for _ in 0..args.warmup {
        step().context("warm-up step")?;
    }
    let mut times = Vec::with_capacity(args.steps);
    let mut loss = f32::NAN;
    kernels::profile::reset();
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    for _ in 0..args.steps {
        let t = Instant::now();
        loss = step()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu_ms_per_step = cpu_seconds().zip(cpu0).map(|(b, a)| (b - a) * 1e3 / args.steps as f64);
    if !loss.is_finite() {
        bail!("the loss is not finite ({loss})");
    }
    let images_per_s = (args.steps * 2 * n) as f64 / elapsed;
    let ms_per_step = elapsed * 1e3 / args.steps as f64;
    let median_ms = median(&mut times);
    let peak = peak_rss_mb();
    let backend_name = match args.backend {
        BenchBackend::Auto => "adapt-ops",
        BenchBackend::Candle => "candle",
    };
    let line = format!(
        "{net_name}: {images_per_s:.1} images/s, {ms_per_step:.2} ms/step (median {median_ms:.2}), peak RSS {} MiB, \
         {threads} threads, batch {n}+{n}, {} steps, kernels {backend_name}, loss {loss:.4}",
        peak.map_or("?".to_string(), |p| format!("{p:.0}")),
        args.steps
    );
    if args.json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
    // Where the step's time goes: the adapt-kernels share, the rest is candle (elementwise ops,
    // losses, copies, allocation) and the optimiser.
    let mut in_kernels = 0.0;
    for (kernel, total, calls) in kernels::profile::snapshot() {
        if calls == 0 {
            continue;
        }
        let ms = total.as_secs_f64() * 1e3 / args.steps as f64;
        in_kernels += ms;
        eprintln!("  {:<22} {ms:8.2} ms/step ({:.1} calls/step)", kernel.name(), calls as f64 / args.steps as f64);
    }
    eprintln!("  {:<22} {:8.2} ms/step", "outside these kernels", ms_per_step - in_kernels);
    if let Some(cpu) = cpu_ms_per_step {
        eprintln!("  {:<22} {cpu:8.2} ms/step (all threads)", "CPU time");
    }
    Ok(json!({
        "net": net_name,
        "impl": "adapt",
        "kernels": backend_name,
        "images_per_s": (images_per_s * 10.0).round() / 10.0,
        "ms_per_step": (ms_per_step * 100.0).round() / 100.0,
        "median_ms_per_step": (median_ms * 100.0).round() / 100.0,
        "peak_rss_mb": peak.map(|p| (p * 10.0).round() / 10.0),
        "cpu_ms_per_step": cpu_ms_per_step.map(|c| (c * 100.0).round() / 100.0),
        "threads": threads,
        "batch_per_domain": n,
        "steps": args.steps,
        "warmup": args.warmup,
        "loss": loss,
    }))
}
