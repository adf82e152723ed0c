//! Experiments with adapt's crates: what `cargo xtask` runs, as a library.
//!
//! * [`recipe`]: typed recipes (the 2D toy, digits with DANN or source-only, Generate To Adapt)
//!   and the options that say how a run is carried out.
//! * [`run`] / [`resume`]: the run lifecycle: run folder, `config.toml`, training with
//!   checkpoints and exact resume, model selection, evaluation, `summary.json`, plots, report.
//! * [`summary`]: the one record schema of a finished run.
//! * [`selection`]: label-free validators' choices and the source-only guard.
//! * [`weights`]: weights files that carry their model and preprocessing in their metadata.
//! * [`evaluate`]: re-evaluating a run folder or a bare weights file.
//! * [`aggregate`]: runs gathered into tables, mean ± std over seeds; the digit matrix.
//! * [`dann_run`]: one DANN-family method in its folder, for any `Dann<F, L, D>`.
//! * [`toy`], [`digits`], [`gta`]: the experiment families.
//! * [`sweep`]: a sweep's units by index, for job arrays; Slurm scripts and submission.
pub mod aggregate;
pub mod dann_run;
pub mod digits;
pub mod error;
pub mod evaluate;
pub mod files;
pub mod gta;
pub mod pair;
pub mod predict;
pub mod recipe;
pub mod selection;
pub mod summary;
pub mod sweep;
pub mod toy;
pub mod weights;

pub use error::{ExperimentError, Result};
pub use recipe::{DigitRecipe, GtaRecipe, Preset, Recipe, RunOptions, RunRecord, ToyRecipe};
pub use summary::{RunKind, RunSummary, Selection};

use candle_core::Device;
use std::path::Path;

/// What a finished [`run`] reports.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// One per trained method, in the recipe's order.
    pub runs: Vec<RunSummary>,
    /// What the data loaders had to say (e.g. a dataset only partly present).
    pub notes: Vec<String>,
}

/// Trains `recipe` as `opts` says and returns its summaries.
pub fn run(recipe: &Recipe, opts: &RunOptions, device: &Device) -> Result<Outcome> {
    match recipe {
        Recipe::Toy(r) => Ok(Outcome { runs: toy::run(r, opts, device)?, notes: Vec::new() }),
        Recipe::Digits(r) => {
            let d = digits::run(r, opts, device)?;
            Ok(Outcome { runs: d.summaries, notes: d.notes })
        }
        Recipe::Gta(r) => {
            let (summary, notes) = gta::run(r, opts, device)?;
            Ok(Outcome { runs: vec![summary], notes })
        }
    }
}

/// Continues the interrupted run in `dir` with the recipe saved there. `opts.out`, `opts.resume`
/// and `opts.checkpoint_every` are set from `dir`; `opts.data_dir`, when given, replaces the
/// recorded folder.
pub fn resume(dir: &Path, opts: &RunOptions, device: &Device) -> Result<Outcome> {
    let path = dir.join(files::RECIPE_FILE);
    let record = RunRecord::read(dir)?
        .ok_or_else(|| ExperimentError::file(&path, "missing: the folder is not a run started by adapt"))?;
    let opts = RunOptions {
        out: Some(dir.to_path_buf()),
        resume: true,
        data_dir: opts.data_dir.clone().or(record.data_dir),
        checkpoint_every: record.checkpoint_every,
        ..opts.clone()
    };
    run(&record.recipe, &opts, device)
}
