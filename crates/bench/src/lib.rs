//! adapt's step bench: full training steps on random data, timed; what `cargo xtask bench`
//! measures. A development tool, not published.
//!
//! One DANN step is exactly the PyTorch reference (`dann_torch_bench.py`): forward of `batch`
//! source plus `batch` target images, label cross-entropy on the source half, domain
//! cross-entropy on all of them through the gradient reversal layer, backward, and an SGD update
//! with momentum 0.9 and lr 0.01. One GTA step is a full iteration (D, G, C, F updates, each with
//! its own Adam), as `xtask/peer/gta_torch_bench.py` does it.
//!
//! [`compare_with_pytorch`] runs a bench process of ours and the PyTorch reference of the same
//! step alternately, so that anyone can check the speed claim on their own machine.
//!
//! [`BenchArgs`] and [`run`] are the command: its flags, and the bench or comparison they ask for.
use adapt_kernels::{self as kernels, Backend};
use adapt_models::ParamStore;
use adapt_models::digits::{DigitNetConfig, mnist_dann, svhn_dann};
use adapt_models::gta::{GtaModel, GtaNetConfig};
use adapt_train::optim::{MomentumSgd, SgdSettings};
use adapt_train::{GtaConfig, GtaTrainer};
use candle_core::{DType, Device, Tensor};
use candle_nn::Optimizer;
use serde::Serialize;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// Why a bench could not run or report.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A setting that cannot run, or a measurement that cannot be used.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Train(#[from] adapt_train::TrainError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, BenchError>;

/// Gives `Invalid` as the error of a failed check.
fn ensure(ok: bool, message: impl FnOnce() -> String) -> Result<()> {
    if ok { Ok(()) } else { Err(BenchError::Invalid(message())) }
}

/// Which network to time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BenchNet {
    /// The paper's MNIST DANN, 3x28x28 inputs.
    Mnist,
    /// The paper's SVHN DANN, 3x32x32 inputs.
    Svhn,
    /// One Generate To Adapt iteration (F, C, G, D; 3x32x32; use `--batch 100` for the paper's).
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
    /// Where the step runs (the data and the networks are made there).
    pub device: Device,
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
    /// `cpu`, `cuda` or `metal`.
    pub device: &'static str,
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
    /// The arithmetic of a step's GEMMs (every convolution, transposed convolution and linear
    /// layer, forward and backward), in GFLOP; 0 where the step ran candle's ops instead.
    pub gemm_gflop_per_step: f64,
    /// The best single-threaded rate of the `gemm` crate on this machine (1024-cubed f32
    /// products), in GFLOP/s: on the CPU only.
    pub sgemm_peak_gflops_per_thread: Option<f64>,
}

/// The time a step cannot beat: its GEMM arithmetic at `threads` times the single-thread GEMM
/// peak, with nothing else taking any time (so a lower bound, in ms).
pub fn gemm_floor_ms(gemm_gflop_per_step: f64, peak_gflops_per_thread: f64, threads: usize) -> f64 {
    gemm_gflop_per_step / (peak_gflops_per_thread * threads as f64) * 1e3
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

/// Times `spec.steps` steps after `spec.warmup` untimed ones, on `spec.device`. Each step ends
/// by reading its loss back to the host, so on a GPU the time of a step includes its kernels.
pub fn run_bench(spec: &StepBench) -> Result<BenchResult> {
    ensure(spec.steps > 0 && spec.batch > 0, || "the bench needs at least one step and one image".into())?;
    let dev = spec.device.clone();
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
    let gemm_gflop_per_step = kernels::profile::gemm_flops() as f64 / 1e9 / spec.steps as f64;
    // After the timed steps, so that the probe cannot warm or cool anything they use.
    let sgemm_peak_gflops_per_thread = dev.is_cpu().then(|| kernels::profile::sgemm_peak_gflops(1024, 3));
    if !loss.is_finite() {
        return Err(BenchError::Invalid(format!("the bench's loss is not finite ({loss})")));
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
        device: device_name(&dev),
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
        gemm_gflop_per_step,
        sgemm_peak_gflops_per_thread,
    })
}

impl BenchResult {
    /// The bench's one-line result; `kernels` names the kernels it ran.
    pub fn summary_line(&self, kernels: &str) -> String {
        format!(
            "{} on {}: {:.1} images/s, {:.2} ms/step (median {:.2}), peak RSS {} MiB, {} threads, batch {n}+{n}, \
             {} steps, kernels {kernels}, loss {:.4}",
            self.net,
            self.device,
            self.images_per_s,
            self.ms_per_step,
            self.median_ms_per_step,
            self.peak_rss_mb.map_or("?".to_string(), |p| format!("{p:.0}")),
            self.threads,
            self.steps,
            self.loss,
            n = self.batch_per_domain,
        )
    }

    /// Where a step's time went: one line per kernel family, the rest, and the CPU time.
    pub fn profile_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .kernels
            .iter()
            .map(|k| format!("  {:<22} {:8.2} ms/step ({:.1} calls/step)", k.kernel, k.ms_per_step, k.calls_per_step))
            .collect();
        let in_kernels: f64 = self.kernels.iter().map(|k| k.ms_per_step).sum();
        lines.push(format!("  {:<22} {:8.2} ms/step", "outside these kernels", self.ms_per_step - in_kernels));
        if let Some(cpu) = self.cpu_ms_per_step {
            lines.push(format!("  {:<22} {cpu:8.2} ms/step (all threads)", "CPU time"));
        }
        if let Some(peak) = self.sgemm_peak_gflops_per_thread
            && self.gemm_gflop_per_step > 0.0
        {
            let floor = gemm_floor_ms(self.gemm_gflop_per_step, peak, self.threads);
            lines.push(format!(
                "  GEMM work {:.3} GFLOP/step, {:.1} GFLOP/s achieved; sgemm peak {peak:.1} GFLOP/s a thread, \
                 so a step needs at least {floor:.2} ms on {} threads ({:.0} % of this step's time)",
                self.gemm_gflop_per_step,
                self.gemm_gflop_per_step / self.ms_per_step * 1e3,
                self.threads,
                100.0 * floor / self.ms_per_step,
            ));
        }
        lines
    }

    /// The figures as the JSON object `cargo xtask bench --json` prints (and
    /// [`compare_with_pytorch`] reads back from a child process).
    pub fn to_json(&self, kernels: &str) -> serde_json::Value {
        serde_json::json!({
            "net": self.net,
            "device": self.device,
            "impl": "adapt",
            "kernels": kernels,
            "images_per_s": round(self.images_per_s, 1),
            "ms_per_step": round(self.ms_per_step, 2),
            "median_ms_per_step": round(self.median_ms_per_step, 2),
            "peak_rss_mb": self.peak_rss_mb.map(|p| round(p, 1)),
            "cpu_ms_per_step": self.cpu_ms_per_step.map(|c| round(c, 2)),
            "threads": self.threads,
            "batch_per_domain": self.batch_per_domain,
            "steps": self.steps,
            "warmup": self.warmup,
            "loss": self.loss,
            "gemm_gflop_per_step": round(self.gemm_gflop_per_step, 4),
            "sgemm_peak_gflops_per_thread": self.sgemm_peak_gflops_per_thread.map(|p| round(p, 1)),
        })
    }
}

/// `cpu`, `cuda` or `metal`: the `--device` value that selects `device`.
pub fn device_name(device: &Device) -> &'static str {
    match device {
        Device::Cpu => "cpu",
        Device::Cuda(_) => "cuda",
        Device::Metal(_) => "metal",
    }
}

fn round(v: f64, digits: i32) -> f64 {
    (v * 10f64.powi(digits)).round() / 10f64.powi(digits)
}

/// The machine a comparison ran on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// `model name` from `/proc/cpuinfo` (or the architecture where there is none).
    pub cpu: String,
    /// Logical CPUs this process may run on.
    pub logical_cpus: usize,
    pub avx512: bool,
    /// `/proc/loadavg`'s 1-, 5- and 15-minute load averages before the first round and after the
    /// last: other work on the machine slows both sides, though not necessarily equally.
    pub load_before: Option<[f64; 3]>,
    pub load_after: Option<[f64; 3]>,
    /// `OMP_WAIT_POLICY` as the PyTorch reference inherits it. By default its OpenMP threads spin
    /// while they wait, which on a machine busy with other work collapses its speed (`passive`
    /// does not).
    pub omp_wait_policy: Option<String>,
}

impl Machine {
    fn detect() -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| std::env::consts::ARCH.to_string());
        #[cfg(target_arch = "x86_64")]
        let avx512 = std::arch::is_x86_feature_detected!("avx512f");
        #[cfg(not(target_arch = "x86_64"))]
        let avx512 = false;
        Self {
            cpu,
            logical_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            avx512,
            load_before: load_average(),
            load_after: None,
            omp_wait_policy: std::env::var("OMP_WAIT_POLICY").ok(),
        }
    }

    /// `CPU, N logical CPUs, AVX-512, load a/b/c before, d/e/f after`.
    pub fn describe(&self) -> String {
        let load = |l: Option<[f64; 3]>| l.map_or("?".to_string(), |[a, b, c]| format!("{a:.2}/{b:.2}/{c:.2}"));
        format!(
            "{}, {} logical CPUs{}, load average (1/5/15 min) {} before, {} after, OMP_WAIT_POLICY {}",
            self.cpu,
            self.logical_cpus,
            if self.avx512 { ", AVX-512" } else { "" },
            load(self.load_before),
            load(self.load_after),
            self.omp_wait_policy.as_deref().unwrap_or("unset")
        )
    }
}

fn load_average() -> Option<[f64; 3]> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = s.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// One timed run of one side, as its JSON line reported it.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub images_per_s: f64,
    pub ms_per_step: f64,
    pub peak_rss_mb: Option<f64>,
}

/// Both sides of a comparison, round by round, and their medians.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub net: &'static str,
    pub threads: usize,
    pub batch_per_domain: usize,
    pub steps: usize,
    pub warmup: usize,
    /// The PyTorch version the reference reported.
    pub torch: String,
    pub ours: Vec<Sample>,
    pub pytorch: Vec<Sample>,
    pub ours_median_images_per_s: f64,
    pub pytorch_median_images_per_s: f64,
    /// `ours_median / pytorch_median`.
    pub ratio: f64,
    /// The ratio of each round (ours over the PyTorch run beside it).
    pub round_ratios: Vec<f64>,
    /// The largest peak RSS of each side over the rounds.
    pub ours_peak_rss_mb: Option<f64>,
    pub pytorch_peak_rss_mb: Option<f64>,
    /// Our step's GEMM arithmetic (the same net, so PyTorch's too), in GFLOP.
    pub gemm_gflop_per_step: Option<f64>,
    /// The best single-thread GEMM rate our rounds measured, in GFLOP/s.
    pub sgemm_peak_gflops_per_thread: Option<f64>,
    /// The most a step built on the same GEMMs could be ahead of PyTorch's median: PyTorch's time
    /// per step over [`gemm_floor_ms`] (every GEMM at the peak on every thread, nothing else).
    /// A target ratio above it cannot be met without doing less arithmetic or a faster GEMM.
    pub ceiling_ratio: Option<f64>,
    pub machine: Machine,
}

impl Comparison {
    /// [`gemm_floor_ms`] of our step, where our bench reported its GEMM figures.
    pub fn gemm_floor_ms(&self) -> Option<f64> {
        self.gemm_gflop_per_step.zip(self.sgemm_peak_gflops_per_thread).map(|(w, p)| gemm_floor_ms(w, p, self.threads))
    }

    /// The human-readable result, one line per item.
    pub fn report_lines(&self) -> Vec<String> {
        let rss = |v: Option<f64>| v.map_or("?".to_string(), |v| format!("{v:.0} MiB"));
        let mut lines = vec![format!(
            "{}: {n}+{n} images a step, {} steps after {} warm-up, {} threads, {} rounds alternated",
            self.net,
            self.steps,
            self.warmup,
            self.threads,
            self.ours.len(),
            n = self.batch_per_domain
        )];
        for (i, ((o, p), r)) in self.ours.iter().zip(&self.pytorch).zip(&self.round_ratios).enumerate() {
            lines.push(format!(
                "  round {}: adapt {:.1} images/s ({}), PyTorch {:.1} images/s ({}), {r:.2}x",
                i + 1,
                o.images_per_s,
                rss(o.peak_rss_mb),
                p.images_per_s,
                rss(p.peak_rss_mb)
            ));
        }
        lines.push(format!(
            "  median: adapt {:.1} images/s, PyTorch {} {:.1} images/s, ratio {:.2}x",
            self.ours_median_images_per_s, self.torch, self.pytorch_median_images_per_s, self.ratio
        ));
        lines.push(format!(
            "  peak RSS: adapt {}, PyTorch {}",
            rss(self.ours_peak_rss_mb),
            rss(self.pytorch_peak_rss_mb)
        ));
        if let (Some(work), Some(peak), Some(floor), Some(ceiling)) =
            (self.gemm_gflop_per_step, self.sgemm_peak_gflops_per_thread, self.gemm_floor_ms(), self.ceiling_ratio)
        {
            lines.push(format!(
                "  ceiling: {work:.3} GFLOP of GEMMs a step at {peak:.1} GFLOP/s on each of {} threads takes {floor:.2} ms, \
                 so no step on these GEMMs beats PyTorch's median by more than {ceiling:.2}x",
                self.threads,
            ));
        }
        lines.push(format!("  machine: {}", self.machine.describe()));
        lines
    }
}

/// The PyTorch reference of `spec`'s step (`dann_torch_bench.py` or `gta_torch_bench.py` in
/// `peer_dir`), run by `python` with the same batch, steps, warm-up, GRL coefficient and threads.
pub fn pytorch_command(python: &Path, peer_dir: &Path, spec: &StepBench, threads: usize) -> Command {
    let mut cmd = Command::new(python);
    match spec.net {
        BenchNet::Gta => {
            cmd.arg(peer_dir.join("gta_torch_bench.py"));
        }
        net => {
            cmd.arg(peer_dir.join("dann_torch_bench.py")).args(["--arch", net.name()]);
            cmd.args(["--lambda-grl", &spec.lambda.to_string()]);
        }
    }
    cmd.args(["--steps", &spec.steps.to_string(), "--warmup", &spec.warmup.to_string()]);
    cmd.args(["--batch", &spec.batch.to_string(), "--threads", &threads.to_string()]);
    if matches!(spec.device, Device::Cuda(_)) {
        cmd.args(["--device", "cuda"]);
    }
    cmd
}

/// Runs `cmd` to the end and parses the last line of its stdout as JSON.
fn run_json_child(cmd: &mut Command, what: &str) -> Result<serde_json::Value> {
    // Its stderr (the bench's profile, PyTorch's warnings) only matters when it fails.
    let out = cmd.stderr(Stdio::piped()).output().map_err(|e| BenchError::Invalid(format!("{what}: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
        return Err(BenchError::Invalid(format!("{what}: exited with {}:\n{}", out.status, tail.join("\n"))));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().rev().find(|l| l.trim_start().starts_with('{'));
    last.and_then(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| BenchError::Invalid(format!("{what}: no JSON line on stdout")))
}

/// Our bench's GEMM arithmetic per step and its single-thread GEMM peak, from its JSON line.
fn gemm_figures(v: &serde_json::Value) -> (Option<f64>, Option<f64>) {
    let num = |key: &str| v.get(key).and_then(serde_json::Value::as_f64);
    (num("gemm_gflop_per_step").filter(|w| *w > 0.0), num("sgemm_peak_gflops_per_thread"))
}

fn sample(v: &serde_json::Value, what: &str) -> Result<Sample> {
    let num = |key: &str| v.get(key).and_then(serde_json::Value::as_f64);
    let images_per_s =
        num("images_per_s").ok_or_else(|| BenchError::Invalid(format!("{what}: no images_per_s in {v}")))?;
    Ok(Sample { images_per_s, ms_per_step: num("ms_per_step").unwrap_or(f64::NAN), peak_rss_mb: num("peak_rss_mb") })
}

/// Runs `ours` (a process printing [`BenchResult::to_json`] last, say `cargo xtask bench --json`
/// with `spec`'s settings) and `pytorch` ([`pytorch_command`]) alternately, `rounds` times each,
/// one process per run so that neither inherits the other's warm caches, memory or threads; the
/// side that goes first alternates too. Progress goes to stderr.
pub fn compare_with_pytorch(
    spec: &StepBench,
    threads: usize,
    rounds: usize,
    ours: &mut Command,
    pytorch: &mut Command,
) -> Result<Comparison> {
    ensure(rounds > 0, || "a comparison needs at least one round".into())?;
    let mut machine = Machine::detect();
    let (mut mine, mut theirs, mut torch) = (Vec::new(), Vec::new(), String::from("?"));
    let (mut work, mut gemm_peaks) = (None, Vec::new());
    for round in 0..rounds {
        for side in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
            if side == 0 {
                let v = run_json_child(ours, "adapt's bench")?;
                let (w, p) = gemm_figures(&v);
                work = work.or(w);
                gemm_peaks.extend(p);
                let s = sample(&v, "adapt's bench")?;
                eprintln!("round {}: adapt {:.1} images/s", round + 1, s.images_per_s);
                mine.push(s);
            } else {
                let v = run_json_child(pytorch, "the PyTorch reference")?;
                let reported = v.get("threads").and_then(serde_json::Value::as_u64);
                ensure(reported == Some(threads as u64), || {
                    format!("the PyTorch reference ran {reported:?} threads, not {threads}")
                })?;
                torch = v.get("torch").and_then(|t| t.as_str()).unwrap_or("?").to_string();
                let s = sample(&v, "the PyTorch reference")?;
                eprintln!("round {}: PyTorch {:.1} images/s", round + 1, s.images_per_s);
                theirs.push(s);
            }
        }
    }
    machine.load_after = load_average();
    let med = |v: &[Sample]| median(&mut v.iter().map(|s| s.images_per_s).collect::<Vec<_>>());
    let peak = |v: &[Sample]| v.iter().filter_map(|s| s.peak_rss_mb).reduce(f64::max);
    let (ours_median, pytorch_median) = (med(&mine), med(&theirs));
    let pytorch_ms_per_step = (2 * spec.batch) as f64 / pytorch_median * 1e3;
    let gemm_peak = gemm_peaks.into_iter().reduce(f64::max);
    let ceiling_ratio = work.zip(gemm_peak).map(|(w, p)| pytorch_ms_per_step / gemm_floor_ms(w, p, threads));
    Ok(Comparison {
        net: spec.net.name(),
        threads,
        batch_per_domain: spec.batch,
        steps: spec.steps,
        warmup: spec.warmup,
        torch,
        round_ratios: mine.iter().zip(&theirs).map(|(o, p)| o.images_per_s / p.images_per_s).collect(),
        ours_peak_rss_mb: peak(&mine),
        pytorch_peak_rss_mb: peak(&theirs),
        gemm_gflop_per_step: work,
        sgemm_peak_gflops_per_thread: gemm_peak,
        ceiling_ratio,
        ours: mine,
        pytorch: theirs,
        ours_median_images_per_s: ours_median,
        pytorch_median_images_per_s: pytorch_median,
        ratio: ours_median / pytorch_median,
        machine,
    })
}

/// Convolution / pooling kernels to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// The fast CPU kernels (candle's ops elsewhere).
    Auto,
    /// candle's own conv2d and a max-pool built from candle ops.
    Candle,
}

/// The flags of `cargo xtask bench` that say what to time and how; the runner adds where the
/// steps run (`--device`) and where the PyTorch scripts are (`--peer-dir`).
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
    pub backend: BackendChoice,
    /// GRL coefficient.
    #[arg(long, default_value_t = 0.5)]
    pub lambda: f64,
    /// Also run the PyTorch reference of the same step (`xtask/peer/*_torch_bench.py`) with this
    /// Python, alternating with ours (one process each), and print both, the ratio and the machine.
    #[arg(long, value_name = "PYTHON")]
    pub against_pytorch: Option<std::path::PathBuf>,
    /// Runs of each side with `--against-pytorch`.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
}

/// What a bench command measured: one bench, or a comparison with the PyTorch reference.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// [`run_bench`]'s result; `kernels` names the kernels the step ran.
    Bench {
        result: BenchResult,
        kernels: &'static str,
    },
    Comparison(Comparison),
}

impl Outcome {
    /// The result for a reader: stdout's lines (stderr's when the JSON object takes stdout).
    pub fn lines(&self) -> Vec<String> {
        match self {
            Outcome::Bench { result, kernels } => vec![result.summary_line(kernels)],
            Outcome::Comparison(cmp) => cmp.report_lines(),
        }
    }

    /// Where a bench's time went (for stderr; none for a comparison).
    pub fn profile_lines(&self) -> Vec<String> {
        match self {
            Outcome::Bench { result, .. } => result.profile_lines(),
            Outcome::Comparison(_) => Vec::new(),
        }
    }

    /// The figures as one JSON object (a bench's is what a comparison reads back from its child).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Outcome::Bench { result, kernels } => result.to_json(kernels),
            Outcome::Comparison(cmp) => serde_json::to_value(cmp).unwrap_or_default(),
        }
    }
}

/// Sets the worker threads of this process (`RAYON_NUM_THREADS`, read by rayon's global pool on
/// first use and by candle's matmul). Call it before anything starts parallel work.
pub fn set_threads(threads: Option<usize>) -> Result<()> {
    if let Some(t) = threads {
        ensure(t > 0, || "--threads must be positive".into())?;
        // SAFETY: the caller sets it before this process starts any thread of its own.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", t.to_string()) };
    }
    Ok(())
}

/// Runs what `args` ask for on `device`, after [`set_threads`]: a bench in this process, or with
/// `--against-pytorch` a comparison whose own side is `ours` (this bench in a child process, the
/// flags added here) and whose PyTorch side runs the scripts in `peer_dir`.
pub fn run(args: &BenchArgs, device: Device, mut ours: Command, peer_dir: &Path) -> Result<Outcome> {
    let spec = StepBench {
        net: args.net,
        backend: match args.backend {
            BackendChoice::Auto => Backend::Auto,
            BackendChoice::Candle => Backend::Candle,
        },
        device,
        batch: args.batch,
        steps: args.steps,
        warmup: args.warmup,
        lambda: args.lambda,
    };
    if let Some(python) = &args.against_pytorch {
        let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        ours.args(["--json", "--net", spec.net.name(), "--threads", &threads.to_string()]);
        ours.args(["--steps", &args.steps.to_string(), "--warmup", &args.warmup.to_string()]);
        ours.args(["--batch", &args.batch.to_string(), "--lambda", &args.lambda.to_string()]);
        ours.args(["--backend", if args.backend == BackendChoice::Auto { "auto" } else { "candle" }]);
        ours.args(["--device", device_name(&spec.device)]);
        ensure(peer_dir.join("dann_torch_bench.py").is_file(), || {
            format!("--against-pytorch: {} holds no dann_torch_bench.py (give --peer-dir)", peer_dir.display())
        })?;
        let mut torch = pytorch_command(python, peer_dir, &spec, threads);
        return Ok(Outcome::Comparison(compare_with_pytorch(&spec, threads, args.rounds, &mut ours, &mut torch)?));
    }
    if let Some(t) = args.threads {
        ensure(t == kernels::num_threads(), || {
            format!("--threads {t} requested but the thread pool already runs {} threads", kernels::num_threads())
        })?;
    }
    let result = run_bench(&spec)?;
    // Off the CPU, `auto` is candle's ops too (the generic path).
    let kernels = if args.backend == BackendChoice::Auto && spec.device.is_cpu() { "adapt-ops" } else { "candle" };
    Ok(Outcome::Bench { result, kernels })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child that prints `json` as its last stdout line.
    fn printing(json: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &format!("echo 'some progress'; echo '{json}'")]);
        cmd
    }

    fn spec(batch: usize) -> StepBench {
        StepBench {
            net: BenchNet::Mnist,
            device: Device::Cpu,
            backend: Backend::Auto,
            batch,
            steps: 1,
            warmup: 0,
            lambda: 1.0,
        }
    }

    #[test]
    fn the_comparison_bounds_the_ratio_by_the_gemm_work_at_the_peak() -> Result<()> {
        // Ours: 2 GFLOP of GEMMs a step, 50 GFLOP/s a thread at best.
        let mut ours = printing(
            r#"{"images_per_s": 100.0, "ms_per_step": 1280.0, "gemm_gflop_per_step": 2.0, "sgemm_peak_gflops_per_thread": 50.0}"#,
        );
        let mut torch = printing(r#"{"images_per_s": 50.0, "ms_per_step": 2560.0, "threads": 2, "torch": "2.x"}"#);
        let cmp = compare_with_pytorch(&spec(64), 2, 1, &mut ours, &mut torch)?;
        assert_eq!((cmp.ratio, cmp.torch.as_str()), (2.0, "2.x"));
        // PyTorch: 128 images at 50 images/s = 2560 ms a step; the floor: 2 GFLOP / (2 x 50) = 20 ms.
        assert_eq!(cmp.gemm_floor_ms(), Some(20.0));
        assert_eq!(cmp.ceiling_ratio, Some(128.0));
        assert!(cmp.report_lines().iter().any(|l| l.contains("by more than 128.00x")), "{:?}", cmp.report_lines());

        // Without GEMM figures (candle's ops, or an older binary) there is no ceiling, and no line.
        let mut plain = printing(r#"{"images_per_s": 100.0, "ms_per_step": 1280.0, "gemm_gflop_per_step": 0.0}"#);
        let cmp = compare_with_pytorch(&spec(64), 2, 1, &mut plain, &mut torch)?;
        assert_eq!((cmp.gemm_gflop_per_step, cmp.ceiling_ratio), (None, None));
        assert!(!cmp.report_lines().iter().any(|l| l.contains("ceiling")));
        Ok(())
    }

    #[test]
    fn the_floor_is_the_work_over_all_threads_at_the_peak() {
        assert_eq!(gemm_floor_ms(1.0, 100.0, 2), 5.0);
        assert_eq!(gemm_floor_ms(1.0, 100.0, 1), 10.0);
    }
}
