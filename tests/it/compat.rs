//! `compat` against data: the corpus in `tests/compat/<case>/{previous,current}/` with each
//! case's `expected.txt` (the findings as `cargo xtask compat` prints them, every category, then
//! a count per category), and the real history of spire-plugin-sdk: every consecutive pair of
//! the module versions the Go module proxy serves, with the verdict of each category recorded.
//!
//! `UPDATE_EXPECT=1 cargo test -p spire-plugin-tests --test it compat` rewrites the expected
//! files of the corpus; review the diff before committing it.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use spire_plugin_codegen::ProtoTree;
use spire_plugin_codegen::compat::{self, Category, Finding};
use spire_plugin_tests::workspace_root;

fn corpus() -> PathBuf {
    workspace_root().join("tests").join("compat")
}

fn case_names() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(corpus())
        .expect("tests/compat exists")
        .map(|e| e.expect("listing tests/compat"))
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Every `.proto` file under the given roots, keyed by its path relative to its root.
fn read_tree(roots: &[PathBuf]) -> Result<ProtoTree> {
    let mut tree = ProtoTree::default();
    for root in roots {
        let mut pending = vec![root.clone()];
        while let Some(dir) = pending.pop() {
            for entry in fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
                let path = entry?.path();
                if path.is_dir() {
                    pending.push(path);
                } else if path.extension().is_some_and(|e| e == "proto") {
                    let name = path
                        .strip_prefix(root)?
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy())
                        .collect::<Vec<_>>()
                        .join("/");
                    let text = fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    tree.file(name, text);
                }
            }
        }
    }
    Ok(tree)
}

/// The findings as the CLI prints them, then the count per category.
fn render(findings: &[Finding]) -> String {
    let mut out: String = findings.iter().map(|f| format!("{f}\n")).collect();
    let counts: Vec<String> = Category::ALL
        .iter()
        .map(|c| format!("{c} {}", findings.iter().filter(|f| f.is_in(*c)).count()))
        .collect();
    out.push_str(&format!("summary: {}\n", counts.join(", ")));
    out
}

fn run_case(case: &str) -> Result<Vec<Finding>> {
    let dir = corpus().join(case);
    let previous = read_tree(&[dir.join("previous")])?;
    let current = read_tree(&[dir.join("current")])?;
    compat::check(&previous, &current).with_context(|| format!("checking case {case}"))
}

/// Compares one case with its `expected.txt`; with `UPDATE_EXPECT` set, rewrites the file.
/// Returns a description of the mismatch, if any.
fn check(case: &str) -> Option<String> {
    let actual = match run_case(case) {
        Ok(findings) => render(&findings),
        Err(err) => return Some(format!("{case}: {err:#}")),
    };
    let path = corpus().join(case).join("expected.txt");
    let expected = fs::read_to_string(&path).unwrap_or_default();
    if actual == expected {
        return None;
    }
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        fs::write(&path, &actual).expect("writing expected.txt");
        return None;
    }
    Some(format!(
        "tests/compat/{case}/expected.txt differs (rerun with UPDATE_EXPECT=1 to accept):\n--- expected\n{expected}+++ actual\n{actual}"
    ))
}

#[test]
fn corpus_matches_expected() {
    let cases = case_names();
    assert!(cases.len() >= 60, "only {} corpus cases", cases.len());
    let mismatches: Vec<String> = cases.iter().filter_map(|c| check(c)).collect();
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// Every rule has a case named after it that triggers it, and every case named after a rule
/// ID names a real rule.
#[test]
fn corpus_covers_every_rule() {
    let cases = case_names();
    let mut problems = Vec::new();
    for rule in compat::rules() {
        if !cases.iter().any(|c| c == rule.id) {
            problems.push(format!("no case tests/compat/{}", rule.id));
        }
    }
    for case in cases
        .iter()
        .filter(|c| c.chars().all(|ch| ch.is_ascii_uppercase() || ch == '_'))
    {
        match compat::rule(case) {
            None => problems.push(format!(
                "case {case} is named like a rule, but no rule has that ID"
            )),
            Some(rule) => {
                let findings = run_case(case).expect("corpus cases compile");
                if !findings.iter().any(|f| f.rule.id == rule.id) {
                    problems.push(format!("case {case} does not trigger {}", rule.id));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Cases named `ok_*` are compatible at every level but FILE, where moving an element between
/// files of a package still counts.
#[test]
fn ok_cases_are_compatible() {
    let mut problems = Vec::new();
    for case in case_names().iter().filter(|c| c.starts_with("ok_")) {
        let findings = run_case(case).expect("corpus cases compile");
        for finding in findings.iter().filter(|f| {
            [
                Category::Package,
                Category::WireJson,
                Category::Wire,
                Category::Source,
            ]
            .iter()
            .any(|c| f.is_in(*c))
        }) {
            problems.push(format!("{case}: {finding}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

const SPIRE_SDK: &str = "github.com/spiffe/spire-plugin-sdk";

/// A verdict per category, in the order of [`Category::ALL`]: FILE, PACKAGE, WIRE_JSON, WIRE,
/// SOURCE. `B` = breaking, `c` = compatible.
type Verdicts = &'static str;

/// Consecutive spire-plugin-sdk versions, with the verdict per category and why.
///
/// The list is every release tag from v1.0.0 to v1.15.2 that the Go module proxy serves here
/// (`go list -m -versions` is refused by the proxy, and 75 of the 98 release tags answer
/// "403 This module version is not available"); each row compares one version with the next
/// served one. Proto roots: `<module>/proto` and `<module>/internal/proto`.
const HISTORY: &[(&str, &str, Verdicts, &str)] = &[
    (
        "v1.0.0",
        "v1.0.2",
        "ccccc",
        "no proto change (Go code only)",
    ),
    ("v1.0.2", "v1.1.0", "ccccc", "no proto change"),
    ("v1.1.0", "v1.1.1", "ccccc", "no proto change"),
    ("v1.1.1", "v1.1.2", "ccccc", "no proto change"),
    (
        "v1.1.2",
        "v1.2.0",
        "ccccc",
        "adds the agent SVIDStore plugin and a server node attestor field",
    ),
    ("v1.2.0", "v1.2.1", "ccccc", "no proto change"),
    ("v1.2.1", "v1.2.2", "ccccc", "no proto change"),
    ("v1.2.2", "v1.3.0", "ccccc", "no proto change"),
    ("v1.3.0", "v1.4.0", "ccccc", "no proto change"),
    (
        "v1.4.0",
        "v1.4.4",
        "ccccc",
        "adds rpc Deinit and its messages to the server node attestor; a comment changes",
    ),
    ("v1.4.4", "v1.5.0", "ccccc", "no proto change"),
    ("v1.5.0", "v1.5.5", "ccccc", "no proto change"),
    (
        "v1.5.5",
        "v1.6.0",
        "BBBBB",
        "deletes the NodeResolver plugin (file, package, service, rpc Resolve, messages); adds CredentialComposer. WIRE and WIRE_JSON break through GRPC_METHOD_NO_DELETE alone, which buf's categories lack",
    ),
    (
        "v1.6.0",
        "v1.7.0",
        "ccccc",
        "adds the server BundlePublisher plugin",
    ),
    ("v1.7.0", "v1.8.0", "ccccc", "no proto change"),
    ("v1.8.0", "v1.9.0", "ccccc", "no proto change"),
    ("v1.9.0", "v1.9.6", "ccccc", "no proto change"),
    (
        "v1.9.6",
        "v1.11.1",
        "ccccc",
        "adds `tainted` to JWTKey and X509Certificate, and rpc Validate to Config",
    ),
    ("v1.11.1", "v1.12.0", "ccccc", "no proto change"),
    (
        "v1.12.0",
        "v1.14.4",
        "ccccc",
        "adds SubscribeToLocalBundle to UpstreamAuthority, WITKey, and WIT fields to Bundle",
    ),
    ("v1.14.4", "v1.15.1", "ccccc", "no proto change"),
    (
        "v1.15.1",
        "v1.15.2",
        "ccccc",
        "adds rpc AttestReference to the workload attestor",
    ),
];

/// Downloads `versions` of spire-plugin-sdk into the module cache with one `go mod download`.
fn download(versions: &[&str]) -> Result<BTreeMap<String, PathBuf>> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Module {
        version: String,
        dir: Option<PathBuf>,
        error: Option<String>,
    }
    let scratch = tempfile::tempdir()?;
    let output = Command::new("go")
        .args(["mod", "download", "-json"])
        .args(versions.iter().map(|v| format!("{SPIRE_SDK}@{v}")))
        .current_dir(scratch.path())
        .env("GOFLAGS", "-mod=mod")
        .output()
        .context("running `go mod download` (the history test needs the Go toolchain)")?;
    let mut dirs = BTreeMap::new();
    let mut errors = Vec::new();
    for module in serde_json::Deserializer::from_slice(&output.stdout).into_iter::<Module>() {
        let module = module.context("parsing `go mod download -json` output")?;
        match (module.dir, module.error) {
            (Some(dir), None) => {
                dirs.insert(module.version, dir);
            }
            (_, error) => errors.push(format!("{}: {}", module.version, error.unwrap_or_default())),
        }
    }
    if !errors.is_empty() {
        bail!("`go mod download` failed:\n  {}", errors.join("\n  "));
    }
    Ok(dirs)
}

fn verdicts(findings: &[Finding]) -> String {
    Category::ALL
        .iter()
        .map(|c| {
            if findings.iter().any(|f| f.is_in(*c)) {
                'B'
            } else {
                'c'
            }
        })
        .collect()
}

fn module_tree(dir: &Path) -> Result<ProtoTree> {
    read_tree(&[dir.join("proto"), dir.join("internal").join("proto")])
}

#[test]
fn spire_plugin_sdk_history() -> Result<()> {
    let mut versions: Vec<&str> = HISTORY.iter().map(|(old, _, _, _)| *old).collect();
    versions.extend(HISTORY.last().map(|(_, new, _, _)| *new));
    for pair in HISTORY.windows(2) {
        assert_eq!(
            pair[0].1, pair[1].0,
            "each row starts where the previous one ended"
        );
    }
    let dirs = download(&versions)?;
    let mut problems = Vec::new();
    for (old, new, expected, reason) in HISTORY {
        let previous = module_tree(&dirs[*old])?;
        let current = module_tree(&dirs[*new])?;
        let findings = compat::check(&previous, &current)
            .with_context(|| format!("checking {old} -> {new}"))?;
        let actual = verdicts(&findings);
        if actual != *expected {
            let listed: String = findings.iter().map(|f| format!("\n    {f}")).collect();
            problems.push(format!(
                "{old} -> {new}: verdicts {actual}, expected {expected} ({reason}); findings:{listed}"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "verdicts per category are FILE, PACKAGE, WIRE_JSON, WIRE, SOURCE (B = breaking):\n{}",
        problems.join("\n")
    );
    Ok(())
}
