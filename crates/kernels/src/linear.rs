//! Fully connected layer `y = x W^T + b` ([`linear()`]) on the CPU, forward and backward, as
//! candle custom ops; candle's `matmul` on other devices and dtypes.
//!
//! candle 0.11's `Linear` runs `x.matmul(w.t())`, whose backward produces the weight gradient
//! transposed and adds it to a fresh zero tensor through a strided (slow, single-threaded) add,
//! and whose GEMM orientations leave the `gemm` crate at half speed on wide layers (thousands of
//! features). Here every product is split into column or row blocks run in parallel by rayon,
//! each a single-threaded GEMM writing straight into its final layout:
//!
//! * forward: `y[:, o-block] = x W[o-block, :]^T`, initialised with the bias;
//! * `dx[:, i-block] = g W[:, i-block]`;
//! * `dW[o-block, :] = g[:, o-block]^T x` (already `[out, in]`), `db = colsum(g)`.
use crate::backend::Backend;
use crate::gemm::gemm_raw;
use crate::glue::{SendPtr, f32_slice, packed_grads, unpack_grads};
use crate::profile::{self, Kernel};
use candle_core::{CpuStorage, CustomOp3, D, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Fully connected layer `xs W^T + b` for `xs` `[N, in]`, `w` `[out, in]`, bias `[out]`
/// (candle-nn's `Linear` semantics). On the CPU the three products of forward and backward run as
/// parallel blocked GEMMs that write straight into their final layouts (see the module docs);
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
        return xs.contiguous()?.apply_op3(&w.contiguous()?, &b, LinearOp);
    }
    let ys = xs.broadcast_matmul(&w.t()?)?;
    match bias {
        Some(b) => ys.broadcast_add(b),
        None => Ok(ys),
    }
}

/// Splits `0..n` into blocks of whole multiples of 16 for the threads (one block when `work`, the
/// multiply-adds of the whole product, is too small to be worth a parallel region).
fn blocks(n: usize, work: usize) -> Vec<(usize, usize)> {
    let threads = rayon::current_num_threads().max(1);
    let parts = if threads == 1 || work < 1 << 20 { 1 } else { (4 * threads).min(n.div_ceil(16)).max(1) };
    let size = n.div_ceil(parts).div_ceil(16) * 16;
    (0..n).step_by(size.max(1)).map(|s| (s, (s + size).min(n))).collect()
}

/// `y[B, O] = x[B, I] W[O, I]^T + b`.
pub(crate) fn forward(x: &[f32], w: &[f32], b: &[f32], (bs, inp, out): (usize, usize, usize)) -> Vec<f32> {
    let mut y: Vec<f32> = Vec::with_capacity(bs * out);
    for _ in 0..bs {
        y.extend_from_slice(b);
    }
    let yp = SendPtr::new(&mut y);
    blocks(out, bs * inp * out).into_par_iter().for_each(|(o0, o1)| {
        // y^T[o-block, B] = W[o-block, :] x^T; element (o, r) of the block sits at y[r*out + o].
        // SAFETY: block (o0, o1) addresses rows o0..o1 of W and columns o0..o1 of y only.
        unsafe {
            gemm_raw(
                (o1 - o0, bs, inp),
                yp.ptr().add(o0),
                (1, out),
                true,
                w.as_ptr().add(o0 * inp),
                (inp, 1),
                x.as_ptr(),
                (1, inp),
            )
        }
    });
    y
}

/// Which gradients to compute, and the packed result `[dx | dW | db]`.
pub(crate) fn backward(
    x: &[f32],
    w: &[f32],
    g: &[f32],
    (bs, inp, out): (usize, usize, usize),
    [need_dx, need_dw, need_db]: [bool; 3],
) -> Vec<f32> {
    let dx_len = if need_dx { bs * inp } else { 0 };
    let dw_len = if need_dw { out * inp } else { 0 };
    let db_len = if need_db { out } else { 0 };
    let mut packed = vec![0f32; dx_len + dw_len + db_len];
    let (dx, rest) = packed.split_at_mut(dx_len);
    let (dw, db) = rest.split_at_mut(dw_len);
    let (dxp, dwp) = (SendPtr::new(dx), SendPtr::new(dw));
    // One parallel region over the blocks of both products.
    let mut jobs: Vec<(bool, usize, usize)> = Vec::new();
    if need_dx {
        jobs.extend(blocks(inp, bs * inp * out).into_iter().map(|(a, b)| (true, a, b)));
    }
    if need_dw {
        jobs.extend(blocks(out, bs * inp * out).into_iter().map(|(a, b)| (false, a, b)));
    }
    jobs.into_par_iter().for_each(|(is_dx, a, b)| {
        // SAFETY: dx blocks write columns a..b of dx, dW blocks rows a..b of dW; all reads stay
        // inside g [B, O], W [O, I] and x [B, I].
        unsafe {
            if is_dx {
                // dx[:, a..b] = g[B, O] W[:, a..b].
                gemm_raw(
                    (bs, b - a, out),
                    dxp.ptr().add(a),
                    (inp, 1),
                    false,
                    g.as_ptr(),
                    (out, 1),
                    w.as_ptr().add(a),
                    (inp, 1),
                );
            } else {
                // dW[a..b, :] = g[:, a..b]^T x.
                gemm_raw(
                    (b - a, inp, bs),
                    dwp.ptr().add(a * inp),
                    (inp, 1),
                    false,
                    g.as_ptr().add(a),
                    (1, out),
                    x.as_ptr(),
                    (inp, 1),
                )
            }
        }
    });
    if need_db {
        for row in g.chunks_exact(out) {
            for (d, v) in db.iter_mut().zip(row) {
                *d += v;
            }
        }
    }
    packed
}

fn dims(lx: &Layout, lw: &Layout) -> Result<(usize, usize, usize)> {
    let (bs, inp) = lx.shape().dims2()?;
    let (out, inp_w) = lw.shape().dims2()?;
    if inp != inp_w {
        candle_core::bail!("linear: input has {inp} features, weight expects {inp_w}");
    }
    Ok((bs, inp, out))
}

/// The forward op: `(x, w, b) -> x w^T + b`.
pub(crate) struct LinearOp;

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "adapt-linear"
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
        let d = dims(lx, lw)?;
        let (x, w, b) = (
            f32_slice(sx, lx, "linear input")?,
            f32_slice(sw, lw, "linear weight")?,
            f32_slice(sb, lb, "linear bias")?,
        );
        let y = profile::timed(Kernel::LinearForward, || forward(x, w, b, d));
        Ok((CpuStorage::F32(y), Shape::from((d.0, d.2))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let need = [x.track_op(), w.track_op(), b.track_op()];
        if need == [false; 3] {
            return Ok((None, None, None));
        }
        let grad_res = grad_res.contiguous()?;
        let packed = x.apply_op3_no_bwd(w, &grad_res, &LinearBackward { need })?;
        let [dx, dw, db] = unpack_grads(&packed, [x, w, b], need)?;
        Ok((dx, dw, db))
    }
}

/// `(x, w, grad_y) -> [dx | dW | db]` (flattened, only the parts in `need`).
struct LinearBackward {
    need: [bool; 3],
}

impl CustomOp3 for LinearBackward {
    fn name(&self) -> &'static str {
        "adapt-linear-backward"
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
        let d = dims(lx, lw)?;
        let (x, w, g) = (
            f32_slice(sx, lx, "linear input")?,
            f32_slice(sw, lw, "linear weight")?,
            f32_slice(sg, lg, "linear gradient")?,
        );
        if g.len() != d.0 * d.2 {
            candle_core::bail!("linear backward: gradient has {} elements, expected {}", g.len(), d.0 * d.2);
        }
        let packed = profile::timed(Kernel::LinearBackward, || backward(x, w, g, d, self.need));
        Ok(packed_grads([packed]))
    }
}
