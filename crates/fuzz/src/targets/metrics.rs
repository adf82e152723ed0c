//! The `metrics` target: a run's `metrics.jsonl`, cut back to the checkpoint's step on resume.
use super::run_files::*;
use crate::mutate;
use crate::{Case, Rng, Target};
use rand::Rng as _;
use serde_json::{Value, json};
use std::path::Path;

/// A run's `metrics.jsonl`, cut back to the checkpoint's step on resume.
pub struct MetricsTarget;

impl Target for MetricsTarget {
    fn name(&self) -> &'static str {
        "metrics"
    }

    fn make(&self, rng: &mut Rng, dir: &Path) -> Case {
        let f = fixture();
        let mut expect = Some(f.metrics_fp);
        let mut lines = f.metrics.clone();
        let k = rng.random_range(0..lines.len());
        let op = rng.random_range(0..14);
        let mut what = "valid records".to_string();
        let mut record: Value = serde_json::from_str(&lines[k]).expect("the fixture is valid");
        match op {
            1 => {
                lines.remove(k);
                what = format!("record {k} removed");
            }
            2 => {
                lines.insert(k, lines[k].clone());
                what = format!("record {k} repeated");
            }
            3 if k + 1 < lines.len() => {
                lines.swap(k, k + 1);
                what = format!("records {k} and {} swapped", k + 1);
            }
            4 => {
                let l = pick(rng, &["", " ", "{}", "[]", "garbage", "{\"step\":"]);
                lines.insert(k, l.into());
                what = format!("line {l:?} before record {k}");
            }
            5 => {
                let (field, v) = pick(
                    rng,
                    &[
                        ("label_acc", json!(7.5)),
                        ("label_acc", json!(-0.1)),
                        ("domain_acc", json!("x")),
                        ("label_loss", json!(-1)),
                        ("domain_loss", Value::Null),
                        ("lambda", json!(1.5)),
                        ("lr", json!(-0.01)),
                        ("step", json!(0)),
                        ("step", json!(-5)),
                        ("step", json!("x")),
                        ("step", json!(record["step"].as_u64().unwrap_or(0) + 1)),
                    ],
                );
                record[field] = v.clone();
                lines[k] = record.to_string();
                what = format!("record {k}: {field} = {v}");
            }
            6 => {
                let field = pick(rng, &["label_acc", "lr", "step", "lambda"]);
                record.as_object_mut().map(|m| m.remove(field));
                lines[k] = record.to_string();
                what = format!("record {k} without {field}");
            }
            7 => {
                record["added_by_hand"] = json!(1);
                lines[k] = record.to_string();
                what = format!("record {k} with an unknown field");
            }
            8 => {
                lines[k] = serde_json::to_string_pretty(&record).expect("serialisable").replace('\n', " ");
                what = format!("record {k} with spaces");
            }
            _ => {}
        }
        let text = lines.join("\n") + "\n";
        let bytes = match op {
            0 => {
                let (t, c) = mutate::truncate(rng, text.as_bytes());
                what = format!("cut at byte {c}");
                t
            }
            9 => {
                let (b, how, _) = mutate::reencode(rng, &text);
                what = format!("with {how}");
                b
            }
            10 => {
                what = "empty".into();
                expect = None;
                Vec::new()
            }
            _ => text.into_bytes(),
        };
        place(rng, dir, adapt_experiment::files::METRICS_FILE, &bytes, op == 11, &mut what, &mut expect);
        if op == 12 {
            let p = dir.join(adapt_experiment::files::METRICS_FILE);
            let _ = std::fs::remove_file(&p);
            mutate::sparse(&p, 65 << 20);
            what = "a 65 MB metrics file".into();
            expect = None;
        }
        Case { what, expect, names: vec![adapt_experiment::files::METRICS_FILE.into()] }
    }

    fn prepare(&self) -> std::result::Result<(), String> {
        prepare()
    }

    fn load(&self, dir: &Path) -> std::result::Result<u64, String> {
        err(load_metrics(dir))
    }
}

