//! A fast sample of the run-file fuzz suite (`cargo xtask fuzz` runs 10,000 cases per target):
//! corrupted checkpoints, weights, metrics, summaries, recipes and configurations must each load
//! correctly or fail with an error naming the file, never panic, hang, allocate without bound or
//! load changed contents. `ADAPT_FUZZ_CASES` changes the number of cases.
use adapt_datasets::fuzz::{Options, run, sample_problems};
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
    for r in &reports {
        println!("{r}");
    }
    let problems = sample_problems(&reports, cases);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
