//! A fast sample of the run-file fuzz suite (`cargo xtask fuzz` runs 10,000 cases per target):
//! corrupted checkpoints, weights, metrics, summaries, recipes and configurations must each load
//! correctly or fail with an error naming the file, never panic, hang, allocate without bound or
//! load changed contents. `ADAPT_FUZZ_CASES` changes the number of cases.
use adapt_datasets::fuzz::{Options, run};
use adapt_datasets::memory::{CountingAlloc, counting_available};
use adapt_experiment::fuzz::{prepare, run_file_targets};

#[global_allocator]
static ALLOC: CountingAlloc<std::alloc::System> = CountingAlloc::new(std::alloc::System);

#[test]
fn a_sample_of_corrupted_run_files_loads_correctly_or_fails_clearly() {
    assert!(counting_available());
    prepare().expect("the fixture run");
    let cases = std::env::var("ADAPT_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let opts = Options { cases, seed: 14, ..Options::default() };
    let reports = run(&run_file_targets(), &opts, &mut |_| {});
    let mut failed = Vec::new();
    for r in &reports {
        println!(
            "{:<10} {:>6} cases: {:>5} correct loads, {:>5} clear errors, {} unclear, {} silent, {} panics, {} hangs, \
             {} runaway (peak {} kB), {:.1}s",
            r.target,
            r.cases,
            r.correct_loads,
            r.clear_errors,
            r.unclear_errors,
            r.silent_acceptances,
            r.panics,
            r.hangs,
            r.runaway_allocations,
            r.peak_case_bytes >> 10,
            r.seconds
        );
        assert_eq!(r.cases, cases);
        assert!(r.correct_loads > 0 && r.clear_errors > 0, "{}: the cases exercise nothing", r.target);
        if r.failed() > 0 {
            failed.push(format!("{}: {:#?}", r.target, r.failures));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
