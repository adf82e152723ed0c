//! Principal component analysis by orthogonal (subspace) iteration.
//!
//! Works on the centred data matrix directly (`v <- X^T X v`), so it never forms the covariance
//! matrix and handles features of thousands of dimensions.
use crate::error::{EvalError, Result};

/// A fitted projection onto the top principal components.
#[derive(Debug, Clone)]
pub struct Pca {
    pub mean: Vec<f64>,
    /// `k` unit-length components of dimension `d`, by decreasing variance.
    pub components: Vec<Vec<f64>>,
    /// Variance along each component.
    pub variances: Vec<f64>,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl Pca {
    /// Fits `k` components to `n` rows of `dim` values (`data.len() == n * dim`).
    pub fn fit(data: &[f32], dim: usize, k: usize) -> Result<Self> {
        if dim == 0 || data.is_empty() || !data.len().is_multiple_of(dim) {
            return Err(EvalError::Invalid(format!("PCA: {} values are not rows of {dim}", data.len())));
        }
        let n = data.len() / dim;
        if n < 2 || k == 0 || k > dim {
            return Err(EvalError::Invalid(format!("PCA: {k} components of {n} rows of dimension {dim}")));
        }
        let mut mean = vec![0f64; dim];
        for row in data.chunks_exact(dim) {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let centred: Vec<Vec<f64>> =
            data.chunks_exact(dim).map(|row| row.iter().zip(&mean).map(|(&v, m)| v as f64 - m).collect()).collect();
        // Deterministic, generic start vectors.
        let mut basis: Vec<Vec<f64>> = (0..k)
            .map(|j| {
                (0..dim).map(|i| (((i * 7 + j * 13) % 17) as f64 - 8.0) + if i == j { 10.0 } else { 0.0 }).collect()
            })
            .collect();
        let apply_cov = |v: &[f64]| -> Vec<f64> {
            let mut out = vec![0f64; dim];
            for row in &centred {
                let s = dot(row, v);
                for (o, r) in out.iter_mut().zip(row) {
                    *o += s * r;
                }
            }
            out.iter_mut().for_each(|o| *o /= (n - 1) as f64);
            out
        };
        let orthonormalise = |basis: &mut Vec<Vec<f64>>| {
            for j in 0..basis.len() {
                for i in 0..j {
                    let p = dot(&basis[j], &basis[i]);
                    let bi = basis[i].clone();
                    basis[j].iter_mut().zip(&bi).for_each(|(x, y)| *x -= p * y);
                }
                let norm = dot(&basis[j], &basis[j]).sqrt();
                if norm > 0.0 {
                    basis[j].iter_mut().for_each(|x| *x /= norm);
                }
            }
        };
        orthonormalise(&mut basis);
        for _ in 0..200 {
            let mut next: Vec<Vec<f64>> = basis.iter().map(|v| apply_cov(v)).collect();
            orthonormalise(&mut next);
            let change: f64 = next.iter().zip(&basis).map(|(a, b)| 1.0 - dot(a, b).abs()).sum();
            basis = next;
            if change < 1e-12 {
                break;
            }
        }
        let mut pairs: Vec<(f64, Vec<f64>)> = basis.into_iter().map(|v| (dot(&v, &apply_cov(&v)), v)).collect();
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        Ok(Self {
            mean,
            variances: pairs.iter().map(|p| p.0).collect(),
            components: pairs.into_iter().map(|p| p.1).collect(),
        })
    }

    /// Projects rows of `dim` values onto the components: `n` rows of `k` values.
    pub fn transform(&self, data: &[f32]) -> Vec<Vec<f64>> {
        let dim = self.mean.len();
        data.chunks_exact(dim)
            .map(|row| {
                let c: Vec<f64> = row.iter().zip(&self.mean).map(|(&v, m)| v as f64 - m).collect();
                self.components.iter().map(|comp| dot(&c, comp)).collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_direction_of_largest_variance() {
        // Points along (3, 4)/5 with large spread, small spread along (-4, 3)/5, offset mean.
        let mut data = Vec::new();
        for i in 0..200 {
            let a = (i as f64 - 100.0) * 0.1;
            let b = ((i * 37 % 11) as f64 - 5.0) * 0.01;
            data.push((10.0 + a * 0.6 - b * 0.8) as f32);
            data.push((-3.0 + a * 0.8 + b * 0.6) as f32);
        }
        let pca = Pca::fit(&data, 2, 2).unwrap();
        let c = &pca.components[0];
        assert!((c[0].abs() - 0.6).abs() < 1e-4 && (c[1].abs() - 0.8).abs() < 1e-4, "{c:?}");
        assert!(pca.variances[0] > 100.0 * pca.variances[1]);
        assert!((pca.mean[0] - 10.0).abs() < 0.1);
        let proj = pca.transform(&data);
        assert_eq!(proj.len(), 200);
        assert!(Pca::fit(&data, 3, 1).is_err());
        assert!(Pca::fit(&data, 2, 3).is_err());
    }
}
