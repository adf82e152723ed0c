//! 2D convolution ([`conv2d`]) and convolution fused with a max-pool ([`conv2d_max_pool2d`]):
//! im2col + GEMM on the CPU, forward and backward, as candle custom ops, and a fallback built
//! from candle's own ops for other devices and dtypes.
//!
//! Work is split into chunks of whole images; rayon runs the chunks in parallel and each chunk
//! calls a single-threaded GEMM on its own scratch buffers:
//!
//! * forward: `cols[K, nb*P] = im2col(x)`, `tmp[O, nb*P] = W[O, K] * cols`, then the copy of
//!   `tmp` into the NCHW output adds the bias and applies the ReLU, or, with a fused max-pool,
//!   pools each output plane straight out of `tmp` and records the argmax;
//! * backward: the incoming gradient of the chunk is gathered into `g[O, nb*P]` (times the ReLU
//!   mask, scattered through the pooling argmax when the pool was fused), `dcols[K, nb*P] = W^T *
//!   g` is added back with col2im into the input gradient, `dW[O, K] += g * cols^T` and
//!   `db[O] += rowsum(g)` go into one accumulator per rayon worker, summed at the end.
//!
//! `K = C*KH*KW`, `P = OH*OW` and `nb` is the number of images in a chunk (chosen so that the
//! scratch buffers stay around four megabytes, and there are enough chunks to balance the
//! threads). The files below hold the parts:
//!
//! * `passes`: the forward and backward passes over the chunks, and their GEMM calls
//!   ([`crate::gemm`], the `gemm` crate's AVX-512 kernels where the CPU has them);
//! * `im2col`: the unfolding of a chunk into GEMM columns and the folding back of their
//!   gradients, for any stride, and with stride 1 (most small convnets) on a zero-padded copy of
//!   the chunk, where each row is a run of plain `OW`-long copies;
//! * `rows`, `avx512`, `avx2`: those stride-1 row loops, portable and with SIMD moves;
//! * `geom`: the shapes of one convolution and its chunk size.
use crate::backend::Backend;
use crate::glue::{SideChannel, f32_slice, packed_grads, unpack_grads, with_cpu_f32};
use crate::pool::{check_pool, max_pool2d_with, pool_out};
use crate::profile::{self, Kernel};
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use serde::{Deserialize, Serialize};

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod geom;
mod im2col;
mod passes;
mod rows;

pub(crate) use geom::Geom;
use passes::{FusedPool, Grads};
pub(crate) use passes::{Need, backward, forward};

/// Geometry and fused epilogue of a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conv2dParams {
    pub stride: usize,
    /// Zero padding on each side of both spatial dimensions.
    pub padding: usize,
    /// Apply a ReLU to the output (after the bias).
    pub relu: bool,
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Self { stride: 1, padding: 0, relu: false }
    }
}

/// 2D convolution of `xs` `[N, C, H, W]` with `w` `[O, C, KH, KW]`, plus the optional bias
/// `[O]`, then a ReLU if `p.relu`. Output `[N, O, (H + 2p - KH)/s + 1, (W + 2p - KW)/s + 1]`.
pub fn conv2d(xs: &Tensor, w: &Tensor, bias: Option<&Tensor>, p: Conv2dParams) -> Result<Tensor> {
    conv2d_with(xs, w, bias, p, Backend::Auto)
}

/// [`conv2d`] with an explicit [`Backend`].
pub fn conv2d_with(
    xs: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    p: Conv2dParams,
    backend: Backend,
) -> Result<Tensor> {
    check_conv(xs, w, bias, p)?;
    if backend.use_fast(xs, "conv2d")? { conv2d_fast(xs, w, bias, p, None) } else { conv2d_candle(xs, w, bias, p) }
}

fn check_conv(xs: &Tensor, w: &Tensor, bias: Option<&Tensor>, p: Conv2dParams) -> Result<()> {
    let (_, c, h, wd) = xs.dims4()?;
    let (o, c_k, kh, kw) = w.dims4()?;
    if c != c_k {
        candle_core::bail!("conv2d: input has {c} channels, kernel expects {c_k}");
    }
    if p.stride == 0 {
        candle_core::bail!("conv2d: stride must be positive");
    }
    if h + 2 * p.padding < kh || wd + 2 * p.padding < kw {
        candle_core::bail!("conv2d: kernel {kh}x{kw} larger than the padded input {h}x{wd} (padding {})", p.padding);
    }
    if let Some(b) = bias
        && b.dims() != [o]
    {
        candle_core::bail!("conv2d: bias shape {:?}, expected [{o}]", b.dims());
    }
    Ok(())
}

/// [`conv2d`] followed by [`max_pool2d`](crate::max_pool2d)`(kernel, stride)`, fused on the
/// CPU: the pooling runs on the GEMM output while it is in cache, only the pooled tensor (and the
/// argmax) is kept, and the backward pass routes the gradient through the argmax straight into
/// the convolution's GEMMs, without the full-size intermediate tensors and their gradients.
pub fn conv2d_max_pool2d(
    xs: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    p: Conv2dParams,
    kernel: usize,
    stride: usize,
) -> Result<Tensor> {
    conv2d_max_pool2d_with(xs, w, bias, p, kernel, stride, Backend::Auto)
}

/// [`conv2d_max_pool2d`] with an explicit [`Backend`].
pub fn conv2d_max_pool2d_with(
    xs: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    p: Conv2dParams,
    kernel: usize,
    stride: usize,
    backend: Backend,
) -> Result<Tensor> {
    if !backend.use_fast(xs, "conv2d_max_pool2d")? {
        return max_pool2d_with(&conv2d_with(xs, w, bias, p, backend)?, kernel, stride, backend);
    }
    // Validate both halves with the unfused checks (cheap: shapes only).
    let (_, _, h, wd) = xs.dims4()?;
    let (_, _, kh, kw) = w.dims4()?;
    check_conv(xs, w, bias, p)?;
    let (oh, ow) = ((h + 2 * p.padding - kh) / p.stride + 1, (wd + 2 * p.padding - kw) / p.stride + 1);
    check_pool(oh, ow, kernel, stride)?;
    conv2d_fast(xs, w, bias, p, Some((kernel, stride)))
}

/// The candle fallback: `Tensor::conv2d`, bias broadcast, ReLU.
///
/// candle 0.11's conv2d backward derives the `conv_transpose2d` output padding of both spatial
/// dimensions from the height alone, so its input gradient has the wrong width when the stride
/// leaves a different remainder in the two dimensions. When the stride leaves any remainder, the
/// input is padded explicitly and cropped to the rows and columns the windows actually cover
/// (pad and narrow have correct gradients), which makes the fit exact.
fn conv2d_candle(xs: &Tensor, w: &Tensor, bias: Option<&Tensor>, p: Conv2dParams) -> Result<Tensor> {
    let (_, _, h, wd) = xs.dims4()?;
    let (_, _, kh, kw) = w.dims4()?;
    let (hp, wp) = (h + 2 * p.padding, wd + 2 * p.padding);
    let (h_used, w_used) = ((hp - kh) / p.stride * p.stride + kh, (wp - kw) / p.stride * p.stride + kw);
    let mut ys = if h_used == hp && w_used == wp {
        xs.conv2d(w, p.padding, p.stride, 1, 1)?
    } else {
        let xp = if p.padding > 0 {
            xs.pad_with_zeros(2, p.padding, p.padding)?.pad_with_zeros(3, p.padding, p.padding)?
        } else {
            xs.clone()
        };
        xp.narrow(2, 0, h_used)?.narrow(3, 0, w_used)?.conv2d(w, 0, p.stride, 1, 1)?
    };
    if let Some(b) = bias {
        ys = ys.broadcast_add(&b.reshape((1, b.dim(0)?, 1, 1))?)?;
    }
    if p.relu { relu_torch(&ys) } else { Ok(ys) }
}

/// ReLU whose gradient is 0 at 0, as in PyTorch (candle's `relu` passes the gradient at 0).
fn relu_torch(xs: &Tensor) -> Result<Tensor> {
    xs.relu()?.mul(&xs.gt(0.0)?.to_dtype(xs.dtype())?.detach())
}

/// The forward op: `(x, w, b) -> [max-pool](act(conv(x, w) + b))`.
struct Conv2dOp {
    params: Conv2dParams,
    /// `(kernel, stride)` of a fused max-pool.
    pool: Option<(usize, usize)>,
    /// The argmax of the fused max-pool, filled by the forward pass.
    argmax: SideChannel<Vec<u32>>,
}

impl Conv2dOp {
    fn fused_pool(&self, g: &Geom) -> Option<FusedPool> {
        self.pool.map(|(kernel, stride)| FusedPool {
            kernel,
            stride,
            ph: pool_out(g.oh, kernel, stride),
            pw: pool_out(g.ow, kernel, stride),
        })
    }
}

impl CustomOp3 for Conv2dOp {
    fn name(&self) -> &'static str {
        if self.pool.is_some() { "adapt-conv2d-max-pool2d" } else { "adapt-conv2d" }
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sw: &CpuStorage,
        lw: &Layout,
        sb: &CpuStorage,
        lb: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geom::new(lx.shape(), lw.shape(), self.params.stride, self.params.padding)?;
        let x = f32_slice(sx, lx, "conv2d input")?;
        let w = f32_slice(sw, lw, "conv2d weight")?;
        let b = f32_slice(sb, lb, "conv2d bias")?;
        let pool = self.fused_pool(&g);
        let (y, arg) = profile::timed(Kernel::ConvForward, || forward(&g, x, w, Some(b), self.params.relu, pool));
        if let Some(arg) = arg {
            self.argmax.record(arg);
        }
        let shape = match pool {
            Some(pl) => Shape::from((g.n, g.o, pl.ph, pl.pw)),
            None => Shape::from((g.n, g.o, g.oh, g.ow)),
        };
        Ok((CpuStorage::F32(y), shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let need = Need { dx: x.track_op(), dw: w.track_op(), db: b.track_op() };
        if !(need.dx || need.dw || need.db) {
            return Ok((None, None, None));
        }
        let grad_res = grad_res.contiguous()?;
        let op = Conv2dBackward {
            params: self.params,
            res: self.params.relu.then(|| res.clone()),
            pool: self.pool.map(|_| self.argmax.clone()),
            need,
        };
        // One fused pass returns [dx | dw | db] flattened (missing parts have length 0).
        let packed = x.apply_op3_no_bwd(w, &grad_res, &op)?;
        let [dx, dw, db] = unpack_grads(&packed, [x, w, b], [need.dx, need.dw, need.db])?;
        Ok((dx, dw, db))
    }
}

/// The backward op: `(x, w, grad_y) -> [dx | dw | db]` (flattened, only the parts in `need`).
struct Conv2dBackward {
    params: Conv2dParams,
    /// The forward output, when the ReLU was fused: its gradient is masked by `y > 0`.
    res: Option<Tensor>,
    /// The argmax of a fused max-pool.
    pool: Option<SideChannel<Vec<u32>>>,
    need: Need,
}

impl CustomOp3 for Conv2dBackward {
    fn name(&self) -> &'static str {
        "adapt-conv2d-backward"
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
        let g = Geom::new(lx.shape(), lw.shape(), self.params.stride, self.params.padding)?;
        let x = f32_slice(sx, lx, "conv2d backward input")?;
        let w = f32_slice(sw, lw, "conv2d backward weight")?;
        let gy = f32_slice(sg, lg, "conv2d backward gradient")?;
        let arg = match &self.pool {
            Some(a) => Some(a.recorded("conv2d backward pooling argmax")?.as_slice()),
            None => None,
        };
        let expected = arg.map_or(g.n * g.o * g.p(), <[u32]>::len);
        if gy.len() != expected || (arg.is_none() && gy.len() != g.n * g.o * g.p()) {
            candle_core::bail!("conv2d backward: gradient has {} elements, expected {expected}", gy.len());
        }
        let run = |y: Option<&[f32]>| -> Result<Grads> {
            if let Some(y) = y
                && y.len() != gy.len()
            {
                candle_core::bail!("conv2d backward: output has {} elements, gradient {}", y.len(), gy.len());
            }
            Ok(profile::timed(Kernel::ConvBackward, || backward(&g, (x, w), gy, y, arg, self.need)))
        };
        let grads = match &self.res {
            Some(res) => {
                let res = res.contiguous()?;
                with_cpu_f32(&res, "conv2d backward output", |y| run(Some(y)))?
            }
            None => run(None)?,
        };
        Ok(packed_grads([grads.dx, grads.dw, grads.db].map(Option::unwrap_or_default)))
    }
}

/// The fast convolution; shapes were checked by the caller.
pub(crate) fn conv2d_fast(
    xs: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    p: Conv2dParams,
    pool: Option<(usize, usize)>,
) -> Result<Tensor> {
    let xs = xs.contiguous()?;
    let w = w.contiguous()?;
    let b = match bias {
        Some(b) => b.contiguous()?,
        None => Tensor::zeros(w.dim(0)?, w.dtype(), w.device())?,
    };
    xs.apply_op3(&w, &b, Conv2dOp { params: p, pool, argmax: SideChannel::default() })
}
