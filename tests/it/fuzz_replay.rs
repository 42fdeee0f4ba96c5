//! Replays every committed fuzz input on stable: each target's seeds (`fuzz/corpus/<target>/`)
//! and crash reproducers (`fuzz/regressions/<target>/`) go through the same `__fuzz` entry
//! point the cargo-fuzz target calls, so a fixed crash stays fixed without nightly.

use std::path::Path;

use spire_plugin_tests::workspace_root;

/// A fuzz entry point: raw bytes in, a panic only on a bug.
type EntryPoint = fn(&[u8]);

/// Every fuzz target and the function it fuzzes.
const TARGETS: &[(&str, EntryPoint)] = &[
    ("handshake_line", spire_plugin_sdk::__fuzz::handshake_line),
    ("plugin_env", spire_plugin_sdk::__fuzz::plugin_env),
    ("hclog_line", spire_plugin_sdk::__fuzz::hclog_line),
    ("plugin_data", spire_plugin_sdk::__fuzz::plugin_data),
    ("declarations", spire_plugin_sdk::__fuzz::declarations),
    ("reattach_json", spire_plugin_sdk::__fuzz::reattach_json),
    ("autotls_cert", spire_plugin_sdk::__fuzz::autotls_cert),
    ("manifest", spire_plugin_codegen::__fuzz::manifest),
    ("proto_source", spire_plugin_codegen::__fuzz::proto_source),
];

/// The files of `dir`, sorted; none when it does not exist.
fn inputs(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|entry| entry.expect("reading a corpus entry").path())
                .filter(|path| path.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn every_committed_fuzz_input_replays_without_panicking() {
    let fuzz = workspace_root().join("fuzz");
    let mut report = Vec::new();
    for &(target, run) in TARGETS {
        let corpus = inputs(&fuzz.join("corpus").join(target));
        assert!(!corpus.is_empty(), "fuzz/corpus/{target}/ has no seeds");
        let regressions = inputs(&fuzz.join("regressions").join(target));
        for path in corpus.iter().chain(&regressions) {
            let data = std::fs::read(path).expect("reading a fuzz input");
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(
                outcome.is_ok(),
                "{target}: {} panicked (replay: cargo +nightly fuzz run {target} {})",
                path.display(),
                path.display()
            );
        }
        report.push(format!(
            "{target}: {} seeds, {} regressions",
            corpus.len(),
            regressions.len()
        ));
    }
    // Every target directory must be one the table knows, so a new target is not forgotten.
    for path in target_dirs(&fuzz.join("corpus")) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            TARGETS.iter().any(|(target, _)| *target == name),
            "fuzz/corpus/{name}/ has no entry in TARGETS"
        );
    }
    #[allow(
        clippy::print_stdout,
        reason = "the replay counts are the test's report"
    )]
    {
        println!("fuzz replay: {}", report.join("; "));
    }
}

fn target_dirs(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .expect("fuzz/corpus exists")
        .map(|entry| entry.expect("reading fuzz/corpus").path())
        .filter(|path| path.is_dir())
        .collect()
}
