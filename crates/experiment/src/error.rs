//! The one error type of this crate. Every variant that is about a file names it; `Context`
//! says what was being done, so a message reads like "training dann (run folder ...): ...".
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    /// A run file (configuration, summary, metrics, selection, weights) that exists but cannot be used.
    #[error("{path}: {problem}")]
    File { path: PathBuf, problem: String },
    /// A recipe or option that cannot run.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Data(#[from] adapt_datasets::DatasetError),
    #[error(transparent)]
    Train(#[from] adapt_train::TrainError),
    #[error(transparent)]
    Eval(#[from] adapt_eval::EvalError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// `inner` is part of the message rather than a `source()`, so that printing the error chain
    /// (as `anyhow` does) does not repeat it.
    #[error("{context}: {inner}")]
    Context { context: String, inner: Box<ExperimentError> },
}

pub type Result<T> = std::result::Result<T, ExperimentError>;

impl ExperimentError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), error: source }
    }

    pub fn file(path: &Path, problem: impl std::fmt::Display) -> Self {
        Self::File { path: path.to_path_buf(), problem: problem.to_string() }
    }
}

/// Says what was being done when an error happened.
pub trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: Into<ExperimentError>> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| ExperimentError::Context { context: what(), inner: Box::new(e.into()) })
    }
}

/// Gives `Invalid` as the error of a failed check.
pub(crate) fn ensure(ok: bool, message: impl FnOnce() -> String) -> Result<()> {
    if ok { Ok(()) } else { Err(ExperimentError::Invalid(message())) }
}
