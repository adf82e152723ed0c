//! Fast CPU kernels for candle, as custom ops with backward passes.
//!
//! candle 0.11's CPU convolution is slow (no GEMM in the forward pass, and a direct-loop
//! `conv_transpose2d` for the input gradient), its `max_pool2d` backward scales gradients by
//! `1/(k*k)`, and `max_pool2d_with_stride` has no backward at all. This crate provides:
//!
//! * [`conv2d`]: NCHW f32 convolution with stride, zero padding, optional fused bias and fused
//!   ReLU. On the CPU the forward pass, the input gradient and the weight gradient are all batched
//!   im2col + GEMM (the `gemm` crate candle itself uses), run in parallel over chunks of images
//!   with rayon; bias and ReLU are fused into the copy out of the GEMM buffer, the ReLU mask into
//!   the gather of the incoming gradient, and the input gradient is skipped when the input does
//!   not track gradients (the images fed to the first layer).
//! * [`max_pool2d`]: max-pooling with kernel `k` and stride `s` in PyTorch's floor mode
//!   (`MaxPool2d(k, s)`, no padding). The forward pass keeps the argmax of every window, the
//!   backward pass routes each gradient to it (ties go to the first maximum in scan order, as in
//!   PyTorch).
//! * [`conv2d_max_pool2d`]: the two fused, without the full-size convolution output.
//! * [`conv_transpose2d`]: PyTorch's `ConvTranspose2d` on the same im2col + GEMM machinery.
//! * [`linear`]: candle-nn's `Linear` as parallel blocked GEMMs.
//! * [`BatchNorm2d`]: spatial BatchNorm (PyTorch's semantics) with a fused training pass.
//! * [`sgd_momentum_update`]: PyTorch's momentum-SGD update, in place.
//! * [`profile`]: the wall time spent in each kernel.
//!
//! The ops pick their implementation with a [`Backend`]: [`Backend::Auto`] (the default
//! of the functions without a `_with` suffix) runs the fast kernels for f32 tensors on the CPU and
//! falls back to [`Backend::Candle`] elsewhere (CUDA, Metal, other dtypes). The candle fallback is
//! built only from candle ops with correct gradients: `Tensor::conv2d` (+ bias + ReLU) for the
//! convolution, and for pooling a stack of strided window views, `argmax` over the window and a
//! `gather` (so ties route to one element, like the fast kernel).
pub mod batch_norm;
mod conv;
pub mod conv_transpose;
mod glue;
mod linear;
mod pool;
pub mod profile;
mod sgd;

pub use batch_norm::BatchNorm2d;
pub use conv_transpose::{ConvTranspose2dParams, conv_transpose2d, conv_transpose2d_with};
pub use sgd::{SgdStep, sgd_momentum_update};

#[cfg(test)]
mod tests;

use candle_core::{D, DType, Device, Result, Tensor};
use serde::{Deserialize, Serialize};

/// Which implementation the `_with` functions (and [`BatchNorm2d`]) use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// The fast kernels on the CPU for f32, [`Backend::Candle`] otherwise.
    #[default]
    Auto,
    /// The fast CPU kernels; an error for tensors that are not f32 on the CPU.
    Fast,
    /// candle's own ops (with a correct max-pool built from them): any device, any float dtype.
    Candle,
}

impl Backend {
    pub(crate) fn use_fast(self, xs: &Tensor, what: &str) -> Result<bool> {
        let fast_ok = matches!(xs.device(), Device::Cpu) && xs.dtype() == DType::F32;
        match self {
            Backend::Auto => Ok(fast_ok),
            Backend::Candle => Ok(false),
            Backend::Fast if fast_ok => Ok(true),
            Backend::Fast => {
                candle_core::bail!(
                    "{what}: the fast kernels need f32 on the CPU, got {:?} on {:?}",
                    xs.dtype(),
                    xs.device()
                )
            }
        }
    }
}

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
    if backend.use_fast(xs, "conv2d")? {
        conv::conv2d_fast(xs, w, bias, p, None)
    } else {
        conv2d_candle(xs, w, bias, p)
    }
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

fn check_pool(h: usize, w: usize, kernel: usize, stride: usize) -> Result<()> {
    if kernel == 0 || stride == 0 {
        candle_core::bail!("max_pool2d: kernel and stride must be positive, got {kernel} and {stride}");
    }
    if h < kernel || w < kernel {
        candle_core::bail!("max_pool2d: kernel {kernel} larger than the input {h}x{w}");
    }
    Ok(())
}

/// [`conv2d`] followed by [`max_pool2d`]`(kernel, stride)`, fused on the CPU: the pooling runs on
/// the GEMM output while it is in cache, only the pooled tensor (and the argmax) is kept, and the
/// backward pass routes the gradient through the argmax straight into the convolution's GEMMs,
/// without the full-size intermediate tensors and their gradients.
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
    conv::conv2d_fast(xs, w, bias, p, Some((kernel, stride)))
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

/// Output size of a floor-mode pooling window of `kernel` with `stride` over `n` positions.
fn pool_out(n: usize, kernel: usize, stride: usize) -> usize {
    (n - kernel) / stride + 1
}

/// Max-pooling of `xs` `[N, C, H, W]` with a `kernel x kernel` window moved by `stride`, no
/// padding, floor mode (PyTorch's `MaxPool2d(kernel, stride)`): output
/// `[N, C, (H - kernel)/stride + 1, (W - kernel)/stride + 1]`.
pub fn max_pool2d(xs: &Tensor, kernel: usize, stride: usize) -> Result<Tensor> {
    max_pool2d_with(xs, kernel, stride, Backend::Auto)
}

/// [`max_pool2d`] with an explicit [`Backend`].
pub fn max_pool2d_with(xs: &Tensor, kernel: usize, stride: usize, backend: Backend) -> Result<Tensor> {
    let (_, _, h, w) = xs.dims4()?;
    check_pool(h, w, kernel, stride)?;
    if backend.use_fast(xs, "max_pool2d")? {
        pool::max_pool2d_fast(xs, kernel, stride)
    } else {
        max_pool2d_candle(xs, kernel, stride)
    }
}

/// The candle fallback: the `kernel * kernel` strided views of every window stacked on a last
/// dimension, the first argmax over it, and a gather (whose backward is a correct scatter-add).
fn max_pool2d_candle(xs: &Tensor, kernel: usize, stride: usize) -> Result<Tensor> {
    let (n, c, h, w) = xs.dims4()?;
    let (oh, ow) = (pool_out(h, kernel, stride), pool_out(w, kernel, stride));
    let dev = xs.device();
    let mut views = Vec::with_capacity(kernel * kernel);
    for di in 0..kernel {
        let rows: Vec<u32> = (0..oh).map(|i| (di + i * stride) as u32).collect();
        let rows = Tensor::from_vec(rows, oh, dev)?;
        let xr = xs.index_select(&rows, 2)?;
        for dj in 0..kernel {
            let cols: Vec<u32> = (0..ow).map(|j| (dj + j * stride) as u32).collect();
            let cols = Tensor::from_vec(cols, ow, dev)?;
            views.push(xr.index_select(&cols, 3)?.unsqueeze(4)?);
        }
    }
    let windows = Tensor::cat(&views, 4)?; // [N, C, OH, OW, k*k], in scan order
    let idx = windows.argmax_keepdim(D::Minus1)?;
    windows.gather(&idx, D::Minus1)?.reshape((n, c, oh, ow))
}

/// Fully connected layer `xs W^T + b` for `xs` `[N, in]`, `w` `[out, in]`, bias `[out]`
/// (candle-nn's `Linear` semantics). On the CPU the three products of forward and backward run as
/// parallel blocked GEMMs that write straight into their final layouts (see the `linear` module);
/// other devices, dtypes and ranks use candle's `matmul`.
pub fn linear(xs: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    linear_with(xs, w, bias, Backend::Auto)
}

/// [`linear`] with an explicit [`Backend`].
pub fn linear_with(xs: &Tensor, w: &Tensor, bias: Option<&Tensor>, backend: Backend) -> Result<Tensor> {
    let (out, inp) = w.dims2()?;
    if xs.dim(D::Minus1)? != inp {
        candle_core::bail!("linear: input has {} features, weight expects {inp}", xs.dim(D::Minus1)?);
    }
    if let Some(b) = bias
        && b.dims() != [out]
    {
        candle_core::bail!("linear: bias shape {:?}, expected [{out}]", b.dims());
    }
    if backend == Backend::Fast && xs.rank() != 2 {
        candle_core::bail!("linear: the fast kernel takes [N, in] inputs, got {:?}", xs.dims());
    }
    if xs.rank() == 2 && backend.use_fast(xs, "linear")? {
        let b = match bias {
            Some(b) => b.contiguous()?,
            None => Tensor::zeros(out, w.dtype(), w.device())?,
        };
        return xs.contiguous()?.apply_op3(&w.contiguous()?, &b, linear::LinearOp);
    }
    let ys = xs.broadcast_matmul(&w.t()?)?;
    match bias {
        Some(b) => ys.broadcast_add(b),
        None => Ok(ys),
    }
}

/// Threads the fast kernels run on (rayon's global pool, which candle's matmul shares).
pub fn num_threads() -> usize {
    rayon::current_num_threads()
}
