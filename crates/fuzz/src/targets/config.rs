//! The `config` target: an interrupted run's `config.toml`, compared on resume.
use super::run_files::*;
use crate::mutate;
use crate::{Case, Rng, Target, fingerprint};
use adapt_experiment::files::check_saved_config;
use rand::Rng as _;
use std::path::Path;

/// An interrupted run's `config.toml`, compared with the configuration a resume rebuilds.
pub struct ConfigTarget;

impl Target for ConfigTarget {
    fn name(&self) -> &'static str {
        "config"
    }

    fn make(&self, rng: &mut Rng, dir: &Path) -> Case {
        let f = fixture();
        let mut expect = Some(fingerprint("same configuration"));
        let mut lines: Vec<String> = f.config.lines().map(str::to_string).collect();
        let values: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].contains(" = ")).collect();
        let k = pick(rng, &values);
        let key = lines[k].split(" = ").next().unwrap_or("").to_string();
        let op = rng.random_range(0..10);
        let mut what = "valid configuration".to_string();
        let mut bytes: Vec<u8> = match op {
            0 => {
                let v = pick(
                    rng,
                    &[
                        "0",
                        "-1",
                        "1e400",
                        "nan",
                        "inf",
                        "\"x\"",
                        "true",
                        "[1]",
                        "{}",
                        "",
                        "1.5",
                        "99999999999999999999",
                    ],
                );
                lines[k] = format!("{key} = {v}");
                what = format!("{key} = {v}");
                lines.join("\n").into_bytes()
            }
            1 => {
                let line = lines.remove(k);
                what = format!("line '{line}' removed");
                lines.join("\n").into_bytes()
            }
            2 => {
                let line = lines[k].clone();
                lines.insert(k, line.clone());
                what = format!("line '{line}' twice");
                lines.join("\n").into_bytes()
            }
            3 => {
                lines.insert(k, "# a comment".into());
                lines.insert(k, String::new());
                what = "comments and blank lines".into();
                lines.join("\n").into_bytes()
            }
            4 => {
                let (t, c) = mutate::truncate(rng, f.config.as_bytes());
                what = format!("cut at byte {c}");
                t
            }
            5 => {
                let (b, how, _) = mutate::reencode(rng, &f.config);
                what = format!("with {how}");
                b
            }
            6 => {
                lines.insert(k + 1, "added_by_hand = 1".into());
                what = format!("an unknown key after {key}");
                lines.join("\n").into_bytes()
            }
            _ => f.config.clone().into_bytes(),
        };
        if op == 7 {
            bytes = format!("{}\n[extra]\nkind = \"toy\"\n", f.config).into_bytes();
            what = "an unknown table".into();
        }
        place(rng, dir, adapt_experiment::files::CONFIG_FILE, &bytes, op == 8, &mut what, &mut expect);
        if op == 9 {
            let _ = std::fs::remove_file(dir.join(adapt_experiment::files::CONFIG_FILE));
            mutate::sparse(&dir.join(adapt_experiment::files::CONFIG_FILE), 65 << 20);
            what = "a 65 MB configuration".into();
            expect = None;
        }
        Case { what, expect, names: vec![adapt_experiment::files::CONFIG_FILE.into()] }
    }

    fn prepare(&self) -> std::result::Result<(), String> {
        prepare()
    }

    fn load(&self, dir: &Path) -> std::result::Result<u64, String> {
        let f = fixture();
        check_saved_config(&dir.join(adapt_experiment::files::CONFIG_FILE), &f.config_value)
            .map(|()| fingerprint("same configuration"))
            .map_err(|e| e.to_string())
    }
}

