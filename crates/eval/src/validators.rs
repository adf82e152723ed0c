//! Label-free validators: scores of a model's softmax predictions on unlabelled target data,
//! for choosing a checkpoint (or a method) without target labels. Higher is better for every
//! score here. Predictions are `[n, c]` row-major probabilities (rows summing to 1).
//!
//! * [`information_maximization_score`]: entropy of the mean prediction minus the mean entropy
//!   (confident and diverse predictions score high; SHOT's objective, negated).
//! * [`batch_nuclear_norm`]: BNM (Cui et al. 2020), the nuclear norm of the prediction matrix
//!   over `n`: high for confident predictions spread over many classes.
//! * [`soft_neighborhood_density`]: SND (Saito et al. 2021), the mean entropy of each target
//!   point's softmax similarity to the others: high when points sit in dense neighbourhoods of
//!   like predictions.
use crate::error::{EvalError, Result};

fn check(probs: &[f32], n: usize, c: usize) -> Result<()> {
    if n == 0 || c == 0 || probs.len() != n * c {
        return Err(EvalError::Invalid(format!(
            "validators need [n, c] probabilities, got {} values for {n} x {c}",
            probs.len()
        )));
    }
    if let Some(v) = probs.iter().find(|v| !v.is_finite()) {
        return Err(EvalError::Invalid(format!("a prediction is not a number ({v})")));
    }
    Ok(())
}

fn entropy(p: impl Iterator<Item = f64>) -> f64 {
    -p.filter(|&v| v > 0.0).map(|v| v * v.ln()).sum::<f64>()
}

/// `H(mean_i p_i) - mean_i H(p_i)`, in `[-log c, log c]` (nats).
pub fn information_maximization_score(probs: &[f32], n: usize, c: usize) -> Result<f64> {
    check(probs, n, c)?;
    let rows = probs.chunks_exact(c);
    let mean_entropy = rows.clone().map(|r| entropy(r.iter().map(|&v| v as f64))).sum::<f64>() / n as f64;
    let marginal: Vec<f64> = (0..c).map(|k| rows.clone().map(|r| r[k] as f64).sum::<f64>() / n as f64).collect();
    Ok(entropy(marginal.into_iter()) - mean_entropy)
}

/// `||P||_* / n`: the sum of the singular values of the `[n, c]` prediction matrix, over `n`.
pub fn batch_nuclear_norm(probs: &[f32], n: usize, c: usize) -> Result<f64> {
    check(probs, n, c)?;
    // The singular values of P are the square roots of the eigenvalues of the c x c matrix P^T P.
    let mut gram = vec![0.0f64; c * c];
    for row in probs.chunks_exact(c) {
        for a in 0..c {
            for b in 0..c {
                gram[a * c + b] += row[a] as f64 * row[b] as f64;
            }
        }
    }
    Ok(symmetric_eigenvalues(gram, c).into_iter().map(|e| e.max(0.0).sqrt()).sum::<f64>() / n as f64)
}

/// Eigenvalues of the symmetric `c x c` matrix `a` (row-major) by cyclic Jacobi rotations.
fn symmetric_eigenvalues(mut a: Vec<f64>, c: usize) -> Vec<f64> {
    for _sweep in 0..100 {
        let off: f64 = (0..c)
            .flat_map(|i| (0..c).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * c + j].powi(2))
            .sum();
        if off < 1e-22 {
            break;
        }
        for p in 0..c {
            for q in p + 1..c {
                let apq = a[p * c + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * c + q] - a[p * c + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let (cos, sin) = (1.0 / (t * t + 1.0).sqrt(), t / (t * t + 1.0).sqrt());
                for k in 0..c {
                    let (akp, akq) = (a[k * c + p], a[k * c + q]);
                    a[k * c + p] = cos * akp - sin * akq;
                    a[k * c + q] = sin * akp + cos * akq;
                }
                for k in 0..c {
                    let (apk, aqk) = (a[p * c + k], a[q * c + k]);
                    a[p * c + k] = cos * apk - sin * aqk;
                    a[q * c + k] = sin * apk + cos * aqk;
                }
            }
        }
    }
    (0..c).map(|i| a[i * c + i]).collect()
}

/// SND's temperature (the paper's 0.05).
pub const SND_TEMPERATURE: f64 = 0.05;

/// Soft neighbourhood density with temperature `tau`: each row's prediction is L2-normalised,
/// its cosine similarities to the other rows go through a softmax with temperature `tau`, and
/// the entropy of that distribution is averaged over the rows. Cost `O(n^2 c)`: a thousand rows
/// is plenty.
pub fn soft_neighborhood_density(probs: &[f32], n: usize, c: usize, tau: f64) -> Result<f64> {
    check(probs, n, c)?;
    if n < 2 || !(tau.is_finite() && tau > 0.0) {
        return Err(EvalError::Invalid(format!(
            "SND needs at least 2 rows and a positive temperature, got {n} and {tau}"
        )));
    }
    let unit: Vec<Vec<f64>> = probs
        .chunks_exact(c)
        .map(|r| {
            let norm = r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt().max(1e-12);
            r.iter().map(|&v| v as f64 / norm).collect()
        })
        .collect();
    let mut total = 0.0;
    let mut logits = vec![0.0f64; n - 1];
    for i in 0..n {
        for (slot, j) in (0..n).filter(|&j| j != i).enumerate() {
            logits[slot] = unit[i].iter().zip(&unit[j]).map(|(a, b)| a * b).sum::<f64>() / tau;
        }
        let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = logits.iter().map(|l| (l - max).exp()).sum();
        total += entropy(logits.iter().map(|l| (l - max).exp() / z));
    }
    Ok(total / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_hot(classes: &[usize], c: usize) -> Vec<f32> {
        classes.iter().flat_map(|&k| (0..c).map(move |j| if j == k { 1.0 } else { 0.0 })).collect()
    }

    #[test]
    fn information_maximization_on_known_predictions() {
        // Confident and balanced over 4 classes: log 4 - 0.
        let p = one_hot(&[0, 1, 2, 3], 4);
        assert!((information_maximization_score(&p, 4, 4).unwrap() - 4f64.ln()).abs() < 1e-9);
        // Confident but collapsed: 0 - 0.
        let p = one_hot(&[2, 2, 2, 2], 4);
        assert!(information_maximization_score(&p, 4, 4).unwrap().abs() < 1e-9);
        // Uniform: log 4 - log 4.
        let p = vec![0.25f32; 16];
        assert!(information_maximization_score(&p, 4, 4).unwrap().abs() < 1e-6);
    }

    #[test]
    fn nuclear_norm_on_known_predictions() {
        // n one-hot rows over k distinct classes, m each: singular values sqrt(m) k times.
        let p = one_hot(&[0, 0, 1, 1, 2, 2], 3);
        assert!((batch_nuclear_norm(&p, 6, 3).unwrap() - 3.0 * 2f64.sqrt() / 6.0).abs() < 1e-9);
        // Collapsed on one class: one singular value sqrt(n).
        let p = one_hot(&[1; 6], 3);
        assert!((batch_nuclear_norm(&p, 6, 3).unwrap() - 6f64.sqrt() / 6.0).abs() < 1e-9);
        // Uniform rows: rank one, singular value sqrt(n * c * (1/c)^2) = sqrt(n / c).
        let p = vec![1.0f32 / 3.0; 18];
        assert!((batch_nuclear_norm(&p, 6, 3).unwrap() - (6.0f64 / 3.0).sqrt() / 6.0).abs() < 1e-6);
        // A non-diagonal Gram matrix: P = [[0.5, 0.5], [1, 0]], P^T P = [[1.25, 0.25], [0.25, 0.25]]
        // with trace 1.5 and determinant 0.25: eigenvalues 0.75 +- sqrt(0.3125).
        let p = vec![0.5f32, 0.5, 1.0, 0.0];
        let (hi, lo) = (0.75 + 0.3125f64.sqrt(), 0.75 - 0.3125f64.sqrt());
        let expected = (hi.sqrt() + lo.sqrt()) / 2.0;
        assert!((batch_nuclear_norm(&p, 2, 2).unwrap() - expected).abs() < 1e-9);
    }

    #[test]
    fn soft_neighborhood_density_on_known_predictions() {
        // All rows identical: every softmax over the n - 1 others is uniform, entropy log(n - 1).
        let p = one_hot(&[1; 5], 3);
        let snd = soft_neighborhood_density(&p, 5, 3, SND_TEMPERATURE).unwrap();
        assert!((snd - 4f64.ln()).abs() < 1e-9);
        // Two tight clusters of 3: each row's mass goes to its 2 neighbours (similarity 1 vs 0,
        // at temperature 0.05 the others get e^-20 of it): entropy close to log 2.
        let p = one_hot(&[0, 0, 0, 1, 1, 1], 2);
        let snd = soft_neighborhood_density(&p, 6, 2, SND_TEMPERATURE).unwrap();
        assert!((snd - 2f64.ln()).abs() < 1e-6, "{snd}");
        assert!(soft_neighborhood_density(&p, 6, 2, 0.0).is_err());
        assert!(information_maximization_score(&[f32::NAN, 1.0], 1, 2).is_err());
    }
}
