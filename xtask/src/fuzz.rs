//! `cargo xtask fuzz`: generated corruptions of every loader's files, of checkpoints and of run
//! files, each case run with a time limit and an allocation bound (see `adapt_datasets::fuzz`).
use adapt_datasets::fuzz::{self, Options, Target};
use adapt_datasets::memory;
use anyhow::{Result, bail};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
pub struct FuzzArgs {
    /// Cases per target.
    #[arg(long, default_value_t = 10_000)]
    pub cases: usize,
    /// Seed of the generated cases (the same seed and count give the same cases).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Only these targets (comma separated; default all).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Seconds after which a case counts as a hang.
    #[arg(long, default_value_t = 5)]
    pub timeout: u64,
}

/// Runs the suite; with `json`, the last stdout line is `{"fuzz": [per-target report], ...}`.
/// Any panic, hang, runaway allocation, silent acceptance or unclear error fails the command.
pub fn run(args: &FuzzArgs, json: bool) -> Result<()> {
    let mut targets: Vec<Arc<dyn Target>> = fuzz::loader_targets();
    let loaders = targets.len();
    targets.extend(adapt_experiment::fuzz::run_file_targets());
    let known: Vec<&str> = targets.iter().map(|t| t.name()).collect();
    if let Some(bad) = args.only.iter().find(|n| !known.contains(&n.as_str())) {
        bail!("--only: unknown target '{bad}'; known: {}", known.join(", "));
    }
    let keep = |t: &Arc<dyn Target>| args.only.is_empty() || args.only.iter().any(|n| n == t.name());
    if targets[loaders..].iter().any(keep) {
        adapt_experiment::fuzz::prepare().map_err(|e| anyhow::anyhow!("training the fixture run: {e}"))?;
    }
    targets.retain(keep);
    let counted = memory::counting_available();
    let opts = Options {
        cases: args.cases,
        seed: args.seed,
        timeout: Duration::from_secs(args.timeout),
        ..Options::default()
    };
    let reports = fuzz::run(&targets, &opts, &mut |r| eprintln!("{} {}/{} ...", r.target, r.cases, args.cases));
    println!(
        "{:<10} {:>7} {:>8} {:>7} {:>7} {:>6} {:>6} {:>5} {:>7} {:>9} {:>7}",
        "target", "cases", "correct", "clear", "unclear", "silent", "panics", "hangs", "runaway", "peak kB", "seconds"
    );
    for r in &reports {
        println!(
            "{:<10} {:>7} {:>8} {:>7} {:>7} {:>6} {:>6} {:>5} {:>7} {:>9} {:>7.1}",
            r.target,
            r.cases,
            r.correct_loads,
            r.clear_errors,
            r.unclear_errors,
            r.silent_acceptances,
            r.panics,
            r.hangs,
            r.runaway_allocations,
            r.peak_case_bytes >> 10,
            r.seconds
        );
        for f in &r.failures {
            println!("  - {f}");
        }
    }
    if !counted {
        println!("note: allocations were not counted (no counting allocator in this binary)");
    }
    let failed: usize = reports.iter().map(|r| r.failed()).sum();
    if json {
        let summary = serde_json::json!({
            "fuzz": reports, "cases_per_target": args.cases, "seed": args.seed,
            "allocations_counted": counted, "failed": failed, "ok": failed == 0,
        });
        println!("{summary}");
    }
    if failed > 0 {
        bail!("{failed} fuzz case(s) failed");
    }
    Ok(())
}
