//! The `adapt` runner behind `cargo xtask`: command-line parsing and the experiments it runs.
//!
//! Each subcommand module exposes its clap arguments and a `run` function returning the figures
//! that `--json` prints as the last line of stdout; `main.rs` only dispatches.
pub mod ablation;
pub mod bench;
pub mod cli;
pub mod data;
pub mod device;
pub mod digits;
pub mod evaluate;
pub mod experiment;
pub mod gta;
pub mod report;
pub mod run_dir;
pub mod toy;
pub mod train;
