//! Replays every committed fuzz corpus file (`tests/fuzz/corpus/<target>/`) through the checks its fuzz target
//! runs, on stable: an input the fuzzer once found troublesome stays fixed. See tests/fuzz/README.md.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

#[path = "../fuzz/checks.rs"]
mod checks;

#[test]
fn every_committed_fuzz_input_passes_the_checks_of_its_target() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus");
    let mut failures = Vec::new();
    for (target, check) in checks::TARGETS {
        let files: Vec<_> = std::fs::read_dir(corpus.join(target))
            .unwrap_or_else(|e| panic!("corpus of {target}: {e}"))
            .map(|entry| entry.expect("readable directory entry").path())
            .collect();
        assert!(!files.is_empty(), "the corpus of {target} is empty");
        for file in files {
            let data = std::fs::read(&file).expect("readable corpus file");
            if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
                failures.push(file.display().to_string());
            }
        }
    }
    assert!(failures.is_empty(), "fuzz inputs failing their checks (panics above): {failures:#?}");
}
