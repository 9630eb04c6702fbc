//! The fuzz targets as regression tests: every seed (`fuzz/seeds/<target>/`) and
//! every input that once failed (`fuzz/regressions/<target>/`) goes through the
//! same target function libFuzzer drives (`fuzz/src/targets.rs`, included here),
//! with its properties — in plain `cargo test`, no cargo-fuzz or nightly flags.
//! `scripts/fuzz.sh` runs the targets for real.

use std::path::Path;

#[path = "../../fuzz/src/targets.rs"]
#[allow(dead_code)]
mod targets;

#[test]
fn every_fuzz_seed_and_regression_input_keeps_every_property() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut replayed = 0;
    for (name, run) in targets::TARGETS {
        let mut for_target = 0;
        for dir in ["seeds", "regressions"] {
            let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(name)) else {
                continue;
            };
            let mut files: Vec<_> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
            files.sort();
            for file in files {
                let data = std::fs::read(&file).unwrap();
                // A failing input names itself before the target's own panic message.
                eprintln!("replaying {}", file.display());
                run(&data);
                for_target += 1;
            }
        }
        assert!(for_target > 0, "no seeds for fuzz target {name}");
        replayed += for_target;
    }
    eprintln!("{replayed} inputs replayed");
}
