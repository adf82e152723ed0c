//! `cargo xtask bench`: full training steps on random data, timed (images per second, milliseconds
//! per step, peak resident set size, where the time goes), alone or alternated with the PyTorch
//! reference of the same step; see `adapt_bench`.
use crate::device::{self, DeviceChoice};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub bench: adapt_bench::BenchArgs,
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

/// Runs the benchmark (or the comparison), prints its lines, returns the result as JSON.
pub fn run(args: &BenchArgs) -> anyhow::Result<serde_json::Value> {
    adapt_bench::set_threads(args.bench.threads)?;
    let device = device::select(args.device)?;
    let peer_dir = args.peer_dir.clone().unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("peer"));
    // Our side of a comparison: this binary's bench in a child process.
    let mut ours = std::process::Command::new(std::env::current_exe()?);
    ours.arg("bench");
    let outcome = adapt_bench::run(&args.bench, device, ours, &peer_dir)?;
    for l in outcome.lines() {
        if args.bench.json { eprintln!("{l}") } else { println!("{l}") }
    }
    outcome.profile_lines().iter().for_each(|l| eprintln!("{l}"));
    Ok(outcome.to_json())
}
