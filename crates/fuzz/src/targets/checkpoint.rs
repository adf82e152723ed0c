//! The `checkpoint` target: an interrupted toy run's `checkpoint.safetensors`, restored as `--resume` does it.
use super::run_files::*;
use crate::{Case, Rng, Target};
use adapt_train::checkpoint::CHECKPOINT_FILE;
use rand::Rng as _;
use std::path::Path;

/// `checkpoint.safetensors` of an interrupted toy DANN run, loaded and restored as `--resume`
/// does it (parameters, momentum, step, sampler position checked against the data).
pub struct CheckpointTarget;

impl Target for CheckpointTarget {
    fn name(&self) -> &'static str {
        "checkpoint"
    }

    fn make(&self, rng: &mut Rng, dir: &Path) -> Case {
        let f = fixture();
        let mut expect = Some(f.checkpoint_fp);
        let op = rng.random_range(0..14);
        let mut what = "valid checkpoint".to_string();
        let keys: [(&str, &[&str]); 4] = [
            ("format", &["adapt-checkpoint-v3", "", "adapt-weights-v2"]),
            ("step", &["0", "49", "51", "25", "-1", "x", "18446744073709551615", "1e3"]),
            ("steps", &["99", "101", "0", "x", "-100"]),
            (
                "sampler",
                &[
                    r#"{"source":{"epoch":5,"offset":99999999},"target":{"epoch":5,"offset":50}}"#,
                    r#"{"source":{"epoch":18446744073709551615,"offset":50},"target":{"epoch":5,"offset":50}}"#,
                    r#"{"source":{"epoch":-1,"offset":50},"target":{"epoch":5,"offset":50}}"#,
                    r#"{"source":{"epoch":5,"offset":50}}"#,
                    r#"{"source":{"epoch":5,"offset":50},"target":{"epoch":5,"offset":51}}"#,
                    r#"{"source":"#,
                ],
            ),
        ];
        let bytes = match op {
            0..=11 => mutate_st(rng, &f.checkpoint, &keys, &mut what),
            12 => {
                what = "the checkpoint of another model (a file of weights only)".into();
                let (meta, entries) = parse_st(&f.checkpoint);
                let weights: Vec<Entry> = entries.into_iter().filter(|e| !e.name.starts_with("optim.")).collect();
                build_st(meta, &weights, true)
            }
            _ => f.checkpoint.clone(),
        };
        let replace = op == 13 && rng.random_bool(0.6);
        place(rng, dir, CHECKPOINT_FILE, &bytes, replace, &mut what, &mut expect);
        Case { what, expect, names: vec![CHECKPOINT_FILE.into()] }
    }

    fn prepare(&self) -> std::result::Result<(), String> {
        prepare()
    }

    fn load(&self, dir: &Path) -> std::result::Result<u64, String> {
        err(load_checkpoint(fixture(), dir))
    }
}

