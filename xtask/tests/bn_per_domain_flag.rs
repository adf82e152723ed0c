//! The recommended recipe's per-domain BatchNorm: chosen by pair, and `--bn-per-domain[=BOOL]`
//! forcing it either way, as the recipe a run folder would save.
use adapt_experiment::recipe::{DigitRecipe, Preset, Recipe};
use clap::Parser;
use xtask::train::TrainArgs;

#[derive(Parser)]
struct Wrapper {
    #[command(flatten)]
    args: TrainArgs,
}

fn digit_recipe(argv: &[&str]) -> DigitRecipe {
    let args = Wrapper::try_parse_from(std::iter::once("train").chain(argv.iter().copied())).expect("parses").args;
    match args.recipe().expect("a recipe") {
        Recipe::Digits(r) => r,
        other => panic!("expected a digit recipe, got {other:?}"),
    }
}

#[test]
fn the_recommended_recipe_normalises_each_domain_only_on_the_mnist_m_pairs() {
    for (source, target) in [("mnist", "mnist-m"), ("mnist-m", "mnist"), ("usps", "mnist-m")] {
        let on = digit_recipe(&["--source", source, "--target", target]);
        assert_eq!(on.preset, Preset::Recommended);
        assert!(on.model.batch_norm && on.separate_domain_passes, "{source} -> {target}");
    }
    for (source, target) in [("mnist", "usps"), ("usps", "mnist")] {
        let off = digit_recipe(&["--source", source, "--target", target]);
        assert!(!off.model.batch_norm && !off.separate_domain_passes, "{source} -> {target}");
    }
    // The paper preset keeps the paper's net everywhere.
    let paper = digit_recipe(&["--method", "dann", "--source", "mnist", "--target", "mnist-m"]);
    assert!(!paper.model.batch_norm && !paper.separate_domain_passes);
}

#[test]
fn the_flag_forces_per_domain_batch_norm_on_or_off() {
    for (source, target) in [("mnist", "mnist-m"), ("mnist-m", "mnist")] {
        let off = digit_recipe(&["--source", source, "--target", target, "--bn-per-domain=false"]);
        assert!(!off.model.batch_norm && !off.separate_domain_passes, "{source} -> {target}");
    }
    let on = digit_recipe(&["--source", "usps", "--target", "mnist", "--bn-per-domain", "--seed", "3"]);
    assert!(on.model.batch_norm && on.separate_domain_passes);
    assert_eq!(on.seed, 3);
    // Off keeps the BatchNorm of a preset that has it, in one pass for both domains.
    let bn = digit_recipe(&["--preset", "bn", "--source", "mnist", "--target", "mnist-m", "--bn-per-domain=false"]);
    assert!(bn.model.batch_norm && !bn.separate_domain_passes);
    assert!(Wrapper::try_parse_from(["train", "--bn-per-domain=maybe"]).is_err());
}
