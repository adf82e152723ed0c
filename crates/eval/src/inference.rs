//! Predictions of a trained DANN over whole datasets, in batches.
use crate::error::{EvalError, Result};
use crate::metrics::{accuracy, adjusted_rand_index};
use adapt_datasets::Rows;
use adapt_models::{Dann, NamedParams};
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

/// Which statistics a net's BatchNorm layers normalise a dataset with at inference.
#[derive(Clone, Copy, Default)]
pub enum BatchNormStatistics<'a> {
    /// The running statistics the net holds (the usual inference mode).
    #[default]
    Running,
    /// Each batch's own statistics, the batches as equal in size as the rows allow: how a net
    /// trained with one domain's running statistics (per-domain BatchNorm, whose running
    /// statistics are the target's) sees the other domain with that domain's statistics. The
    /// nets run in training mode, so this is meant for nets without dropout; the running
    /// statistics they move are those of `params` and are put back afterwards.
    OwnBatches(&'a dyn NamedParams),
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
    predict_with(model, rows, limit, device, batch_size, keep_features, BatchNormStatistics::Running)
}

/// [`predict`] with the BatchNorm statistics `statistics` says.
pub fn predict_with<F: ModuleT, L: ModuleT, Dm: ModuleT>(
    model: &Dann<F, L, Dm>,
    rows: &dyn Rows,
    limit: Option<usize>,
    device: &Device,
    batch_size: usize,
    keep_features: bool,
    statistics: BatchNormStatistics<'_>,
) -> Result<Predictions> {
    let (own_statistics, buffers) = match statistics {
        BatchNormStatistics::Running => (false, Vec::new()),
        BatchNormStatistics::OwnBatches(params) => (true, params.buffer_vars()),
    };
    let run = || -> Result<Predictions> {
        let n = limit.map_or(rows.len(), |l| l.min(rows.len()));
        let mut out = Predictions::default();
        let mut shape = vec![0];
        shape.extend(rows.row_shape());
        // With batch statistics a small last batch would be normalised by a poor estimate: the
        // batches are made as equal as possible instead (`k` batches of `n / k` or one more).
        let k = n.div_ceil(batch_size.max(1)).max(1);
        let bounds: Vec<(usize, usize)> = if own_statistics {
            (0..k).map(|i| (i * n / k, (i + 1) * n / k)).filter(|(a, b)| b > a).collect()
        } else {
            (0..n).step_by(batch_size.max(1)).map(|start| (start, (start + batch_size).min(n))).collect()
        };
        for (start, end) in bounds {
            let idx: Vec<usize> = (start..end).collect();
            let (data, _) = rows.gather(&idx);
            shape[0] = idx.len();
            let x = Tensor::from_vec(data, shape.as_slice(), device)?;
            let features = model.features(&x, own_statistics)?;
            let class_logits = model.label_predictor.forward_t(&features, own_statistics)?;
            let domain_logits = model.domain_classifier.forward_t(&features, own_statistics)?;
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
    };
    adapt_models::params::keeping_values(&buffers, run)
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
    evaluate_dann_with(model, source_test, target_test, device, BatchNormStatistics::Running)
}

/// [`evaluate_dann`] with the source test set normalised as `source_statistics` says (the
/// target's always with the running statistics).
pub fn evaluate_dann_with<F: ModuleT, L: ModuleT, Dm: ModuleT>(
    model: &Dann<F, L, Dm>,
    source_test: &dyn Rows,
    target_test: &dyn Rows,
    device: &Device,
    source_statistics: BatchNormStatistics<'_>,
) -> Result<DomainEval> {
    if source_test.is_empty() || target_test.is_empty() {
        return Err(EvalError::Invalid("evaluation needs non-empty source and target test sets".into()));
    }
    let labels = |rows: &dyn Rows| (0..rows.len()).map(|i| rows.label(i)).collect::<Vec<u32>>();
    let s = predict_with(model, source_test, None, device, 256, false, source_statistics)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use adapt_datasets::{DigitNet, ImageDataset, Split};
    use adapt_models::ParamStore;
    use adapt_models::digits::{DigitDann, DigitNetConfig};

    /// 10 RGB 28x28 images whose pixels follow a fixed pattern, brightened by `offset`.
    fn images(offset: f32) -> ImageDataset {
        let px: Vec<u8> = (0..10 * 3 * 28 * 28).map(|i| ((i * 37 + i / 97) % 200) as u8).collect();
        let mut ds = ImageDataset::from_u8("t", Split::Test, &px, (0..10).collect(), [3, 28, 28]).unwrap();
        ds.images.iter_mut().for_each(|v| *v = *v / 255.0 + offset);
        ds
    }

    #[test]
    fn own_batch_statistics_normalise_each_balanced_batch_by_itself_and_leave_the_net_as_it_was() -> Result<()> {
        let device = Device::Cpu;
        let params = ParamStore::new(3);
        let cfg = DigitNetConfig { batch_norm: true, ..DigitNetConfig::default() };
        let model = DigitDann::build(DigitNet::Mnist, &cfg, &params, 3, &device).unwrap();
        let rows = images(2.0);
        let before = params.tensors();
        // Batches of at most 4 over 10 rows: 3, 3 and 4 rows (not 4, 4, 2).
        let own = predict_with(&model, &rows, None, &device, 4, true, BatchNormStatistics::OwnBatches(&params))?;
        let mut expected = Vec::new();
        for (a, b) in [(0, 3), (3, 6), (6, 10)] {
            let (x, _) = rows.gather(&(a..b).collect::<Vec<_>>());
            let x = Tensor::from_vec(x, (b - a, 3, 28, 28), &device)?;
            expected.extend(model.features(&x, true)?.flatten_all()?.to_vec1::<f32>()?);
        }
        let max_diff = own.features.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(max_diff < 1e-5, "features differ from per-batch training-mode passes by {max_diff}");
        // The running statistics moved by those passes are back as they were.
        for (name, t) in params.tensors() {
            let (a, b) = (t.flatten_all()?.to_vec1::<f32>()?, before[&name].flatten_all()?.to_vec1::<f32>()?);
            assert_eq!(a, b, "{name} changed");
        }
        // The running statistics (fresh: mean 0, variance 1) do not undo the offset of 2; the
        // batches' own do, so the two disagree.
        let running = predict(&model, &rows, None, &device, 4, true)?;
        let far = running.features.iter().zip(&own.features).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(far > 1e-2, "running and own statistics gave the same features ({far})");
        assert_eq!(
            predict_with(&model, &rows, None, &device, 4, true, BatchNormStatistics::Running)?.features,
            running.features
        );
        Ok(())
    }
}
