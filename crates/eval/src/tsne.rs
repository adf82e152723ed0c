//! t-SNE (van der Maaten & Hinton, 2008), the exact O(N^2) algorithm.
//!
//! Meant for the feature plots of a run: one or two thousand points, where the exact gradient is
//! still cheap and, unlike Barnes-Hut, has no accuracy knob to explain. The optimisation follows
//! van der Maaten's reference implementation and scikit-learn's defaults: perplexity-calibrated Gaussian
//! affinities, early exaggeration with low momentum, then plain momentum gradient descent with
//! per-coordinate gains (delta-bar-delta). The O(N^2) passes run row-parallel on rayon; each row's
//! sums are taken in a fixed order, so the result depends on the seed only, not on the threads.
//! Memory peaks at two dense N x N `f64` matrices (64 MB for N = 2000).
use crate::error::{EvalError, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::Serialize;

/// Step size of the gradient descent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum LearningRate {
    /// `max(N / early_exaggeration / 4, 50)`, scikit-learn's "auto" (Belkina et al., 2019):
    /// a fixed rate is too small for large N and too large for small N.
    Auto,
    Fixed(f64),
}

/// Settings of [`tsne`]; the defaults are scikit-learn's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TsneConfig {
    /// Effective number of neighbours each point attends to (30).
    pub perplexity: f64,
    /// Gradient-descent iterations in all, exaggeration phase included (1000).
    pub iterations: usize,
    pub learning_rate: LearningRate,
    /// Factor on the affinities during the first `exaggeration_iterations` (12): clusters form
    /// tightly first and then have room to move apart.
    pub early_exaggeration: f64,
    /// Length of the exaggeration phase (250); the momentum switches at the same iteration.
    pub exaggeration_iterations: usize,
    /// Momentum during the exaggeration phase (0.5).
    pub momentum: f64,
    /// Momentum afterwards (0.8).
    pub final_momentum: f64,
    /// Reduce the input to this many principal components first (50, at most N - 1), which removes
    /// noise and makes the distance computation cheap; `None` or a value of at least `dim` keeps
    /// the input. Uses randomised PCA seeded from `seed`, not [`crate::Pca`] (see
    /// `principal_scores`).
    pub pca_dims: Option<usize>,
    /// Seed of the N(0, 1e-4) initial embedding.
    pub seed: u64,
}

impl Default for TsneConfig {
    fn default() -> Self {
        Self {
            perplexity: 30.0,
            iterations: 1000,
            learning_rate: LearningRate::Auto,
            early_exaggeration: 12.0,
            exaggeration_iterations: 250,
            momentum: 0.5,
            final_momentum: 0.8,
            pca_dims: Some(50),
            seed: 0,
        }
    }
}

/// An embedding and how well it fits.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TsneResult {
    pub embedding: Vec<[f64; 2]>,
    /// `(iterations done, KL(P || Q))` every 50 iterations and at the end. The divergence is
    /// always that of the true affinities, also during early exaggeration.
    pub kl_history: Vec<(usize, f64)>,
    /// KL(P || Q) of the returned embedding.
    pub kl: f64,
    /// The perplexity used: the configured one, or `(N - 1) / 3` where that is smaller.
    pub perplexity: f64,
}

/// Iterations between two entries of [`TsneResult::kl_history`].
const KL_EVERY: usize = 50;
/// Floor of the affinities, as in scikit-learn, so that no log sees a zero.
const P_MIN: f64 = 1e-12;

/// 2-D t-SNE embedding of `N` rows of `dim` values (row-major `data`), one point per row.
///
/// See [`tsne_with_kl`] for the rules on the input and the perplexity.
pub fn tsne(data: &[f32], dim: usize, cfg: &TsneConfig) -> Result<Vec<[f64; 2]>> {
    tsne_with_kl(data, dim, cfg).map(|r| r.embedding)
}

/// [`tsne`], also returning the KL divergence along the way.
///
/// A point's Gaussian must be able to spread over `perplexity` neighbours, and the calibration
/// needs some slack beyond that, so where `N - 1 < 3 * perplexity` the perplexity is lowered to
/// `(N - 1) / 3` (the value used is in the result). At least 4 points are needed. Errors on
/// `dim == 0`, a length that is not a multiple of `dim`, non-finite values and settings out of
/// range.
pub fn tsne_with_kl(data: &[f32], dim: usize, cfg: &TsneConfig) -> Result<TsneResult> {
    if dim == 0 || !data.len().is_multiple_of(dim) {
        return Err(EvalError::Invalid(format!("t-SNE: {} values are not rows of dimension {dim}", data.len())));
    }
    let n = data.len() / dim;
    if n < 4 {
        return Err(EvalError::Invalid(format!("t-SNE: {n} points, at least 4 are needed")));
    }
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        return Err(EvalError::Invalid(format!(
            "t-SNE: row {} column {} is not finite ({})",
            i / dim,
            i % dim,
            data[i]
        )));
    }
    check_config(cfg)?;
    let perplexity = cfg.perplexity.min((n - 1) as f64 / 3.0);

    let (points, width) = match cfg.pca_dims {
        // Beyond N - 1 components the centred data has no variance left to keep.
        Some(k) if k < dim => {
            let k = k.min(n - 1);
            (principal_scores(data, dim, k, cfg.seed), k)
        }
        _ => (data.iter().map(|&v| v as f64).collect(), dim),
    };
    let p = joint_probabilities(&points, width, perplexity);
    drop(points);

    let learning_rate = match cfg.learning_rate {
        LearningRate::Auto => (n as f64 / cfg.early_exaggeration / 4.0).max(50.0),
        LearningRate::Fixed(r) => r,
    };
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut y: Vec<[f64; 2]> = (0..n).map(|_| [1e-2 * normal(&mut rng), 1e-2 * normal(&mut rng)]).collect();
    let mut update = vec![[0f64; 2]; n];
    let mut gains = vec![[1f64; 2]; n];
    let mut kl_history = Vec::new();
    for it in 0..cfg.iterations {
        let early = it < cfg.exaggeration_iterations;
        let (exaggeration, momentum) =
            if early { (cfg.early_exaggeration, cfg.momentum) } else { (1.0, cfg.final_momentum) };
        let grad = gradient(&p, &y, exaggeration);
        for ((yi, (ui, gi)), di) in y.iter_mut().zip(update.iter_mut().zip(gains.iter_mut())).zip(&grad) {
            for k in 0..2 {
                // Delta-bar-delta: grow the step of a coordinate whose gradient keeps its sign
                // relative to the last move, shrink it when the gradient flips.
                gi[k] = if ui[k] * di[k] < 0.0 { gi[k] + 0.2 } else { (gi[k] * 0.8).max(0.01) };
                ui[k] = momentum * ui[k] - learning_rate * gi[k] * di[k];
                yi[k] += ui[k];
            }
        }
        // The objective is translation invariant; keeping the mean at 0 stops a slow drift.
        let mean = y.iter().fold([0f64; 2], |m, v| [m[0] + v[0], m[1] + v[1]]).map(|s| s / n as f64);
        y.iter_mut().for_each(|v| *v = [v[0] - mean[0], v[1] - mean[1]]);
        if (it + 1) % KL_EVERY == 0 && it + 1 < cfg.iterations {
            kl_history.push((it + 1, kl_divergence(&p, &y)));
        }
    }
    let kl = kl_divergence(&p, &y);
    kl_history.push((cfg.iterations, kl));
    Ok(TsneResult { embedding: y, kl_history, kl, perplexity })
}

fn check_config(cfg: &TsneConfig) -> Result<()> {
    let bad = |what: String| Err(EvalError::Invalid(format!("t-SNE: {what}")));
    if !(cfg.perplexity.is_finite() && cfg.perplexity >= 1.0) {
        return bad(format!("perplexity {} is not a number of at least 1", cfg.perplexity));
    }
    if !(cfg.early_exaggeration.is_finite() && cfg.early_exaggeration > 0.0) {
        return bad(format!("early exaggeration {} is not positive", cfg.early_exaggeration));
    }
    match cfg.learning_rate {
        LearningRate::Fixed(r) if !(r.is_finite() && r > 0.0) => {
            return bad(format!("learning rate {r} is not positive"));
        }
        _ => {}
    }
    for m in [cfg.momentum, cfg.final_momentum] {
        if !(0.0..1.0).contains(&m) {
            return bad(format!("momentum {m} is not in [0, 1)"));
        }
    }
    if cfg.pca_dims == Some(0) {
        return bad("PCA to 0 dimensions".into());
    }
    Ok(())
}

/// Scores of the rows on the top `k` principal components, `n x k` row-major, by randomised
/// subspace iteration (Halko, Martinsson & Tropp, 2011, as in scikit-learn's randomized PCA).
///
/// [`crate::Pca`] iterates until every component has converged, which for 1000 x 2352 features
/// takes most of a minute; t-SNE only needs the subspace the data mostly lies in, and a few
/// power iterations with oversampling give that in well under a second.
pub fn principal_scores(data: &[f32], dim: usize, k: usize, seed: u64) -> Vec<f64> {
    const OVERSAMPLING: usize = 10;
    const POWER_ITERATIONS: usize = 5;
    let n = data.len() / dim;
    let l = (k + OVERSAMPLING).min(n).min(dim);
    let mut mean = vec![0f64; dim];
    for row in data.chunks_exact(dim) {
        mean.iter_mut().zip(row).for_each(|(m, &v)| *m += v as f64);
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let x: Vec<f64> =
        data.chunks_exact(dim).flat_map(|row| row.iter().zip(&mean).map(|(&v, m)| v as f64 - m)).collect();
    let mut xt = vec![0f64; dim * n];
    for (i, row) in x.chunks_exact(dim).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            xt[j * n + i] = v;
        }
    }
    // Its own stream, so that the embedding's initialisation does not depend on the input width.
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5851_F42D_4C95_7F2D);
    let omega: Vec<f64> = (0..dim * l).map(|_| normal(&mut rng)).collect();
    let mut q = matmul(&x, dim, &omega, l);
    orthonormalise_columns(&mut q, l);
    for _ in 0..POWER_ITERATIONS {
        let mut w = matmul(&xt, n, &q, l);
        orthonormalise_columns(&mut w, l);
        q = matmul(&x, dim, &w, l);
        orthonormalise_columns(&mut q, l);
    }
    // With B = Q^T X = U S V^T, the scores X V are Q U S; B B^T = W^T W for W = X^T Q.
    let w = matmul(&xt, n, &q, l);
    let mut gram = vec![0f64; l * l];
    for row in w.chunks_exact(l) {
        for a in 0..l {
            for b in 0..l {
                gram[a * l + b] += row[a] * row[b];
            }
        }
    }
    let (values, vectors) = symmetric_eigen(gram, l);
    let mut order: Vec<usize> = (0..l).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    let mut scores = vec![0f64; n * k];
    for (out, qi) in scores.chunks_exact_mut(k).zip(q.chunks_exact(l)) {
        for (o, &c) in out.iter_mut().zip(&order) {
            let s = values[c].max(0.0).sqrt();
            *o = s * (0..l).map(|a| qi[a] * vectors[a * l + c]).sum::<f64>();
        }
    }
    scores
}

/// `a (rows x inner) * b (inner x cols)`, row-major, one output row per rayon task.
fn matmul(a: &[f64], inner: usize, b: &[f64], cols: usize) -> Vec<f64> {
    let mut out = vec![0f64; a.len() / inner * cols];
    out.par_chunks_mut(cols).zip(a.par_chunks(inner)).for_each(|(o, ar)| {
        for (&v, br) in ar.iter().zip(b.chunks_exact(cols)) {
            o.iter_mut().zip(br).for_each(|(x, &y)| *x += v * y);
        }
    });
    out
}

/// Modified Gram-Schmidt on the columns of a row-major matrix with `cols` columns. A column with
/// (numerically) nothing left is set to zero: its direction carries no variance.
fn orthonormalise_columns(m: &mut [f64], cols: usize) {
    let rows = m.len() / cols;
    let mut t: Vec<Vec<f64>> = (0..cols).map(|c| (0..rows).map(|r| m[r * cols + c]).collect()).collect();
    let scale = t.iter().map(|c| c.iter().map(|v| v * v).sum::<f64>()).fold(0f64, f64::max).sqrt();
    for c in 0..cols {
        let (done, rest) = t.split_at_mut(c);
        let col = &mut rest[0];
        for prev in done.iter() {
            let p: f64 = prev.iter().zip(col.iter()).map(|(a, b)| a * b).sum();
            col.iter_mut().zip(prev).for_each(|(x, y)| *x -= p * y);
        }
        let norm = col.iter().map(|v| v * v).sum::<f64>().sqrt();
        let inv = if norm > 1e-12 * scale.max(f64::MIN_POSITIVE) { 1.0 / norm } else { 0.0 };
        col.iter_mut().for_each(|v| *v *= inv);
    }
    for (c, col) in t.iter().enumerate() {
        for (r, &v) in col.iter().enumerate() {
            m[r * cols + c] = v;
        }
    }
}

/// Eigenvalues and eigenvectors (columns of the row-major result) of a small symmetric matrix by
/// cyclic Jacobi rotations: simple, and accurate for the ~60 x 60 matrices met here.
fn symmetric_eigen(mut a: Vec<f64>, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0f64; n * n];
    (0..n).for_each(|i| v[i * n + i] = 1.0);
    let norm: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    for _ in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j].powi(2))
            .sum();
        if off.sqrt() <= 1e-14 * norm {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                // The smaller rotation angle; signum(0) is 1 here, as it must be.
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}

/// A standard normal sample (Box-Muller), to avoid a dependency for the initialisation alone.
fn normal(rng: &mut StdRng) -> f64 {
    let u: f64 = 1.0 - rng.random::<f64>();
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// Symmetrised affinities `p_ij = (p_j|i + p_i|j) / 2N` as a dense row-major N x N matrix with a
/// zero diagonal; each conditional distribution is calibrated to the perplexity.
fn joint_probabilities(points: &[f64], width: usize, perplexity: f64) -> Vec<f64> {
    let n = points.len() / width;
    let mut cond = vec![0f64; n * n];
    cond.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
        let xi = &points[i * width..(i + 1) * width];
        for (j, r) in row.iter_mut().enumerate() {
            *r = if i == j { 0.0 } else { squared_distance(xi, &points[j * width..(j + 1) * width]) };
        }
        calibrate_row(row, i, perplexity);
    });
    let scale = 1.0 / (2.0 * n as f64);
    let mut p = vec![0f64; n * n];
    p.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
        for (j, v) in row.iter_mut().enumerate() {
            *v = if i == j { 0.0 } else { ((cond[i * n + j] + cond[j * n + i]) * scale).max(P_MIN) };
        }
    });
    p
}

fn squared_distance(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| (x - y) * (x - y)).sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..4 {
            let d = x[k] - y[k];
            acc[k] += d * d;
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// Turns a row of squared distances into `p_j|i` proportional to `exp(-beta d_j)`, with `beta`
/// found by bisection so that the entropy is `ln(perplexity)`.
fn calibrate_row(row: &mut [f64], i: usize, perplexity: f64) {
    let target = perplexity.ln();
    let others = || row.iter().enumerate().filter(|&(j, _)| j != i).map(|(_, &d)| d);
    // Distances relative to the nearest neighbour: the normalisation cancels the shift, and the
    // nearest neighbour's weight is then 1, so the sum can never underflow to 0.
    let d_min = others().fold(f64::INFINITY, f64::min);
    let d_mean = others().map(|d| d - d_min).sum::<f64>() / (row.len() - 1) as f64;
    let dist: Vec<f64> = row.iter().map(|&d| d - d_min).collect();
    let mut beta = if d_mean > 0.0 { 1.0 / d_mean } else { 1.0 };
    let (mut lo, mut hi) = (0f64, f64::INFINITY);
    let mut weights = vec![0f64; row.len()];
    for _ in 0..100 {
        let (mut sum, mut weighted) = (0f64, 0f64);
        for (j, (w, &d)) in weights.iter_mut().zip(&dist).enumerate() {
            *w = if j == i { 0.0 } else { (-beta * d).exp() };
            sum += *w;
            weighted += d * *w;
        }
        let entropy = sum.ln() + beta * weighted / sum;
        let diff = entropy - target;
        if diff.abs() < 1e-5 {
            break;
        }
        // Too much entropy: the Gaussian is too wide, so sharpen it (larger beta), and vice versa.
        if diff > 0.0 {
            lo = beta;
            beta = if hi.is_finite() { (beta + hi) / 2.0 } else { beta * 2.0 };
        } else {
            hi = beta;
            beta = (beta + lo) / 2.0;
        }
    }
    let sum: f64 = weights.iter().sum();
    row.iter_mut().zip(&weights).for_each(|(r, w)| *r = w / sum);
}

/// Row sums of one pass over all pairs: attraction `sum_j p_ij q*_ij (y_i - y_j)`, repulsion
/// `sum_j q*_ij^2 (y_i - y_j)` and `sum_j q*_ij`, with `q*_ij = 1 / (1 + |y_i - y_j|^2)`.
/// Computing both halves in one sweep avoids storing the N x N kernel matrix.
fn row_sums(p_row: &[f64], y: &[[f64; 2]], i: usize) -> [f64; 5] {
    const L: usize = 4;
    let [xi, yi] = y[i];
    let mut acc = [[0f64; L]; 5];
    let (cp, cy) = (p_row.chunks_exact(L), y.chunks_exact(L));
    let (rp, ry) = (cp.remainder(), cy.remainder());
    let pair = |acc: &mut [[f64; L]; 5], k: usize, p: f64, yj: [f64; 2]| {
        let (dx, dy) = (xi - yj[0], yi - yj[1]);
        let q = 1.0 / (1.0 + dx * dx + dy * dy);
        let (pq, qq) = (p * q, q * q);
        acc[0][k] += pq * dx;
        acc[1][k] += pq * dy;
        acc[2][k] += qq * dx;
        acc[3][k] += qq * dy;
        acc[4][k] += q;
    };
    for (ps, ys) in cp.zip(cy) {
        for k in 0..L {
            pair(&mut acc, k, ps[k], ys[k]);
        }
    }
    for (k, (&p, &yj)) in rp.iter().zip(ry).enumerate() {
        pair(&mut acc, k, p, yj);
    }
    // The loop included j = i, which adds nothing but q*_ii = 1 to the normaliser.
    let mut out = acc.map(|lanes| lanes.iter().sum::<f64>());
    out[4] -= 1.0;
    out
}

/// dC/dy_i = 4 sum_j (e p_ij - q_ij) q*_ij (y_i - y_j), with exaggeration `e`.
fn gradient(p: &[f64], y: &[[f64; 2]], exaggeration: f64) -> Vec<[f64; 2]> {
    let n = y.len();
    let sums: Vec<[f64; 5]> = p.par_chunks(n).enumerate().map(|(i, row)| row_sums(row, y, i)).collect();
    let z: f64 = sums.iter().map(|s| s[4]).sum();
    sums.iter().map(|s| [4.0 * (exaggeration * s[0] - s[2] / z), 4.0 * (exaggeration * s[1] - s[3] / z)]).collect()
}

/// KL(P || Q) = sum p log p - sum p log q*  + log Z, as `sum p = 1` and `q = q* / Z`.
fn kl_divergence(p: &[f64], y: &[[f64; 2]]) -> f64 {
    let n = y.len();
    let rows: Vec<(f64, f64)> = p
        .par_chunks(n)
        .enumerate()
        .map(|(i, row)| {
            let (mut plogpq, mut z) = (0f64, 0f64);
            for (j, (&pij, yj)) in row.iter().zip(y).enumerate() {
                if j == i {
                    continue;
                }
                let (dx, dy) = (y[i][0] - yj[0], y[i][1] - yj[1]);
                let q = 1.0 / (1.0 + dx * dx + dy * dy);
                plogpq += pij * (pij / q).ln();
                z += q;
            }
            (plogpq, z)
        })
        .collect();
    let z: f64 = rows.iter().map(|r| r.1).sum();
    let p_sum: f64 = p.iter().sum();
    rows.iter().map(|r| r.0).sum::<f64>() + p_sum * z.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `per` points around each of `k` centres in `dim` dimensions, unit noise, centres 10 apart
    /// along separate axes; returns the data and the cluster of each row.
    fn clusters(k: usize, per: usize, dim: usize, seed: u64) -> (Vec<f32>, Vec<usize>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut data, mut labels) = (Vec::new(), Vec::new());
        for c in 0..k {
            for _ in 0..per {
                data.extend((0..dim).map(|d| (if d == c { 10.0 } else { 0.0 } + normal(&mut rng)) as f32));
                labels.push(c);
            }
        }
        (data, labels)
    }

    /// Fraction of each point's `k` nearest embedded neighbours that share its label.
    fn neighbour_agreement(y: &[[f64; 2]], labels: &[usize], k: usize) -> f64 {
        let mut agree = 0;
        for (i, a) in y.iter().enumerate() {
            let mut d: Vec<(f64, usize)> = y
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(j, b)| ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2), j))
                .collect();
            d.sort_by(|a, b| a.0.total_cmp(&b.0));
            agree += d[..k].iter().filter(|&&(_, j)| labels[j] == labels[i]).count();
        }
        agree as f64 / (y.len() * k) as f64
    }

    #[test]
    fn separated_clusters_stay_separated() {
        let (data, labels) = clusters(3, 100, 50, 1);
        let r = tsne_with_kl(&data, 50, &TsneConfig { seed: 3, ..Default::default() }).unwrap();
        assert_eq!(r.embedding.len(), 300);
        let agreement = neighbour_agreement(&r.embedding, &labels, 10);
        assert!(agreement > 0.95, "agreement {agreement}");
        // Clusters apart: every centroid farther from the others than the cluster's own spread.
        let centroid = |c: usize| {
            let pts: Vec<&[f64; 2]> = r.embedding.iter().zip(&labels).filter(|(_, l)| **l == c).map(|p| p.0).collect();
            let m = pts.iter().fold([0.0, 0.0], |m, p| [m[0] + p[0], m[1] + p[1]]).map(|s| s / pts.len() as f64);
            let spread =
                pts.iter().map(|p| ((p[0] - m[0]).powi(2) + (p[1] - m[1]).powi(2)).sqrt()).fold(0f64, f64::max);
            (m, spread)
        };
        let cs: Vec<_> = (0..3).map(centroid).collect();
        for a in 0..3 {
            for b in a + 1..3 {
                let d = ((cs[a].0[0] - cs[b].0[0]).powi(2) + (cs[a].0[1] - cs[b].0[1]).powi(2)).sqrt();
                assert!(d > cs[a].1 + cs[b].1, "clusters {a} and {b} overlap: {cs:?}");
            }
        }
    }

    #[test]
    fn kl_divergence_decreases() {
        let (data, _) = clusters(3, 60, 20, 2);
        let r = tsne_with_kl(&data, 20, &TsneConfig { iterations: 600, ..Default::default() }).unwrap();
        let h = &r.kl_history;
        assert_eq!(h.len(), 12);
        assert_eq!(h.last().unwrap(), &(600, r.kl));
        assert!(r.kl < h[0].1, "{h:?}");
        // Without exaggeration it is plain descent on KL itself: no step should raise it much.
        let after: Vec<f64> = h.iter().filter(|e| e.0 > 250).map(|e| e.1).collect();
        for w in after.windows(2) {
            assert!(w[1] <= w[0] + 1e-3, "{h:?}");
        }
        assert!(r.kl >= 0.0);
    }

    #[test]
    fn deterministic_for_a_seed() {
        let (data, _) = clusters(2, 40, 10, 3);
        let cfg = TsneConfig { iterations: 300, pca_dims: Some(5), seed: 9, ..Default::default() };
        let a = tsne(&data, 10, &cfg).unwrap();
        assert_eq!(a, tsne(&data, 10, &cfg).unwrap());
        let b = tsne(&data, 10, &TsneConfig { seed: 10, ..cfg.clone() }).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn randomised_pca_agrees_with_exact_pca() {
        let mut rng = StdRng::seed_from_u64(8);
        let (n, dim, k) = (200, 30, 5);
        let data: Vec<f32> =
            (0..n * dim).map(|i| (normal(&mut rng) * 0.7f64.powi((i % dim) as i32) + 3.0) as f32).collect();
        let scores = principal_scores(&data, dim, k, 1);
        let exact = crate::Pca::fit(&data, dim, k).unwrap().transform(&data);
        for c in 0..k {
            let a: Vec<f64> = scores.chunks_exact(k).map(|r| r[c]).collect();
            let b: Vec<f64> = exact.iter().map(|r| r[c]).collect();
            let norm = b.iter().map(|v| v * v).sum::<f64>().sqrt();
            // Components are defined up to sign.
            let sign = if a.iter().zip(&b).map(|(x, y)| x * y).sum::<f64>() < 0.0 { -1.0 } else { 1.0 };
            let err = a.iter().zip(&b).map(|(x, y)| (sign * x - y).powi(2)).sum::<f64>().sqrt();
            assert!(err < 1e-4 * norm, "component {c}: error {err} of {norm}");
        }
        // Rank-deficient input (all rows equal) gives zero scores, not NaNs.
        assert!(principal_scores(&[2.0; 40], 4, 3, 0).iter().all(|&v| v == 0.0));
    }

    #[test]
    fn perplexity_is_calibrated() {
        let (data, _) = clusters(2, 50, 5, 4);
        let points: Vec<f64> = data.iter().map(|&v| v as f64).collect();
        let n = 100;
        let mut cond = vec![0f64; n * n];
        for (i, row) in cond.chunks_mut(n).enumerate() {
            for (j, r) in row.iter_mut().enumerate() {
                *r = squared_distance(&points[i * 5..i * 5 + 5], &points[j * 5..j * 5 + 5]);
            }
            calibrate_row(row, i, 20.0);
            let h: f64 = -row.iter().filter(|&&p| p > 0.0).map(|&p| p * p.ln()).sum::<f64>();
            assert!((h.exp() - 20.0).abs() < 1e-2, "row {i}: perplexity {}", h.exp());
            assert_eq!(row[i], 0.0);
        }
    }

    #[test]
    fn few_points_lower_the_perplexity() {
        let (data, _) = clusters(2, 5, 4, 5);
        let r = tsne_with_kl(&data, 4, &TsneConfig { iterations: 100, ..Default::default() }).unwrap();
        assert_eq!(r.perplexity, 3.0);
        assert_eq!(r.embedding.len(), 10);
        assert!(r.embedding.iter().all(|p| p[0].is_finite() && p[1].is_finite()));
        let r = tsne_with_kl(&data[..16], 4, &TsneConfig { iterations: 10, ..Default::default() }).unwrap();
        assert_eq!(r.perplexity, 1.0);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let cfg = TsneConfig::default();
        let msg = |r: Result<Vec<[f64; 2]>>| r.unwrap_err().to_string();
        let ok = vec![0.25f32; 40];
        assert!(msg(tsne(&ok, 0, &cfg)).contains("dimension 0"));
        assert!(msg(tsne(&ok[..39], 4, &cfg)).contains("not rows of dimension 4"));
        assert!(msg(tsne(&ok[..12], 4, &cfg)).contains("at least 4"));
        assert!(msg(tsne(&[], 4, &cfg)).contains("at least 4"));
        let mut bad = ok.clone();
        bad[6] = f32::NAN;
        assert!(msg(tsne(&bad, 4, &cfg)).contains("row 1 column 2 is not finite"));
        assert!(msg(tsne(&ok, 4, &TsneConfig { perplexity: 0.5, ..cfg.clone() })).contains("perplexity"));
        assert!(msg(tsne(&ok, 4, &TsneConfig { perplexity: f64::NAN, ..cfg.clone() })).contains("perplexity"));
        assert!(
            msg(tsne(&ok, 4, &TsneConfig { learning_rate: LearningRate::Fixed(-1.0), ..cfg.clone() }))
                .contains("learning rate")
        );
        assert!(msg(tsne(&ok, 4, &TsneConfig { momentum: 1.0, ..cfg.clone() })).contains("momentum"));
        assert!(msg(tsne(&ok, 4, &TsneConfig { pca_dims: Some(0), ..cfg.clone() })).contains("PCA"));
        assert!(msg(tsne(&ok, 4, &TsneConfig { early_exaggeration: 0.0, ..cfg })).contains("exaggeration"));
    }

    #[test]
    fn identical_points_do_not_produce_nans() {
        let data = vec![1.0f32; 60];
        let y = tsne(&data, 3, &TsneConfig { iterations: 50, ..Default::default() }).unwrap();
        assert!(y.iter().all(|p| p[0].is_finite() && p[1].is_finite()));
    }

    #[test]
    #[ignore = "timing: cargo test -p adapt-eval tsne::tests::timing -- --ignored --nocapture"]
    fn timing_mnist_sized_features() {
        // 1000 points of the MNIST net's 2352 features in 10 groups; printed, not asserted.
        let (data, labels) = clusters(10, 100, 2352, 6);
        let data: Vec<f32> = data.into_iter().map(|v| v.max(0.0)).collect();
        let start = std::time::Instant::now();
        principal_scores(&data, 2352, 50, 0);
        println!("randomised PCA 1000 x 2352 -> 50: {:.2} s", start.elapsed().as_secs_f64());
        let start = std::time::Instant::now();
        let r = tsne_with_kl(&data, 2352, &TsneConfig::default()).unwrap();
        println!(
            "t-SNE 1000 x 2352: {:.2} s on {} threads, KL {:.3}, 10-NN agreement {:.3}",
            start.elapsed().as_secs_f64(),
            rayon::current_num_threads(),
            r.kl,
            neighbour_agreement(&r.embedding, &labels, 10)
        );
    }
}
