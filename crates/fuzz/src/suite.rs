//! The `cargo xtask fuzz` command: its flags, the targets they select, and the table and JSON
//! object of the outcome.
use crate::{Options, Target, TargetReport, memory};
use std::sync::Arc;
use std::time::Duration;

/// The flags of `cargo xtask fuzz`.
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

/// Why the suite could not run (a failing case is not an error: it is counted in the reports).
#[derive(Debug, thiserror::Error)]
pub enum FuzzError {
    /// `--only` named a target that does not exist.
    #[error("--only: unknown target '{name}'; known: {known}")]
    UnknownTarget { name: String, known: String },
    /// A target could not build what its cases share.
    #[error("target {target}: {problem}")]
    Prepare { target: &'static str, problem: String },
}

/// What one run of the suite came to.
#[derive(Debug, Clone)]
pub struct Suite {
    pub reports: Vec<TargetReport>,
    pub cases_per_target: usize,
    pub seed: u64,
    /// Whether a [`memory::CountingAlloc`] measured the cases' allocations.
    pub allocations_counted: bool,
}

/// The targets `only` names, in the order of [`crate::targets::all`] (all of them when `only`
/// is empty).
pub fn select(only: &[String]) -> Result<Vec<Arc<dyn Target>>, FuzzError> {
    let mut targets = crate::targets::all();
    if let Some(bad) = only.iter().find(|n| !targets.iter().any(|t| t.name() == n.as_str())) {
        let known: Vec<&str> = targets.iter().map(|t| t.name()).collect();
        return Err(FuzzError::UnknownTarget { name: bad.clone(), known: known.join(", ") });
    }
    targets.retain(|t| only.is_empty() || only.iter().any(|n| n == t.name()));
    Ok(targets)
}

/// Runs the targets `args` selects; `progress` sees each target's report every few hundred cases.
pub fn run_suite(args: &FuzzArgs, progress: &mut dyn FnMut(&TargetReport)) -> Result<Suite, FuzzError> {
    let targets = select(&args.only)?;
    let allocations_counted = memory::counting_available();
    let opts = Options {
        cases: args.cases,
        seed: args.seed,
        timeout: Duration::from_secs(args.timeout),
        ..Options::default()
    };
    let reports = crate::run(&targets, &opts, progress)?;
    Ok(Suite { reports, cases_per_target: args.cases, seed: args.seed, allocations_counted })
}

impl Suite {
    /// Cases that were not a correct load or a clear error, over all targets.
    pub fn failed(&self) -> usize {
        self.reports.iter().map(TargetReport::failed).sum()
    }

    /// The table of outcomes: a header, one row per target followed by its first failures, and a
    /// note when allocations were not counted.
    pub fn table(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "{:<10} {:>7} {:>8} {:>7} {:>7} {:>6} {:>6} {:>5} {:>7} {:>9} {:>7}",
            "target",
            "cases",
            "correct",
            "clear",
            "unclear",
            "silent",
            "panics",
            "hangs",
            "runaway",
            "peak kB",
            "seconds"
        )];
        for r in &self.reports {
            lines.push(format!(
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
            ));
            lines.extend(r.failures.iter().map(|f| format!("  - {f}")));
        }
        if !self.allocations_counted {
            lines.push("note: allocations were not counted (no counting allocator in this binary)".into());
        }
        lines
    }

    /// The JSON object `cargo xtask fuzz --json` prints last: `{"fuzz": [per-target report], ...}`.
    pub fn to_json(&self) -> serde_json::Value {
        let failed = self.failed();
        serde_json::json!({
            "fuzz": self.reports, "cases_per_target": self.cases_per_target, "seed": self.seed,
            "allocations_counted": self.allocations_counted, "failed": failed, "ok": failed == 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_selects_known_targets_in_report_order_and_names_the_unknown_one() {
        let all: Vec<&str> = select(&[]).unwrap().iter().map(|t| t.name()).collect();
        assert_eq!(
            all,
            [
                "idx",
                "mat",
                "mnist-m",
                "usps",
                "parquet",
                "checkpoint",
                "weights",
                "metrics",
                "summary",
                "recipe",
                "config",
                "image-folder",
                "image-list"
            ]
        );
        let some: Vec<&str> = select(&["config".into(), "idx".into()]).unwrap().iter().map(|t| t.name()).collect();
        assert_eq!(some, ["idx", "config"]);
        let e = select(&["idx".into(), "nope".into()]).err().expect("an unknown target is an error").to_string();
        assert!(
            e.starts_with("--only: unknown target 'nope'; known: idx, mat,")
                && e.ends_with("recipe, config, image-folder, image-list"),
            "{e}"
        );
    }

    #[test]
    fn the_table_lists_each_target_and_its_failures_and_says_when_nothing_was_counted() {
        let report = TargetReport {
            target: "idx".into(),
            cases: 3,
            correct_loads: 1,
            clear_errors: 1,
            panics: 1,
            failures: vec!["panic: case 2".into()],
            ..Default::default()
        };
        let suite = Suite { reports: vec![report], cases_per_target: 3, seed: 7, allocations_counted: false };
        let table = suite.table();
        assert!(table[0].starts_with("target") && table[1].starts_with("idx        "), "{table:?}");
        assert_eq!(table[2], "  - panic: case 2");
        assert!(table[3].starts_with("note: allocations were not counted"));
        let json = suite.to_json();
        assert_eq!(
            (json["failed"].as_u64(), json["ok"].as_bool(), json["seed"].as_u64()),
            (Some(1), Some(false), Some(7))
        );
    }
}
