//! Model selection without target labels: which checkpoint each label-free validator would
//! choose, and the pair-level rule that keeps an adapted model only when the evidence favours it
//! over source-only training.
use crate::dann_run::{CheckpointScores, SelectionRecord};
use serde::Serialize;

/// One figure of a checkpoint's scores.
pub type Score = fn(&CheckpointScores) -> f64;

/// The label-free validators recorded at every checkpoint, by name.
pub const VALIDATORS: [(&str, Score); 4] = [
    ("source validation accuracy", |c| c.source_val_acc),
    ("information maximisation", |c| c.information_maximization),
    ("batch nuclear norm", |c| c.batch_nuclear_norm),
    ("soft neighbourhood density", |c| c.soft_neighborhood_density),
];

/// The checkpoint a validator chooses (its highest score; the later one on a tie) and what that
/// checkpoint scores on the target test set (evaluation only).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidatorChoice {
    pub validator: String,
    pub step: usize,
    pub target_test_acc: f64,
}

/// Each validator's choice among `record`'s checkpoints, then the last checkpoint and the oracle
/// (the best target test accuracy: what a choice with target labels would get).
pub fn validator_choices(record: &SelectionRecord) -> Vec<ValidatorChoice> {
    let Some(last) = record.checkpoints.last() else { return Vec::new() };
    let best_by = |f: &dyn Fn(&CheckpointScores) -> f64| {
        record
            .checkpoints
            .iter()
            .fold(last, |best, c| if f(c) > f(best) || (f(c) == f(best) && c.step > best.step) { c } else { best })
    };
    let mut out: Vec<ValidatorChoice> = VALIDATORS
        .iter()
        .map(|(name, f)| {
            let c = best_by(f);
            ValidatorChoice { validator: (*name).into(), step: c.step, target_test_acc: c.target_test_acc }
        })
        .collect();
    out.push(ValidatorChoice {
        validator: "last checkpoint".into(),
        step: last.step,
        target_test_acc: last.target_test_acc,
    });
    let oracle = best_by(&|c| c.target_test_acc);
    out.push(ValidatorChoice {
        validator: "oracle (target labels; not a selection rule)".into(),
        step: oracle.step,
        target_test_acc: oracle.target_test_acc,
    });
    out
}

/// Source validation accuracy the adapted model may lose against source-only and still be kept.
pub const SOURCE_VAL_TOLERANCE: f64 = 0.02;

/// The source-only guard: the adapted model's final checkpoint is kept only when its target
/// predictions score at least as high on information maximisation as the source-only model's
/// (confident, class-balanced predictions on the target) and its source validation accuracy is
/// at most [`SOURCE_VAL_TOLERANCE`] below source-only's (it still classifies the source). Both
/// figures are label-free on the target. Otherwise the source-only model is reported.
pub fn keep_adapted(source_only: &CheckpointScores, adapted: &CheckpointScores) -> bool {
    adapted.information_maximization >= source_only.information_maximization
        && adapted.source_val_acc >= source_only.source_val_acc - SOURCE_VAL_TOLERANCE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(step: usize, val: f64, im: f64, bnm: f64, snd: f64, target: f64) -> CheckpointScores {
        CheckpointScores {
            step,
            source_val_acc: val,
            information_maximization: im,
            batch_nuclear_norm: bnm,
            soft_neighborhood_density: snd,
            target_test_acc: target,
        }
    }

    #[test]
    fn each_validator_picks_its_best_checkpoint_and_the_oracle_is_shown_apart() {
        let record = SelectionRecord {
            checkpoints: vec![
                scores(100, 0.99, 1.0, 0.5, 3.0, 0.70),
                scores(200, 0.97, 2.0, 0.4, 3.5, 0.90),
                scores(300, 0.98, 1.5, 0.6, 3.2, 0.80),
            ],
            ..SelectionRecord::default()
        };
        let steps: Vec<(String, usize, f64)> =
            validator_choices(&record).into_iter().map(|c| (c.validator, c.step, c.target_test_acc)).collect();
        assert_eq!(steps[0], ("source validation accuracy".into(), 100, 0.70));
        assert_eq!(steps[1], ("information maximisation".into(), 200, 0.90));
        assert_eq!(steps[2], ("batch nuclear norm".into(), 300, 0.80));
        assert_eq!(steps[3], ("soft neighbourhood density".into(), 200, 0.90));
        assert_eq!(steps[4], ("last checkpoint".into(), 300, 0.80));
        assert_eq!((steps[5].1, steps[5].2), (200, 0.90));
        assert!(validator_choices(&SelectionRecord::default()).is_empty());
    }

    #[test]
    fn the_guard_keeps_source_only_unless_the_evidence_favours_adaptation() {
        let source_only = scores(1000, 0.98, 1.2, 0.5, 3.0, 0.79);
        // More confident and balanced on the target, source kept: adapted.
        assert!(keep_adapted(&source_only, &scores(1000, 0.97, 1.8, 0.6, 3.1, 0.95)));
        // Less information on the target (e.g. collapsed classes): source-only, whatever the
        // (hidden) target accuracy.
        assert!(!keep_adapted(&source_only, &scores(1000, 0.98, 0.9, 0.6, 3.1, 0.73)));
        // The source forgotten beyond the tolerance: source-only.
        assert!(!keep_adapted(&source_only, &scores(1000, 0.90, 2.0, 0.6, 3.1, 0.85)));
    }
}
