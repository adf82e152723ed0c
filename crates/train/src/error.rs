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
    /// The loss stopped being a number: the run is stopped rather than left producing garbage.
    #[error(
        "loss is not finite at step {step} (label loss {label_loss}, domain loss {domain_loss}); \
         stopping the run. Lower the learning rate or check the input data for NaN/inf values"
    )]
    NonFiniteLoss { step: usize, label_loss: f32, domain_loss: f32 },
    /// A checkpoint that cannot be written or used.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    #[error("invalid training configuration: {0}")]
    Config(String),
}

pub type Result<T> = std::result::Result<T, TrainError>;

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

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io { path: path.into(), source }
    }
}
