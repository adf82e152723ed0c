//! Convolution, transposed-convolution and pooling layers on top of [`adapt_kernels`].
use crate::init;
use adapt_kernels::{self as kernels, Backend, Conv2dParams, ConvTranspose2dParams};
use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

/// A square-kernel 2D convolution with bias, PyTorch's default initialisation unless another
/// weight initialisation is given; the ReLU can be fused in (`params.relu`).
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

    /// Parameters `weight` `[out, in, k, k]`, drawn from `weight_init`, and `bias` `[out]`, with
    /// PyTorch's default `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`, under `vb`.
    pub fn with_weight_init(
        in_ch: usize,
        out_ch: usize,
        kernel: usize,
        params: Conv2dParams,
        weight_init: Init,
        vb: VarBuilder,
    ) -> Result<Self> {
        let weight = vb.get_with_hints((out_ch, in_ch, kernel, kernel), "weight", weight_init)?;
        let b = init::pytorch_bound(in_ch * kernel * kernel);
        let bias = vb.get_with_hints(out_ch, "bias", Init::Uniform { lo: -b, up: b })?;
        Ok(Self { weight, bias, params, backend: Backend::Auto })
    }

    /// A copy with detached weight and bias (same storage): its forward passes track no
    /// gradients for them, and it sees every later update.
    pub fn frozen(&self) -> Self {
        Self { weight: self.weight.detach(), bias: self.bias.detach(), ..self.clone() }
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

    pub fn backend(&self) -> Backend {
        self.backend
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

/// A square-kernel transposed convolution without bias (PyTorch's `ConvTranspose2d(...,
/// bias=False)`, for layers a BatchNorm follows).
#[derive(Debug, Clone)]
pub struct ConvTranspose2d {
    weight: Tensor,
    params: ConvTranspose2dParams,
    backend: Backend,
}

impl ConvTranspose2d {
    /// Parameter `weight` `[in, out, k, k]` (PyTorch's layout), drawn from `weight_init`, under
    /// `vb`.
    pub fn new(
        in_ch: usize,
        out_ch: usize,
        kernel: usize,
        params: ConvTranspose2dParams,
        weight_init: Init,
        vb: VarBuilder,
    ) -> Result<Self> {
        let weight = vb.get_with_hints((in_ch, out_ch, kernel, kernel), "weight", weight_init)?;
        Ok(Self { weight, params, backend: Backend::Auto })
    }

    /// Uses `backend` for the transposed convolution.
    pub fn with_backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// A copy with a detached weight (same storage).
    pub fn frozen(&self) -> Self {
        Self { weight: self.weight.detach(), ..self.clone() }
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn params(&self) -> ConvTranspose2dParams {
        self.params
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }
}

impl Module for ConvTranspose2d {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        kernels::conv_transpose2d_with(xs, &self.weight, self.params, self.backend)
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
