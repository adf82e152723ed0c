//! `cargo xtask report`: gathers the `summary.json` of every run under some folders into one
//! Markdown table, plus mean and standard deviation over seeds per (method, source, target).
use adapt_eval::report::{Report, percent};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// Folders to search for runs (recursively).
    #[arg(default_value = "runs")]
    pub dirs: Vec<PathBuf>,
    /// Markdown file to write (default: `report.md` in the first folder).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The fields of a run's `summary.json` that the report shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedRun {
    pub method: String,
    pub source: String,
    pub target: String,
    pub seed: u64,
    pub source_acc: f64,
    pub target_acc: f64,
    pub domain_acc: f64,
    #[serde(default)]
    pub a_distance: Option<f64>,
    pub seconds: f64,
    #[serde(default)]
    pub run_dir: String,
}

/// Mean and (sample) standard deviation of a group of runs.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub method: String,
    pub source: String,
    pub target: String,
    pub seeds: Vec<u64>,
    pub target_acc_mean: f64,
    pub target_acc_std: f64,
    pub source_acc_mean: f64,
    pub domain_acc_mean: f64,
}

pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
}

fn find(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for e in entries {
        let p = e?.path();
        if p.is_dir() {
            find(&p, out)?;
        } else if p.file_name().is_some_and(|n| n == "summary.json") {
            out.push(p);
        }
    }
    Ok(())
}

/// Every run summary under `dirs`, sorted by pair, method and seed.
pub fn collect(dirs: &[PathBuf]) -> Result<Vec<SavedRun>> {
    let mut files = Vec::new();
    for d in dirs {
        find(d, &mut files)?;
    }
    let mut runs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()))?;
        let mut r: SavedRun =
            serde_json::from_str(&text).with_context(|| format!("{} is not a run summary", f.display()))?;
        if r.run_dir.is_empty() {
            r.run_dir = f.parent().unwrap_or(Path::new(".")).display().to_string();
        }
        runs.push(r);
    }
    runs.sort_by(|a, b| (&a.source, &a.target, &a.method, a.seed).cmp(&(&b.source, &b.target, &b.method, b.seed)));
    Ok(runs)
}

/// Groups runs by (method, source, target).
pub fn groups(runs: &[SavedRun]) -> Vec<Group> {
    let mut by: BTreeMap<(String, String, String), Vec<&SavedRun>> = BTreeMap::new();
    for r in runs {
        by.entry((r.source.clone(), r.target.clone(), r.method.clone())).or_default().push(r);
    }
    by.into_iter()
        .map(|((source, target, method), rs)| {
            let t: Vec<f64> = rs.iter().map(|r| r.target_acc).collect();
            let (target_acc_mean, target_acc_std) = mean_std(&t);
            Group {
                method,
                source,
                target,
                seeds: rs.iter().map(|r| r.seed).collect(),
                target_acc_mean,
                target_acc_std,
                source_acc_mean: mean_std(&rs.iter().map(|r| r.source_acc).collect::<Vec<_>>()).0,
                domain_acc_mean: mean_std(&rs.iter().map(|r| r.domain_acc).collect::<Vec<_>>()).0,
            }
        })
        .collect()
}

pub fn run(args: &ReportArgs) -> Result<serde_json::Value> {
    let runs = collect(&args.dirs)?;
    if runs.is_empty() {
        bail!("no runs (summary.json files) under {:?}", args.dirs);
    }
    let groups = groups(&runs);
    let mut report = Report::new("Runs");
    report.paragraph("Every run found; accuracies on the test sets (target labels used for evaluation only).");
    report.table(
        &[
            "source",
            "target",
            "method",
            "seed",
            "source acc",
            "target acc",
            "domain acc",
            "A-distance",
            "seconds",
            "run",
        ],
        &runs
            .iter()
            .map(|r| {
                vec![
                    r.source.clone(),
                    r.target.clone(),
                    r.method.clone(),
                    r.seed.to_string(),
                    percent(r.source_acc),
                    percent(r.target_acc),
                    percent(r.domain_acc),
                    r.a_distance.map_or("-".into(), |a| format!("{a:.2}")),
                    format!("{:.0}", r.seconds),
                    r.run_dir.clone(),
                ]
            })
            .collect::<Vec<_>>(),
    );
    report.heading("Mean over seeds");
    report.table(
        &["source", "target", "method", "seeds", "target acc (mean ± std)", "source acc", "domain acc"],
        &groups
            .iter()
            .map(|g| {
                vec![
                    g.source.clone(),
                    g.target.clone(),
                    g.method.clone(),
                    g.seeds.len().to_string(),
                    format!("{} ± {}", percent(g.target_acc_mean), percent(g.target_acc_std)),
                    percent(g.source_acc_mean),
                    percent(g.domain_acc_mean),
                ]
            })
            .collect::<Vec<_>>(),
    );
    let out = args.out.clone().unwrap_or_else(|| args.dirs[0].join("report.md"));
    report.write(&out)?;
    println!("{}", report.as_str());
    println!("written: {}", out.display());
    Ok(serde_json::json!({ "runs": runs, "groups": groups }))
}
