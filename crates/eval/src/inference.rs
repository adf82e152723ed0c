//! Predictions of a trained DANN over whole datasets, in batches.
use crate::error::{EvalError, Result};
use crate::metrics::{accuracy, adjusted_rand_index};
use adapt_datasets::Rows;
use adapt_models::Dann;
use candle_core::{D, Device, ModuleT, Tensor};
use serde::Serialize;

/// Class and domain predictions (and optionally features) for every row of a dataset.
#[derive(Debug, Clone, Default)]
pub struct Predictions {
    pub classes: Vec<u32>,
    /// Domain predictions: 0 = source, 1 = target.
    pub domains: Vec<u32>,
    /// Probability of the second class (meaningful for two-class problems like the toy).
    pub class1_probability: Vec<f32>,
    /// Softmax class probabilities, `[N, num_classes]` row-major (for the label-free validators
    /// of [`crate::validators`]).
    pub probabilities: Vec<f32>,
    pub num_classes: usize,
    /// `[N, feature_dim]` row-major, when asked for.
    pub features: Vec<f32>,
    pub feature_dim: usize,
}

/// Runs `model` in inference mode over the rows `0..limit` of `rows`.
pub fn predict<F: ModuleT, L: ModuleT, Dm: ModuleT>(
    model: &Dann<F, L, Dm>,
    rows: &dyn Rows,
    limit: Option<usize>,
    device: &Device,
    batch_size: usize,
    keep_features: bool,
) -> Result<Predictions> {
    let n = limit.map_or(rows.len(), |l| l.min(rows.len()));
    let mut out = Predictions::default();
    let mut shape = vec![0];
    shape.extend(rows.row_shape());
    for start in (0..n).step_by(batch_size.max(1)) {
        let idx: Vec<usize> = (start..(start + batch_size).min(n)).collect();
        let (data, _) = rows.gather(&idx);
        shape[0] = idx.len();
        let x = Tensor::from_vec(data, shape.as_slice(), device)?;
        let features = model.features(&x, false)?;
        let class_logits = model.label_predictor.forward_t(&features, false)?;
        let domain_logits = model.domain_classifier.forward_t(&features, false)?;
        // An argmax over NaN picks a class all the same: accuracies of such outputs mean nothing.
        for (what, t) in [("class", &class_logits), ("domain", &domain_logits)] {
            if let Some(v) = t.flatten_all()?.to_vec1::<f32>()?.into_iter().find(|v| !v.is_finite()) {
                return Err(EvalError::Invalid(format!(
                    "the model's {what} outputs for rows {start}..{} are not finite ({v}): non-finite weights or inputs",
                    start + idx.len()
                )));
            }
        }
        out.classes.extend(class_logits.argmax(D::Minus1)?.to_vec1::<u32>()?);
        out.domains.extend(domain_logits.argmax(D::Minus1)?.to_vec1::<u32>()?);
        let probs = candle_nn::ops::softmax_last_dim(&class_logits)?;
        out.num_classes = probs.dim(1)?;
        out.probabilities.extend(probs.flatten_all()?.to_vec1::<f32>()?);
        if probs.dim(1)? >= 2 {
            out.class1_probability.extend(probs.narrow(1, 1, 1)?.flatten_all()?.to_vec1::<f32>()?);
        }
        if keep_features {
            out.feature_dim = features.dim(1)?;
            out.features.extend(features.flatten_all()?.to_vec1::<f32>()?);
        }
    }
    Ok(out)
}

/// The standard figures of a domain-adaptation run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DomainEval {
    /// Label accuracy on the source test set.
    pub source_acc: f64,
    /// Label accuracy on the target test set (target labels are used here, and only here).
    pub target_acc: f64,
    /// Accuracy of the model's own domain classifier on source test + target test (0.5 means
    /// the features do not reveal the domain to it).
    pub domain_acc: f64,
    /// Adjusted Rand index of the target predictions against the target labels.
    pub target_ari: f64,
}

/// Evaluates `model` on the source and target test sets.
pub fn evaluate_dann<F: ModuleT, L: ModuleT, Dm: ModuleT>(
    model: &Dann<F, L, Dm>,
    source_test: &dyn Rows,
    target_test: &dyn Rows,
    device: &Device,
) -> Result<DomainEval> {
    if source_test.is_empty() || target_test.is_empty() {
        return Err(EvalError::Invalid("evaluation needs non-empty source and target test sets".into()));
    }
    let labels = |rows: &dyn Rows| (0..rows.len()).map(|i| rows.label(i)).collect::<Vec<u32>>();
    let s = predict(model, source_test, None, device, 256, false)?;
    let t = predict(model, target_test, None, device, 256, false)?;
    let (ys, yt) = (labels(source_test), labels(target_test));
    let domain_correct = s.domains.iter().filter(|d| **d == 0).count() + t.domains.iter().filter(|d| **d == 1).count();
    Ok(DomainEval {
        source_acc: accuracy(&s.classes, &ys)?,
        target_acc: accuracy(&t.classes, &yt)?,
        domain_acc: domain_correct as f64 / (s.domains.len() + t.domains.len()) as f64,
        target_ari: adjusted_rand_index(&t.classes, &yt)?,
    })
}
