//! Checks on a loaded [`DomainPair`] before anything is trained on or evaluated with it.
use crate::error::{Result, ensure};
use adapt_datasets::{DomainPair, Rows};

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

/// Every value of every set of `pair` finite: a NaN or infinite input (from a pixel mean or
/// standard deviation edited into a configuration, say) would give accuracies of nothing.
/// `what` says whose inputs they are in the error.
pub fn check_finite_inputs(pair: &DomainPair, what: &str) -> Result<()> {
    let mut sets: Vec<(String, &dyn Rows)> = vec![
        (format!("{} training", pair.source_name), pair.source_train.as_ref()),
        (format!("{} training", pair.target_name), pair.target_train.as_ref()),
        (format!("{} test", pair.source_name), pair.source_test.as_ref()),
        (format!("{} test", pair.target_name), pair.target_test.as_ref()),
    ];
    if let Some(val) = &pair.source_val {
        sets.push((format!("{} validation", pair.source_name), val.as_ref()));
    }
    for (name, rows) in sets {
        let mut row = vec![0f32; rows.row_len()];
        for i in 0..rows.len() {
            rows.copy_row(i, &mut row);
            if let Some(v) = row.iter().find(|v| !v.is_finite()) {
                return Err(crate::ExperimentError::Invalid(format!(
                    "{what}: {name} row {i} holds the non-finite input {v} (check the preprocessing values)"
                )));
            }
        }
    }
    Ok(())
}
