//! `cargo xtask bench`: full training steps on random data, timed (images per second, milliseconds
//! per step, peak resident set size, where the time goes); see `adapt_experiment::bench`.
use adapt_experiment::bench::{BenchNet, StepBench, run_bench};
use adapt_kernels::{self as kernels, Backend};
use anyhow::bail;

/// Which network to benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NetChoice {
    /// The paper's MNIST DANN, 3x28x28 inputs.
    Mnist,
    /// The paper's SVHN DANN, 3x32x32 inputs.
    Svhn,
    /// One Generate To Adapt iteration (F, C, G, D; 3x32x32; use `--batch 100` for the paper's).
    Gta,
}

/// Convolution / pooling kernels to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// The fast CPU kernels (candle's ops elsewhere).
    Auto,
    /// candle's own conv2d and a max-pool built from candle ops.
    Candle,
}

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Network to train.
    #[arg(long, value_enum, default_value = "mnist")]
    pub net: NetChoice,
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
    pub backend: BackendChoice,
    /// GRL coefficient.
    #[arg(long, default_value_t = 0.5)]
    pub lambda: f64,
}

/// Runs the benchmark, prints a human-readable line, returns the result as JSON.
pub fn run(args: &BenchArgs) -> anyhow::Result<serde_json::Value> {
    if let Some(t) = args.threads {
        if t == 0 {
            bail!("--threads must be positive");
        }
        // SAFETY: set before this benchmark starts any thread of its own; both rayon's global pool
        // (on first use) and candle's matmul read it.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", t.to_string()) };
    }
    if let Some(t) = args.threads
        && t != kernels::num_threads()
    {
        bail!("--threads {t} requested but the thread pool already runs {} threads", kernels::num_threads());
    }
    let spec = StepBench {
        net: match args.net {
            NetChoice::Mnist => BenchNet::Mnist,
            NetChoice::Svhn => BenchNet::Svhn,
            NetChoice::Gta => BenchNet::Gta,
        },
        backend: match args.backend {
            BackendChoice::Auto => Backend::Auto,
            BackendChoice::Candle => Backend::Candle,
        },
        batch: args.batch,
        steps: args.steps,
        warmup: args.warmup,
        lambda: args.lambda,
    };
    let r = run_bench(&spec)?;
    let kernels_name = if args.backend == BackendChoice::Auto { "adapt-ops" } else { "candle" };
    let line = format!(
        "{}: {:.1} images/s, {:.2} ms/step (median {:.2}), peak RSS {} MiB, {} threads, batch {n}+{n}, {} steps, \
         kernels {kernels_name}, loss {:.4}",
        r.net,
        r.images_per_s,
        r.ms_per_step,
        r.median_ms_per_step,
        r.peak_rss_mb.map_or("?".to_string(), |p| format!("{p:.0}")),
        r.threads,
        r.steps,
        r.loss,
        n = r.batch_per_domain,
    );
    if args.json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
    let mut in_kernels = 0.0;
    for k in &r.kernels {
        in_kernels += k.ms_per_step;
        eprintln!("  {:<22} {:8.2} ms/step ({:.1} calls/step)", k.kernel, k.ms_per_step, k.calls_per_step);
    }
    eprintln!("  {:<22} {:8.2} ms/step", "outside these kernels", r.ms_per_step - in_kernels);
    if let Some(cpu) = r.cpu_ms_per_step {
        eprintln!("  {:<22} {cpu:8.2} ms/step (all threads)", "CPU time");
    }
    let round = |v: f64, digits: i32| (v * 10f64.powi(digits)).round() / 10f64.powi(digits);
    Ok(serde_json::json!({
        "net": r.net,
        "impl": "adapt",
        "kernels": kernels_name,
        "images_per_s": round(r.images_per_s, 1),
        "ms_per_step": round(r.ms_per_step, 2),
        "median_ms_per_step": round(r.median_ms_per_step, 2),
        "peak_rss_mb": r.peak_rss_mb.map(|p| round(p, 1)),
        "cpu_ms_per_step": r.cpu_ms_per_step.map(|c| round(c, 2)),
        "threads": r.threads,
        "batch_per_domain": r.batch_per_domain,
        "steps": r.steps,
        "warmup": r.warmup,
        "loss": r.loss,
    }))
}
