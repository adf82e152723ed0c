//! The DANN authors' 2D toy: two interleaving moons as the source, a rotated copy as the target.
//!
//! Source and target are drawn from the same moons generator with different seeds, centred on the
//! source mean and scaled (by 2 as in the paper); the target is then rotated (35 degrees in the
//! paper). Separate seeds give separate test sets, so accuracies are measured on unseen points.
use crate::{DatasetError, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

/// Labelled points in the plane.
#[derive(Debug, Clone, PartialEq)]
pub struct Points2d {
    pub points: Vec<[f32; 2]>,
    pub labels: Vec<u32>,
}

impl Points2d {
    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The points as one row-major `[N, 2]` buffer.
    pub fn flat(&self) -> Vec<f32> {
        self.points.iter().flat_map(|p| *p).collect()
    }

    /// Mean of the points.
    pub fn mean(&self) -> [f64; 2] {
        let n = self.len().max(1) as f64;
        let (sx, sy) = self.points.iter().fold((0.0, 0.0), |(sx, sy), p| (sx + p[0] as f64, sy + p[1] as f64));
        [sx / n, sy / n]
    }
}

/// Parameters of the rotated-moons experiment; the defaults are the paper's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RotatedMoonsConfig {
    /// Points per set (source train, source test, target train, target test each).
    pub count: usize,
    /// Standard deviation of the Gaussian noise added to each coordinate.
    pub noise: f64,
    /// Rotation of the target domain, in degrees.
    pub angle_degrees: f64,
    /// Scale applied after centring on the source mean.
    pub scale: f64,
    pub seed: u64,
}

impl Default for RotatedMoonsConfig {
    fn default() -> Self {
        Self { count: 150, noise: 0.05, angle_degrees: 35.0, scale: 2.0, seed: 0 }
    }
}

/// The four splits of the experiment. Target labels are kept for evaluation only.
#[derive(Debug, Clone, PartialEq)]
pub struct RotatedMoons {
    pub source_train: Points2d,
    pub source_test: Points2d,
    pub target_train: Points2d,
    pub target_test: Points2d,
}

/// scikit-learn's `make_moons`: an upper half circle (label 0) and a lower one shifted right and
/// down (label 1), with `n / 2` points each (the upper moon gets the odd one), evenly spaced in
/// angle, plus Gaussian noise, shuffled.
pub fn make_moons(count: usize, noise: f64, seed: u64) -> Result<Points2d> {
    if count < 2 {
        return Err(DatasetError::InvalidParameters(format!("moons need at least 2 points, got {count}")));
    }
    if !(noise.is_finite() && noise >= 0.0) {
        return Err(DatasetError::InvalidParameters(format!("noise must be finite and >= 0, got {noise}")));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let n_out = count.div_ceil(2);
    let n_in = count - n_out;
    let spaced = |k: usize, i: usize| if k <= 1 { 0.0 } else { std::f64::consts::PI * i as f64 / (k - 1) as f64 };
    let mut pts: Vec<([f64; 2], u32)> = Vec::with_capacity(count);
    for i in 0..n_out {
        let t = spaced(n_out, i);
        pts.push(([t.cos(), t.sin()], 0));
    }
    for i in 0..n_in {
        let t = spaced(n_in, i);
        pts.push(([1.0 - t.cos(), 1.0 - t.sin() - 0.5], 1));
    }
    let normal = Normal::new(0.0, noise.max(f64::MIN_POSITIVE))
        .map_err(|e| DatasetError::InvalidParameters(format!("noise {noise}: {e}")))?;
    for (p, _) in pts.iter_mut() {
        if noise > 0.0 {
            p[0] += normal.sample(&mut rng);
            p[1] += normal.sample(&mut rng);
        }
    }
    // Fisher-Yates, so the order carries no label information.
    for i in (1..pts.len()).rev() {
        let j = rng.random_range(0..=i);
        pts.swap(i, j);
    }
    Ok(Points2d {
        points: pts.iter().map(|(p, _)| [p[0] as f32, p[1] as f32]).collect(),
        labels: pts.iter().map(|(_, l)| *l).collect(),
    })
}

fn transform(set: &Points2d, mean: [f64; 2], scale: f64, angle_rad: f64) -> Points2d {
    let (s, c) = angle_rad.sin_cos();
    let points = set
        .points
        .iter()
        .map(|p| {
            let x = (p[0] as f64 - mean[0]) * scale;
            let y = (p[1] as f64 - mean[1]) * scale;
            [(c * x - s * y) as f32, (s * x + c * y) as f32]
        })
        .collect();
    Points2d { points, labels: set.labels.clone() }
}

impl RotatedMoons {
    /// Generates the four splits. Deterministic for a given config.
    pub fn generate(cfg: &RotatedMoonsConfig) -> Result<Self> {
        if !(cfg.angle_degrees.is_finite() && cfg.scale.is_finite() && cfg.scale > 0.0) {
            return Err(DatasetError::InvalidParameters(format!(
                "angle must be finite and scale finite and > 0, got angle {} scale {}",
                cfg.angle_degrees, cfg.scale
            )));
        }
        // Four independent streams derived from the one seed.
        let sub = |k: u64| cfg.seed.wrapping_mul(4).wrapping_add(k);
        let source_train = make_moons(cfg.count, cfg.noise, sub(0))?;
        let source_test = make_moons(cfg.count, cfg.noise, sub(1))?;
        let target_train = make_moons(cfg.count, cfg.noise, sub(2))?;
        let target_test = make_moons(cfg.count, cfg.noise, sub(3))?;
        let mean = source_train.mean();
        let angle = cfg.angle_degrees.to_radians();
        Ok(Self {
            source_train: transform(&source_train, mean, cfg.scale, 0.0),
            source_test: transform(&source_test, mean, cfg.scale, 0.0),
            target_train: transform(&target_train, mean, cfg.scale, angle),
            target_test: transform(&target_test, mean, cfg.scale, angle),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moons_have_the_right_counts_and_balance() {
        let m = make_moons(151, 0.05, 3).unwrap();
        assert_eq!(m.len(), 151);
        assert_eq!(m.labels.iter().filter(|l| **l == 0).count(), 76);
        assert_eq!(m.labels.iter().filter(|l| **l == 1).count(), 75);
    }

    #[test]
    fn noiseless_moons_lie_on_their_circles() {
        let m = make_moons(100, 0.0, 1).unwrap();
        for (p, l) in m.points.iter().zip(&m.labels) {
            let (cx, cy) = if *l == 0 { (0.0, 0.0) } else { (1.0, 0.5) };
            let r = ((p[0] - cx).powi(2) + (p[1] - cy).powi(2)).sqrt();
            assert!((r - 1.0).abs() < 1e-5, "{p:?} label {l}");
            // Upper moon above its centre, lower moon below.
            if *l == 0 {
                assert!(p[1] >= -1e-6);
            } else {
                assert!(p[1] <= 0.5 + 1e-6);
            }
        }
    }

    #[test]
    fn generation_is_deterministic_and_seed_dependent() {
        let cfg = RotatedMoonsConfig::default();
        assert_eq!(RotatedMoons::generate(&cfg).unwrap(), RotatedMoons::generate(&cfg).unwrap());
        let other = RotatedMoons::generate(&RotatedMoonsConfig { seed: 1, ..cfg.clone() }).unwrap();
        assert_ne!(other.source_train, RotatedMoons::generate(&cfg).unwrap().source_train);
    }

    #[test]
    fn target_is_the_rotated_source_distribution() {
        let cfg = RotatedMoonsConfig { count: 2000, noise: 0.0, ..Default::default() };
        let d = RotatedMoons::generate(&cfg).unwrap();
        // Source is centred (on its own mean) and scaled by 2.
        let m = d.source_train.mean();
        assert!(m[0].abs() < 1e-4 && m[1].abs() < 1e-4, "{m:?}");
        // Rotating the target back by 35 degrees puts its points on the source's moons: the
        // noiseless generator gives (nearly) the same point sets.
        let back = transform(&d.target_train, [0.0, 0.0], 1.0, -cfg.angle_degrees.to_radians());
        let mut a: Vec<_> =
            back.points.iter().map(|p| ((p[0] * 100.0).round() as i32, (p[1] * 100.0).round() as i32)).collect();
        let mut b: Vec<_> = d
            .source_train
            .points
            .iter()
            .map(|p| ((p[0] * 100.0).round() as i32, (p[1] * 100.0).round() as i32))
            .collect();
        a.sort();
        b.sort();
        let same = a.iter().zip(&b).filter(|(x, y)| (x.0 - y.0).abs() <= 1 && (x.1 - y.1).abs() <= 1).count();
        assert!(same as f64 > 0.99 * a.len() as f64, "{same} of {}", a.len());
        // And the rotation is real: the target's mean direction differs from the source's.
        let t = d.target_train.mean();
        assert!(t[0].abs() < 1e-3 && t[1].abs() < 1e-3);
        let differs =
            d.target_train.points.iter().zip(&d.source_train.points).filter(|(p, q)| (p[0] - q[0]).abs() > 0.1).count();
        assert!(differs > 1000);
    }

    #[test]
    fn bad_parameters_are_errors() {
        assert!(make_moons(1, 0.05, 0).is_err());
        assert!(make_moons(10, -1.0, 0).is_err());
        assert!(make_moons(10, f64::NAN, 0).is_err());
        let bad = RotatedMoonsConfig { scale: 0.0, ..Default::default() };
        assert!(RotatedMoons::generate(&bad).is_err());
    }
}
