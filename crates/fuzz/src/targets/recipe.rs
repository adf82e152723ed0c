//! The `recipe` target: an interrupted run's `recipe.json`, read as `--resume` and `eval` read it.
use super::run_files::*;
use crate::{Case, Rng, Target};
use rand::Rng as _;
use serde_json::{Value, json};
use std::path::Path;

/// An interrupted run's `recipe.json`, as `--resume` reads it.
pub struct RecipeTarget;

impl Target for RecipeTarget {
    fn name(&self) -> &'static str {
        "recipe"
    }

    fn make(&self, rng: &mut Rng, dir: &Path) -> Case {
        let f = fixture();
        let bad: Vec<(&[&str], Vec<Value>)> = vec![
            (&["recipe", "kind"], vec![json!("digits"), json!("gta"), json!("foo"), json!(1)]),
            (
                &["recipe", "methods"],
                vec![json!([]), json!(["foo"]), json!("dann"), json!([1]), json!(["dann", "dann"])],
            ),
            (&["recipe", "seed"], vec![json!(-1), json!(1.5), json!("5"), json!(1e20)]),
            (&["recipe", "steps"], vec![json!(0), json!(-1), json!(1.5), json!("x")]),
            (&["recipe", "batch_size"], vec![json!(0), json!(151), json!(1e12), json!(-1), json!(100000000)]),
            (&["recipe", "lr"], vec![json!(0), json!(-1), json!("nan"), json!(-0.0), Value::Null, json!("0.05")]),
            (&["data_dir"], vec![json!(5), json!([])]),
            (&["checkpoint_every"], vec![json!(-1), json!(1.5), json!("x")]),
        ];
        let mut what = String::new();
        let mut expect = Some(f.recipe_fp);
        let op = rng.random_range(0..11);
        let bytes = mutate_json(rng, &f.recipe, &bad, &mut what);
        place(rng, dir, adapt_experiment::files::RECIPE_FILE, &bytes, op == 10, &mut what, &mut expect);
        Case { what, expect, names: vec![adapt_experiment::files::RECIPE_FILE.into()] }
    }

    fn prepare(&self) -> std::result::Result<(), String> {
        prepare()
    }

    fn load(&self, dir: &Path) -> std::result::Result<u64, String> {
        err(load_recipe(dir))
    }
}

