//! Domain-Adversarial Neural Network (Ganin & Lempitsky, 2015; Ganin et al., JMLR 2016).
//!
//! Three parts: a feature extractor `G_f`, a label predictor `G_y` on the features, and a domain
//! classifier `G_d` that sees the features through a gradient reversal layer. Minimising both
//! losses trains `G_d` to tell source from target while the reversed gradient trains `G_f` to
//! make the domains indistinguishable. The parts are generic: any [`ModuleT`] will do.
use adapt_grl::grad_reverse;
use candle_core::{ModuleT, Result, Tensor};

/// A DANN made of a feature extractor, a label predictor and a domain classifier.
pub struct Dann<F, L, D> {
    pub feature_extractor: F,
    pub label_predictor: L,
    pub domain_classifier: D,
}

/// What one forward pass of a mixed batch produces.
#[derive(Debug, Clone)]
pub struct DannOutput {
    /// Features of every example in the batch.
    pub features: Tensor,
    /// Class logits of the first `n_labelled` examples (the labelled source half).
    pub class_logits: Tensor,
    /// Domain logits of every example, computed behind the gradient reversal layer.
    pub domain_logits: Tensor,
}

impl<F: ModuleT, L: ModuleT, D: ModuleT> Dann<F, L, D> {
    pub fn new(feature_extractor: F, label_predictor: L, domain_classifier: D) -> Self {
        Self { feature_extractor, label_predictor, domain_classifier }
    }

    /// Features of `xs`, flattened to `[N, feature_dim]`.
    pub fn features(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        self.feature_extractor.forward_t(xs, train)?.flatten_from(1)
    }

    /// Class logits of `xs` (inference: the label path only).
    pub fn classify(&self, xs: &Tensor) -> Result<Tensor> {
        self.label_predictor.forward_t(&self.features(xs, false)?, false)
    }

    /// Domain logits of `xs` without gradient reversal (for evaluating the domain classifier).
    pub fn discriminate(&self, xs: &Tensor) -> Result<Tensor> {
        self.domain_classifier.forward_t(&self.features(xs, false)?, false)
    }

    /// One training forward pass over a batch whose first `n_labelled` rows are labelled source
    /// examples and whose remaining rows are unlabelled target examples.
    ///
    /// Features are computed once for the whole batch (so batch statistics, where the extractor
    /// has BatchNorm, mix both domains as in the paper's setup); the label predictor only sees
    /// the labelled rows; the domain classifier sees all rows through the GRL with `lambda`.
    pub fn forward_mixed(&self, xs: &Tensor, n_labelled: usize, lambda: f64, train: bool) -> Result<DannOutput> {
        let n = xs.dim(0)?;
        if n_labelled == 0 || n_labelled > n {
            candle_core::bail!("forward_mixed: {n_labelled} labelled rows in a batch of {n}");
        }
        let features = self.features(xs, train)?;
        let class_logits = self.label_predictor.forward_t(&features.narrow(0, 0, n_labelled)?, train)?;
        let domain_logits = self.domain_classifier.forward_t(&grad_reverse(&features, lambda)?, train)?;
        Ok(DannOutput { features, class_logits, domain_logits })
    }
}
