//! The splits of a source -> target experiment, as the runs consume them.
use adapt_datasets::Rows;
use std::sync::Arc;

/// The splits of a source -> target experiment (target labels: evaluation only).
pub struct DomainData {
    pub source_name: String,
    pub target_name: String,
    pub source_train: Arc<dyn Rows>,
    /// Held out from the source training set, for model selection without target labels.
    pub source_val: Option<Arc<dyn Rows>>,
    pub target_train: Arc<dyn Rows>,
    pub source_test: Arc<dyn Rows>,
    pub target_test: Arc<dyn Rows>,
}

impl DomainData {
    /// A batch of `per_domain` rows per domain must fit in both training sets: checked before a
    /// run folder is made or a batch buffer reserved.
    pub fn check_batch(&self, per_domain: usize) -> crate::Result<()> {
        for (name, rows) in [(&self.source_name, &self.source_train), (&self.target_name, &self.target_train)] {
            crate::error::ensure(per_domain >= 1 && per_domain <= rows.len(), || {
                format!("a batch of {per_domain} per domain does not fit {name}'s {} training rows", rows.len())
            })?;
        }
        Ok(())
    }
}
