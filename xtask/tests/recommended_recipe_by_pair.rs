//! The recommended recipe's per-domain BatchNorm, source colour jitter and self-training: decided
//! from the real datasets' label-free profiles (so these tests read ADAPT_DATA_DIR), and
//! `--bn-per-domain[=BOOL]` / `--colour-jitter[=BOOL]` forcing them either way, as the recipe a
//! run folder would save.
mod common;
use adapt_experiment::recipe::{DigitRecipe, Preset, Recipe};
use adapt_train::Method;
use clap::Parser;
use xtask::train::TrainArgs;

#[derive(Parser)]
struct Wrapper {
    #[command(flatten)]
    args: TrainArgs,
}

/// Whether the real data is there; without it these tests skip, unless ADAPT_REQUIRE_DATA is set.
fn have_data() -> bool {
    common::real_data(&["mnist", "mnist_m", "usps"]).is_some()
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
    if !have_data() {
        return;
    }
    for (source, target) in [("mnist", "mnist-m"), ("mnist-m", "mnist"), ("usps", "mnist-m")] {
        let on = digit_recipe(&["--source", source, "--target", target]);
        assert_eq!(on.preset, Preset::Recommended);
        assert!(on.model.batch_norm && on.separate_domain_passes, "{source} -> {target}");
        // The per-domain net is for adaptation: source-only keeps the paper's net, one pass.
        let (net, separate) = on.net_for(Method::SourceOnly).unwrap();
        assert!(!net.batch_norm && !separate, "{source} -> {target} source-only");
        let (net, separate) = on.net_for(Method::Dann).unwrap();
        assert!(net.batch_norm && separate, "{source} -> {target} DANN");
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
    if !have_data() {
        return;
    }
    for (source, target) in [("mnist", "mnist-m"), ("mnist-m", "mnist")] {
        let off = digit_recipe(&["--source", source, "--target", target, "--bn-per-domain=false"]);
        assert!(!off.model.batch_norm && !off.separate_domain_passes, "{source} -> {target}");
    }
    let on = digit_recipe(&["--source", "usps", "--target", "mnist", "--bn-per-domain", "--seed", "3"]);
    assert!(on.model.batch_norm && on.separate_domain_passes);
    // Asked for explicitly, it holds for both methods.
    for forced in [on.clone(), digit_recipe(&["--source", "mnist", "--target", "mnist-m", "--bn-per-domain"])] {
        for method in [Method::SourceOnly, Method::Dann] {
            let (net, separate) = forced.net_for(method).unwrap();
            assert!(net.batch_norm && separate, "{method:?}");
        }
    }
    assert_eq!(on.seed, 3);
    // Off keeps the BatchNorm of a preset that has it, in one pass for both domains.
    let bn = digit_recipe(&["--preset", "bn", "--source", "mnist", "--target", "mnist-m", "--bn-per-domain=false"]);
    assert!(bn.model.batch_norm && !bn.separate_domain_passes);
    assert!(Wrapper::try_parse_from(["train", "--bn-per-domain=maybe"]).is_err());
}

#[test]
fn the_recommended_recipe_recolours_grey_sources_for_mnist_m_and_the_flag_forces_it() {
    if !have_data() {
        return;
    }
    for (source, target, want) in [
        ("mnist", "mnist-m", true),
        ("usps", "mnist-m", true),
        ("mnist-m", "mnist", false),
        ("mnist", "usps", false),
        ("usps", "mnist", false),
    ] {
        assert_eq!(digit_recipe(&["--source", source, "--target", target]).source_colour_jitter, want, "{source}");
    }
    let paper = digit_recipe(&["--method", "dann", "--source", "mnist", "--target", "mnist-m"]);
    assert!(!paper.source_colour_jitter);
    let off = digit_recipe(&["--source", "mnist", "--target", "mnist-m", "--colour-jitter=false"]);
    assert!(!off.source_colour_jitter);
    let on = digit_recipe(&["--source", "usps", "--target", "mnist", "--colour-jitter"]);
    assert!(on.source_colour_jitter);
}

#[test]
fn the_recommended_recipe_self_trains_from_a_colour_source_to_a_grey_target() {
    if !have_data() {
        return;
    }
    for (source, target, want) in [
        ("mnist-m", "mnist", 1.0),
        ("mnist-m", "usps", 1.0),
        ("mnist", "mnist-m", 0.0),
        ("mnist", "usps", 0.0),
        ("usps", "mnist", 0.0),
    ] {
        let r = digit_recipe(&["--source", source, "--target", target]);
        assert_eq!(r.target_pseudo_label_weight, want, "{source} -> {target}");
    }
    let paper = digit_recipe(&["--method", "dann", "--source", "mnist-m", "--target", "mnist"]);
    assert_eq!(paper.target_pseudo_label_weight, 0.0);
    let off = digit_recipe(&["--source", "mnist-m", "--target", "mnist", "--target-pseudo-label", "0"]);
    assert_eq!(off.target_pseudo_label_weight, 0.0);
    // Without a weight average there is no teacher: the recipe is refused before any data is read.
    let no_teacher = digit_recipe(&["--source", "mnist-m", "--target", "mnist", "--weight-average", "0"]);
    let err = no_teacher.validate().expect_err("no weight average to teach");
    assert!(err.to_string().contains("--weight-average"), "{err}");
}
