//! `cargo xtask`: see `cargo xtask --help`.
use clap::Parser;
use xtask::cli::{Cli, run};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli) {
        Ok(value) => {
            if let (true, Some(value)) = (json, value) {
                println!("{value}");
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            if json {
                println!("{}", serde_json::json!({ "error": format!("{e:#}") }));
            }
            std::process::ExitCode::FAILURE
        }
    }
}
