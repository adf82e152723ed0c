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

/// Mean over the rows of `KL(softmax(p_logits) || softmax(q_logits))`, gradients flowing into
/// both.
pub fn kl_divergence(p_logits: &Tensor, q_logits: &Tensor) -> Result<Tensor> {
    let log_p = log_softmax(p_logits, D::Minus1)?;
    let log_q = log_softmax(q_logits, D::Minus1)?;
    (log_p.exp()? * (&log_p - log_q)?)?.sum(D::Minus1)?.mean_all()
}

/// Self-training on a teacher's confident predictions (the mean-teacher pseudo-labels of
/// self-ensembling and FixMatch): the cross-entropy of `student_logits` against the teacher's
/// arg-max class, on the rows where the teacher's top probability is at least `threshold`,
/// summed and divided by all `N` rows (so a batch with few confident rows pulls little). The
/// teacher's logits are used detached. Returns the loss and the number of confident rows.
///
/// Unlike [`entropy`], which sharpens whatever the student predicts now, the labels come from a
/// slower, averaged model and only where it is sure, so early mistakes are not reinforced at
/// every step.
pub fn confident_pseudo_label_loss(
    student_logits: &Tensor,
    teacher_logits: &Tensor,
    threshold: f64,
) -> Result<(Tensor, usize)> {
    if student_logits.shape() != teacher_logits.shape() || student_logits.rank() != 2 {
        candle_core::bail!(
            "confident_pseudo_label_loss: student {:?} and teacher {:?} logits must both be [N, C]",
            student_logits.shape(),
            teacher_logits.shape()
        );
    }
    let n = student_logits.dim(0)?;
    let teacher = softmax(&teacher_logits.detach(), D::Minus1)?;
    let labels = teacher.argmax_keepdim(D::Minus1)?;
    let confident = teacher.max(D::Minus1)?.ge(threshold)?.to_dtype(student_logits.dtype())?;
    let kept = confident.sum_all()?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()? as usize;
    let nll = log_softmax(student_logits, D::Minus1)?.gather(&labels, D::Minus1)?.squeeze(D::Minus1)?.neg()?;
    let loss = ((nll * confident)?.sum_all()? / n.max(1) as f64)?;
    Ok((loss, kept))
}

/// How [`virtual_adversarial_loss`] looks for its perturbation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VatSettings {
    /// L2 norm of each row's adversarial perturbation (VADA / DIRT-T: 3.5 on instance-normalised
    /// 32x32x3 digits).
    pub radius: f64,
    /// Size of the finite-difference step the power iteration takes (Miyato et al.: 1e-6).
    pub xi: f64,
}

impl Default for VatSettings {
    fn default() -> Self {
        Self { radius: 3.5, xi: 1e-6 }
    }
}

/// Each row of `t` (any shape `[N, ...]`) divided by its L2 norm.
fn unit_rows(t: &Tensor) -> Result<Tensor> {
    let flat = t.flatten_from(1)?;
    let norm = (flat.sqr()?.sum_keepdim(1)?.sqrt()? + 1e-12)?;
    flat.broadcast_div(&norm)?.reshape(t.shape())
}

/// Virtual adversarial training (Miyato et al., 2018), the smoothness term of VADA / DIRT-T:
/// `KL(p(x) || p(x + r))` for the perturbation `r` of norm `settings.radius` (per row) that
/// changes the prediction most, found by one power iteration from `noise` (a random tensor of
/// `xs`'s shape; the caller draws it so runs can be repeated).
///
/// `classify` maps inputs to logits (in the mode the caller trains in); `logits` are its logits
/// on `xs`, used detached as the reference distribution. Only the final KL carries gradients
/// to `classify`'s parameters: the perturbation is a constant, as in the original. The search
/// costs one forward and backward pass of `classify` beside the loss's own forward pass.
pub fn virtual_adversarial_loss(
    classify: &dyn Fn(&Tensor) -> Result<Tensor>,
    xs: &Tensor,
    logits: &Tensor,
    noise: &Tensor,
    settings: VatSettings,
) -> Result<Tensor> {
    if noise.shape() != xs.shape() {
        candle_core::bail!("virtual_adversarial_loss: noise {:?} for inputs {:?}", noise.shape(), xs.shape());
    }
    let reference = logits.detach();
    let xs = xs.detach();
    let probe = candle_core::Var::from_tensor(&(unit_rows(noise)? * settings.xi)?)?;
    let probe_kl = kl_divergence(&reference, &classify(&(&xs + probe.as_tensor())?)?)?;
    let grads = probe_kl.backward()?;
    let direction = match grads.get(probe.as_tensor()) {
        Some(g) => g.detach(),
        None => candle_core::bail!("virtual_adversarial_loss: classify does not depend on its input"),
    };
    let perturbation = (unit_rows(&direction)? * settings.radius)?;
    kl_divergence(&reference, &classify(&(&xs + perturbation)?)?)
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

    /// A linear softmax model `x W` on `[N, 4]` inputs with 2 classes.
    fn linear(w: &Tensor) -> impl Fn(&Tensor) -> Result<Tensor> + '_ {
        move |x: &Tensor| x.matmul(w)
    }

    #[test]
    fn kl_divergence_on_hand_made_predictions() -> Result<()> {
        let d = &Device::Cpu;
        let p = Tensor::new(&[[0f32, 0.0]], d)?;
        let q = Tensor::new(&[[3f32.ln(), 0.0]], d)?;
        // KL([1/2, 1/2] || [3/4, 1/4]) = 1/2 ln(2/3) + 1/2 ln 2.
        let want = 0.5 * (2f64 / 3.0).ln() + 0.5 * 2f64.ln();
        assert!((scalar(&kl_divergence(&p, &q)?) - want).abs() < 1e-6);
        assert!(scalar(&kl_divergence(&q, &q)?).abs() < 1e-7);
        Ok(())
    }

    #[test]
    fn the_virtual_adversarial_direction_is_the_most_sensitive_one() -> Result<()> {
        // For a linear 2-class model the prediction changes only along w_0 - w_1, so one power
        // iteration from any noise must land on that direction, at the asked radius.
        let d = &Device::Cpu;
        let w = Tensor::new(&[[1f64, -1.0], [2.0, 0.5], [0.0, 0.0], [-1.0, 1.0]], d)?;
        let xs = Tensor::new(&[[0.1f64, 0.2, 0.3, 0.4], [-0.5, 0.0, 1.0, 0.2], [0.3, -0.2, 0.0, 0.0]], d)?;
        let logits = xs.matmul(&w)?;
        let noise = Tensor::new(&[[0.3f64, -1.0, 2.0, 0.5], [1.0, 1.0, 1.0, 1.0], [-0.2, 0.7, 0.1, -0.9]], d)?;
        let settings = VatSettings { radius: 0.5, xi: 1e-6 };
        let vat = virtual_adversarial_loss(&linear(&w), &xs, &logits, &noise, settings)?.to_scalar::<f64>()?;
        // The same KL along +-(w_0 - w_1) / |w_0 - w_1| * radius, worked out by hand.
        let axis = [2.0f64, 1.5, 0.0, -2.0];
        let norm = axis.iter().map(|a| a * a).sum::<f64>().sqrt();
        let along = |sign: f64| -> Result<f64> {
            let r: Vec<f64> = (0..3).flat_map(|_| axis.iter().map(move |a| sign * a / norm * 0.5)).collect();
            let shifted = (&xs + Tensor::from_vec(r, (3, 4), d)?)?;
            kl_divergence(&logits, &shifted.matmul(&w)?)?.to_scalar::<f64>()
        };
        assert!(vat > 0.0);
        // At the reference the KL's Hessian is rank one along that axis, so the probe's gradient
        // points along +-axis with the sign of the noise's component on it: the expected loss
        // is each row's KL at that end of the axis.
        let want: f64 = (0..3)
            .map(|row| -> Result<f64> {
                let n = noise.narrow(0, row, 1)?.flatten_all()?.to_vec1::<f64>()?;
                let sign = n.iter().zip(&axis).map(|(a, b)| a * b).sum::<f64>().signum();
                let r: Vec<f64> = axis.iter().map(|a| sign * a / norm * 0.5).collect();
                let x = (xs.narrow(0, row, 1)? + Tensor::from_vec(r, (1, 4), d)?)?;
                kl_divergence(&logits.narrow(0, row, 1)?, &x.matmul(&w)?)?.to_scalar::<f64>()
            })
            .sum::<Result<f64>>()?
            / 3.0;
        // (Within 1e-4: the 1e-12 that keeps the normalisation finite is not small beside a probe
        // gradient of about 1e-6; the wrong signs are 5 % off.)
        assert!(
            (vat - want).abs() < 1e-4 * want,
            "vat {vat}, along the axis {want} (common signs {} / {})",
            along(1.0)?,
            along(-1.0)?
        );
        // A random direction of the same radius changes the predictions less.
        let random = (&xs + (unit_rows(&noise)? * 0.5)?)?;
        assert!(kl_divergence(&logits, &random.matmul(&w)?)?.to_scalar::<f64>()? < vat);
        Ok(())
    }

    #[test]
    fn the_virtual_adversarial_loss_trains_the_model_only_through_its_final_kl() -> Result<()> {
        // Its gradient with respect to W is that of KL(p || p(x + r)) with r held fixed: checked
        // against finite differences of that function.
        let d = &Device::Cpu;
        let w = Var::from_tensor(&Tensor::new(&[[0.5f64, -0.3], [0.2, 0.8], [-0.6, 0.1], [0.4, 0.4]], d)?)?;
        let xs = Tensor::new(&[[0.1f64, 0.2, 0.3, 0.4], [-0.5, 0.0, 1.0, 0.2]], d)?;
        let noise = Tensor::new(&[[1.0f64, 0.0, -1.0, 0.5], [0.2, 0.3, -0.4, 1.0]], d)?;
        let settings = VatSettings { radius: 0.7, xi: 1e-6 };
        let logits = xs.matmul(w.as_tensor())?;
        let loss = virtual_adversarial_loss(&linear(w.as_tensor()), &xs, &logits, &noise, settings)?;
        let g = loss.backward()?.get(w.as_tensor()).expect("gradient").flatten_all()?.to_vec1::<f64>()?;
        // The perturbation the loss used, found again by hand: along -/+ (w_0 - w_1) per row.
        let probe = (unit_rows(&noise)? * 1e-6)?;
        let probe = Var::from_tensor(&probe)?;
        let kl = kl_divergence(&logits.detach(), &(&xs + probe.as_tensor())?.matmul(&w.as_tensor().detach())?)?;
        let r = (unit_rows(&kl.backward()?.get(probe.as_tensor()).expect("probe gradient").detach())? * 0.7)?;
        let base = w.as_tensor().flatten_all()?.to_vec1::<f64>()?;
        let p0 = logits.detach();
        let h = 1e-6;
        for i in 0..base.len() {
            let at = |delta: f64| -> Result<f64> {
                let mut v = base.clone();
                v[i] += delta;
                let wi = Tensor::from_vec(v, (4, 2), d)?;
                kl_divergence(&p0, &(&xs + &r)?.matmul(&wi)?)?.to_scalar::<f64>()
            };
            let numeric = (at(h)? - at(-h)?) / (2.0 * h);
            assert!((numeric - g[i]).abs() < 1e-6, "dW{i}: analytic {} numeric {numeric}", g[i]);
        }
        // Noise of the wrong shape is refused.
        let bad = virtual_adversarial_loss(&linear(w.as_tensor()), &xs, &logits, &noise.narrow(0, 0, 1)?, settings);
        assert!(bad.is_err());
        Ok(())
    }

    #[test]
    fn pseudo_labels_come_from_confident_teacher_rows_only() -> Result<()> {
        let d = &Device::Cpu;
        // Teacher: row 0 sure of class 1 (p ~ 0.999), row 1 unsure, row 2 sure of class 0.
        let teacher = Tensor::new(&[[0f32, 8.0, 0.0], [1.0, 1.2, 0.9], [9.0, 0.0, 0.0]], d)?;
        let student = Tensor::new(&[[0f32, 0.0, 0.0], [5.0, 0.0, 0.0], [2f32.ln(), 0.0, 0.0]], d)?;
        let (loss, kept) = confident_pseudo_label_loss(&student, &teacher, 0.95)?;
        assert_eq!(kept, 2);
        // Row 0: -ln(1/3); row 2: -ln(2/4); row 1 skipped; divided by all 3 rows.
        let want = (3f64.ln() + 2f64.ln()) / 3.0;
        assert!((scalar(&loss) - want).abs() < 1e-6, "{} vs {want}", scalar(&loss));
        // A threshold above every row keeps none and the loss is 0.
        let (none, kept) = confident_pseudo_label_loss(&student, &teacher, 1.0 + 1e-9)?;
        assert_eq!((scalar(&none), kept), (0.0, 0));
        assert!(confident_pseudo_label_loss(&student, &teacher.narrow(0, 0, 2)?, 0.5).is_err());
        Ok(())
    }

    #[test]
    fn pseudo_label_gradients_reach_the_student_only() -> Result<()> {
        let d = &Device::Cpu;
        let teacher = Var::from_tensor(&Tensor::new(&[[0f64, 6.0, 0.0], [7.0, 0.0, 1.0], [0.2, 0.1, 0.0]], d)?)?;
        let base = [0.3f64, -0.2, 0.5, 1.0, 0.1, -0.7, 0.0, 0.4, 0.2];
        let student = Var::from_tensor(&Tensor::from_vec(base.to_vec(), (3, 3), d)?)?;
        let (loss, _) = confident_pseudo_label_loss(student.as_tensor(), teacher.as_tensor(), 0.9)?;
        let grads = loss.backward()?;
        assert!(grads.get(teacher.as_tensor()).is_none(), "the teacher must be detached");
        let g = grads.get(student.as_tensor()).expect("gradient").flatten_all()?.to_vec1::<f64>()?;
        let h = 1e-6;
        for i in 0..base.len() {
            let at = |delta: f64| -> Result<f64> {
                let mut v = base.to_vec();
                v[i] += delta;
                let s = Tensor::from_vec(v, (3, 3), d)?;
                confident_pseudo_label_loss(&s, teacher.as_tensor(), 0.9)?.0.to_scalar::<f64>()
            };
            let numeric = (at(h)? - at(-h)?) / (2.0 * h);
            assert!((numeric - g[i]).abs() < 1e-6, "d/ds{i}: analytic {} numeric {numeric}", g[i]);
        }
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
