//! Codegen serves any proto tree, and what it generates works in a crate outside the workspace.
//!
//! The fixture `tests/fixtures/kv-plugin-api/` holds a small non-SPIRE plugin API (`proto/`: a
//! `Store` plugin type with a unary and a server-streaming RPC, a `Logger` host service, and their
//! role manifest) and a crate template (`crate/`). The test generates the API with
//! `spire_plugin_codegen::generate`, writes the template plus the generated files into a fresh
//! crate in a tempdir outside the workspace (depending on `spire-plugin-sdk` by path, with the
//! workspace's `Cargo.lock`), and runs it with `cargo run --offline`. That program serves the
//! generated `Store` and `Logger` and the SDK's `WorkloadAttestor` over loopback TCP, calls them
//! through the generated clients and checks the bridges' identities; see its `src/main.rs`.
//!
//! The crate's manifest names no tonic or prost crate: the generated code reaches them through
//! `spire_plugin_sdk::__codegen`, the program through `spire_plugin_sdk::{tonic, prost}`.
//!
//! The nested build shares `target/external-crate/`, so after the first run only the tempdir
//! crate itself compiles. Error paths of codegen are unit-tested in `codegen/src/tests.rs`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use spire_plugin_codegen::{Config, ProtoTree, generate};
use spire_plugin_tests::workspace_root;

/// The fixture, relative to the workspace root.
const FIXTURE: &str = "tests/fixtures/kv-plugin-api";
/// The placeholder in the template's `Cargo.toml` for the SDK's absolute path.
const SDK_PATH: &str = "@SDK_PATH@";

#[test]
fn generated_kv_api_serves_and_calls_in_an_external_crate() -> Result<()> {
    let root = workspace_root();
    let fixture = root.join(FIXTURE);

    let tree = read_tree(&fixture.join("proto"))?;
    let files = generate(&Config::default(), &tree).context("generating the kv fixture")?;
    let paths: Vec<&str> = files.iter().map(|file| file.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "acme.host.v1.rs",
            "acme.kv.v1.rs",
            "mod.rs",
            "file_descriptor_set.bin"
        ]
    );

    let manifest = fixture.join("crate/Cargo.toml.template");
    let manifest =
        fs::read_to_string(&manifest).with_context(|| format!("reading {}", manifest.display()))?;
    let runtime_crates = runtime_crates_named(&manifest);
    ensure!(
        runtime_crates.is_empty(),
        "the external crate's Cargo.toml names {runtime_crates:?}: generated code must reach tonic \
         and prost only through spire_plugin_sdk::__codegen, hand-written code through \
         spire_plugin_sdk::tonic and spire_plugin_sdk::prost"
    );

    let dir = tempfile::tempdir().context("creating a tempdir")?;
    let krate = dir.path();
    ensure!(
        !krate.starts_with(&root),
        "the external crate must live outside the workspace, not in {}",
        krate.display()
    );
    copy_template(&fixture.join("crate"), krate, &root.join("sdk"))?;
    fs::copy(root.join("Cargo.lock"), krate.join("Cargo.lock")).context("copying Cargo.lock")?;
    let kv = krate.join("src/kv");
    fs::create_dir_all(&kv).with_context(|| format!("creating {}", kv.display()))?;
    for file in &files {
        let path = kv.join(&file.path);
        fs::write(&path, &file.contents).with_context(|| format!("writing {}", path.display()))?;
    }

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(&cargo)
        .args(["run", "--offline", "--quiet"])
        .current_dir(krate)
        .env("CARGO_TARGET_DIR", root.join("target/external-crate"))
        .output()
        .with_context(|| format!("running {} run", cargo.to_string_lossy()))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!(
            "`cargo run --offline` in the external crate {} failed ({}):\n{stderr}{}",
            krate.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout)
        );
    }
    ensure!(
        stderr.contains("kv-plugin-external: all checks passed"),
        "the external crate exited without finishing its checks:\n{stderr}"
    );
    ensure!(
        !stderr.contains("warning:"),
        "building the external crate printed warnings; generated code (and the SDK it names) \
         must compile warning-free in a user's crate:\n{stderr}"
    );
    Ok(())
}

/// Every word of a Cargo manifest, outside comments, that names a tonic or prost crate
/// (`tonic`, `tonic-prost`, `prost`, `prost-types`, …): as a dependency key, a table header or a
/// `package = "…"` rename alike.
fn runtime_crates_named(manifest: &str) -> Vec<String> {
    manifest
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default())
        .flat_map(|line| line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')))
        .filter(|word| {
            let word = word.replace('_', "-");
            word.starts_with("tonic") || word.starts_with("prost")
        })
        .map(str::to_owned)
        .collect()
}

/// Reads the `.proto` files under `dir` (named relative to it) and its `services.toml`.
fn read_tree(dir: &Path) -> Result<ProtoTree> {
    let mut tree = ProtoTree::default();
    for path in walk(dir)? {
        if path.extension().is_some_and(|ext| ext == "proto") {
            let name = relative_name(dir, &path);
            let source =
                fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            tree.file(name, source);
        }
    }
    let manifest = dir.join("services.toml");
    let source =
        fs::read_to_string(&manifest).with_context(|| format!("reading {}", manifest.display()))?;
    tree.manifest(manifest.display().to_string(), source);
    Ok(tree)
}

/// Copies the crate template from `template` to `krate`, turning `Cargo.toml.template` into a
/// `Cargo.toml` that depends on the SDK at `sdk`.
fn copy_template(template: &Path, krate: &Path, sdk: &Path) -> Result<()> {
    for path in walk(template)? {
        let name = relative_name(template, &path);
        let (target, contents) = if name == "Cargo.toml.template" {
            let text =
                fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            ensure!(
                text.contains(SDK_PATH),
                "{} lacks {SDK_PATH}",
                path.display()
            );
            let sdk = sdk.to_str().context("the workspace path is UTF-8")?;
            (
                krate.join("Cargo.toml"),
                text.replace(SDK_PATH, sdk).into_bytes(),
            )
        } else {
            let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            (krate.join(&name), bytes)
        };
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::write(&target, contents).with_context(|| format!("writing {}", target.display()))?;
    }
    Ok(())
}

/// Every file under `dir`, in path order.
fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
            let path = entry
                .with_context(|| format!("listing {}", dir.display()))?
                .path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// `path` relative to `dir`, `/`-separated.
fn relative_name(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir)
        .expect("walked under dir")
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}
