//! Every target of the suite, one file each, and the one list that registers them.
//!
//! A target is a file `src/targets/<file>.rs` that defines a public type implementing
//! [`Target`], plus one line `<file> => <constructor>,` in the `targets!` call
//! below, which declares the module and adds the target to [`all`] (the constructor is written
//! as if inside that module). The line's place in the list is the target's place in the reports;
//! a case's inputs depend only on the seed, the target's name and the case's number, so adding a
//! target changes no other target's cases.
//!
//! What several targets share lives beside them: `dataset.rs` for the dataset loaders,
//! `run_files.rs` for the files of a run folder (the fixture run, safetensors and JSON edits).
use crate::Target;
use std::sync::Arc;

mod dataset;
mod run_files;

/// Declares each target's module and lists the targets, in order, in [`all`].
macro_rules! targets {
    ($($file:ident => $make:expr,)*) => {
        $(pub mod $file;)*

        /// Every target, in the order of the reports.
        pub fn all() -> Vec<Arc<dyn Target>> {
            vec![$({
                use self::$file::*;
                Arc::new($make) as Arc<dyn Target>
            }),*]
        }
    };
}

targets! {
    idx => Idx,
    mat => Mat::default(),
    mnist_m => MnistM,
    usps => Usps::default(),
    parquet => Parquet,
    checkpoint => CheckpointTarget,
    weights => WeightsTarget,
    metrics => MetricsTarget,
    summary => SummaryTarget,
    recipe => RecipeTarget,
    config => ConfigTarget,
    image_folder => ImageFolder,
    image_list => ImageList,
}
