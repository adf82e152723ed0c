//! A fast sample of the loader fuzz suite (`cargo xtask fuzz` runs 10,000 cases per loader):
//! every case must end as a correct load or an error naming the file, with no panic, hang,
//! silent acceptance or runaway allocation. `ADAPT_FUZZ_CASES` changes the number of cases.
use adapt_datasets::fuzz::{Options, loader_targets, run};
use adapt_datasets::memory::{CountingAlloc, counting_available};

#[global_allocator]
static ALLOC: CountingAlloc<std::alloc::System> = CountingAlloc::new(std::alloc::System);

#[test]
fn a_sample_of_corrupted_inputs_loads_correctly_or_fails_clearly() {
    assert!(counting_available());
    let cases = std::env::var("ADAPT_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let opts = Options { cases, seed: 14, ..Options::default() };
    let reports = run(&loader_targets(), &opts, &mut |_| {});
    let mut failed = Vec::new();
    for r in &reports {
        println!(
            "{:<8} {:>6} cases: {:>5} correct loads, {:>5} clear errors, {} unclear, {} silent, {} panics, {} hangs, \
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
