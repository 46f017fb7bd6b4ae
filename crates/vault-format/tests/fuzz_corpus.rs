//! Replays every file of every fuzz corpus (fuzz/corpus/<target>/*) through its target's entry
//! point on stable Rust, so inputs the fuzzer found interesting stay regression tests in CI.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_file() {
            run(&std::fs::read(&path).unwrap());
            count += 1;
        }
    }
    println!("{target}: replayed {count} corpus files");
    assert!(count > 0, "the {target} corpus is empty");
    count
}

#[test]
fn header_corpus() {
    replay("header", vault_format::fuzzing::header);
}

#[test]
fn envelope_corpus() {
    replay("envelope", vault_format::fuzzing::envelope);
}

#[test]
fn every_fuzz_target_has_a_replay() {
    let targets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/fuzz_targets");
    let replayed = ["header.rs", "envelope.rs"];
    for entry in std::fs::read_dir(targets).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            replayed.contains(&name.as_str()),
            "fuzz target {name} has no corpus replay test"
        );
    }
}
