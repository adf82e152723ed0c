//! Convolution and pooling layers on top of [`adapt_kernels`].
use crate::init;
use adapt_kernels::{self as kernels, Backend, Conv2dParams};
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

/// A square-kernel 2D convolution with bias and PyTorch's default initialisation; the ReLU can be
/// fused in (`params.relu`).
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Tensor,
    params: Conv2dParams,
    backend: Backend,
}

impl Conv2d {
    /// Parameters `weight` `[out, in, k, k]` and `bias` `[out]` under `vb`.
    pub fn new(in_ch: usize, out_ch: usize, kernel: usize, params: Conv2dParams, vb: VarBuilder) -> Result<Self> {
        let (weight, bias) = init::conv2d_params(in_ch, out_ch, kernel, &vb)?;
        Ok(Self { weight, bias, params, backend: Backend::Auto })
    }

    /// Uses `backend` for the convolution (e.g. [`Backend::Candle`] to compare).
    pub fn with_backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    pub fn params(&self) -> Conv2dParams {
        self.params
    }

    /// This convolution followed by a max-pool (`kernel`, `stride`), fused on the CPU (see
    /// [`kernels::conv2d_max_pool2d`]).
    pub fn forward_max_pool(&self, xs: &Tensor, kernel: usize, stride: usize) -> Result<Tensor> {
        kernels::conv2d_max_pool2d_with(xs, &self.weight, Some(&self.bias), self.params, kernel, stride, self.backend)
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.weight.dims()[0]
    }
}

impl Module for Conv2d {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        kernels::conv2d_with(xs, &self.weight, Some(&self.bias), self.params, self.backend)
    }
}

/// PyTorch's `MaxPool2d(kernel, stride)` (floor mode, no padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPool2d {
    pub kernel: usize,
    pub stride: usize,
    pub backend: Backend,
}

impl MaxPool2d {
    pub fn new(kernel: usize, stride: usize) -> Self {
        Self { kernel, stride, backend: Backend::Auto }
    }

    /// Spatial output size for an input of size `n`.
    pub fn out_size(&self, n: usize) -> usize {
        (n - self.kernel) / self.stride + 1
    }
}

impl Module for MaxPool2d {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        kernels::max_pool2d_with(xs, self.kernel, self.stride, self.backend)
    }
}
