//! `cargo xtask report`: every run's `summary.json` under some folders in one Markdown table,
//! plus mean and standard deviation over seeds per (source, target, method).
use adapt_experiment::aggregate::{collect, groups, runs_report};
use anyhow::{Result, bail};
use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// Folders to search for runs (recursively; symbolic links are not followed).
    #[arg(default_value = "runs")]
    pub dirs: Vec<PathBuf>,
    /// Markdown file to write (default: `report.md` in the first folder).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: &ReportArgs) -> Result<serde_json::Value> {
    let runs = collect(&args.dirs)?;
    if runs.is_empty() {
        bail!("no runs (summary.json files) under {:?}", args.dirs);
    }
    let groups = groups(&runs);
    let report = runs_report(&runs, &groups);
    let out = args.out.clone().unwrap_or_else(|| args.dirs[0].join("report.md"));
    report.write(&out)?;
    println!("{}", report.as_str());
    println!("written: {}", out.display());
    Ok(serde_json::json!({ "runs": runs, "groups": groups }))
}
