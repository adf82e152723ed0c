//! The fast kernels of `adapt_kernels` against candle's stock ops, at the layer shapes of small
//! MNIST- and SVHN-sized convnets (batch 128): forward, and forward + backward.
//!
//! `cargo bench -p adapt-kernels --bench ops` (add a filter such as `mnist_conv2` to run one group).
use adapt_kernels::{self as kernels, Backend, Conv2dParams};
use candle_core::{DType, Device, Tensor, Var};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;

const N: usize = 128;

struct ConvShape {
    name: &'static str,
    c: usize,
    hw: usize,
    o: usize,
    /// Max-pool after the convolution (kernel, stride).
    pool: Option<(usize, usize)>,
    /// Whether the input needs a gradient (false for the first layer, fed with images).
    input_grad: bool,
}

const SHAPES: &[ConvShape] = &[
    ConvShape { name: "mnist_conv1", c: 3, hw: 28, o: 32, pool: Some((2, 2)), input_grad: false },
    ConvShape { name: "mnist_conv2", c: 32, hw: 14, o: 48, pool: Some((2, 2)), input_grad: true },
    ConvShape { name: "svhn_conv1", c: 3, hw: 32, o: 64, pool: Some((3, 2)), input_grad: false },
    ConvShape { name: "svhn_conv2", c: 64, hw: 15, o: 64, pool: Some((3, 2)), input_grad: true },
    ConvShape { name: "svhn_conv3", c: 64, hw: 7, o: 128, pool: None, input_grad: true },
];

/// The stock candle path: `Tensor::conv2d` + bias + ReLU (+ candle's `max_pool2d_with_stride`,
/// whose backward is wrong or missing: forward only).
fn candle_stock(x: &Tensor, w: &Tensor, b: &Tensor, pool: Option<(usize, usize)>) -> Tensor {
    let y = x.conv2d(w, 2, 1, 1, 1).unwrap().broadcast_add(&b.reshape((1, (), 1, 1)).unwrap()).unwrap().relu().unwrap();
    match pool {
        Some((k, s)) => y.max_pool2d_with_stride(k, s).unwrap(),
        None => y,
    }
}

fn ours(x: &Tensor, w: &Tensor, b: &Tensor, pool: Option<(usize, usize)>, backend: Backend) -> Tensor {
    let p = Conv2dParams { stride: 1, padding: 2, relu: true };
    match pool {
        Some((k, s)) => kernels::conv2d_max_pool2d_with(x, w, Some(b), p, k, s, backend).unwrap(),
        None => kernels::conv2d_with(x, w, Some(b), p, backend).unwrap(),
    }
}

fn conv_benches(c: &mut Criterion) {
    let dev = Device::Cpu;
    for s in SHAPES {
        let x = Tensor::randn(0f32, 1.0, (N, s.c, s.hw, s.hw), &dev).unwrap();
        let xv = Var::from_tensor(&x).unwrap();
        let x_in = if s.input_grad { xv.as_tensor().clone() } else { x.clone() };
        let w = Var::from_tensor(&(Tensor::randn(0f32, 1.0, (s.o, s.c, 5, 5), &dev).unwrap() * 0.05).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::zeros(s.o, DType::F32, &dev).unwrap()).unwrap();
        let (w, b) = (w.as_tensor(), b.as_tensor());
        let mut g = c.benchmark_group(s.name);
        g.sample_size(10).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
        g.bench_function("fwd/adapt", |bch| bch.iter(|| black_box(ours(&x_in, w, b, s.pool, Backend::Fast))));
        g.bench_function("fwd/candle", |bch| bch.iter(|| black_box(candle_stock(&x_in, w, b, s.pool))));
        // Forward + backward of sum(y): the backward pass dominates.
        g.bench_function("fwd_bwd/adapt", |bch| {
            bch.iter(|| black_box(ours(&x_in, w, b, s.pool, Backend::Fast).sum_all().unwrap().backward().unwrap()))
        });
        // candle's own conv backward, with the (correct) candle-op pooling of `adapt_kernels` where
        // there is a pool: the stock max-pool has no usable backward.
        g.bench_function("fwd_bwd/candle", |bch| {
            bch.iter(|| black_box(ours(&x_in, w, b, s.pool, Backend::Candle).sum_all().unwrap().backward().unwrap()))
        });
        g.finish();
    }
}

fn pool_benches(c: &mut Criterion) {
    let dev = Device::Cpu;
    for (name, ch, hw, k, st) in [("pool_mnist1_2x2", 32, 28, 2, 2), ("pool_svhn1_3s2", 64, 32, 3, 2)] {
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (N, ch, hw, hw), &dev).unwrap()).unwrap();
        let x = x.as_tensor();
        let mut g = c.benchmark_group(name);
        g.sample_size(10).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
        g.bench_function("fwd/adapt", |bch| {
            bch.iter(|| black_box(kernels::max_pool2d_with(x, k, st, Backend::Fast).unwrap()))
        });
        g.bench_function("fwd/candle", |bch| bch.iter(|| black_box(x.max_pool2d_with_stride(k, st).unwrap())));
        g.bench_function("fwd_bwd/adapt", |bch| {
            bch.iter(|| {
                black_box(
                    kernels::max_pool2d_with(x, k, st, Backend::Fast).unwrap().sum_all().unwrap().backward().unwrap(),
                )
            })
        });
        g.bench_function("fwd_bwd/candle_ops", |bch| {
            bch.iter(|| {
                black_box(
                    kernels::max_pool2d_with(x, k, st, Backend::Candle).unwrap().sum_all().unwrap().backward().unwrap(),
                )
            })
        });
        g.finish();
    }
}

criterion_group!(benches, conv_benches, pool_benches);
criterion_main!(benches);
