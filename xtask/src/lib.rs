//! The `adapt` runner behind `cargo xtask`: command-line parsing only. Each subcommand module
//! turns its clap arguments into a call of the library crates (`adapt-experiment` for training,
//! evaluation, reports and ablations) and returns the figures that `--json` prints as the last
//! line of stdout; `main.rs` only dispatches.
pub mod ablation;
pub mod bench;
pub mod build_cuda;
pub mod cli;
pub mod data;
pub mod device;
pub mod evaluate;
pub mod fuzz;
pub mod predict;
pub mod report;
pub mod train;
