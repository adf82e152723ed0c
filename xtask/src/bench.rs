//! `cargo xtask bench`: DANN training steps on random data, timed.
//!
//! One step is exactly the PyTorch reference (`dann_torch_bench.py`): forward of `batch` source
//! plus `batch` target images, label cross-entropy on the source half, domain cross-entropy on
//! all of them through the gradient reversal layer (lambda 0.5), backward, and an SGD update with
//! momentum 0.9 and lr 0.01. Reports images per second, milliseconds per step, and the peak
//! resident set size of the process (`VmHWM`).
use adapt_models::digits::{DigitNetConfig, mnist_dann, svhn_dann};
use adapt_models::ops::{self, Backend};
use adapt_train::optim::{MomentumSgd, SgdSettings};
use anyhow::{Context, bail};
use candle_core::{DType, Device, Tensor};
use candle_nn::{Optimizer, VarBuilder, VarMap};
use serde_json::json;
use std::time::Instant;

/// Which network to benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchNet {
    /// The paper's MNIST DANN, 3x28x28 inputs.
    Mnist,
    /// The paper's SVHN DANN, 3x32x32 inputs.
    Svhn,
    /// Generate To Adapt (not benchmarkable yet).
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

/// Runs the benchmark, prints a human-readable line, returns the result as JSON.
pub fn run(args: &BenchArgs) -> anyhow::Result<serde_json::Value> {
    if args.steps == 0 || args.batch == 0 {
        bail!("--steps and --batch must be positive");
    }
    let (net_name, hw) = match args.net {
        BenchNet::Mnist => ("mnist", 28),
        BenchNet::Svhn => ("svhn", 32),
        BenchNet::Gta => bail!("--net gta: there is no GTA model to benchmark yet (use mnist or svhn)"),
    };
    if let Some(t) = args.threads {
        if t == 0 {
            bail!("--threads must be positive");
        }
        // SAFETY: set before this benchmark starts any thread of its own; both rayon's global pool
        // (on first use) and candle's matmul read it.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", t.to_string()) };
    }
    let threads = ops::num_threads();
    if let Some(t) = args.threads
        && t != threads
    {
        bail!("--threads {t} requested but the thread pool already runs {threads} threads");
    }

    let dev = Device::Cpu;
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
    let backend = match args.backend {
        BenchBackend::Auto => Backend::Auto,
        BenchBackend::Candle => Backend::Candle,
    };
    let cfg = DigitNetConfig { backend, ..Default::default() };
    let model = match args.net {
        BenchNet::Mnist => mnist_dann(&cfg, vb)?,
        _ => svhn_dann(&cfg, vb)?,
    };
    let mut opt =
        MomentumSgd::new(vm.all_vars(), SgdSettings { lr: 0.01, momentum: 0.9, weight_decay: 0.0, nesterov: false })?;

    let n = args.batch;
    let x = Tensor::randn(0f32, 1.0, (2 * n, 3, hw, hw), &dev)?;
    let ys = Tensor::from_vec((0..n).map(|i| (i % 10) as u32).collect::<Vec<_>>(), n, &dev)?;
    let yd = Tensor::from_vec((0..2 * n).map(|i| u32::from(i >= n)).collect::<Vec<_>>(), 2 * n, &dev)?;

    let mut step = || -> anyhow::Result<f32> {
        let out = model.forward_mixed(&x, n, args.lambda, true)?;
        let loss = (candle_nn::loss::cross_entropy(&out.class_logits, &ys)?
            + candle_nn::loss::cross_entropy(&out.domain_logits, &yd)?)?;
        opt.backward_step(&loss)?;
        Ok(loss.to_scalar::<f32>()?)
    };
    for _ in 0..args.warmup {
        step().context("warm-up step")?;
    }
    let mut times = Vec::with_capacity(args.steps);
    let mut loss = f32::NAN;
    let t0 = Instant::now();
    for _ in 0..args.steps {
        let t = Instant::now();
        loss = step()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let elapsed = t0.elapsed().as_secs_f64();
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
    Ok(json!({
        "net": net_name,
        "impl": "adapt",
        "kernels": backend_name,
        "images_per_s": (images_per_s * 10.0).round() / 10.0,
        "ms_per_step": (ms_per_step * 100.0).round() / 100.0,
        "median_ms_per_step": (median_ms * 100.0).round() / 100.0,
        "peak_rss_mb": peak.map(|p| (p * 10.0).round() / 10.0),
        "threads": threads,
        "batch_per_domain": n,
        "steps": args.steps,
        "warmup": args.warmup,
        "loss": loss,
    }))
}
