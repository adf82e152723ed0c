//! Checks on a loaded [`DomainPair`] before anything is trained on it.
use crate::error::{Result, ensure};
use adapt_datasets::DomainPair;

/// A batch of `per_domain` rows per domain must fit in both training sets: checked before a run
/// folder is made or a batch buffer reserved.
pub fn check_batch(pair: &DomainPair, per_domain: usize) -> Result<()> {
    for (name, rows) in [(&pair.source_name, &pair.source_train), (&pair.target_name, &pair.target_train)] {
        ensure(per_domain >= 1 && per_domain <= rows.len(), || {
            format!("a batch of {per_domain} per domain does not fit {name}'s {} training rows", rows.len())
        })?;
    }
    Ok(())
}
