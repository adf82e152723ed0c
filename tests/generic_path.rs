//! The generic path (what CUDA and Metal run: candle's own ops, our max-pool built from them, the
//! optimizers' tensor-op updates) against the fast CPU kernels, op by op, values and gradients,
//! and over a few DANN training steps.
//!
//! Every check runs on the CPU with the generic path forced
//! ([`adapt_kernels::force_generic`]), and, in a build with `--features cuda` on a machine with
//! a GPU, once more on CUDA device 0 with the plain `Backend::Auto` dispatch (no forcing: a GPU
//! tensor must take the generic path by itself). `ADAPT_REQUIRE_CUDA=1` makes a missing GPU a
//! failure instead of a CPU-only run (the GPU script sets it).
//!
//! Tolerances, as the largest absolute difference over the largest absolute reference value
//! (so a bound is relative to the tensor's scale):
//! * single ops, values and gradients: 1e-5 (f32 sums in another order: candle's convolution
//!   and matmul against our GEMM blocks), 1e-4 on CUDA (cuBLAS, TF32 off);
//! * pooling, ReLU, LeakyReLU on identical inputs: exact on the CPU (the same element is chosen
//!   or passed), 1e-6 on CUDA;
//! * optimizer updates over 5 steps: 1e-6 (CPU), 1e-5 (CUDA);
//! * 4 DANN steps (paper MNIST network, SGD momentum 0.9): every loss within 1e-4 relative, the
//!   final weights within 1e-4.
use adapt_kernels::{
    self as kernels, AdamStep, Backend, BatchNorm2d, Conv2dParams, ConvTranspose2dParams, SgdStep, force_generic,
};
use adapt_models::ParamStore;
use adapt_models::digits::{DigitNetConfig, mnist_dann};
use adapt_train::optim::{MomentumSgd, SgdSettings};
use candle_core::{DType, Device, ModuleT, Result, Tensor, Var};
use candle_nn::{Init, Optimizer, VarBuilder, VarMap};

/// The devices to check the generic path on: the CPU, and CUDA device 0 where there is one.
fn devices() -> Vec<Device> {
    let mut out = vec![Device::Cpu];
    match Device::new_cuda(0) {
        Ok(d) => out.push(d),
        Err(e) => {
            if std::env::var("ADAPT_REQUIRE_CUDA").is_ok_and(|v| v == "1") {
                panic!("ADAPT_REQUIRE_CUDA=1 but CUDA device 0 is not usable: {e}");
            }
            eprintln!("generic_path: no CUDA device ({e}); checking the generic path on the CPU only");
        }
    }
    out
}

/// Runs `f` the way `dev` dispatches: on the CPU with the generic path forced, elsewhere plainly.
fn generic_on<R>(dev: &Device, f: impl FnOnce() -> R) -> R {
    if dev.is_cpu() { force_generic(f) } else { f() }
}

fn tol(dev: &Device, cpu: f32, gpu: f32) -> f32 {
    if dev.is_cpu() { cpu } else { gpu }
}

/// Deterministic values in [-1, 1) without near-ties (a fixed hash, not an RNG).
fn values(n: usize, seed: u64) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            let mut z = (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed.wrapping_mul(0xD1B5_4A32_D192_ED03);
            z = (z ^ (z >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z ^= z >> 29;
            (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn tensor(dims: &[usize], seed: u64, scale: f32, dev: &Device) -> Result<Tensor> {
    let n = dims.iter().product();
    Tensor::from_vec(values(n, seed).into_iter().map(|v| v * scale).collect::<Vec<_>>(), dims, dev)
}

fn flat(t: &Tensor) -> Result<Vec<f32>> {
    t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1()
}

/// Largest absolute difference over the largest absolute value of `want`.
fn rel_err(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "lengths differ");
    let scale = want.iter().fold(f32::MIN_POSITIVE, |m, v| m.max(v.abs()));
    got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max) / scale
}

fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert!(got.iter().all(|v| v.is_finite()), "{what}: non-finite values");
    let e = rel_err(got, want);
    assert!(e <= tol, "{what}: relative error {e:e} > {tol:e}");
}

/// The output of `f(inputs)` and the gradients of `sum(f(inputs) * weights)` with respect to
/// every input, on `dev`.
fn value_and_grads(
    dev: &Device,
    inputs: &[(Vec<usize>, f32)],
    f: &dyn Fn(&[Tensor]) -> Result<Tensor>,
) -> Result<(Vec<f32>, Vec<Vec<f32>>)> {
    let vars: Vec<Var> = inputs
        .iter()
        .enumerate()
        .map(|(i, (dims, scale))| Var::from_tensor(&tensor(dims, 10 + i as u64, *scale, dev)?))
        .collect::<Result<_>>()?;
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&ts)?;
    let weights = tensor(y.dims(), 99, 1.0, dev)?;
    let grads = (&y * &weights)?.sum_all()?.backward()?;
    let gs = ts.iter().map(|t| grads.get(t).map(flat).unwrap_or_else(|| Ok(Vec::new()))).collect::<Result<Vec<_>>>()?;
    Ok((flat(&y)?, gs))
}

/// `fast` on the CPU against `generic` on every device; `tols` = (CPU, CUDA).
fn check_op(
    name: &str,
    inputs: &[(Vec<usize>, f32)],
    fast: &dyn Fn(&[Tensor]) -> Result<Tensor>,
    generic: &dyn Fn(&[Tensor]) -> Result<Tensor>,
    tols: (f32, f32),
) -> Result<()> {
    let (want_y, want_g) = value_and_grads(&Device::Cpu, inputs, fast)?;
    for dev in devices() {
        let (y, g) = generic_on(&dev, || value_and_grads(&dev, inputs, generic))?;
        let t = tol(&dev, tols.0, tols.1);
        let on = if dev.is_cpu() { "cpu (generic forced)" } else { "cuda" };
        assert_close(&y, &want_y, t, &format!("{name} on {on}: values"));
        for (i, (g, w)) in g.iter().zip(&want_g).enumerate() {
            assert_eq!(g.is_empty(), w.is_empty(), "{name} on {on}: gradient {i} present on one side only");
            if !w.is_empty() {
                assert_close(g, w, t, &format!("{name} on {on}: gradient of input {i}"));
            }
        }
    }
    Ok(())
}

const OPS: (f32, f32) = (1e-5, 1e-4);
const EXACT: (f32, f32) = (0.0, 1e-6);

#[test]
fn conv2d_generic_matches_fast() -> Result<()> {
    for (i, (stride, padding, relu)) in
        [(1, 2, false), (1, 0, true), (2, 1, true), (2, 2, false)].into_iter().enumerate()
    {
        let p = Conv2dParams { stride, padding, relu };
        let inputs = [(vec![3, 4, 11, 10], 1.0), (vec![6, 4, 5, 5], 0.3), (vec![6], 0.5)];
        let f = |b: Backend| move |t: &[Tensor]| kernels::conv2d_with(&t[0], &t[1], Some(&t[2]), p, b);
        check_op(&format!("conv2d case {i} {p:?}"), &inputs, &f(Backend::Fast), &f(Backend::Auto), OPS)?;
    }
    Ok(())
}

#[test]
fn conv2d_max_pool2d_generic_matches_fast() -> Result<()> {
    let p = Conv2dParams { stride: 1, padding: 2, relu: true };
    let inputs = [(vec![2, 3, 12, 12], 1.0), (vec![5, 3, 5, 5], 0.3), (vec![5], 0.5)];
    let f = |b: Backend| move |t: &[Tensor]| kernels::conv2d_max_pool2d_with(&t[0], &t[1], Some(&t[2]), p, 2, 2, b);
    check_op("conv2d + max_pool2d(2, 2)", &inputs, &f(Backend::Fast), &f(Backend::Auto), OPS)
}

#[test]
fn conv_transpose2d_generic_matches_fast() -> Result<()> {
    for (stride, padding) in [(2, 1), (1, 0), (2, 0)] {
        let p = ConvTranspose2dParams { stride, padding };
        let inputs = [(vec![2, 6, 5, 5], 1.0), (vec![6, 3, 4, 4], 0.3)];
        let f = |b: Backend| move |t: &[Tensor]| kernels::conv_transpose2d_with(&t[0], &t[1], p, b);
        check_op(&format!("conv_transpose2d {p:?}"), &inputs, &f(Backend::Fast), &f(Backend::Auto), OPS)?;
    }
    Ok(())
}

#[test]
fn linear_generic_matches_fast() -> Result<()> {
    let inputs = [(vec![7, 40], 1.0), (vec![33, 40], 0.2), (vec![33], 0.5)];
    let f = |b: Backend| move |t: &[Tensor]| kernels::linear_with(&t[0], &t[1], Some(&t[2]), b);
    check_op("linear", &inputs, &f(Backend::Fast), &f(Backend::Auto), OPS)
}

#[test]
fn max_pool2d_generic_matches_fast() -> Result<()> {
    // (2, 2) and (4, 4) take the reshape path, (3, 2) and (3, 1) the strided views; odd sizes
    // drop the last rows and columns (floor mode).
    for (dims, k, s) in
        [([2, 3, 8, 8], 2, 2), ([1, 2, 9, 7], 2, 2), ([2, 2, 15, 15], 3, 2), ([1, 2, 6, 5], 3, 1), ([1, 1, 9, 8], 4, 4)]
    {
        let inputs = [(dims.to_vec(), 1.0)];
        let f = |b: Backend| move |t: &[Tensor]| kernels::max_pool2d_with(&t[0], k, s, b);
        check_op(&format!("max_pool2d {dims:?} k {k} s {s}"), &inputs, &f(Backend::Fast), &f(Backend::Auto), EXACT)?;
    }
    Ok(())
}

#[test]
fn activations_generic_match_fast() -> Result<()> {
    let inputs = [(vec![3, 4, 7, 7], 2.0)];
    let relu = |b: Backend| move |t: &[Tensor]| kernels::relu_with(&t[0], b);
    check_op("relu", &inputs, &relu(Backend::Fast), &relu(Backend::Auto), EXACT)?;
    let leaky = |b: Backend| move |t: &[Tensor]| kernels::leaky_relu_with(&t[0], 0.2, b);
    check_op("leaky_relu", &inputs, &leaky(Backend::Fast), &leaky(Backend::Auto), EXACT)
}

/// A BatchNorm layer on `dev` whose weight and bias are inputs `t[1]`, `t[2]` (so their gradients
/// are checked), returning the output and, appended, the running statistics after the pass.
fn batch_norm_pass(t: &[Tensor], b: Backend, pool: bool) -> Result<Tensor> {
    let dev = t[0].device();
    let c = t[0].dim(1)?;
    let vm = VarMap::new();
    {
        // The inputs' own variables as weight and bias, so that their gradients are checked.
        let mut data = vm.data().lock().map_err(|_| candle_core::Error::msg("var map poisoned"))?;
        data.insert("weight".into(), Var::from_tensor(&t[1])?);
        data.insert("bias".into(), Var::from_tensor(&t[2])?);
    }
    let bn = BatchNorm2d::new(c, Init::Const(1.0), b, VarBuilder::from_varmap(&vm, DType::F32, dev))?;
    let ys = if pool { bn.forward_max_pool_leaky(&t[0], 2, 0.2, true)? } else { bn.forward_t(&t[0], true)? };
    let eval = bn.forward_t(&t[0], false)?;
    // The running statistics (moved by the training pass) and the evaluation pass that uses them,
    // detached: their values are checked, the gradient flows through `ys` alone.
    let stats = Tensor::cat(&[bn.running_mean().flatten_all()?, bn.running_var().flatten_all()?], 0)?;
    Tensor::cat(&[ys.flatten_all()?, stats.detach(), eval.detach().flatten_all()?], 0)
}

#[test]
fn batch_norm_generic_matches_fast() -> Result<()> {
    let inputs = [(vec![4, 5, 6, 6], 1.5), (vec![5], 0.5), (vec![5], 0.5)];
    let f = |b: Backend| move |t: &[Tensor]| batch_norm_pass(t, b, false);
    check_op("batch norm (train, running stats, eval)", &inputs, &f(Backend::Fast), &f(Backend::Auto), OPS)
}

#[test]
fn batch_norm_max_pool_leaky_generic_matches_fast() -> Result<()> {
    let inputs = [(vec![3, 4, 8, 8], 1.5), (vec![4], 0.5), (vec![4], 0.5)];
    let f = |b: Backend| move |t: &[Tensor]| batch_norm_pass(t, b, true);
    check_op("batch norm + max_pool2d + leaky_relu", &inputs, &f(Backend::Fast), &f(Backend::Auto), OPS)
}

/// Five updates of a variable with fixed gradients; the parameter's values after each.
fn optimizer_trace(dev: &Device, update: &mut dyn FnMut(&Var, &Tensor, i32) -> Result<()>) -> Result<Vec<f32>> {
    let var = Var::from_tensor(&tensor(&[3, 17], 1, 1.0, dev)?)?;
    let mut out = Vec::new();
    for t in 1..=5 {
        let g = tensor(&[3, 17], 20 + t as u64, 0.1, dev)?;
        update(&var, &g, t)?;
        out.extend(flat(var.as_tensor())?);
    }
    Ok(out)
}

#[test]
fn sgd_generic_matches_fast() -> Result<()> {
    for step in [
        SgdStep { lr: 0.05, momentum: 0.9, weight_decay: 0.0, nesterov: false },
        SgdStep { lr: 0.05, momentum: 0.9, weight_decay: 1e-3, nesterov: true },
        SgdStep { lr: 0.05, momentum: 0.0, weight_decay: 0.0, nesterov: false },
    ] {
        let run = |dev: &Device| {
            let mut vel = None;
            optimizer_trace(dev, &mut |var, g, _| kernels::sgd_momentum_update(var, &mut vel, g, step))
        };
        let want = run(&Device::Cpu)?;
        for dev in devices() {
            let got = generic_on(&dev, || run(&dev))?;
            assert_close(&got, &want, tol(&dev, 1e-6, 1e-5), &format!("sgd {step:?} on {dev:?}"));
        }
    }
    Ok(())
}

#[test]
fn adam_generic_matches_fast() -> Result<()> {
    let s = adapt_train::optim::AdamSettings::gta();
    // The fused update on the CPU ...
    let mut state: (Option<Tensor>, Option<Tensor>) = (None, None);
    let want = optimizer_trace(&Device::Cpu, &mut |var, g, t| {
        let step = AdamStep { lr: s.lr, beta1: s.beta1, beta2: s.beta2, eps: s.eps, t };
        let (m, v) = kernels::adam_update(var, state.0.as_ref(), state.1.as_ref(), g, step)?;
        state = (Some(m), Some(v));
        Ok(())
    })?;
    // ... against the optimizer, which must fall back to its tensor ops on the generic path.
    for dev in devices() {
        let got = generic_on(&dev, || {
            let mut opt: Option<adapt_train::gta::Adam> = None;
            optimizer_trace(&dev, &mut |var, g, _| {
                let opt = match &mut opt {
                    Some(o) => o,
                    None => opt.insert(adapt_train::gta::Adam::new(vec![var.clone()], s)?),
                };
                assert!(!kernels::adam_update_supported(var, g, [None, None]), "the fused Adam must be off here");
                // A gradient store holding `g` for `var`: the gradient of sum(var * g).
                let grads = (var.as_tensor() * g.detach())?.sum_all()?.backward()?;
                opt.step(&grads)
            })
        })?;
        assert_close(&got, &want, tol(&dev, 1e-6, 1e-5), &format!("adam on {dev:?}"));
    }
    Ok(())
}

/// `steps` DANN steps (paper MNIST network, lambda 0.5, momentum SGD) on fixed inputs from the
/// seeded initial weights: the losses and the final weights.
fn dann_steps(dev: &Device, steps: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    let n = 8;
    let params = ParamStore::new(7);
    let model = mnist_dann(&DigitNetConfig::default(), params.var_builder(DType::F32, dev))?;
    let mut opt = MomentumSgd::new(
        params.trainable_vars(""),
        SgdSettings { lr: 0.01, momentum: 0.9, weight_decay: 0.0, nesterov: false },
    )?;
    // Smooth inputs: pooling windows never hold two values within rounding of each other.
    let vals: Vec<f32> = (0..2 * n * 3 * 28 * 28).map(|i| ((i as f32) * 0.7311).sin() * 1.3).collect();
    let x = Tensor::from_vec(vals, (2 * n, 3, 28, 28), dev)?;
    let ys = Tensor::from_vec((0..n as u32).map(|i| i % 10).collect::<Vec<_>>(), n, dev)?;
    let yd = Tensor::from_vec((0..2 * n as u32).map(|i| u32::from(i >= n as u32)).collect::<Vec<_>>(), 2 * n, dev)?;
    let mut losses = Vec::new();
    for _ in 0..steps {
        let out = model.forward_mixed(&x, n, 0.5, true)?;
        let loss = (candle_nn::loss::cross_entropy(&out.class_logits, &ys)?
            + candle_nn::loss::cross_entropy(&out.domain_logits, &yd)?)?;
        opt.backward_step(&loss)?;
        losses.push(loss.to_dtype(DType::F32)?.to_scalar::<f32>()?);
    }
    let mut named = params.named_vars();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let mut weights = Vec::new();
    for (_, v) in named {
        weights.extend(flat(v.as_tensor())?);
    }
    Ok((losses, weights))
}

#[test]
fn dann_training_steps_generic_match_fast() -> Result<()> {
    let (want_loss, want_w) = dann_steps(&Device::Cpu, 4)?;
    for dev in devices() {
        let (loss, w) = generic_on(&dev, || dann_steps(&dev, 4))?;
        for (i, (a, b)) in loss.iter().zip(&want_loss).enumerate() {
            let e = (a - b).abs() / b.abs().max(1e-6);
            assert!(e <= 1e-4, "DANN step {i} on {dev:?}: loss {a} vs {b} (relative {e:e})");
        }
        assert_close(&w, &want_w, 1e-4, &format!("DANN weights after 4 steps on {dev:?}"));
    }
    Ok(())
}

/// The switch itself: forcing turns the fused optimizer update off on this thread only, for the
/// duration of the closure (so the generic results above are not the fast ones computed twice).
#[test]
fn forcing_is_per_thread_and_scoped() -> Result<()> {
    let x = tensor(&[1, 1, 4, 4], 3, 1.0, &Device::Cpu)?;
    let var = Var::from_tensor(&x)?;
    let forced = force_generic(|| kernels::adam_update_supported(&var, &x, [None, None]));
    assert!(!forced, "forced: the fused Adam must be off");
    if std::env::var(kernels::GENERIC_ENV).is_err() {
        assert!(kernels::adam_update_supported(&var, &x, [None, None]), "not forced: the fused Adam must be on");
        force_generic(|| {
            let other = std::thread::scope(|s| s.spawn(kernels::generic_forced).join().expect("thread"));
            assert!(!other, "forcing leaked to another thread");
            assert!(force_generic(kernels::generic_forced), "nested forcing");
            assert!(kernels::generic_forced(), "the inner closure ended the outer forcing");
        });
        assert!(!kernels::generic_forced(), "forcing outlived its closure");
    }
    Ok(())
}
