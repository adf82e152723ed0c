//! One record schema for a trained run: written as `summary.json` when a run finishes, printed
//! by `train --json`, re-computed by [`crate::evaluate`], gathered by [`crate::aggregate`].
use crate::error::{ExperimentError, Result};
use crate::files::{read_json, write_json};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const SUMMARY_FILE: &str = "summary.json";

/// Which experiment family a run belongs to: it says which configuration type its
/// `config.toml` holds and how its model is rebuilt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunKind {
    /// Source-only or DANN on the 2D rotated moons.
    Toy,
    /// Source-only or DANN with the paper's digit nets.
    Digits,
    /// Generate To Adapt (or one of its ablation rows) on digits.
    Gta,
}

/// Which weights a run reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Selection {
    /// The weights after the last step (the paper's protocol).
    #[default]
    Last,
    /// The checkpoint with the best accuracy on the held-out source validation split.
    SourceVal,
}

impl Selection {
    pub fn as_str(self) -> &'static str {
        match self {
            Selection::Last => "last",
            Selection::SourceVal => "source-val",
        }
    }

    /// The weights file of a run folder this rule reports.
    pub fn weights_file(self) -> &'static str {
        match self {
            Selection::Last => crate::files::MODEL_FILE,
            Selection::SourceVal => crate::files::BEST_FILE,
        }
    }
}

/// One trained and evaluated run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub kind: RunKind,
    pub method: String,
    pub source: String,
    pub target: String,
    pub seed: u64,
    pub source_acc: f64,
    pub target_acc: f64,
    /// The model's own domain classifier on both test sets (GTA, which has none: the linear
    /// classifier behind the A-distance).
    pub domain_acc: f64,
    /// Proxy A-distance of the features (500 test images per domain).
    pub a_distance: f64,
    pub target_ari: f64,
    /// Source validation accuracy of the reported weights (when a split was held out).
    pub source_val_acc: Option<f64>,
    /// Step of the reported weights.
    pub selected_step: usize,
    pub selection: Selection,
    /// The weights file these figures are of, relative to `run_dir`.
    pub weights: String,
    /// Training seconds in the process that finished the run (a resumed run: since the resume).
    pub seconds: f64,
    pub steps: usize,
    /// The step a resumed run continued from.
    pub resumed_at: Option<usize>,
    pub run_dir: String,
    /// Trained with the recommended recipe.
    #[serde(default)]
    pub recommended: bool,
    /// The run the label-free rule reports for its pair ([`crate::selection::keep_adapted`]
    /// between source-only and the adapted run; a lone run is its own choice).
    #[serde(default = "yes")]
    pub selected: bool,
    /// False when the target's images carry no labels: `target_acc` and `target_ari` are then 0
    /// and mean nothing.
    #[serde(default = "yes")]
    pub target_labelled: bool,
}

fn yes() -> bool {
    true
}

impl RunSummary {
    /// Writes `summary.json` into `dir` (temporary file, then rename).
    pub fn write(&self, dir: &Path) -> Result<()> {
        write_json(&dir.join(SUMMARY_FILE), self)
    }

    /// The summary of the finished run in `dir`; `Ok(None)` when it has not finished, an error
    /// naming the file when the file is there but is not a summary.
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(SUMMARY_FILE);
        let summary: Option<Self> = read_json(&path)?;
        if let Some(s) = &summary
            && let Err(problem) = s.check()
        {
            return Err(ExperimentError::file(&path, problem));
        }
        Ok(summary)
    }

    /// Figures a real run can have: accuracies in `[0, 1]`, an A-distance in `[-2, 2]`, a step
    /// within the run, finite seconds.
    pub fn check(&self) -> std::result::Result<(), String> {
        let fractions = [
            ("source_acc", Some(self.source_acc)),
            ("target_acc", Some(self.target_acc)),
            ("domain_acc", Some(self.domain_acc)),
            ("source_val_acc", self.source_val_acc),
        ];
        for (name, v) in fractions {
            if let Some(v) = v
                && !(0.0..=1.0).contains(&v)
            {
                return Err(format!("{name} {v} is not an accuracy in [0, 1]"));
            }
        }
        if !(-2.0..=2.0).contains(&self.a_distance) {
            return Err(format!("a_distance {} is outside [-2, 2]", self.a_distance));
        }
        if !(-1.0..=1.0).contains(&self.target_ari) {
            return Err(format!("target_ari {} is outside [-1, 1]", self.target_ari));
        }
        if self.steps == 0 || self.selected_step == 0 || self.selected_step > self.steps {
            return Err(format!("selected step {} of a {}-step run", self.selected_step, self.steps));
        }
        if let Some(at) = self.resumed_at
            && (at == 0 || at > self.steps)
        {
            return Err(format!("resumed at step {at} of a {}-step run", self.steps));
        }
        if !(self.seconds.is_finite() && self.seconds >= 0.0) {
            return Err(format!("seconds {} is not a duration", self.seconds));
        }
        // Runs are grouped by these names: one nobody trains would make a group of its own.
        let methods: &[&str] = match self.kind {
            RunKind::Toy | RunKind::Digits => &["source-only", "dann"],
            RunKind::Gta => &["gta-stream1", "gta-c1", "gta-full"],
        };
        if !methods.contains(&self.method.as_str()) {
            return Err(format!("method '{}' is not one of the {:?} runs ({methods:?})", self.method, self.kind));
        }
        for (role, name, toy) in
            [("source", &self.source, crate::toy::TOY_SOURCE), ("target", &self.target, crate::toy::TOY_TARGET)]
        {
            let known = match self.kind {
                RunKind::Toy => name == toy,
                // A built-in dataset by its canonical name, or a path (any non-empty string).
                _ => match adapt_datasets::DataRef::parse(name) {
                    adapt_datasets::DataRef::Builtin(id) => id.name() == name,
                    adapt_datasets::DataRef::Path(p) => !p.as_os_str().is_empty(),
                },
            };
            if !known {
                return Err(format!("{role} '{name}' is not a dataset of a {:?} run", self.kind));
            }
        }
        if self.source == self.target {
            return Err(format!("source and target are both '{}'", self.source));
        }
        if self.weights != self.selection.weights_file() {
            return Err(format!(
                "weights '{}' are not the file selection '{}' reports",
                self.weights,
                self.selection.as_str()
            ));
        }
        Ok(())
    }
}

/// The human-readable table of `runs` that `cargo xtask train` prints: a header, one line per
/// run with its accuracies in percent, then the report file (the comparison's, above the method
/// folders, when there are several runs).
pub fn runs_table(runs: &[RunSummary]) -> Vec<String> {
    let mut lines = vec![format!(
        "{:<12} {:<8} {:<14} {:>10} {:>10} {:>10} {:>8}",
        "method", "source", "target", "source acc", "target acc", "domain acc", "seconds"
    )];
    for r in runs {
        let [s, t, d] = [r.source_acc, r.target_acc, r.domain_acc].map(|a| format!("{:.1}%", 100.0 * a));
        // An unlabelled target has no accuracy: its 0 means nothing.
        let t = if r.target_labelled { t } else { "n/a".into() };
        lines.push(format!(
            "{:<12} {:<8} {:<14} {s:>10} {t:>10} {d:>10} {:>8.1}",
            r.method, r.source, r.target, r.seconds
        ));
    }
    if let Some(r) = runs.first() {
        let dir = Path::new(&r.run_dir);
        let top = if runs.len() > 1 { dir.parent().unwrap_or(dir) } else { dir };
        lines.push(format!("report: {}", top.join("report.md").display()));
    }
    lines
}

/// The human-readable table of re-evaluated `runs` that `cargo xtask eval` prints: a header,
/// then per run its accuracies in percent, its A-distance and the weights file evaluated.
pub fn eval_table(runs: &[RunSummary]) -> Vec<String> {
    let mut lines = vec![format!(
        "{:<12} {:<8} {:<14} {:>10} {:>10} {:>10} {:>6}  weights",
        "method", "source", "target", "source acc", "target acc", "domain acc", "A-dist"
    )];
    for r in runs {
        let [s, t, d] = [r.source_acc, r.target_acc, r.domain_acc].map(|a| 100.0 * a);
        let weights = Path::new(&r.run_dir).join(&r.weights);
        lines.push(format!(
            "{:<12} {:<8} {:<14} {s:>9.1}% {t:>9.1}% {d:>9.1}% {:>6.2}  {}",
            r.method,
            r.source,
            r.target,
            r.a_distance,
            weights.display()
        ));
    }
    lines
}

/// Mean and (sample) standard deviation.
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> RunSummary {
        RunSummary {
            kind: RunKind::Digits,
            method: "dann".into(),
            source: "mnist".into(),
            target: "usps".into(),
            seed: 0,
            source_acc: 0.98,
            target_acc: 0.9,
            domain_acc: 0.6,
            a_distance: 1.2,
            target_ari: 0.8,
            source_val_acc: Some(0.97),
            selected_step: 100,
            selection: Selection::Last,
            weights: "model.safetensors".into(),
            seconds: 12.0,
            steps: 100,
            resumed_at: None,
            run_dir: String::new(),
            recommended: false,
            selected: true,
            target_labelled: true,
        }
    }

    #[test]
    fn a_summary_with_impossible_figures_is_refused_naming_the_file() {
        let dir = std::env::temp_dir().join(format!("adapt-exp-summary-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        summary().write(&dir).unwrap();
        assert_eq!(RunSummary::read(&dir).unwrap(), Some(summary()));
        for bad in [
            RunSummary { target_acc: 7.5, ..summary() },
            RunSummary { source_val_acc: Some(1.5), ..summary() },
            RunSummary { selected_step: 101, ..summary() },
            RunSummary { seconds: -1.0, ..summary() },
            RunSummary { resumed_at: Some(0), ..summary() },
            RunSummary { method: "dan".into(), ..summary() },
            RunSummary { target: String::new(), ..summary() },
            RunSummary { weights: "best.safetensors".into(), ..summary() },
        ] {
            bad.write(&dir).unwrap();
            let e = RunSummary::read(&dir).unwrap_err().to_string();
            assert!(e.contains("summary.json"), "{e}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn the_runs_table_has_a_line_per_run_and_names_the_comparison_report() {
        assert!(runs_table(&[]).len() == 1);
        let mut a = summary();
        a.run_dir = "runs/x/dann".into();
        let mut b = a.clone();
        b.method = "source-only".into();
        b.run_dir = "runs/x/source-only".into();
        let lines = runs_table(&[b, a.clone()]);
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("method       source   target"), "{}", lines[0]);
        assert_eq!(
            lines[2],
            format!(
                "{:<12} {:<8} {:<14} {:>10} {:>10} {:>10} {:>8}",
                "dann", "mnist", "usps", "98.0%", "90.0%", "60.0%", "12.0"
            )
        );
        assert_eq!(lines[3], format!("report: {}", Path::new("runs/x/report.md").display()));
        let unlabelled = RunSummary { target_labelled: false, target_acc: 0.0, ..a.clone() };
        let line = &runs_table(&[unlabelled])[1];
        assert!(line.contains(" n/a ") && !line.contains(" 0.0%"), "{line}");
        assert_eq!(runs_table(&[a.clone()])[2], format!("report: {}", Path::new("runs/x/dann/report.md").display()));
        let eval = eval_table(&[a]);
        assert_eq!(eval.len(), 2);
        assert!(eval[0].ends_with("domain acc A-dist  weights"), "{}", eval[0]);
        let weights = Path::new("runs/x/dann").join("model.safetensors");
        assert!(eval[1].ends_with(&format!("60.0%   1.20  {}", weights.display())), "{}", eval[1]);
    }
}
