//! The `weights` target: a finished toy run's `model.safetensors`, read as `eval` reads a weights file.
use super::run_files::*;
use crate::{Case, Rng, Target};
use rand::Rng as _;
use std::path::Path;

/// `model.safetensors` of a finished toy run, read as `eval` reads a weights file.
pub struct WeightsTarget;

impl Target for WeightsTarget {
    fn name(&self) -> &'static str {
        "weights"
    }

    fn make(&self, rng: &mut Rng, dir: &Path) -> Case {
        let f = fixture();
        let mut expect = Some(f.weights_fp);
        let op = rng.random_range(0..13);
        let mut what = "valid weights".to_string();
        let keys: [(&str, &[&str]); 4] = [
            ("format", &["adapt-weights-v3", "", "adapt-checkpoint-v2"]),
            ("adapt.config", &["{}", "[", r#"{"kind":"toy"}"#, r#"{"kind":"gta"}"#, "null"]),
            ("adapt.input", &["[", "", "{\"input\":"]),
            (
                "adapt.step",
                &[
                    r#"{"step":0,"selection":"last"}"#,
                    r#"{"step":101,"selection":"last"}"#,
                    r#"{"step":-1}"#,
                    "{}",
                    "x",
                    r#"{"step":100,"selection":"best"}"#,
                ],
            ),
        ];
        let bytes = if op < 12 { mutate_st(rng, &f.weights, &keys, &mut what) } else { f.weights.clone() };
        let replace = op == 12 && rng.random_bool(0.6);
        place(rng, dir, adapt_experiment::files::MODEL_FILE, &bytes, replace, &mut what, &mut expect);
        Case { what, expect, names: vec![adapt_experiment::files::MODEL_FILE.into()] }
    }

    fn prepare(&self) -> std::result::Result<(), String> {
        prepare()
    }

    fn load(&self, dir: &Path) -> std::result::Result<u64, String> {
        err(load_weights(fixture(), dir))
    }
}

