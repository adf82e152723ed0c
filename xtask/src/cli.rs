//! The command line of `cargo xtask`.
use crate::bench::BenchArgs;
use crate::data::DataCommand;
use crate::train::TrainArgs;
use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "adapt: unsupervised domain adaptation on candle", version)]
pub struct Cli {
    /// End stdout with one JSON object holding the command's figures.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a method (default: source-only vs DANN on the rotated-moons toy).
    Train(TrainArgs),
    /// Time full training steps on random data (images/s, peak RSS).
    Bench(BenchArgs),
    /// List, verify, preview and generate datasets.
    Data(DataArgs),
    /// Re-evaluate the saved weights of a run folder, or a bare weights file.
    Eval(crate::evaluate::EvalArgs),
    /// Predict the classes of new images with a trained model (a run folder or a weights file).
    Predict(crate::predict::PredictArgs),
    /// Gather the runs under some folders into one Markdown table.
    Report(crate::report::ReportArgs),
    /// Train many runs and print one table (the digit matrix, the GTA ablation).
    #[command(subcommand)]
    Ablation(crate::ablation::AblationCommand),
    /// Corrupted inputs for every loader, checkpoints and run files: counts of correct loads,
    /// clear errors, and any panic, hang, runaway allocation or silent acceptance.
    Fuzz(crate::fuzz::FuzzArgs),
    /// Build the CUDA binary here, without a GPU or a CUDA toolkit: installs NVIDIA's CUDA wheels
    /// in a virtual environment outside the repository, writes a libcuda link stub, builds with
    /// `--features cuda` in its own target folder, prints the binary and its run-time needs.
    BuildCuda(crate::build_cuda::BuildCudaArgs),
}

#[derive(Debug, clap::Args)]
pub struct DataArgs {
    /// Folder with one sub-folder per dataset (mnist/, mnist_m/, svhn/, usps/, syn_digits/, bsds500/).
    #[arg(long, env = "ADAPT_DATA_DIR", global = true)]
    pub data_dir: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: DataCommand,
}

/// Runs the parsed command line; returns the JSON object to print last when `--json` is given
/// (`None` for commands that print their own).
pub fn run(cli: Cli) -> Result<Option<serde_json::Value>> {
    let command = cli.command.unwrap_or_else(|| Command::Train(TrainArgs::parse_default()));
    match command {
        Command::Train(args) => {
            let runs = crate::train::run(&args)?.runs;
            adapt_experiment::summary::runs_table(&runs).iter().for_each(|l| println!("{l}"));
            Ok(Some(serde_json::json!({ "runs": runs })))
        }
        Command::Bench(args) => crate::bench::run(&args).map(Some),
        Command::Eval(args) => Ok(Some(serde_json::json!({ "runs": crate::evaluate::run(&args)? }))),
        Command::Predict(args) => crate::predict::run(&args).map(Some),
        Command::Report(args) => crate::report::run(&args).map(Some),
        Command::Ablation(command) => crate::ablation::run(&command).map(Some),
        Command::Data(args) => {
            crate::data::run(&args.command, args.data_dir.as_deref(), cli.json)?;
            Ok(None)
        }
        Command::Fuzz(args) => {
            crate::fuzz::run(&args, cli.json)?;
            Ok(None)
        }
        Command::BuildCuda(args) => crate::build_cuda::run(&args, cli.json).map(Some),
    }
}

impl TrainArgs {
    /// The arguments of a bare `train`.
    pub fn parse_default() -> Self {
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: TrainArgs,
        }
        Wrapper::parse_from(["train"]).args
    }
}
