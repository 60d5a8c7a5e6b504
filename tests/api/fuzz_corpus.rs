//! Replays every committed fuzz input — the minimised corpora (`tests/fuzz/corpus/<target>/`) and the inputs that
//! once failed (`tests/fuzz/regressions/<target>/`) — through the checks its fuzz target runs, on stable, so what
//! the fuzzer found stays fixed. See tests/fuzz/README.md.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

#[path = "../fuzz/checks.rs"]
mod checks;

#[test]
fn every_committed_fuzz_input_passes_the_checks_of_its_target() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz");
    let mut failures = Vec::new();
    for (target, check) in checks::TARGETS {
        let corpus = files_in(&fuzz.join("corpus").join(target));
        assert!(!corpus.is_empty(), "the corpus of {target} is empty");
        for file in corpus.into_iter().chain(files_in(&fuzz.join("regressions").join(target))) {
            let data = std::fs::read(&file).expect("readable corpus file");
            if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
                failures.push(file.display().to_string());
            }
        }
    }
    assert!(failures.is_empty(), "fuzz inputs failing their checks (panics above): {failures:#?}");
}

/// The files in `dir`; none if it does not exist.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|entry| entry.expect("readable directory entry").path()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{}: {e}", dir.display()),
    }
}
