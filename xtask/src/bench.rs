//! `cargo xtask bench`: full training steps on random data, timed (images per second, milliseconds
//! per step, peak resident set size, where the time goes), alone or alternated with the PyTorch
//! reference of the same step; see `adapt_experiment::bench`.
use crate::device::{self, DeviceChoice};
use adapt_experiment::bench::{BenchNet, StepBench, compare_with_pytorch, pytorch_command, run_bench};
use adapt_kernels::{self as kernels, Backend};
use anyhow::bail;
use std::path::{Path, PathBuf};
use std::process::Command;

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
    /// Also run the PyTorch reference of the same step (`xtask/peer/*_torch_bench.py`) with this
    /// Python, alternating with ours (one process each), and print both, the ratio and the machine.
    #[arg(long, value_name = "PYTHON")]
    pub against_pytorch: Option<PathBuf>,
    /// Runs of each side with `--against-pytorch`.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Where the steps run (`cuda` needs a binary built with `cargo xtask build-cuda`; the
    /// PyTorch reference then runs with `--device cuda` too). On a GPU `auto` kernels are
    /// candle's (the generic path).
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceChoice,
    /// Folder holding the PyTorch bench scripts (default: this repository's `xtask/peer`, as
    /// found at build time; give it where the binary runs in another checkout).
    #[arg(long, env = "ADAPT_PEER_DIR")]
    pub peer_dir: Option<PathBuf>,
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
        device: device::select(args.device)?,
        batch: args.batch,
        steps: args.steps,
        warmup: args.warmup,
        lambda: args.lambda,
    };
    if let Some(python) = &args.against_pytorch {
        return against_pytorch(args, &spec, python);
    }
    if let Some(t) = args.threads
        && t != kernels::num_threads()
    {
        bail!("--threads {t} requested but the thread pool already runs {} threads", kernels::num_threads());
    }
    let r = run_bench(&spec)?;
    // Off the CPU, `auto` is candle's ops too (the generic path).
    let kernels_name = if args.backend == BackendChoice::Auto && spec.device.is_cpu() { "adapt-ops" } else { "candle" };
    let line = r.summary_line(kernels_name);
    if args.json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
    r.profile_lines().iter().for_each(|l| eprintln!("{l}"));
    Ok(r.to_json(kernels_name))
}

/// Our bench as a child process of this binary, alternated with the PyTorch reference.
fn against_pytorch(args: &BenchArgs, spec: &StepBench, python: &Path) -> anyhow::Result<serde_json::Value> {
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut ours = Command::new(std::env::current_exe()?);
    ours.args(["bench", "--json", "--net", spec.net.name(), "--threads", &threads.to_string()]);
    ours.args(["--steps", &args.steps.to_string(), "--warmup", &args.warmup.to_string()]);
    ours.args(["--batch", &args.batch.to_string(), "--lambda", &args.lambda.to_string()]);
    ours.args(["--backend", if args.backend == BackendChoice::Auto { "auto" } else { "candle" }]);
    ours.args(["--device", device::name(&spec.device)]);
    let peer_dir = args.peer_dir.clone().unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("peer"));
    if !peer_dir.join("dann_torch_bench.py").is_file() {
        bail!("--against-pytorch: {} holds no dann_torch_bench.py (give --peer-dir)", peer_dir.display());
    }
    let mut torch = pytorch_command(python, &peer_dir, spec, threads);
    let cmp = compare_with_pytorch(spec, threads, args.rounds, &mut ours, &mut torch)?;
    for l in cmp.report_lines() {
        if args.json { eprintln!("{l}") } else { println!("{l}") }
    }
    Ok(serde_json::to_value(&cmp)?)
}
