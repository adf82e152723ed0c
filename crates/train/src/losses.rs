//! Label-free losses on the target's predictions, as free functions on logits so they fit any
//! training loop (as candle-nn's `loss` module does for labelled ones).
use candle_core::{D, Result, Tensor};
use candle_nn::ops::{log_softmax, softmax};

/// Keeps `log` finite where a marginal class probability is 0.
const EPS: f64 = 1e-8;

/// Mean over the rows of the entropy of `softmax(logits)` (`[N, C]` logits): low when every
/// prediction is confident. Conditional-entropy minimisation (VADA, DIRT-T) minimises it.
pub fn entropy(logits: &Tensor) -> Result<Tensor> {
    let log_p = log_softmax(logits, D::Minus1)?;
    (log_p.exp()? * &log_p)?.sum(D::Minus1)?.mean_all()?.neg()
}

/// Entropy of the mean prediction over the rows: high when the batch's predictions are spread
/// over the classes.
pub fn marginal_entropy(logits: &Tensor) -> Result<Tensor> {
    let mean = softmax(logits, D::Minus1)?.mean(0)?;
    (&mean * (&mean + EPS)?.log()?)?.sum_all()?.neg()
}

/// Information maximisation (as in SHOT, Liang et al. 2020): `entropy - marginal_entropy`.
/// Minimising it makes each target prediction confident while keeping the batch's predictions
/// spread over the classes, so the confidence cannot come from collapsing onto one class. Its
/// value lies in `[-log C, log C]`.
pub fn information_maximization(logits: &Tensor) -> Result<Tensor> {
    entropy(logits)? - marginal_entropy(logits)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn scalar(t: &Tensor) -> f64 {
        t.to_scalar::<f32>().unwrap() as f64
    }

    #[test]
    fn values_on_hand_made_predictions() -> Result<()> {
        let d = &Device::Cpu;
        // Uniform predictions: entropy log C, marginal entropy log C, IM 0.
        let uniform = Tensor::zeros((4, 10), candle_core::DType::F32, d)?;
        assert!((scalar(&entropy(&uniform)?) - 10f64.ln()).abs() < 1e-5);
        assert!((scalar(&marginal_entropy(&uniform)?) - 10f64.ln()).abs() < 1e-5);
        assert!(scalar(&information_maximization(&uniform)?).abs() < 1e-5);
        // Confident and spread over two classes: entropy ~0, marginal log 2, IM ~ -log 2.
        let spread = Tensor::new(&[[30f32, 0.0], [0.0, 30.0]], d)?;
        assert!(scalar(&entropy(&spread)?) < 1e-6);
        assert!((scalar(&information_maximization(&spread)?) + 2f64.ln()).abs() < 1e-5);
        // Confident but collapsed onto one class: no diversity, IM ~ 0 (not rewarded).
        let collapsed = Tensor::new(&[[30f32, 0.0], [30.0, 0.0]], d)?;
        assert!(scalar(&information_maximization(&collapsed)?).abs() < 1e-5);
        Ok(())
    }

    #[test]
    fn gradients_match_finite_differences() -> Result<()> {
        let d = &Device::Cpu;
        let values: Vec<f32> = (0..15).map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.37).collect();
        for (name, f) in [
            ("entropy", entropy as fn(&Tensor) -> Result<Tensor>),
            ("marginal entropy", marginal_entropy),
            ("information maximisation", information_maximization),
        ] {
            let x = Var::from_tensor(&Tensor::from_vec(values.clone(), (5, 3), d)?.to_dtype(candle_core::DType::F64)?)?;
            let grads = f(x.as_tensor())?.backward()?;
            let g = grads.get(x.as_tensor()).expect("gradient").flatten_all()?.to_vec1::<f64>()?;
            let base: Vec<f64> = values.iter().map(|v| *v as f64).collect();
            let h = 1e-6;
            for i in 0..base.len() {
                let at = |delta: f64| -> Result<f64> {
                    let mut v = base.clone();
                    v[i] += delta;
                    f(&Tensor::from_vec(v, (5, 3), d)?)?.to_scalar::<f64>()
                };
                let numeric = (at(h)? - at(-h)?) / (2.0 * h);
                assert!((numeric - g[i]).abs() < 1e-6, "{name}: d/dx{i} analytic {} numeric {numeric}", g[i]);
            }
        }
        Ok(())
    }
}
