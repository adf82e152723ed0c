//! The per-channel arithmetic of a training-mode BatchNorm that both fused CPU kernels run (the
//! plain one in `batch_norm` and the one with a max-pool and a LeakyReLU behind it): the
//! batch mean and biased variance, the scale and shift they normalise with, the two gradient
//! sums of the backward pass and the input gradient formula. One routine for both keeps the
//! fused block bit-identical to the unfused ops by construction.
//!
//! Sums are f64, one chain of additions per channel folded image by image and then over the
//! plane, so a channel's statistics do not depend on how channels are grouped or scheduled.
use rayon::prelude::*;

/// The `eps` added to the variance (PyTorch's default).
pub(crate) const EPS: f64 = 1e-5;

/// Channels whose sums run side by side. Each channel's sum is still one chain of f64 additions
/// in the same order (so the statistics are bit-identical), but where one chain waits on the
/// latency of its previous addition, eight independent ones keep the adders busy: the sums were
/// most of a BatchNorm's time.
pub(crate) const GROUP: usize = 8;

/// Calls `full(first_channel)` for groups of [`GROUP`] channels and then `single(channel)` for
/// the rest, covering all `c`, in parallel.
pub(crate) fn per_group(c: usize, full: impl Fn(usize) + Sync + Send, single: impl Fn(usize) + Sync + Send) {
    let groups = c / GROUP;
    (0..groups + c % GROUP)
        .into_par_iter()
        .for_each(|g| if g < groups { full(g * GROUP) } else { single(groups * GROUP + g - groups) });
}

/// `Iterator::sum`'s starting value for f64 (the sums below fold exactly as it does).
fn sum_zero() -> f64 {
    std::iter::empty::<f64>().sum()
}

/// For the `G` channels from `c0`: `sum over images i of (sum over the plane (i, c0 + k) of
/// f(k, v))`, each folded like `Iterator::sum`, plane by plane.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // `j` walks G planes at once
fn plane_sums<const G: usize>(
    x: &[f32],
    (n, c, hw): (usize, usize, usize),
    c0: usize,
    f: impl Fn(usize, f32) -> f64,
) -> [f64; G] {
    let zero = sum_zero();
    let mut total = [zero; G];
    for i in 0..n {
        let planes: [&[f32]; G] = std::array::from_fn(|k| &x[(i * c + c0 + k) * hw..][..hw]);
        let mut acc = [zero; G];
        for j in 0..hw {
            for k in 0..G {
                acc[k] += f(k, planes[k][j]);
            }
        }
        for k in 0..G {
            total[k] += acc[k];
        }
    }
    total
}

/// The batch mean and biased variance of the `G` channels from `c0` of `x` `[n, c, hw]`, over
/// `m = n * hw` values each: two passes, f64 sums.
#[inline(always)]
pub(crate) fn mean_var<const G: usize>(x: &[f32], dims: (usize, usize, usize), c0: usize) -> ([f64; G], [f64; G]) {
    let m = (dims.0 * dims.2) as f64;
    let mu = plane_sums::<G>(x, dims, c0, |_, v| v as f64).map(|s| s / m);
    let var = plane_sums::<G>(x, dims, c0, |k, v| (v as f64 - mu[k]) * (v as f64 - mu[k])).map(|s| s / m);
    (mu, var)
}

/// `(scale, shift)` of the normalisation `y = x * scale + shift` for a channel with these
/// parameters and batch statistics.
#[inline(always)]
pub(crate) fn scale_shift(weight: f32, bias: f32, mean: f64, var: f64) -> (f32, f32) {
    let scale = weight / (var + EPS).sqrt() as f32;
    (scale, bias - mean as f32 * scale)
}

/// The backward pass's two sums for `G` channels: `sum(dy)` and `sum(dy (x - mean))`, one f64
/// chain each per channel.
pub(crate) struct GradSums<const G: usize> {
    sum_dy: [f64; G],
    sum_dy_xc: [f64; G],
}

impl<const G: usize> GradSums<G> {
    pub(crate) fn new() -> Self {
        Self { sum_dy: [0.0; G], sum_dy_xc: [0.0; G] }
    }

    /// Adds one image's planes: the gradients `dy`, the inputs `x` (`hw` values each) and the
    /// channels' batch means.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // `j` walks G planes at once
    pub(crate) fn add(&mut self, dy: [&[f32]; G], x: [&[f32]; G], mean: &[f32; G], hw: usize) {
        for j in 0..hw {
            for k in 0..G {
                let (g, v) = (dy[k][j], x[k][j]);
                self.sum_dy[k] += g as f64;
                self.sum_dy_xc[k] += g as f64 * (v - mean[k]) as f64;
            }
        }
    }

    /// The gradients of channel `k` of the group, whose weight, batch mean and biased variance
    /// these are, over `m` values.
    #[inline(always)]
    pub(crate) fn channel(&self, k: usize, weight: f32, mean: f32, var: f32, m: f64) -> ChannelGrad {
        let invstd = 1.0 / (var as f64 + EPS).sqrt();
        let sum_dy_xhat = self.sum_dy_xc[k] * invstd;
        let sum_dy = self.sum_dy[k];
        ChannelGrad {
            dweight: sum_dy_xhat as f32,
            dbias: sum_dy as f32,
            scale: (weight as f64 * invstd) as f32,
            mean_dy: (sum_dy / m) as f32,
            mean_dy_xhat: (sum_dy_xhat / m) as f32,
            mean,
            invstd: invstd as f32,
        }
    }
}

/// One channel's parameter gradients, and what its input gradient needs.
pub(crate) struct ChannelGrad {
    pub dweight: f32,
    pub dbias: f32,
    scale: f32,
    mean_dy: f32,
    mean_dy_xhat: f32,
    mean: f32,
    invstd: f32,
}

impl ChannelGrad {
    /// `dx = w invstd (dy - mean(dy) - xhat mean(dy xhat))`, `xhat = (x - mean) invstd`, for one
    /// plane of gradients `dy` and inputs `x`.
    #[inline(always)]
    pub(crate) fn input_grad(&self, dx: &mut [f32], dy: &[f32], x: &[f32]) {
        let (scale, a, b, mu, invstd) = (self.scale, self.mean_dy, self.mean_dy_xhat, self.mean, self.invstd);
        for ((o, &g), &v) in dx.iter_mut().zip(dy).zip(x) {
            *o = scale * (g - a - (v - mu) * invstd * b);
        }
    }
}
