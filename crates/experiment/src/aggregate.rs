//! Many runs as one table: every `summary.json` under some folders, mean ± std over seeds per
//! (source, target, method), the digit matrix and the GTA ablation table.
use crate::digits::DigitRun;
use crate::error::{Context, ExperimentError, Result, ensure};
use crate::files::create_dir;
use crate::gta::GtaAblation;
use crate::recipe::{DigitRecipe, Preset, RunOptions};
use crate::selection::ValidatorChoice;
use crate::summary::{RunSummary, SUMMARY_FILE, mean_std};
use adapt_datasets::pair::PairProfile;
use adapt_datasets::{DataRef, DatasetId, Split};
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

/// The GTA ablation's Markdown tables: one row per variant, mean ± std over seeds, of the last
/// iteration's target test accuracy beside the checkpoints the label-free validators choose
/// (`choices[i]` are run `i`'s, from its `selection.json`; empty when it has none); then every run.
pub fn gta_ablation_table(spec: &GtaAblation, runs: &[RunSummary], choices: &[Vec<ValidatorChoice>]) -> String {
    let length = match spec.epochs {
        Some(e) => format!("{e} epochs of the source ({} iterations)", spec.steps),
        None => format!("{} iterations", spec.steps),
    };
    let boxes = spec.recipe(GtaVariant::Full, spec.first_seed).map(|r| {
        [("source", r.source_input.digit_box), ("target", r.target_input.digit_box)]
            .into_iter()
            .filter_map(|(d, b)| b.map(|b| format!(", {d} in a {b}x{b} box")))
            .collect::<String>()
    });
    let usps = boxes.unwrap_or_default();
    let shift = match spec.input_shift {
        0 => String::new(),
        n => format!(", training images moved by up to {n} px (ours)"),
    };
    let mut md = format!(
        "# Generate To Adapt ablation: {} -> {}, target test accuracy (%)\n\n{length} of {} + {}, preset {}{usps}{shift}, \
         mean ± std over the seeds each row has. \"last\": the last iteration; the next columns: the checkpoint each \
         label-free validator chooses (source validation accuracy; IM, BNM, SND on target training images); \
         \"oracle\" uses target labels and is no selection rule.\n\n\
         | row | method | seeds | last | source val | IM | BNM | SND | oracle | source acc | seconds |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
        spec.source,
        spec.target,
        spec.batch_size,
        spec.batch_size,
        spec.preset.as_str(),
    );
    let choice_of = |i: usize, name: &str| -> Option<f64> {
        choices.get(i)?.iter().find(|c| c.validator.starts_with(name)).map(|c| 100.0 * c.target_test_acc)
    };
    let cell = |v: &[f64]| if v.is_empty() { "-".to_string() } else { format_mean_std(v) };
    for variant in GtaVariant::ALL {
        let rows: Vec<usize> = (0..runs.len()).filter(|&i| runs[i].method == variant.method_name()).collect();
        if rows.is_empty() {
            continue;
        }
        let pick = |f: &dyn Fn(usize) -> Option<f64>| rows.iter().filter_map(|&i| f(i)).collect::<Vec<_>>();
        let last = pick(&|i| Some(100.0 * runs[i].target_acc));
        let validators: Vec<String> =
            GTA_VALIDATOR_COLUMNS.iter().map(|name| cell(&pick(&|i| choice_of(i, name)))).collect();
        let (s, _) = mean_std(&pick(&|i| Some(100.0 * runs[i].source_acc)));
        let (sec, _) = mean_std(&pick(&|i| Some(runs[i].seconds)));
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {s:.1} | {sec:.0} |\n",
            variant.description(),
            variant.method_name(),
            rows.len(),
            cell(&last),
            validators.join(" | "),
        ));
    }
    md.push_str(
        "\n## Every run\n\n| seed | method | steps | last | source val (step) | IM (step) | BNM (step) | SND (step) | seconds |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for (i, r) in runs.iter().enumerate() {
        let chosen: Vec<String> = GTA_VALIDATOR_COLUMNS[..4]
            .iter()
            .map(|name| {
                choices
                    .get(i)
                    .and_then(|c| c.iter().find(|c| c.validator.starts_with(name)))
                    .map_or("-".into(), |c| format!("{:.1} ({})", 100.0 * c.target_test_acc, c.step))
            })
            .collect();
        md.push_str(&format!(
            "| {} | {} | {} | {:.1} | {} | {:.0} |\n",
            r.seed,
            r.method,
            r.steps,
            100.0 * r.target_acc,
            chosen.join(" | "),
            r.seconds
        ));
    }
    md
}

/// The validator names (prefixes of [`crate::selection::VALIDATORS`]' and the oracle's) the GTA
/// table's columns show, in order.
const GTA_VALIDATOR_COLUMNS: [&str; 5] =
    ["source validation", "information maximisation", "batch nuclear norm", "soft neighbourhood", "oracle"];

fn format_mean_std(v: &[f64]) -> String {
    let (m, s) = mean_std(v);
    if v.len() == 1 { format!("{m:.1}") } else { format!("{m:.1} ± {s:.1}") }
}

/// The digit matrix: on every ordered pair of `datasets`, source-only and the recommended recipe
/// (one run folder, the source-only guard between them) and DANN with the paper's recipe.
#[derive(Debug, Clone)]
pub struct DigitMatrix {
    /// At least two; `None`: every digit dataset whose test split loads.
    pub datasets: Option<Vec<DatasetId>>,
    /// Only these `(source, target)` pairs (built-in names or paths), in this order, instead of
    /// every pair of `datasets`.
    pub pairs: Option<Vec<(DataRef, DataRef)>>,
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

/// The run folders of one pair and seed: each preset of the matrix's columns once, with the
/// methods its folder trains (in column order: recommended, then paper).
pub(crate) fn matrix_folders() -> Vec<(Preset, &'static [Method])> {
    let mut folders: Vec<(Preset, &'static [Method])> = Vec::new();
    for (_, preset, methods, _) in COLUMNS {
        if !folders.iter().any(|(p, _)| *p == preset) {
            folders.push((preset, methods));
        }
    }
    folders
}

/// The folder of one preset of a pair and seed.
pub(crate) fn preset_dir(out: &Path, (source, target): (&DataRef, &DataRef), seed: u64, preset: Preset) -> PathBuf {
    out.join(format!("{}-{}", source.short_name(), target.short_name()))
        .join(format!("seed{seed}"))
        .join(preset.as_str())
}

/// The finished runs of a preset's folder, `None` unless every method in it has finished.
pub(crate) fn finished_preset_runs(dir: &Path, methods: &[Method]) -> Result<Option<Vec<RunSummary>>> {
    let sub = |m: Method| if methods.len() > 1 { dir.join(m.as_str()) } else { dir.to_path_buf() };
    let mut finished = Vec::new();
    for &m in methods {
        match RunSummary::read(&sub(m))? {
            Some(s) => finished.push(s),
            None => return Ok(None),
        }
    }
    Ok(Some(finished))
}

/// Runs (or reads back, or resumes) one preset's folder of a pair and seed.
pub(crate) fn preset_runs(
    spec: &DigitMatrix,
    (source, target, profile): (&DataRef, &DataRef, &PairProfile),
    seed: u64,
    (preset, methods): (Preset, &[Method]),
    opts: &RunOptions,
    device: &Device,
) -> Result<Vec<RunSummary>> {
    let dir = preset_dir(&spec.out, (source, target), seed, preset);
    if let Some(finished) = finished_preset_runs(&dir, methods)? {
        return Ok(finished);
    }
    let mut recipe = DigitRecipe::new(source, target, profile, methods.to_vec(), preset, seed);
    if let Some(steps) = spec.steps {
        recipe.steps = steps;
    }
    let opts =
        RunOptions { out: Some(dir.clone()), resume: dir.join(crate::files::RECIPE_FILE).is_file(), ..opts.clone() };
    let DigitRun { summaries, .. } = crate::digits::run(&recipe, &opts, device)
        .context(|| format!("{source} -> {target} seed {seed}, preset {}", preset.as_str()))?;
    Ok(summaries)
}

/// Figures published for small nets on these pairs (the papers and their repositories, as the
/// project's literature notes cite them); shown beside ours, never measured here.
fn published(source: &DataRef, target: &DataRef) -> &'static str {
    use DatasetId::*;
    let (Some(source), Some(target)) = (source.builtin(), target.builtin()) else { return "-" };
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

/// The matrix's pairs: `spec.pairs`, else every ordered pair of its datasets (those that load
/// when none are given); checked as the matrix needs them.
pub(crate) fn matrix_pairs(spec: &DigitMatrix, opts: &RunOptions) -> Result<Vec<(DataRef, DataRef)>> {
    let pairs = match &spec.pairs {
        Some(pairs) => {
            ensure(!pairs.is_empty(), || "the matrix was given an empty list of pairs".into())?;
            if let Some((s, _)) = pairs.iter().find(|(s, t)| s == t) {
                return Err(crate::error::ExperimentError::Invalid(format!(
                    "the pair {s} -> {s} adapts a dataset to itself"
                )));
            }
            pairs.clone()
        }
        None => {
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
            ids.iter()
                .flat_map(|&s| ids.iter().filter(move |&&t| t != s).map(move |&t| (DataRef::from(s), DataRef::from(t))))
                .collect()
        }
    };
    ensure(spec.seeds > 0, || "the matrix needs at least one seed".into())?;
    Ok(pairs)
}

/// Trains (or reads back) every cell of the matrix and returns its rows and the Markdown table,
/// also written to `out/matrix.md`.
pub fn digit_matrix(spec: &DigitMatrix, opts: &RunOptions, device: &Device) -> Result<(Vec<MatrixRow>, String)> {
    let pairs = matrix_pairs(spec, opts)?;
    let mut rows = Vec::new();
    for (source, target) in &pairs {
        let profile = PairProfile::measure(source, target, opts.data_dir.as_deref())
            .context(|| format!("measuring {source} -> {target}"))?;
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
                    let runs = preset_runs(spec, (source, target, &profile), seed, (*preset, methods), opts, device)?;
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
        rows.push(MatrixRow { source: source.as_string(), target: target.as_string(), columns, adapted_kept });
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
            published(&source, &target)
        ));
    }
    create_dir(&spec.out)?;
    crate::files::write_atomic(&spec.out.join("matrix.md"), &md)?;
    Ok((rows, md))
}

#[cfg(test)]
mod gta_table_tests {
    use super::*;
    use crate::recipe::GtaPreset;
    use crate::summary::{RunKind, Selection};

    fn run(method: &str, seed: u64, target_acc: f64) -> RunSummary {
        RunSummary {
            kind: RunKind::Gta,
            method: method.into(),
            source: "usps".into(),
            target: "mnist".into(),
            seed,
            source_acc: 0.95,
            target_acc,
            domain_acc: 0.6,
            a_distance: 0.4,
            target_ari: 0.5,
            source_val_acc: Some(0.96),
            selected_step: 670,
            selection: Selection::Last,
            weights: "model.safetensors".into(),
            seconds: 100.0 * (seed + 1) as f64,
            steps: 670,
            resumed_at: None,
            run_dir: String::new(),
            recommended: false,
            selected: true,
            target_labelled: true,
        }
    }

    fn choice(validator: &str, step: usize, acc: f64) -> ValidatorChoice {
        ValidatorChoice { validator: validator.into(), step, target_test_acc: acc }
    }

    #[test]
    fn the_gta_table_puts_last_and_the_label_free_choices_side_by_side() {
        let spec = GtaAblation {
            source: "usps".into(),
            target: "mnist".into(),
            seeds: 2,
            first_seed: 0,
            steps: 670,
            epochs: Some(10),
            batch_size: 100,
            preset: GtaPreset::Authors,
            digit_box: None,
            profile: crate::recipe::tests::pair_profile("usps", "mnist").2,
            input_shift: 0,
            variants: vec![GtaVariant::Stream1, GtaVariant::Full],
            out: PathBuf::from("unused"),
        };
        let runs = vec![run("gta-stream1", 0, 0.60), run("gta-full", 0, 0.70), run("gta-full", 1, 0.80)];
        let full_choices = |acc: f64| {
            vec![
                choice("source validation accuracy", 335, acc - 0.1),
                choice("information maximisation", 670, acc),
                choice("batch nuclear norm", 670, acc),
                choice("soft neighbourhood density", 603, acc - 0.05),
                choice("last checkpoint", 670, acc),
                choice("oracle (target labels; not a selection rule)", 603, acc + 0.02),
            ]
        };
        let md = gta_ablation_table(&spec, &runs, &[vec![], full_choices(0.70), full_choices(0.80)]);
        assert!(md.contains("10 epochs of the source (670 iterations) of 100 + 100, preset authors"), "{md}");
        // Stream 1 has no validator record: dashes; full: mean ± std over its two seeds.
        assert!(
            md.contains("| Stream 1 - Source only | gta-stream1 | 1 | 60.0 | - | - | - | - | - | 95.0 | 100 |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| Stream 1 + Stream 2 (C1 + C2) | gta-full | 2 | 75.0 ± 7.1 | 65.0 ± 7.1 | 75.0 ± 7.1 | 75.0 ± 7.1 | \
                 70.0 ± 7.1 | 77.0 ± 7.1 | 95.0 | 150 |"
            ),
            "{md}"
        );
        // A row with no runs is left out; every run is listed with its choices' steps.
        assert!(!md.contains("gta-c1"), "{md}");
        assert!(
            md.contains("| 1 | gta-full | 670 | 80.0 | 70.0 (335) | 80.0 (670) | 80.0 (670) | 75.0 (603) | 200 |"),
            "{md}"
        );
    }
}
