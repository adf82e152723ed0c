//! Errors of the training crate.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Dataset(#[from] adapt_datasets::DatasetError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The loss stopped being a number: the run is stopped before the update it would have
    /// made, rather than left producing garbage. `losses` names each loss checked at that point
    /// with its value (e.g. `("label", 0.7), ("domain", NaN)`).
    #[error(
        "loss is not finite at step {step} ({}); stopping the run. Lower the learning rate or check \
         the input data for NaN/inf values",
        describe_losses(.losses)
    )]
    NonFiniteLoss { step: usize, losses: Vec<(&'static str, f32)> },
    /// A checkpoint that cannot be written or used.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    #[error("invalid training configuration: {0}")]
    Config(String),
}

pub type Result<T> = std::result::Result<T, TrainError>;

fn describe_losses(losses: &[(&'static str, f32)]) -> String {
    losses.iter().map(|(name, value)| format!("{name} loss {value}")).collect::<Vec<_>>().join(", ")
}

impl TrainError {
    /// The loop sizes every training configuration has: each must be at least 1.
    pub(crate) fn check_loop_sizes(steps: usize, batch_size: usize, log_every: usize) -> Result<()> {
        if steps == 0 || batch_size == 0 || log_every == 0 {
            return Err(TrainError::Config(format!(
                "steps ({steps}), batch size ({batch_size}) and log interval ({log_every}) must be at least 1"
            )));
        }
        Ok(())
    }

    /// [`TrainError::NonFiniteLoss`] at 1-based `step` if any of `losses` is NaN or infinite:
    /// every trainer calls this before applying the update of a loss.
    pub fn check_finite(step: usize, losses: &[(&'static str, f32)]) -> Result<()> {
        if losses.iter().all(|(_, v)| v.is_finite()) {
            return Ok(());
        }
        Err(TrainError::NonFiniteLoss { step, losses: losses.to_vec() })
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io { path: path.into(), source }
    }
}
