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
use spire_plugin_codegen::scaffold::{self, PluginTarget, Project, SdkSource, Versions};
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
    let versions = workspace_versions(&project_root())?;
    let mut files = Vec::new();
    for target in scaffold::targets(&model) {
        let name = example_name(&target);
        let mut project = Project::new(target, &name, SdkSource::Path("../../sdk".to_owned()))
            .with_context(|| format!("naming the example {name}"))?;
        project.standalone = false;
        project.versions = versions.clone();
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

/// The versions this workspace's `[workspace.dependencies]` gives the crates a project
/// declares, so a project resolves to what the workspace builds with.
fn workspace_versions(root: &Path) -> Result<Versions> {
    let manifest = root.join("Cargo.toml");
    let text =
        fs::read_to_string(&manifest).with_context(|| format!("reading {}", manifest.display()))?;
    let doc: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("parsing {}", manifest.display()))?;
    let version = |name: &str| -> Result<String> {
        let item = doc
            .get("workspace")
            .and_then(|workspace| workspace.get("dependencies"))
            .and_then(|dependencies| dependencies.get(name));
        item.and_then(|item| {
            item.as_str()
                .or_else(|| item.get("version").and_then(toml_edit::Item::as_str))
        })
        .map(str::to_owned)
        .with_context(|| {
            format!(
                "{}: [workspace.dependencies] has no version for {name}",
                manifest.display()
            )
        })
    };
    Ok(Versions {
        tokio: version("tokio")?,
        tokio_stream: version("tokio-stream")?,
        serde: version("serde")?,
        tracing: version("tracing")?,
    })
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
    let local_sdk = root.join("sdk");
    let mut uses_local_sdk = false;
    let sdk = match (&flags.sdk_version, &flags.sdk_path) {
        (Some(version), _) => SdkSource::Version(version.clone()),
        (None, path) => {
            let sdk_dir = path
                .as_deref()
                .map_or_else(|| local_sdk.clone(), |path| absolute(invoked_from, path));
            if !sdk_dir.join("Cargo.toml").is_file() {
                bail!(
                    "--sdk-path {}: no Cargo.toml there (expected the spire-plugin-sdk crate)",
                    sdk_dir.display()
                );
            }
            uses_local_sdk = sdk_dir == local_sdk;
            SdkSource::Path(relative_path(&dir, &sdk_dir).display().to_string())
        }
    };
    let mut project = Project::new(target, &crate_name, sdk.clone())?;
    project.standalone = !in_workspace;
    project.versions = workspace_versions(&root)?;
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
    } else if uses_local_sdk {
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
    use std::collections::BTreeMap;

    use super::*;

    fn flags(target: &str, name: &str, dir: &Path) -> flags::New {
        flags::New {
            target: target.to_owned(),
            name: name.to_owned(),
            dir: Some(dir.to_path_buf()),
            sdk_path: None,
            sdk_version: None,
        }
    }

    /// Every file below `dir` with its contents.
    fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
        let mut names = Vec::new();
        crate::gen_code::list_files(dir, "", &mut names).unwrap();
        names
            .into_iter()
            .map(|name| {
                let contents = fs::read(dir.join(&name)).unwrap();
                (name, contents)
            })
            .collect()
    }

    /// The error of `cargo xtask new`, with the tempdir shown as `$TMP`.
    fn new_err(flags: &flags::New, tmp: &Path) -> String {
        let err = new(flags, tmp).expect_err("new refuses");
        format!("{err:#}").replace(&tmp.display().to_string(), "$TMP")
    }

    #[test]
    fn refuses_an_unknown_type_listing_the_valid_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let err = new_err(
            &flags("agent/Bogus", "x", &tmp.path().join("x")),
            tmp.path(),
        );
        assert_eq!(
            err,
            "unknown plugin type \"agent/Bogus\"; valid types: agent/KeyManager, \
             agent/NodeAttestor, agent/SVIDStore, agent/WorkloadAttestor, server/BundlePublisher, \
             server/CredentialComposer, server/KeyManager, server/NodeAttestor, server/Notifier, \
             server/UpstreamAuthority"
        );
        // A bare type both sides have is ambiguous.
        let err = new_err(&flags("keymanager", "x", &tmp.path().join("x")), tmp.path());
        assert_eq!(
            err,
            "ambiguous plugin type \"keymanager\": say which one of agent/KeyManager, \
             server/KeyManager"
        );
        assert!(!tmp.path().join("x").exists());
    }

    #[test]
    fn refuses_invalid_crate_names() {
        let tmp = tempfile::tempdir().unwrap();
        let cases = [
            ("", "invalid crate name \"\": the name is empty"),
            (
                "my.plugin",
                "invalid crate name \"my.plugin\": '.' is not allowed (use ASCII letters, digits, \
                 `-` and `_`)",
            ),
            (
                "9lives",
                "invalid crate name \"9lives\": it must start with an ASCII letter",
            ),
            (
                "test",
                "invalid crate name \"test\": `test` is a Rust keyword or a name Cargo reserves",
            ),
            (
                "Self",
                "invalid crate name \"Self\": `self` is a Rust keyword or a name Cargo reserves",
            ),
            (
                "café",
                "invalid crate name \"café\": 'é' is not allowed (use ASCII letters, digits, `-` \
                 and `_`)",
            ),
        ];
        for (name, expected) in cases {
            let dir = tmp.path().join("project");
            let err = new_err(&flags("agent/KeyManager", name, &dir), tmp.path());
            assert_eq!(err, expected);
            assert!(!dir.exists(), "{name}: created {}", dir.display());
        }
        let long = "a".repeat(65);
        let err = new_err(
            &flags("agent/KeyManager", &long, &tmp.path().join("p")),
            tmp.path(),
        );
        assert!(
            err.ends_with("it is 65 characters long; at most 64 are allowed"),
            "{err}"
        );
    }

    #[test]
    fn refuses_a_non_empty_directory_and_leaves_it_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("taken");
        fs::create_dir_all(dir.join("src")).unwrap();
        fs::write(dir.join("src/lib.rs"), "// mine\n").unwrap();
        let before = snapshot(&dir);
        let err = new_err(&flags("agent/KeyManager", "km", &dir), tmp.path());
        assert_eq!(
            err,
            "$TMP/taken exists and is not empty; choose another --dir or name"
        );
        assert_eq!(snapshot(&dir), before);

        let file = tmp.path().join("file");
        fs::write(&file, "x").unwrap();
        let err = new_err(&flags("agent/KeyManager", "km", &file), tmp.path());
        assert_eq!(err, "$TMP/file exists and is not a directory");
    }

    #[test]
    fn names_are_cased_and_the_default_dir_follows_the_name() {
        let tmp = tempfile::tempdir().unwrap();
        let mut flags = flags("server/upstream-authority", "MyUpstream_CA", tmp.path());
        flags.dir = None;
        flags.sdk_version = Some("0.1".to_owned());
        new(&flags, tmp.path()).expect("created");
        let dir = tmp.path().join("my-upstream-ca");
        let manifest = fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("name = \"my-upstream-ca\""), "{manifest}");
        assert!(
            manifest.contains("spire-plugin-sdk = \"0.1\"\n"),
            "{manifest}"
        );
        assert!(manifest.ends_with("\n[workspace]\n"), "{manifest}");
        assert!(
            !dir.join("Cargo.lock").exists(),
            "no lock for a registry SDK"
        );
        let plugin = fs::read_to_string(dir.join("src/plugin.rs")).unwrap();
        assert!(plugin.contains("impl UpstreamAuthority for MyUpstreamCa {"));
        assert!(plugin.contains("type MintX509CAAndSubscribeStream ="));
        let main = fs::read_to_string(dir.join("src/main.rs")).unwrap();
        assert!(main.contains("my_upstream_ca::plugin().serve_or_exit().await"));
    }

    #[test]
    fn an_explicit_sdk_path_is_written_relative_and_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let mut flags = flags("agent/SVIDStore", "store", &tmp.path().join("a/store"));
        flags.sdk_path = Some(project_root().join("sdk"));
        new(&flags, tmp.path()).expect("created");
        assert!(
            tmp.path().join("a/store/Cargo.lock").is_file(),
            "this checkout's sdk, given explicitly, also gets its Cargo.lock"
        );
        let manifest = fs::read_to_string(tmp.path().join("a/store/Cargo.toml")).unwrap();
        let expected = relative_path(&tmp.path().join("a/store"), &project_root().join("sdk"));
        assert!(
            manifest.contains(&format!(
                "spire-plugin-sdk = {{ path = \"{}\" }}",
                expected.display()
            )),
            "{manifest}"
        );

        flags.dir = Some(tmp.path().join("b"));
        flags.sdk_path = Some(tmp.path().join("no-sdk"));
        assert_eq!(
            new_err(&flags, tmp.path()),
            "--sdk-path $TMP/no-sdk: no Cargo.toml there (expected the spire-plugin-sdk crate)"
        );
        assert!(!tmp.path().join("b").exists());
    }

    #[test]
    fn joins_the_workspace_unless_a_member_glob_covers_it() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::write(
            root.join("Cargo.toml"),
            "[workspace]\n# the members\nmembers = [\"sdk\", \"plugins/*\"]\n",
        )
        .unwrap();
        add_workspace_member(root, &root.join("plugins/a")).unwrap();
        add_workspace_member(root, &root.join("mine/b")).unwrap();
        add_workspace_member(root, &root.join("mine/b")).unwrap();
        assert_eq!(
            fs::read_to_string(root.join("Cargo.toml")).unwrap(),
            "[workspace]\n# the members\nmembers = [\"sdk\", \"plugins/*\", \"mine/b\"]\n"
        );
    }

    #[test]
    fn versions_come_from_the_workspace_manifest() {
        let versions = workspace_versions(&project_root()).unwrap();
        assert_eq!(
            versions,
            Versions::default(),
            "update scaffold::Versions::default"
        );
        let tmp = tempfile::tempdir().unwrap();
        fs::write(
            tmp.path().join("Cargo.toml"),
            "[workspace.dependencies]\ntonic = \"9\"\n",
        )
        .unwrap();
        let err = format!("{:#}", workspace_versions(tmp.path()).unwrap_err());
        assert!(
            err.ends_with("[workspace.dependencies] has no version for tokio"),
            "{err}"
        );
    }

    #[test]
    fn paths() {
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

    /// What the issue asks of a fresh clone: `cargo xtask new <type> <name> --dir <tmp>`, then
    /// `cargo test` inside passes, for every type. The projects share one target directory
    /// (`target/scaffold-tests`), so the SDK and its dependencies build once; they build
    /// offline from the copied Cargo.lock.
    #[test]
    fn every_type_scaffolds_into_a_project_whose_tests_pass() {
        let tmp = tempfile::tempdir().unwrap();
        let model = load_model(&project_root().join(PROTO_DIR)).unwrap();
        let targets = scaffold::targets(&model);
        assert_eq!(targets.len(), 10);
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut failures = Vec::new();
        for target in &targets {
            let name = format!("my-{}", example_name(target));
            let dir = tmp.path().join(&name);
            new(
                &flags(&target.qualified().to_lowercase(), &name, &dir),
                tmp.path(),
            )
            .unwrap_or_else(|err| panic!("{}: {err:#}", target.qualified()));
            let output = Command::new(&cargo)
                .args(["test", "--offline", "--quiet"])
                .current_dir(&dir)
                .env(
                    "CARGO_TARGET_DIR",
                    project_root().join("target/scaffold-tests"),
                )
                .env("CARGO_PROFILE_DEV_DEBUG", "0")
                .env_remove("RUSTFLAGS")
                .output()
                .expect("running cargo");
            let stdout = String::from_utf8_lossy(&output.stdout);
            if !output.status.success() {
                failures.push(format!(
                    "{}: cargo test failed ({}):\n{stdout}\n{}",
                    target.qualified(),
                    output.status,
                    String::from_utf8_lossy(&output.stderr)
                ));
                continue;
            }
            let passed: usize = stdout
                .lines()
                .filter_map(|line| line.strip_prefix("test result: ok. "))
                .filter_map(|rest| rest.split(' ').next()?.parse::<usize>().ok())
                .sum();
            assert_eq!(passed, 13, "{}: {stdout}", target.qualified());
        }
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    }
}
