//! `cargo xtask build-cuda`: the CUDA build of the runner on a machine with no GPU and no CUDA
//! toolkit (see `adapt_cuda_build`).
pub use adapt_cuda_build::BuildCudaArgs;

/// Builds; progress goes to stdout (stderr with `json`), then the binaries and their run-time
/// needs unless `json`. Returns the JSON object of what was built.
pub fn run(args: &BuildCudaArgs, json: bool) -> anyhow::Result<serde_json::Value> {
    let log = |msg: &str| if json { eprintln!("build-cuda: {msg}") } else { println!("build-cuda: {msg}") };
    let built = adapt_cuda_build::build(args, &log)?;
    if !json {
        built.lines().iter().for_each(|l| println!("{l}"));
    }
    Ok(built.to_json())
}
