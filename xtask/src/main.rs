//! `cargo xtask`: see `cargo xtask --help`.
use clap::Parser;
use xtask::cli::{Cli, run};

/// mimalloc keeps freed memory for reuse: a training step frees and re-allocates the same large
/// buffers (activations, gradients), which glibc's malloc returns to the system and then faults
/// in, zeroed by the kernel, page by page on every step (a sixth of the SVHN step's CPU time).
/// The counting wrapper measures allocations only while `cargo xtask fuzz` loads a case (two
/// relaxed atomic loads per allocation otherwise).
#[global_allocator]
static GLOBAL: adapt_fuzz::memory::CountingAlloc<mimalloc::MiMalloc> =
    adapt_fuzz::memory::CountingAlloc::new(mimalloc::MiMalloc);

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (the same index in v2 and v3; the Rust
/// bindings do not name it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> std::process::ExitCode {
    // Never hand freed memory back to the system: by default mimalloc purges it after 10 ms, and
    // the next step faults it back in. Peak RSS is unchanged (the same buffers are reused).
    // SAFETY: sets a plain integer option; mimalloc reads options on every purge decision.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    // candle's elementwise thread pool spins 25,000 times (about a millisecond) after every op
    // before it parks, on a core that our GEMM workers need next; a thousand spins still catch
    // the back-to-back elementwise ops of the optimiser.
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "1000") };
    }
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
