//! The shapes of one convolution, and how its images are split into chunks for the threads.
use candle_core::{Result, Shape};

/// Everything about one convolution's shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geom {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Geom {
    pub(crate) fn new(x: &Shape, w: &Shape, stride: usize, pad: usize) -> Result<Self> {
        let (n, c, h, wd) = x.dims4()?;
        let (o, c_k, kh, kw) = w.dims4()?;
        if c != c_k {
            candle_core::bail!("conv2d: input has {c} channels, kernel expects {c_k}");
        }
        let oh = (h + 2 * pad - kh) / stride + 1;
        let ow = (wd + 2 * pad - kw) / stride + 1;
        Ok(Self { n, c, h, w: wd, o, kh, kw, stride, pad, oh, ow })
    }
    pub(crate) fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }
    pub(crate) fn p(&self) -> usize {
        self.oh * self.ow
    }
    /// Images per chunk: scratch of about `TARGET` floats, and at least 3 chunks per thread.
    pub(crate) fn chunk_images(&self) -> usize {
        const TARGET: usize = 1 << 20;
        let per_image = (self.k() + self.o) * self.p();
        let by_size = (TARGET / per_image.max(1)).max(1);
        let threads = rayon::current_num_threads().max(1);
        let by_balance = self.n.div_ceil(3 * threads).max(1);
        by_size.min(by_balance).min(self.n.max(1))
    }
}
