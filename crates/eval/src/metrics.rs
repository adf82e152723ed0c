//! Scores of predictions against labels.
use crate::error::{EvalError, Result};
use std::collections::HashMap;

/// Fraction of positions where `predicted` equals `truth`, in [0, 1].
pub fn accuracy(predicted: &[u32], truth: &[u32]) -> Result<f64> {
    if predicted.len() != truth.len() || truth.is_empty() {
        return Err(EvalError::Invalid(format!(
            "accuracy needs two non-empty label lists of one length, got {} and {}",
            predicted.len(),
            truth.len()
        )));
    }
    Ok(predicted.iter().zip(truth).filter(|(a, b)| a == b).count() as f64 / truth.len() as f64)
}

fn choose2(n: f64) -> f64 {
    n * (n - 1.0) / 2.0
}

/// The adjusted Rand index (Hubert & Arabie, 1985) between two labellings of the same items:
/// 1 for identical partitions (whatever the label names), about 0 for independent ones.
pub fn adjusted_rand_index(a: &[u32], b: &[u32]) -> Result<f64> {
    if a.len() != b.len() || a.is_empty() {
        return Err(EvalError::Invalid(format!(
            "ARI needs two non-empty labellings of one length, got {} and {}",
            a.len(),
            b.len()
        )));
    }
    let mut table: HashMap<(u32, u32), f64> = HashMap::new();
    let mut rows: HashMap<u32, f64> = HashMap::new();
    let mut cols: HashMap<u32, f64> = HashMap::new();
    for (&x, &y) in a.iter().zip(b) {
        *table.entry((x, y)).or_default() += 1.0;
        *rows.entry(x).or_default() += 1.0;
        *cols.entry(y).or_default() += 1.0;
    }
    let index: f64 = table.values().map(|&n| choose2(n)).sum();
    let sum_rows: f64 = rows.values().map(|&n| choose2(n)).sum();
    let sum_cols: f64 = cols.values().map(|&n| choose2(n)).sum();
    let total = choose2(a.len() as f64);
    let expected = sum_rows * sum_cols / total;
    let max = (sum_rows + sum_cols) / 2.0;
    if max == expected {
        // Both labellings are a single cluster (or all singletons): they agree perfectly.
        return Ok(1.0);
    }
    Ok((index - expected) / (max - expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_counts_matches() {
        assert_eq!(accuracy(&[1, 2, 3, 4], &[1, 2, 0, 4]).unwrap(), 0.75);
        assert!(accuracy(&[1], &[1, 2]).is_err());
        assert!(accuracy(&[], &[]).is_err());
    }

    #[test]
    fn ari_known_values() {
        // Identical partitions with renamed labels.
        assert!((adjusted_rand_index(&[0, 0, 1, 1], &[5, 5, 3, 3]).unwrap() - 1.0).abs() < 1e-12);
        // scikit-learn's documented example: adjusted_rand_score([0, 0, 1, 2], [0, 0, 1, 1]) = 0.5714...
        let v = adjusted_rand_index(&[0, 0, 1, 2], &[0, 0, 1, 1]).unwrap();
        assert!((v - 0.571_428_571_428_571_4).abs() < 1e-12, "{v}");
        // And a negative one: adjusted_rand_score([0, 0, 1, 1], [0, 1, 0, 1]) = -0.5.
        let v = adjusted_rand_index(&[0, 0, 1, 1], &[0, 1, 0, 1]).unwrap();
        assert!((v + 0.5).abs() < 1e-12, "{v}");
    }
}
