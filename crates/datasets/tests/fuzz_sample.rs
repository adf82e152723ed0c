//! A fast sample of the loader fuzz suite (`cargo xtask fuzz` runs 10,000 cases per loader):
//! every case must end as a correct load or an error naming the file, with no panic, hang,
//! silent acceptance or runaway allocation. `ADAPT_FUZZ_CASES` changes the number of cases.
use adapt_datasets::fuzz::{Options, loader_targets, run, sample_problems};
use adapt_datasets::memory::{CountingAlloc, counting_available};

#[global_allocator]
static ALLOC: CountingAlloc<std::alloc::System> = CountingAlloc::new(std::alloc::System);

#[test]
fn a_sample_of_corrupted_inputs_loads_correctly_or_fails_clearly() {
    assert!(counting_available());
    let cases = std::env::var("ADAPT_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let opts = Options { cases, seed: 14, ..Options::default() };
    let reports = run(&loader_targets(), &opts, &mut |_| {});
    for r in &reports {
        println!("{r}");
    }
    let problems = sample_problems(&reports, cases);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
