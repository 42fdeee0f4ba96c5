//! Starter projects on disk: `cargo xtask new` (one project of a chosen plugin type, anywhere)
//! and the example of every plugin type that `cargo xtask gen` keeps under `examples/`. The
//! templates and their data are `spire_plugin_codegen::scaffold`'s; this module picks names
//! and paths, formats the Rust with rustfmt and writes.

use std::fs;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use heck::ToKebabCase;
use spire_plugin_codegen::scaffold::{self, PluginTarget, Project, SdkSource};
use spire_plugin_codegen::{GeneratedFile, Model};

use crate::flags;
use crate::gen_code::PROTO_DIR;
use crate::util::{project_root, read_proto_tree};

/// Where `cargo xtask gen` renders one project per plugin type, relative to the workspace root.
pub(crate) const EXAMPLES_DIR: &str = "examples";

/// The example of each plugin type of the tree at `proto_dir`: `<side>-<type>/…` (e.g.
/// `agent-workload-attestor/src/plugin.rs`), a workspace member taking the SDK from `sdk/`.
pub(crate) fn examples(proto_dir: &Path) -> Result<Vec<GeneratedFile>> {
    let model = load_model(proto_dir)?;
    let mut files = Vec::new();
    for target in scaffold::targets(&model) {
        let name = example_name(&target);
        let mut project = Project::new(target, &name, SdkSource::Path("../../sdk".to_owned()))
            .with_context(|| format!("naming the example {name}"))?;
        project.standalone = false;
        for file in render(&model, &project, Rustfmt::Required)? {
            files.push(GeneratedFile {
                path: format!("{name}/{}", file.path),
                contents: file.contents,
            });
        }
    }
    Ok(files)
}

/// `agent-workload-attestor` for `agent/WorkloadAttestor`.
pub(crate) fn example_name(target: &PluginTarget) -> String {
    target.qualified().replace('/', "-").to_kebab_case()
}

fn load_model(proto_dir: &Path) -> Result<Model> {
    let tree = read_proto_tree(proto_dir)?;
    spire_plugin_codegen::model(&tree)
        .map_err(|err| anyhow::format_err!("{}/{err}", proto_dir.display()))
}

/// Whether a missing rustfmt is an error (committed examples must be byte-stable) or only
/// leaves the Rust unformatted (a new project still builds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rustfmt {
    Required,
    BestEffort,
}

/// Renders `project` and formats its Rust files with rustfmt.
fn render(model: &Model, project: &Project, rustfmt: Rustfmt) -> Result<Vec<GeneratedFile>> {
    let mut files = scaffold::render(model, project)?;
    for file in files.iter_mut().filter(|file| file.path.ends_with(".rs")) {
        match format_rust(&file.contents) {
            Ok(formatted) => file.contents = formatted,
            Err(err) if rustfmt == Rustfmt::BestEffort => {
                eprintln!("warning: {} left unformatted: {err:#}", file.path);
            }
            Err(err) => return Err(err.context(format!("formatting {}", file.path))),
        }
    }
    Ok(files)
}

/// Runs rustfmt (edition 2024, default style) over one file's text.
fn format_rust(source: &[u8]) -> Result<Vec<u8>> {
    let mut child = Command::new("rustfmt")
        .args(["--edition", "2024", "--emit", "stdout", "--quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting rustfmt (install it with `rustup component add rustfmt`)")?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let source = source.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&source));
    let output = child.wait_with_output().context("running rustfmt")?;
    writer
        .join()
        .expect("rustfmt writer thread")
        .context("writing to rustfmt")?;
    if !output.status.success() {
        bail!(
            "rustfmt failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output.stdout)
}

/// `cargo xtask new <side>/<type> <name> [--dir <path>] [--sdk-path <path> | --sdk-version <v>]`.
#[allow(clippy::print_stderr, reason = "a task reports what it did on stderr")]
pub(crate) fn new(flags: &flags::New, invoked_from: &Path) -> Result<()> {
    let root = project_root();
    let model = load_model(&root.join(PROTO_DIR))?;
    let target = scaffold::find_target(&model, &flags.target)?;
    let crate_name = scaffold::crate_name(&flags.name)?;
    let dir = absolute(
        invoked_from,
        flags.dir.as_deref().unwrap_or(Path::new(&crate_name)),
    );
    check_destination(&dir)?;

    let in_workspace = dir.starts_with(&root);
    let sdk = match (&flags.sdk_version, &flags.sdk_path) {
        (Some(version), _) => SdkSource::Version(version.clone()),
        (None, path) => {
            let sdk_dir = path
                .as_deref()
                .map_or_else(|| root.join("sdk"), |path| absolute(invoked_from, path));
            if !sdk_dir.join("Cargo.toml").is_file() {
                bail!(
                    "--sdk-path {}: no Cargo.toml there (expected the spire-plugin-sdk crate)",
                    sdk_dir.display()
                );
            }
            SdkSource::Path(relative_path(&dir, &sdk_dir).display().to_string())
        }
    };
    let mut project = Project::new(target, &crate_name, sdk.clone())?;
    project.standalone = !in_workspace;
    let files = render(&model, &project, Rustfmt::BestEffort)?;

    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for file in &files {
        let path = dir.join(&file.path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::write(&path, &file.contents).with_context(|| format!("writing {}", path.display()))?;
    }
    if in_workspace {
        add_workspace_member(&root, &dir)?;
    } else if matches!(sdk, SdkSource::Path(_)) && flags.sdk_path.is_none() {
        // The same dependency versions this checkout builds with, so the project builds
        // offline from the crates Cargo already has.
        let lock = root.join("Cargo.lock");
        fs::copy(&lock, dir.join("Cargo.lock"))
            .with_context(|| format!("copying {} into the project", lock.display()))?;
    }
    eprintln!(
        "Created {} `{crate_name}` in {} ({} files){}.\nNext: cd {} && cargo test",
        project.target.qualified(),
        dir.display(),
        files.len(),
        if in_workspace {
            ", a member of this workspace"
        } else {
            ""
        },
        dir.display()
    );
    Ok(())
}

/// Refuses a destination that exists and is not an empty directory.
fn check_destination(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    if !dir.is_dir() {
        bail!("{} exists and is not a directory", dir.display());
    }
    let mut entries = fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    if entries.next().is_some() {
        bail!(
            "{} exists and is not empty; choose another --dir or name",
            dir.display()
        );
    }
    Ok(())
}

/// `path` made absolute against `base`, with `.` and `..` resolved lexically.
fn absolute(base: &Path, path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    };
    let mut out = PathBuf::new();
    for component in joined.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `to` relative to `from` (both absolute and normalized), e.g. `../../sdk`.
fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component<'_>> = from.components().collect();
    let to: Vec<Component<'_>> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for component in &to[common..] {
        out.push(component);
    }
    out
}

/// Lists `dir` in the workspace's `members` unless a member entry (or glob) already covers it.
#[allow(clippy::print_stderr, reason = "a task reports what it did on stderr")]
fn add_workspace_member(root: &Path, dir: &Path) -> Result<()> {
    let manifest = root.join("Cargo.toml");
    let text =
        fs::read_to_string(&manifest).with_context(|| format!("reading {}", manifest.display()))?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("parsing {}", manifest.display()))?;
    let member = relative_path(root, dir).display().to_string();
    let members = doc["workspace"]["members"]
        .as_array_mut()
        .with_context(|| format!("{}: [workspace] has no members array", manifest.display()))?;
    let covered = members.iter().filter_map(|m| m.as_str()).any(|entry| {
        entry == member
            || entry
                .strip_suffix("/*")
                .is_some_and(|parent| Path::new(&member).parent() == Some(Path::new(parent)))
    });
    if !covered {
        members.push(member.as_str());
        fs::write(&manifest, doc.to_string())
            .with_context(|| format!("writing {}", manifest.display()))?;
        eprintln!("Added {member} to the workspace members in Cargo.toml.");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative_path(Path::new("/w/examples/a"), Path::new("/w/sdk")),
            Path::new("../../sdk")
        );
        assert_eq!(
            relative_path(Path::new("/tmp/x"), Path::new("/w/sdk")),
            Path::new("../../w/sdk")
        );
        assert_eq!(
            absolute(Path::new("/a/b"), Path::new("../c/./d")),
            Path::new("/a/c/d")
        );
    }
}
