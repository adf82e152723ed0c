//! The one error type of this crate: every variant names the file or dataset it is about.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// An I/O error while reading `path`.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file that exists but does not hold what its format promises.
    #[error("{path}: {problem}")]
    Format { path: PathBuf, problem: String },
    /// A dataset name nobody knows.
    #[error("unknown dataset '{name}'; known datasets: {known}")]
    UnknownDataset { name: String, known: String },
    /// Parameters that cannot describe a dataset (zero points, negative noise, ...).
    #[error("invalid dataset parameters: {0}")]
    InvalidParameters(String),
    /// The dataset was not found anywhere it could be loaded from.
    #[error("dataset '{name}' not found: {detail}")]
    NotFound { name: String, detail: String },
    /// Data that only a cargo feature this build was compiled without can load: `what` names the
    /// data (and its file, where there is one), `feature` the feature to enable.
    #[error(
        "{what} needs the `{feature}` feature of adapt-datasets, which this build does not have \
         (enable it: adapt-datasets = {{ features = [\"{feature}\"] }})"
    )]
    FeatureDisabled { feature: &'static str, what: String },
}

pub type Result<T> = std::result::Result<T, DatasetError>;
