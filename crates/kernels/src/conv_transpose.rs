//! Transposed 2D convolution (PyTorch's `ConvTranspose2d`, no bias, no output padding, no
//! dilation) with a fast CPU forward and backward as candle custom ops.
//!
//! candle 0.11's CPU `conv_transpose2d` is a direct loop, and its backward runs two candle
//! convolutions (no GEMM in the forward pass either), which made a DCGAN-style generator the
//! slowest part of its training step. A transposed convolution is the input gradient of the
//! convolution with the same weight and geometry, so the same im2col + GEMM machinery does all
//! three passes. Seen as that convolution, the transposed op's *output* `[N, O, OH, OW]` is the
//! convolution's input, its *input* `[N, C, H, W]` the convolution's output, and its weight
//! `[C, O, K, K]` the convolution's weight `[C, O*K*K]`:
//!
//! * forward: `dcols[O*K*K, nb*P] = W^T * x[C, nb*P]`, then col2im adds the columns into the
//!   output (`P = H*W`, `nb` images per chunk, `x` regrouped channel-major);
//! * backward: `cols_t[nb*P, O*K*K] = im2col(dy)` (patch-major), then the input gradient
//!   `dx[C, nb*P] = W * cols_t^T` and the weight gradient `dW[C, O*K*K] += x[C, nb*P] * cols_t`;
//!   one im2col serves both.
//!
//! Chunks of whole images run in parallel on rayon, each with a single-threaded GEMM on its own
//! scratch buffers; weight gradients go into one accumulator per worker, summed at the end.
//!
//! A transposed convolution is the adjoint of a convolution: with `conv` the convolution from
//! `[N, O, OH, OW]` to `[N, C, H, W]` whose weight is the same `[C, O, K, K]` tensor, the forward
//! pass is `conv`'s input gradient, the input gradient is `conv`'s forward pass, and the weight
//! gradient is `conv`'s weight gradient with the roles of input and output gradient swapped. So
//! the kernels of `conv.rs` serve all three products.
use crate::backend::Backend;
use crate::conv::{self, Geom, Need};
use crate::glue::{f32_slice, packed_grads, unpack_grads};
use crate::profile::{self, Kernel};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use serde::{Deserialize, Serialize};

/// Geometry of a transposed convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvTranspose2dParams {
    pub stride: usize,
    /// PyTorch's `padding`: rows and columns removed from each side of the full output.
    pub padding: usize,
}

impl Default for ConvTranspose2dParams {
    fn default() -> Self {
        Self { stride: 1, padding: 0 }
    }
}

impl ConvTranspose2dParams {
    /// Output size for an input of size `n` and kernel `k`: `(n - 1) * stride - 2 * padding + k`.
    pub fn out_size(&self, n: usize, k: usize) -> usize {
        (n - 1) * self.stride + k - 2 * self.padding
    }
}

/// Transposed convolution of `xs` `[N, C, H, W]` with `w` `[C, O, K, K]` (PyTorch's layout):
/// output `[N, O, (H - 1) * stride - 2 * padding + K, ...]`. Fast kernels for f32 on the CPU,
/// candle's `conv_transpose2d` elsewhere.
pub fn conv_transpose2d(xs: &Tensor, w: &Tensor, p: ConvTranspose2dParams) -> Result<Tensor> {
    conv_transpose2d_with(xs, w, p, Backend::Auto)
}

/// [`conv_transpose2d`] with an explicit [`Backend`].
pub fn conv_transpose2d_with(xs: &Tensor, w: &Tensor, p: ConvTranspose2dParams, backend: Backend) -> Result<Tensor> {
    let g = TGeom::new(xs.shape(), w.shape(), p)?;
    if backend.use_fast(xs, "conv_transpose2d")? {
        if w.dtype() != xs.dtype() || !w.device().same_device(xs.device()) {
            candle_core::bail!("conv_transpose2d: weight is {:?} on {:?}, input f32 on the CPU", w.dtype(), w.device());
        }
        xs.contiguous()?.apply_op2(&w.contiguous()?, ConvTranspose2dOp { geom: g })
    } else {
        xs.conv_transpose2d(w, p.padding, 0, p.stride, 1)
    }
}

/// Shapes of one transposed convolution: input `[n, c, h, w]`, weight `[c, o, k, k]`, output
/// `[n, o, oh, ow]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TGeom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    k: usize,
    stride: usize,
    pad: usize,
    oh: usize,
    ow: usize,
}

impl TGeom {
    fn new(x: &Shape, w: &Shape, p: ConvTranspose2dParams) -> Result<Self> {
        let (n, c, h, wd) = x.dims4()?;
        let (c_k, o, kh, kw) = w.dims4()?;
        if c != c_k {
            candle_core::bail!("conv_transpose2d: input has {c} channels, kernel expects {c_k}");
        }
        if kh != kw {
            candle_core::bail!("conv_transpose2d: square kernels only, got {kh}x{kw}");
        }
        if p.stride == 0 {
            candle_core::bail!("conv_transpose2d: stride must be positive");
        }
        if h == 0 || wd == 0 {
            candle_core::bail!("conv_transpose2d: empty input {:?}", x.dims());
        }
        let full = |n: usize| (n - 1) * p.stride + kh;
        if full(h) <= 2 * p.padding || full(wd) <= 2 * p.padding {
            candle_core::bail!(
                "conv_transpose2d: padding {} leaves no output for a {h}x{wd} input and kernel {kh}",
                p.padding
            );
        }
        Ok(Self {
            n,
            c,
            h,
            w: wd,
            o,
            k: kh,
            stride: p.stride,
            pad: p.padding,
            oh: p.out_size(h, kh),
            ow: p.out_size(wd, kw),
        })
    }
    /// The convolution this one is the adjoint of: from `[n, o, oh, ow]` to `[n, c, h, w]`.
    fn adjoint(&self) -> Result<Geom> {
        let g = Geom::new(
            &Shape::from((self.n, self.o, self.oh, self.ow)),
            &Shape::from((self.c, self.o, self.k, self.k)),
            self.stride,
            self.pad,
        )?;
        if (g.oh, g.ow) != (self.h, self.w) {
            candle_core::bail!("conv_transpose2d: internal size mismatch {:?} vs {}x{}", (g.oh, g.ow), self.h, self.w);
        }
        Ok(g)
    }
}

/// Forward pass: `y[N, O, OH, OW]`, the adjoint convolution's input gradient for `x`.
fn forward(g: &TGeom, x: &[f32], w: &[f32]) -> Result<Vec<f32>> {
    let need = Need { dx: true, dw: false, db: false };
    let grads = conv::backward(&g.adjoint()?, (&[], w), x, None, None, need);
    grads.dx.ok_or_else(|| candle_core::Error::msg("conv_transpose2d: no output"))
}

/// Backward pass: `(dx, dw)`, each only when asked for (else empty).
fn backward(g: &TGeom, x: &[f32], w: &[f32], dy: &[f32], need_dx: bool, need_dw: bool) -> Result<(Vec<f32>, Vec<f32>)> {
    let adj = g.adjoint()?;
    let dx = if need_dx { conv::forward(&adj, dy, w, None, false, None).0 } else { Vec::new() };
    let dw = if need_dw {
        let need = Need { dx: false, dw: true, db: false };
        conv::backward(&adj, (dy, w), x, None, None, need).dw.unwrap_or_default()
    } else {
        Vec::new()
    };
    Ok((dx, dw))
}

/// The forward op: `(x, w) -> conv_transpose2d(x, w)`.
struct ConvTranspose2dOp {
    geom: TGeom,
}

impl CustomOp2 for ConvTranspose2dOp {
    fn name(&self) -> &'static str {
        "adapt-conv-transpose2d"
    }

    fn cpu_fwd(&self, sx: &CpuStorage, lx: &Layout, sw: &CpuStorage, lw: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.geom;
        let x = f32_slice(sx, lx, "conv_transpose2d input")?;
        let w = f32_slice(sw, lw, "conv_transpose2d weight")?;
        let y = profile::timed(Kernel::ConvTransposeForward, || forward(&g, x, w))?;
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.o, g.oh, g.ow))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (need_dx, need_dw) = (x.track_op(), w.track_op());
        if !(need_dx || need_dw) {
            return Ok((None, None));
        }
        let op = ConvTranspose2dBackward { geom: self.geom, need_dx, need_dw };
        // One pass returns [dx | dw] flattened (a part not asked for has length 0).
        let packed = x.apply_op3_no_bwd(w, &grad_res.contiguous()?, &op)?;
        let [dx, dw] = unpack_grads(&packed, [x, w], [need_dx, need_dw])?;
        Ok((dx, dw))
    }
}

/// The backward op: `(x, w, grad_y) -> [dx | dw]`.
struct ConvTranspose2dBackward {
    geom: TGeom,
    need_dx: bool,
    need_dw: bool,
}

impl CustomOp3 for ConvTranspose2dBackward {
    fn name(&self) -> &'static str {
        "adapt-conv-transpose2d-backward"
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sw: &CpuStorage,
        lw: &Layout,
        sg: &CpuStorage,
        lg: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.geom;
        let x = f32_slice(sx, lx, "conv_transpose2d backward input")?;
        let w = f32_slice(sw, lw, "conv_transpose2d backward weight")?;
        let dy = f32_slice(sg, lg, "conv_transpose2d backward gradient")?;
        if dy.len() != g.n * g.o * g.oh * g.ow {
            candle_core::bail!(
                "conv_transpose2d backward: gradient has {} elements, expected {}",
                dy.len(),
                g.n * g.o * g.oh * g.ow
            );
        }
        let (dx, dw) =
            profile::timed(Kernel::ConvTransposeBackward, || backward(&g, x, w, dy, self.need_dx, self.need_dw))?;
        Ok(packed_grads([dx, dw]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_close, flat, tensor, values};
    use candle_core::{Device, Var};

    /// `(n, c, h, w, o, k, stride, padding)`.
    type Case = (usize, usize, usize, usize, usize, usize, usize, usize);

    /// Odd sizes, batch 1, strides that leave remainders, padding larger than the stride, and the
    /// layers of a DCGAN-style generator (kernel 2 on a 1x1 input, then kernel 4, stride 2,
    /// padding 1) at a small batch.
    const CASES: &[Case] = &[
        (2, 3, 5, 7, 4, 3, 1, 1),
        (1, 2, 3, 4, 5, 4, 2, 1),
        (3, 4, 5, 5, 2, 3, 2, 0),
        (1, 5, 1, 1, 6, 2, 1, 0),
        (2, 3, 4, 3, 3, 5, 3, 2),
        (1, 1, 6, 5, 1, 3, 2, 2),
        (3, 16, 1, 1, 8, 2, 1, 0),
        (2, 8, 4, 4, 4, 4, 2, 1),
        (5, 6, 8, 8, 3, 4, 2, 1),
    ];

    /// Output and gradients of `sum(y * r)` with respect to `x` and `w`.
    fn run(case: usize, backend: Backend) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (n, c, h, w, o, k, stride, padding) = CASES[case];
        let seed = 10 * case as u64;
        let x = Var::from_tensor(&tensor(&[n, c, h, w], seed)).unwrap();
        let wt = Var::from_tensor(&(tensor(&[c, o, k, k], seed + 1) * 0.5).unwrap()).unwrap();
        let p = ConvTranspose2dParams { stride, padding };
        let y = conv_transpose2d_with(x.as_tensor(), wt.as_tensor(), p, backend).unwrap();
        assert_eq!(y.dims(), &[n, o, p.out_size(h, k), p.out_size(w, k)], "case {case} shape");
        let r = tensor(y.dims(), seed + 2);
        let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        (flat(&y), flat(grads.get(x.as_tensor()).unwrap()), flat(grads.get(wt.as_tensor()).unwrap()))
    }

    #[test]
    fn fast_matches_candle_values_and_gradients() {
        for case in 0..CASES.len() {
            let (fy, fdx, fdw) = run(case, Backend::Fast);
            let (cy, cdx, cdw) = run(case, Backend::Candle);
            assert_close(&fy, &cy, 1e-4, &format!("case {case} y"));
            assert_close(&fdx, &cdx, 1e-4, &format!("case {case} dx"));
            assert_close(&fdw, &cdw, 1e-4, &format!("case {case} dw"));
        }
    }

    /// Every output pixel against the definition `y[n,o,i*s+ki-p, j*s+kj-p] += x[n,c,i,j] w[c,o,ki,kj]`
    /// (candle could share a bug with us in principle).
    #[test]
    fn fast_matches_the_definition() {
        let (n, c, h, w, o, k, stride, padding) = CASES[4];
        let p = ConvTranspose2dParams { stride, padding };
        let (oh, ow) = (p.out_size(h, k), p.out_size(w, k));
        let x = values(n * c * h * w, 40);
        let wt = values(c * o * k * k, 41);
        let mut y = vec![0f64; n * o * oh * ow];
        for b in 0..n {
            for ch in 0..c {
                for i in 0..h {
                    for j in 0..w {
                        for oc in 0..o {
                            for ki in 0..k {
                                for kj in 0..k {
                                    let (yy, yx) = (
                                        (i * stride + ki) as isize - padding as isize,
                                        (j * stride + kj) as isize - padding as isize,
                                    );
                                    if yy < 0 || yx < 0 || yy as usize >= oh || yx as usize >= ow {
                                        continue;
                                    }
                                    y[((b * o + oc) * oh + yy as usize) * ow + yx as usize] +=
                                        x[((b * c + ch) * h + i) * w + j] as f64
                                            * wt[((ch * o + oc) * k + ki) * k + kj] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
        let xs = Tensor::from_vec(x, (n, c, h, w), &Device::Cpu).unwrap();
        let ws = Tensor::from_vec(wt, (c, o, k, k), &Device::Cpu).unwrap();
        let got = flat(&conv_transpose2d_with(&xs, &ws, p, Backend::Fast).unwrap());
        let want: Vec<f32> = y.into_iter().map(|v| v as f32).collect();
        assert_close(&got, &want, 1e-5, "definition");
    }

    #[test]
    fn input_gradient_is_skipped_for_constant_inputs() {
        let x = tensor(&[2, 3, 4, 4], 1);
        let w = Var::from_tensor(&tensor(&[3, 2, 4, 4], 2)).unwrap();
        let p = ConvTranspose2dParams { stride: 2, padding: 1 };
        let grads = conv_transpose2d(&x, w.as_tensor(), p).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(grads.get(&x).is_none());
        let cand = x.conv_transpose2d(w.as_tensor(), 1, 0, 2, 1).unwrap().sum_all().unwrap().backward().unwrap();
        assert_close(&flat(grads.get(w.as_tensor()).unwrap()), &flat(cand.get(w.as_tensor()).unwrap()), 1e-4, "dw");
    }

    #[test]
    fn bad_shapes_are_errors() {
        let x = tensor(&[1, 3, 4, 4], 1);
        let p = ConvTranspose2dParams { stride: 2, padding: 1 };
        assert!(conv_transpose2d(&x, &tensor(&[2, 3, 4, 4], 2), p).is_err(), "channel mismatch");
        assert!(conv_transpose2d(&x, &tensor(&[3, 3, 4, 3], 2), p).is_err(), "non-square kernel");
        let huge_pad = ConvTranspose2dParams { stride: 1, padding: 3 };
        assert!(conv_transpose2d(&tensor(&[1, 3, 1, 1], 1), &tensor(&[3, 2, 2, 2], 2), huge_pad).is_err());
        assert!(
            conv_transpose2d(&x, &tensor(&[3, 2, 4, 4], 2), ConvTranspose2dParams { stride: 0, padding: 0 }).is_err()
        );
    }
}
