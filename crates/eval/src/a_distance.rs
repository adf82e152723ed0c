//! Proxy A-distance between two feature sets (Ben-David et al., 2007; Ganin et al., 2016).
//!
//! The A-distance measures how well *any* classifier of a family can tell the two domains
//! apart. The proxy trains one linear domain classifier on half of the points and turns its
//! held-out error `err` into `A = 2 (1 - 2 err)`: 0 when the domains are indistinguishable,
//! 2 when a hyperplane separates them perfectly. Lower A on learned features is what
//! domain-adversarial training aims for.
//!
//! Everything here is plain single-threaded Rust and deterministic given the seed, so the
//! number in a report can be reproduced exactly.
use crate::error::{EvalError, Result};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::Serialize;

/// Regularisation strengths tried, strongest first: on ties the simpler model wins.
const L2_GRID: [f64; 4] = [1e-1, 1e-2, 1e-3, 1e-4];
/// L-BFGS iterations per fit. With standardised features the regularised problems converge in
/// far fewer; the cap only bounds the weakly regularised fits on separable data, whose exact
/// optimum does not change which side of the hyperplane a point falls on.
const MAX_ITERATIONS: usize = 150;
const LBFGS_MEMORY: usize = 8;

/// The proxy A-distance and how it was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ADistance {
    /// `2 (1 - 2 test_error)`, clamped to [0, 2]: a classifier worse than chance on the test half
    /// (possible by sampling noise when the domains are indistinguishable) means A = 0, not less.
    pub a_distance: f64,
    /// Balanced error of the domain classifier on the held-out half: the mean of the error rates on
    /// the source and on the target points, so that unequal domain sizes do not reward always
    /// guessing the larger domain. Equals the plain error rate when the halves are equally large.
    pub test_error: f64,
    /// The L2 penalty chosen by validation on the training half.
    pub l2: f64,
}

/// Proxy A-distance between `source` (`n_s` rows of `dim` values, row-major) and `target`
/// (`n_t` rows), for a seeded 50/50 train/test split of each domain.
///
/// Features are standardised with the mean and standard deviation of both sets together
/// (constant features are dropped), then an L2-regularised logistic regression is trained by
/// L-BFGS on the training halves, each domain weighted equally. The penalty is chosen among
/// 1e-4..1e-1 on a further split of the training halves only (2-fold), and the classifier refitted
/// on the whole training halves is scored on the test halves.
///
/// Errors on empty input, lengths that are not multiples of `dim`, fewer than 4 rows in either
/// domain, or non-finite values.
pub fn proxy_a_distance(source: &[f32], target: &[f32], dim: usize, seed: u64) -> Result<ADistance> {
    if dim == 0 {
        return Err(EvalError::Invalid("A-distance: feature dimension is 0".into()));
    }
    let n_s = rows_of("source", source, dim)?;
    let n_t = rows_of("target", target, dim)?;
    let x = standardise(source, target, dim);

    let mut rng = StdRng::seed_from_u64(seed);
    let mut split = |first: usize, n: usize| {
        let mut idx: Vec<usize> = (first..first + n).collect();
        idx.shuffle(&mut rng);
        let test = idx.split_off(n / 2);
        (idx, test)
    };
    let (train_s, test_s) = split(0, n_s);
    let (train_t, test_t) = split(n_s, n_t);

    // Validation folds keep both domains in each half; the shuffle above already randomised order.
    let half = |v: &[usize]| (v[..v.len() / 2].to_vec(), v[v.len() / 2..].to_vec());
    let (fs0, fs1) = half(&train_s);
    let (ft0, ft1) = half(&train_t);
    let fold_a = Domains::new(&x, dim, &fs0, &ft0);
    let fold_b = Domains::new(&x, dim, &fs1, &ft1);

    let mut best: Option<(f64, f64)> = None;
    // Warm starts along the path from strong to weak regularisation save most of the iterations.
    let (mut wa, mut wb) = (vec![0f64; dim + 1], vec![0f64; dim + 1]);
    for &l2 in &L2_GRID {
        wa = fit(&fold_a, l2, wa);
        wb = fit(&fold_b, l2, wb);
        let err = 0.5 * (fold_b.balanced_error(&wa) + fold_a.balanced_error(&wb));
        if best.is_none_or(|(e, _)| err < e) {
            best = Some((err, l2));
        }
    }
    let l2 = best.map_or(L2_GRID[0], |b| b.1);

    let train = Domains::new(&x, dim, &train_s, &train_t);
    let test = Domains::new(&x, dim, &test_s, &test_t);
    let w = fit(&train, l2, vec![0f64; dim + 1]);
    let test_error = test.balanced_error(&w);
    Ok(ADistance { a_distance: (2.0 * (1.0 - 2.0 * test_error)).clamp(0.0, 2.0), test_error, l2 })
}

fn rows_of(name: &str, data: &[f32], dim: usize) -> Result<usize> {
    if data.is_empty() {
        return Err(EvalError::Invalid(format!("A-distance: the {name} features are empty")));
    }
    if !data.len().is_multiple_of(dim) {
        return Err(EvalError::Invalid(format!(
            "A-distance: {} {name} values are not rows of dimension {dim}",
            data.len()
        )));
    }
    let n = data.len() / dim;
    if n < 4 {
        // Fewer rows leave a validation fold or a test half without points of this domain.
        return Err(EvalError::Invalid(format!("A-distance: {n} {name} rows, at least 4 are needed")));
    }
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        return Err(EvalError::Invalid(format!(
            "A-distance: {name} row {} column {} is not finite ({})",
            i / dim,
            i % dim,
            data[i]
        )));
    }
    Ok(n)
}

/// Both sets stacked (source first) and standardised with the statistics of the union, as `f32`:
/// the matrix is streamed twice per L-BFGS step, so halving its size halves the time.
fn standardise(source: &[f32], target: &[f32], dim: usize) -> Vec<f32> {
    let n = (source.len() + target.len()) / dim;
    let rows = || source.chunks_exact(dim).chain(target.chunks_exact(dim));
    let mut mean = vec![0f64; dim];
    for row in rows() {
        mean.iter_mut().zip(row).for_each(|(m, &v)| *m += v as f64);
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let mut var = vec![0f64; dim];
    for row in rows() {
        var.iter_mut().zip(row).zip(&mean).for_each(|((s, &v), m)| *s += (v as f64 - m).powi(2));
    }
    let scale: Vec<f64> = var
        .iter()
        .zip(&mean)
        .map(|(&s, m)| {
            let sd = (s / n as f64).sqrt();
            // A (numerically) constant feature carries no information, only rounding noise.
            if sd > 1e-9 * (1.0 + m.abs()) { 1.0 / sd } else { 0.0 }
        })
        .collect();
    let mut out = Vec::with_capacity(n * dim);
    for row in rows() {
        out.extend(row.iter().zip(&mean).zip(&scale).map(|((&v, m), s)| ((v as f64 - m) * s) as f32));
    }
    out
}

/// The rows of a training or evaluation set: source rows labelled -1, target rows +1.
struct Domains {
    dim: usize,
    x: Vec<f32>,
    y: Vec<f64>,
    /// Each domain's total weight is 1/2, whatever its size.
    weight: Vec<f64>,
}

impl Domains {
    fn new(all: &[f32], dim: usize, source: &[usize], target: &[usize]) -> Self {
        let mut x = Vec::with_capacity((source.len() + target.len()) * dim);
        let (mut y, mut weight) = (Vec::new(), Vec::new());
        for (idx, label) in [(source, -1.0), (target, 1.0)] {
            for &i in idx {
                x.extend_from_slice(&all[i * dim..(i + 1) * dim]);
                y.push(label);
                weight.push(0.5 / idx.len() as f64);
            }
        }
        Self { dim, x, y, weight }
    }

    fn margins(&self, w: &[f64]) -> Vec<f64> {
        let (wf, b): (Vec<f32>, f64) = (w[..self.dim].iter().map(|&v| v as f32).collect(), w[self.dim]);
        self.x.chunks_exact(self.dim).map(|row| dot_f32(row, &wf) as f64 + b).collect()
    }

    fn balanced_error(&self, w: &[f64]) -> f64 {
        self.margins(w)
            .iter()
            .zip(&self.y)
            .zip(&self.weight)
            .filter(|((m, y), _)| *m * *y <= 0.0)
            .map(|(_, c)| c)
            .sum::<f64>()
    }

    /// Weighted logistic loss plus `l2/2 |w|^2` (bias unpenalised), and its gradient into `grad`.
    fn loss_grad(&self, w: &[f64], l2: f64, grad: &mut [f64]) -> f64 {
        let d = self.dim;
        let mut loss = 0.0;
        grad.iter_mut().for_each(|g| *g = 0.0);
        let residuals: Vec<f64> = self
            .margins(w)
            .into_iter()
            .zip(&self.y)
            .zip(&self.weight)
            .map(|((m, y), c)| {
                // log(1 + e^z) and the logistic sigmoid of z, without overflow for large |z|.
                let z = -y * m;
                let (softplus, sigmoid) = if z > 0.0 {
                    let e = (-z).exp();
                    (z + e.ln_1p(), 1.0 / (1.0 + e))
                } else {
                    let e = z.exp();
                    (e.ln_1p(), e / (1.0 + e))
                };
                loss += c * softplus;
                -c * y * sigmoid
            })
            .collect();
        // X^T r as row-wise axpys: contiguous, and vectorised without reordering any sum.
        for (row, &r) in self.x.chunks_exact(d).zip(&residuals) {
            grad[..d].iter_mut().zip(row).for_each(|(g, &v)| *g += r * v as f64);
            grad[d] += r;
        }
        let mut penalty = 0.0;
        for (g, &wi) in grad[..d].iter_mut().zip(&w[..d]) {
            *g += l2 * wi;
            penalty += wi * wi;
        }
        loss + 0.5 * l2 * penalty
    }
}

fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    // Independent lanes let the compiler vectorise a reduction it may not reorder itself.
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..16 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Minimises the regularised loss by L-BFGS with a backtracking (Armijo) line search, from `w`.
fn fit(data: &Domains, l2: f64, mut w: Vec<f64>) -> Vec<f64> {
    let n = w.len();
    let mut g = vec![0f64; n];
    let mut f = data.loss_grad(&w, l2, &mut g);
    let (mut s_hist, mut y_hist, mut rho_hist): (Vec<Vec<f64>>, Vec<Vec<f64>>, Vec<f64>) =
        (Vec::new(), Vec::new(), Vec::new());
    let mut g_new = vec![0f64; n];
    let mut w_new = vec![0f64; n];
    for _ in 0..MAX_ITERATIONS {
        if g.iter().fold(0f64, |m, v| m.max(v.abs())) < 1e-6 {
            break;
        }
        // Two-loop recursion: direction = -H g.
        let mut q = g.clone();
        let mut alpha = vec![0f64; s_hist.len()];
        for k in (0..s_hist.len()).rev() {
            alpha[k] = rho_hist[k] * dot(&s_hist[k], &q);
            q.iter_mut().zip(&y_hist[k]).for_each(|(qi, yi)| *qi -= alpha[k] * yi);
        }
        let gamma = match (s_hist.last(), y_hist.last()) {
            (Some(s), Some(y)) => dot(s, y) / dot(y, y),
            // Without curvature information yet, a first step of unit length.
            _ => 1.0 / dot(&g, &g).sqrt().max(1e-12),
        };
        q.iter_mut().for_each(|v| *v *= gamma);
        for k in 0..s_hist.len() {
            let beta = rho_hist[k] * dot(&y_hist[k], &q);
            q.iter_mut().zip(&s_hist[k]).for_each(|(qi, si)| *qi += (alpha[k] - beta) * si);
        }
        let mut dir: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut slope = dot(&g, &dir);
        if slope >= 0.0 {
            // Not a descent direction (rounding): restart from steepest descent.
            s_hist.clear();
            y_hist.clear();
            rho_hist.clear();
            dir = g.iter().map(|v| -v).collect();
            slope = -dot(&g, &g);
        }
        let mut step = 1.0;
        let mut f_new;
        let mut accepted = false;
        for _ in 0..30 {
            w_new.iter_mut().zip(&w).zip(&dir).for_each(|((a, &b), &d)| *a = b + step * d);
            f_new = data.loss_grad(&w_new, l2, &mut g_new);
            if f_new <= f + 1e-4 * step * slope {
                accepted = true;
                let s: Vec<f64> = w_new.iter().zip(&w).map(|(a, b)| a - b).collect();
                let y: Vec<f64> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
                let sy = dot(&s, &y);
                if sy > 1e-12 {
                    if s_hist.len() == LBFGS_MEMORY {
                        s_hist.remove(0);
                        y_hist.remove(0);
                        rho_hist.remove(0);
                    }
                    s_hist.push(s);
                    y_hist.push(y);
                    rho_hist.push(1.0 / sy);
                }
                let done = (f - f_new).abs() <= 1e-10 * f.abs().max(1.0);
                std::mem::swap(&mut w, &mut w_new);
                std::mem::swap(&mut g, &mut g_new);
                f = f_new;
                if done {
                    return w;
                }
                break;
            }
            step *= 0.5;
        }
        if !accepted {
            break;
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    /// `n` rows of `dim` values from N(mean, 1) per coordinate, by Box-Muller.
    fn gaussian(rng: &mut StdRng, n: usize, dim: usize, mean: impl Fn(usize) -> f64) -> Vec<f32> {
        (0..n * dim)
            .map(|i| {
                let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
                (mean(i % dim) + (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
            })
            .collect()
    }

    #[test]
    fn same_distribution_gives_a_near_zero() {
        let mut rng = StdRng::seed_from_u64(1);
        let s = gaussian(&mut rng, 300, 20, |_| 0.0);
        let t = gaussian(&mut rng, 300, 20, |_| 0.0);
        let a = proxy_a_distance(&s, &t, 20, 7).unwrap();
        assert!(a.a_distance < 0.3, "{a:?}");
        assert!(a.test_error > 0.4, "{a:?}");
    }

    #[test]
    fn separated_distributions_give_a_near_two() {
        let mut rng = StdRng::seed_from_u64(2);
        let s = gaussian(&mut rng, 300, 20, |_| 0.0);
        let t = gaussian(&mut rng, 300, 20, |k| if k < 3 { 4.0 } else { 0.0 });
        let a = proxy_a_distance(&s, &t, 20, 7).unwrap();
        assert!(a.a_distance > 1.8, "{a:?}");
    }

    #[test]
    fn partial_shift_lies_in_between_and_is_deterministic() {
        let mut rng = StdRng::seed_from_u64(3);
        let s = gaussian(&mut rng, 400, 20, |_| 0.0);
        // A shift of one standard deviation along one axis: Bayes error about 0.31.
        let t = gaussian(&mut rng, 400, 20, |k| if k == 0 { 1.0 } else { 0.0 });
        let a = proxy_a_distance(&s, &t, 20, 11).unwrap();
        assert!(a.a_distance > 0.3 && a.a_distance < 1.5, "{a:?}");
        assert_eq!(a, proxy_a_distance(&s, &t, 20, 11).unwrap());
        assert!(L2_GRID.contains(&a.l2));
        let json = serde_json::to_string(&a).unwrap();
        assert!(json.contains("\"a_distance\"") && json.contains("\"l2\""), "{json}");
    }

    #[test]
    fn unequal_domain_sizes_are_not_rewarded_for_guessing() {
        let mut rng = StdRng::seed_from_u64(4);
        let s = gaussian(&mut rng, 400, 10, |_| 0.0);
        let t = gaussian(&mut rng, 60, 10, |_| 0.0);
        let a = proxy_a_distance(&s, &t, 10, 5).unwrap();
        assert!(a.a_distance < 0.5, "{a:?}");
    }

    #[test]
    fn bad_inputs_are_errors() {
        let ok = vec![0.5f32; 40];
        let msg = |r: Result<ADistance>| r.unwrap_err().to_string();
        assert!(msg(proxy_a_distance(&[], &ok, 4, 0)).contains("source features are empty"));
        assert!(msg(proxy_a_distance(&ok, &[], 4, 0)).contains("target features are empty"));
        assert!(msg(proxy_a_distance(&ok, &ok, 0, 0)).contains("dimension is 0"));
        assert!(msg(proxy_a_distance(&ok, &ok[..39], 4, 0)).contains("not rows of dimension 4"));
        assert!(msg(proxy_a_distance(&ok[..12], &ok, 4, 0)).contains("at least 4"));
        let mut bad = ok.clone();
        bad[9] = f32::NAN;
        assert!(msg(proxy_a_distance(&ok, &bad, 4, 0)).contains("target row 2 column 1 is not finite"));
        bad[9] = f32::INFINITY;
        assert!(msg(proxy_a_distance(&bad, &ok, 4, 0)).contains("source row 2 column 1 is not finite"));
    }

    #[test]
    fn constant_features_are_harmless() {
        // ReLU features are often zero in both domains; they must not produce NaNs.
        let mut rng = StdRng::seed_from_u64(5);
        let mut s = gaussian(&mut rng, 100, 8, |_| 0.0);
        let mut t = gaussian(&mut rng, 100, 8, |k| if k == 0 { 5.0 } else { 0.0 });
        for row in s.chunks_exact_mut(8).chain(t.chunks_exact_mut(8)) {
            row[7] = 0.0;
        }
        let a = proxy_a_distance(&s, &t, 8, 1).unwrap();
        assert!(a.a_distance > 1.8, "{a:?}");
    }

    #[test]
    fn timing_mnist_sized_features() {
        // 500 + 500 points of the MNIST net's 2352 features; printed, not asserted.
        let mut rng = StdRng::seed_from_u64(6);
        let dim = 2352;
        let s: Vec<f32> = gaussian(&mut rng, 500, dim, |_| 0.0).into_iter().map(|v| v.max(0.0)).collect();
        let t: Vec<f32> = gaussian(&mut rng, 500, dim, |k| if k % 50 == 0 { 0.5 } else { 0.0 })
            .into_iter()
            .map(|v| v.max(0.0))
            .collect();
        let start = std::time::Instant::now();
        let a = proxy_a_distance(&s, &t, dim, 0).unwrap();
        println!("proxy A-distance, 500+500 x {dim}: {:.3} s, {a:?}", start.elapsed().as_secs_f64());
    }
}
