//! Many runs as one table: every `summary.json` under some folders, mean ± std over seeds per
//! (source, target, method), the digit matrix and the GTA ablation table.
use crate::digits::DigitRun;
use crate::error::{Context, ExperimentError, Result, ensure};
use crate::files::create_dir;
use crate::gta::GtaAblation;
use crate::recipe::{DigitRecipe, Preset, RunOptions};
use crate::summary::{RunSummary, SUMMARY_FILE, mean_std};
use adapt_datasets::{DatasetId, Split};
use adapt_eval::report::{Report, percent};
use adapt_train::{GtaVariant, Method};
use candle_core::Device;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

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

/// Every `summary.json` below `dir`. Symbolic links are not followed (a link loop would never
/// end, and a linked folder would count its runs twice).
fn find(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| ExperimentError::io(dir, e))?;
    for e in entries {
        let e = e.map_err(|e| ExperimentError::io(dir, e))?;
        let kind = e.file_type().map_err(|err| ExperimentError::io(e.path(), err))?;
        let p = e.path();
        if kind.is_dir() {
            find(&p, out)?;
        } else if kind.is_file() && p.file_name().is_some_and(|n| n == SUMMARY_FILE) {
            out.push(p);
        }
    }
    Ok(())
}

/// Every run summary under `dirs`, sorted by pair, method and seed; a summary that is not one
/// is an error naming its file.
pub fn collect(dirs: &[PathBuf]) -> Result<Vec<RunSummary>> {
    let mut files = Vec::new();
    for d in dirs {
        find(d, &mut files)?;
    }
    // The same folder given twice (or nested in another given one) counts once.
    let mut seen = HashSet::new();
    files.retain(|f| seen.insert(std::fs::canonicalize(f).unwrap_or_else(|_| f.clone())));
    let mut runs = Vec::new();
    for f in files {
        let dir = f.parent().unwrap_or(Path::new("."));
        let mut r = RunSummary::read(dir)?.ok_or_else(|| ExperimentError::file(&f, "disappeared while reading"))?;
        if r.run_dir.is_empty() {
            r.run_dir = dir.display().to_string();
        }
        runs.push(r);
    }
    runs.sort_by(|a, b| (&a.source, &a.target, &a.method, a.seed).cmp(&(&b.source, &b.target, &b.method, b.seed)));
    Ok(runs)
}

/// Groups runs by (source, target, method).
pub fn groups(runs: &[RunSummary]) -> Vec<Group> {
    let mut by: BTreeMap<(String, String, String), Vec<&RunSummary>> = BTreeMap::new();
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

/// The Markdown report of `runs`: every run, then the mean over seeds.
pub fn runs_report(runs: &[RunSummary], groups: &[Group]) -> Report {
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
                    format!("{:.2}", r.a_distance),
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
    report
}

/// The GTA ablation's Markdown table: one row per variant, mean ± std over seeds.
pub fn gta_ablation_table(spec: &GtaAblation, runs: &[RunSummary]) -> String {
    let mut md = format!(
        "# Generate To Adapt ablation: {} -> {}, target test accuracy (%)\n\n{} iterations of {} + {}, mean ± std over {} seed(s).\n\n\
         | row | method | target acc | source acc | A-distance |\n|---|---|---|---|---|\n",
        spec.source, spec.target, spec.steps, spec.batch_size, spec.batch_size, spec.seeds
    );
    for variant in GtaVariant::ALL {
        let rows: Vec<&RunSummary> = runs.iter().filter(|r| r.method == variant.method_name()).collect();
        let pick = |f: fn(&RunSummary) -> f64| mean_std(&rows.iter().map(|r| f(r)).collect::<Vec<_>>());
        let (t, ts) = pick(|r| 100.0 * r.target_acc);
        let (s, _) = pick(|r| 100.0 * r.source_acc);
        let (a, _) = pick(|r| r.a_distance);
        md.push_str(&format!(
            "| {} | {} | {t:.1} ± {ts:.1} | {s:.1} | {a:.2} |\n",
            variant.description(),
            variant.method_name()
        ));
    }
    md
}

/// The digit matrix: on every ordered pair of `datasets`, source-only and the recommended recipe
/// (one run folder, the source-only guard between them) and DANN with the paper's recipe.
#[derive(Debug, Clone)]
pub struct DigitMatrix {
    /// At least two; `None`: every digit dataset whose test split loads.
    pub datasets: Option<Vec<DatasetId>>,
    pub seeds: u64,
    /// Training steps per run (`None`: each preset's).
    pub steps: Option<usize>,
    /// Folder for the runs and `matrix.md`.
    pub out: PathBuf,
}

const DIGITS: [DatasetId; 5] =
    [DatasetId::Mnist, DatasetId::MnistM, DatasetId::Svhn, DatasetId::SynDigits, DatasetId::Usps];

/// The digit datasets whose test split loads from `data_dir`.
pub fn available_digits(data_dir: Option<&Path>) -> Vec<DatasetId> {
    DIGITS.into_iter().filter(|id| adapt_datasets::load(id.name(), Split::Test, data_dir).is_ok()).collect()
}

/// The matrix's columns: (label, preset, methods, the method whose runs the column shows).
const COLUMNS: [(&str, Preset, &[Method], Method); 3] = [
    ("source-only", Preset::Recommended, &[Method::SourceOnly, Method::Dann], Method::SourceOnly),
    ("DANN (paper)", Preset::Paper, &[Method::Dann], Method::Dann),
    ("recommended", Preset::Recommended, &[Method::SourceOnly, Method::Dann], Method::Dann),
];

/// The last column: per seed, the run the label-free rule reports (recommended or source-only).
const SELECTED_COLUMN: &str = "default (label-free choice)";

/// Runs (or reads back, or resumes) one preset's folder of a pair and seed.
fn preset_runs(
    spec: &DigitMatrix,
    (source, target): (DatasetId, DatasetId),
    seed: u64,
    (preset, methods): (Preset, &[Method]),
    opts: &RunOptions,
    device: &Device,
) -> Result<Vec<RunSummary>> {
    let dir =
        spec.out.join(format!("{}-{}", source.name(), target.name())).join(format!("seed{seed}")).join(preset.as_str());
    let sub = |m: Method| if methods.len() > 1 { dir.join(m.as_str()) } else { dir.clone() };
    let mut finished = Vec::new();
    for &m in methods {
        if let Some(s) = RunSummary::read(&sub(m))? {
            finished.push(s);
        }
    }
    if finished.len() == methods.len() {
        return Ok(finished);
    }
    let mut recipe = DigitRecipe::new(source, target, methods.to_vec(), preset, seed);
    if let Some(steps) = spec.steps {
        recipe.steps = steps;
    }
    let opts =
        RunOptions { out: Some(dir.clone()), resume: dir.join(crate::files::RECIPE_FILE).is_file(), ..opts.clone() };
    let DigitRun { summaries, .. } = crate::digits::run(&recipe, &opts, device)
        .context(|| format!("{} -> {} seed {seed}, preset {}", source.name(), target.name(), preset.as_str()))?;
    Ok(summaries)
}

/// Figures published for small nets on these pairs (the papers and their repositories, as the
/// project's literature notes cite them); shown beside ours, never measured here.
fn published(source: DatasetId, target: DatasetId) -> &'static str {
    use DatasetId::*;
    match (source, target) {
        (Mnist, MnistM) => "DANN paper 76.66; DANN, per-domain BN 84-90; VADA 95.7; DIRT-T 98.7",
        (Mnist, Usps) => "CDAN+E 95.6; SHOT 97.9",
        (Usps, Mnist) => "CDAN+E 98.0; SHOT 98.0",
        (Svhn, Mnist) => "DANN paper 73.85; CDAN+E 89.2; SHOT 98.9",
        _ => "-",
    }
}

/// Mean ± std of the runs' target accuracy, in percent.
fn cell(runs: &[&RunSummary]) -> Option<String> {
    if runs.is_empty() {
        return None;
    }
    let (m, s) = mean_std(&runs.iter().map(|r| 100.0 * r.target_acc).collect::<Vec<_>>());
    Some(format!("{m:.1} ± {s:.1}"))
}

/// One row of the matrix: what each column measured on a pair, per seed.
#[derive(Debug, Clone, Serialize)]
pub struct MatrixRow {
    pub source: String,
    pub target: String,
    /// Per column, the runs of every seed.
    pub columns: Vec<(String, Vec<RunSummary>)>,
    /// Seeds where the label-free rule kept the recommended model over source-only.
    pub adapted_kept: usize,
}

/// Trains (or reads back) every cell of the matrix and returns its rows and the Markdown table,
/// also written to `out/matrix.md`.
pub fn digit_matrix(spec: &DigitMatrix, opts: &RunOptions, device: &Device) -> Result<(Vec<MatrixRow>, String)> {
    let ids = match &spec.datasets {
        Some(ids) => ids.clone(),
        None => available_digits(opts.data_dir.as_deref()),
    };
    ensure(ids.len() >= 2, || {
        format!(
            "the matrix needs at least two loadable digit datasets, found {:?} (set the data folder)",
            ids.iter().map(|i| i.name()).collect::<Vec<_>>()
        )
    })?;
    ensure(spec.seeds > 0, || "the matrix needs at least one seed".into())?;
    let mut rows = Vec::new();
    for &source in &ids {
        for &target in &ids {
            if source == target {
                continue;
            }
            let mut columns: Vec<(String, Vec<RunSummary>)> = COLUMNS
                .iter()
                .map(|(label, ..)| label.to_string())
                .chain([SELECTED_COLUMN.to_string()])
                .map(|label| (label, Vec::new()))
                .collect();
            let mut adapted_kept = 0;
            for seed in 0..spec.seeds {
                let mut by_preset: Vec<(Preset, Vec<RunSummary>)> = Vec::new();
                for (i, (_, preset, methods, shown)) in COLUMNS.iter().enumerate() {
                    if !by_preset.iter().any(|(p, _)| p == preset) {
                        let runs = preset_runs(spec, (source, target), seed, (*preset, methods), opts, device)?;
                        by_preset.push((*preset, runs));
                    }
                    let runs = &by_preset.iter().find(|(p, _)| p == preset).expect("just run").1;
                    if let Some(r) = runs.iter().find(|r| r.method == shown.as_str()) {
                        if *preset == Preset::Recommended && *shown == Method::Dann && r.selected {
                            adapted_kept += 1;
                        }
                        columns[i].1.push(r.clone());
                    }
                }
                // What the default command reports: the run the label-free rule chose.
                let recommended = &by_preset.iter().find(|(p, _)| *p == Preset::Recommended).expect("a column").1;
                if let Some(r) = recommended.iter().find(|r| r.selected) {
                    columns[COLUMNS.len()].1.push(r.clone());
                }
            }
            rows.push(MatrixRow { source: source.name().into(), target: target.name().into(), columns, adapted_kept });
        }
    }
    let mut md = format!(
        "# Target test accuracy (%), mean ± std over {} seed(s)\n\n\
         Source-only and recommended share one run folder per seed (the source-only run with the recommended \
         preprocessing); \"default\" is what `cargo xtask train --source S --target T` reports, the run the \
         label-free rule chose per seed, and \"kept\" counts the seeds where that is the recommended model. \
         Published figures are quoted, not measured here.\n\n\
         | source -> target | source-only | DANN (paper) | recommended | default (label-free choice) | kept | \
         published (small nets) |\n\
         |---|---|---|---|---|---|---|\n",
        spec.seeds
    );
    for row in &rows {
        let (source, target) = crate::recipe::parse_pair(&row.source, &row.target)?;
        let cells: Vec<String> = row
            .columns
            .iter()
            .map(|(_, runs)| cell(&runs.iter().collect::<Vec<_>>()).unwrap_or_else(|| "-".into()))
            .collect();
        md.push_str(&format!(
            "| {} -> {} | {} | {}/{} | {} |\n",
            row.source,
            row.target,
            cells.join(" | "),
            row.adapted_kept,
            spec.seeds,
            published(source, target)
        ));
    }
    create_dir(&spec.out)?;
    crate::files::write_atomic(&spec.out.join("matrix.md"), &md)?;
    Ok((rows, md))
}
