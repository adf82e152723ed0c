//! A fast sample of the fuzz suite (`cargo xtask fuzz` runs 10,000 cases per target): every
//! case of every target (the dataset loaders, checkpoints, weights, metrics, summaries, recipes
//! and configurations) must end as a correct load or an error naming the file, with no panic,
//! hang, silent acceptance or runaway allocation. `ADAPT_FUZZ_CASES` changes the number of cases.
use adapt_fuzz::memory::{CountingAlloc, counting_available};
use adapt_fuzz::{Options, run, sample_problems, targets};

#[global_allocator]
static ALLOC: CountingAlloc<std::alloc::System> = CountingAlloc::new(std::alloc::System);

#[test]
fn a_sample_of_corrupted_inputs_loads_correctly_or_fails_clearly() {
    assert!(counting_available());
    let cases = std::env::var("ADAPT_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let opts = Options { cases, seed: 14, ..Options::default() };
    let reports = run(&targets::all(), &opts, &mut |_| {}).expect("the targets prepare");
    for r in &reports {
        println!("{r}");
    }
    let problems = sample_problems(&reports, cases);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
