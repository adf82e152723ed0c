//! The `summary` target: a finished run's `summary.json`, read as `report` reads it.
use super::run_files::*;
use crate::mutate;
use crate::{Case, Rng, Target};
use rand::Rng as _;
use serde_json::{Value, json};
use std::path::Path;

/// A finished run's `summary.json`, as `report` reads it.
pub struct SummaryTarget;

fn nums(v: &[f64]) -> Vec<Value> {
    v.iter().map(|x| json!(x)).collect()
}

impl Target for SummaryTarget {
    fn name(&self) -> &'static str {
        "summary"
    }

    fn make(&self, rng: &mut Rng, dir: &Path) -> Case {
        let f = fixture();
        let acc = || [nums(&[7.5, -0.1, 1.0000001, 100.0]), vec![json!("0.9"), Value::Null, json!(true)]].concat();
        let bad: Vec<(&[&str], Vec<Value>)> = vec![
            (&["kind"], vec![json!("digits"), json!("gta"), json!("toyx"), json!(3)]),
            (&["method"], vec![json!("dan"), json!(""), json!(5), json!("gta-full")]),
            (&["source"], vec![json!("mnist"), json!(""), json!("moons2"), Value::Null]),
            (&["target"], vec![json!("usps"), json!("moons"), json!("")]),
            (&["seed"], vec![json!(-1), json!(1.5), json!("5"), json!(1e30)]),
            (&["source_acc"], acc()),
            (&["target_acc"], acc()),
            (&["domain_acc"], acc()),
            (&["a_distance"], vec![json!(2.5), json!(-2.1), Value::Null, json!("x")]),
            (&["target_ari"], nums(&[1.5, -1.01])),
            (&["source_val_acc"], vec![json!(1.5), json!(-1), json!("x")]),
            (&["selected_step"], vec![json!(0), json!(101), json!(-1), json!(1.5)]),
            (&["selection"], vec![json!("best"), json!(1), json!("source-val")]),
            (&["weights"], vec![json!("x.safetensors"), json!("best.safetensors"), json!("")]),
            (&["seconds"], vec![json!(-1), json!("x"), Value::Null]),
            (&["steps"], vec![json!(0), json!(-1), json!(1.5), json!(99)]),
            (&["resumed_at"], vec![json!(0), json!(101), json!(-5), json!("x")]),
            (&["run_dir"], vec![json!(5), json!([])]),
        ];
        let mut what = String::new();
        let mut expect = Some(f.summary_fp);
        let op = rng.random_range(0..12);
        let bytes = match op {
            10 => {
                mutate::sparse(&dir.join(adapt_experiment::summary::SUMMARY_FILE), 65 << 20);
                what = "a 65 MB summary".into();
                expect = None;
                return Case { what, expect, names: vec![adapt_experiment::summary::SUMMARY_FILE.into()] };
            }
            _ => mutate_json(rng, &f.summary, &bad, &mut what),
        };
        place(rng, dir, adapt_experiment::summary::SUMMARY_FILE, &bytes, op == 11, &mut what, &mut expect);
        Case { what, expect, names: vec![adapt_experiment::summary::SUMMARY_FILE.into()] }
    }

    fn prepare(&self) -> std::result::Result<(), String> {
        prepare()
    }

    fn load(&self, dir: &Path) -> std::result::Result<u64, String> {
        err(load_summary(dir))
    }
}

