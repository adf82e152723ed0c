//! The GEMM work counter: one test in its own binary, so that no other test's GEMMs run while
//! the process-wide counter is read.
use adapt_kernels::{Backend, Conv2dParams, conv2d_with, linear_with, profile};
use candle_core::{Device, Result, Tensor, Var};

#[test]
fn gemm_flops_count_every_product_of_a_forward_and_backward_pass() -> Result<()> {
    let dev = Device::Cpu;
    // Convolution: 2 images, 3 -> 4 channels, 3x3 kernel on 8x8: K = 27, L = 6 * 6 = 36.
    let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 8, 8), &dev)?)?;
    let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, (4, 3, 3, 3), &dev)?)?;
    let forward = 2 * 2 * 4 * 27 * 36;
    profile::reset();
    let y = conv2d_with(x.as_tensor(), w.as_tensor(), None, Conv2dParams::default(), Backend::Fast)?;
    assert_eq!(profile::gemm_flops(), forward, "forward: one 4 x 27 by 27 x 36 product per image");
    // Backward: the input gradient and the weight gradient, each as much arithmetic as the forward.
    y.sum_all()?.backward()?;
    assert_eq!(profile::gemm_flops(), 3 * forward);

    // A linear layer: 5 rows, 7 -> 6 features; its weight gradient and input gradient likewise.
    let xs = Var::from_tensor(&Tensor::randn(0f32, 1.0, (5, 7), &dev)?)?;
    let wl = Var::from_tensor(&Tensor::randn(0f32, 1.0, (6, 7), &dev)?)?;
    profile::reset();
    let out = linear_with(xs.as_tensor(), wl.as_tensor(), None, Backend::Fast)?;
    assert_eq!(profile::gemm_flops(), 2 * 5 * 6 * 7);
    out.sum_all()?.backward()?;
    assert_eq!(profile::gemm_flops(), 3 * 2 * 5 * 6 * 7);

    // The peak probe measures a positive, finite rate without touching the counter.
    profile::reset();
    let peak = profile::sgemm_peak_gflops(64, 1);
    assert!(peak.is_finite() && peak > 0.0, "{peak}");
    assert_eq!(profile::gemm_flops(), 0);
    Ok(())
}
