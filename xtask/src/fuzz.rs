//! `cargo xtask fuzz`: generated corruptions of every loader's files, of checkpoints and of run
//! files, each case run with a time limit and an allocation bound (see `adapt_fuzz`).
pub use adapt_fuzz::FuzzArgs;
use anyhow::{Result, bail};

/// Runs the suite; with `json`, the last stdout line is `{"fuzz": [per-target report], ...}`.
/// Any panic, hang, runaway allocation, silent acceptance or unclear error fails the command.
pub fn run(args: &FuzzArgs, json: bool) -> Result<()> {
    let suite = adapt_fuzz::suite::run_suite(args, &mut |r| eprintln!("{} {}/{} ...", r.target, r.cases, args.cases))?;
    suite.table().iter().for_each(|l| println!("{l}"));
    if json {
        println!("{}", suite.to_json());
    }
    match suite.failed() {
        0 => Ok(()),
        failed => bail!("{failed} fuzz case(s) failed"),
    }
}
