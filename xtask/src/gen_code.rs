//! `cargo xtask gen [--check]`: renders `proto/` into `sdk/src/proto/` through the codegen
//! library and one starter project per plugin type into `examples/`, or (with `--check`)
//! proves the committed files are exactly what it would write.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};
use spire_plugin_codegen::{Config, GeneratedFile};

use crate::util::read_proto_tree;
use crate::{flags, scaffold};

/// Where the proto tree lives, relative to the workspace root.
pub(crate) const PROTO_DIR: &str = "proto";
/// Where the generated Rust goes, relative to the workspace root.
pub(crate) const OUT_DIR: &str = "sdk/src/proto";

pub(crate) fn run(flags: &flags::Gen) -> Result<()> {
    let proto_dir = Path::new(PROTO_DIR);
    let code = generate(proto_dir)?;
    let examples = scaffold::examples(proto_dir)?;
    let mut stale = Vec::new();
    for (out, files) in [(OUT_DIR, &code), (scaffold::EXAMPLES_DIR, &examples)] {
        if let Err(err) = apply(Path::new(out), files, flags.check) {
            stale.push(format!("{err:#}"));
        }
    }
    if !stale.is_empty() {
        bail!("{}", stale.join("\n"));
    }
    Ok(())
}

/// Renders the proto tree at `proto_dir` into `out`: writes missing and stale files and removes
/// files no longer generated, or with `check` only fails if there are any. Generation happens in
/// memory first, so a broken tree fails before anything in `out` is touched.
#[cfg(test)]
pub(crate) fn sync(proto_dir: &Path, out: &Path, check: bool) -> Result<()> {
    apply(out, &generate(proto_dir)?, check)
}

/// Makes `out` hold exactly `files` (or, with `check`, fails naming every difference).
#[allow(clippy::print_stderr, reason = "a task reports what it did on stderr")]
pub(crate) fn apply(out: &Path, files: &[GeneratedFile], check: bool) -> Result<()> {
    let drift = compare(out, files)?;
    let shown = out.display();
    if check {
        if drift.is_empty() {
            eprintln!("{shown}: {} generated files are fresh", files.len());
            return Ok(());
        }
        bail!("{}", report(out, &drift));
    }
    fs::create_dir_all(out).with_context(|| format!("creating {shown}"))?;
    for file in files {
        let path = out.join(&file.path);
        if drift.iter().any(|d| d.path == file.path) {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            fs::write(&path, &file.contents)
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    for extra in drift.iter().filter(|d| d.kind == DriftKind::Extra) {
        let path = out.join(&extra.path);
        fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        remove_empty_parents(out, &path);
    }
    eprintln!(
        "{shown}: {} files generated, {} changed, {} removed",
        files.len(),
        drift.iter().filter(|d| d.kind != DriftKind::Extra).count(),
        drift.iter().filter(|d| d.kind == DriftKind::Extra).count()
    );
    Ok(())
}

/// Removes the directories between `path` and `out` that its removal left empty.
fn remove_empty_parents(out: &Path, path: &Path) {
    let mut dir = path.parent();
    while let Some(current) = dir {
        if current == out || fs::remove_dir(current).is_err() {
            break;
        }
        dir = current.parent();
    }
}

/// Renders the proto tree at `proto_dir` in memory.
pub(crate) fn generate(proto_dir: &Path) -> Result<Vec<GeneratedFile>> {
    let tree = read_proto_tree(proto_dir)?;
    let mut config = Config::default();
    config.generated_by("cargo xtask gen");
    spire_plugin_codegen::generate(&config, &tree).map_err(|err| {
        // `.proto` paths are relative to the tree; the manifest's name is already a full path.
        if tree.source(err.file()).is_some() {
            anyhow::format_err!("{}/{err}", proto_dir.display())
        } else {
            anyhow::format_err!("{err}")
        }
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DriftKind {
    Missing,
    Stale,
    Extra,
}

#[derive(Debug)]
pub(crate) struct Drift {
    pub(crate) path: String,
    pub(crate) kind: DriftKind,
}

/// Compares the generated files with what is in `out`: missing, stale, and extra files.
pub(crate) fn compare(out: &Path, files: &[GeneratedFile]) -> Result<Vec<Drift>> {
    let mut drift = Vec::new();
    for file in files {
        let path = out.join(&file.path);
        match fs::read(&path) {
            Ok(existing) if existing == file.contents => {}
            Ok(_) => drift.push(Drift {
                path: file.path.clone(),
                kind: DriftKind::Stale,
            }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                drift.push(Drift {
                    path: file.path.clone(),
                    kind: DriftKind::Missing,
                });
            }
            Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
        }
    }
    let expected: BTreeSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
    let mut present = Vec::new();
    list_files(out, "", &mut present)?;
    present.sort();
    for name in present {
        if !expected.contains(name.as_str()) {
            drift.push(Drift {
                path: name,
                kind: DriftKind::Extra,
            });
        }
    }
    Ok(drift)
}

/// Every file below `dir` as a `/`-separated path after `prefix`, skipping Cargo's `target`
/// directories (a project built on its own keeps one).
pub(crate) fn list_files(dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    let entries = fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = format!("{prefix}{name}");
        if entry.path().is_dir() {
            if name != "target" {
                list_files(&entry.path(), &format!("{path}/"), out)?;
            }
        } else {
            out.push(path);
        }
    }
    Ok(())
}

pub(crate) fn report(out: &Path, drift: &[Drift]) -> String {
    let out = out.display();
    let mut text = format!("{} generated file(s) out of date in {out}:\n", drift.len());
    for d in drift {
        let what = match d.kind {
            DriftKind::Missing => "missing",
            DriftKind::Stale => "stale (differs from what `cargo xtask gen` writes)",
            DriftKind::Extra => "extra (no longer generated)",
        };
        text.push_str(&format!("  {out}/{}: {what}\n", d.path));
    }
    text.push_str("run `cargo xtask gen` to update them, then commit the result");
    text
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;

    /// The committed generated code is exactly what `cargo xtask gen` writes.
    #[test]
    fn generated_code_is_fresh() {
        let root = crate::util::project_root();
        let files = generate(&root.join(PROTO_DIR)).expect("proto/ generates");
        let out = root.join(OUT_DIR);
        let drift = compare(&out, &files).expect("sdk/src/proto is readable");
        assert!(drift.is_empty(), "{}", report(&out, &drift));
    }

    /// The committed `examples/` are exactly what `cargo xtask gen` renders (rustfmt included).
    #[test]
    fn examples_are_fresh() {
        let root = crate::util::project_root();
        let files = scaffold::examples(&root.join(PROTO_DIR)).expect("examples render");
        let out = root.join(scaffold::EXAMPLES_DIR);
        let drift = compare(&out, &files).expect("examples/ is readable");
        assert!(drift.is_empty(), "{}", report(&out, &drift));
    }

    const ECHO: &str = r#"syntax = "proto3";
package echo.v1;

message Ping {
  string text = 1;
}

service Echo {
  rpc Say(Ping) returns (Ping);
}
"#;

    const MANIFEST: &str = "[[plugin]]\nservice = \"echo.v1.Echo\"\ntype = \"Echo\"\n";

    /// A scratch `proto/` tree and `out/` directory in a tempdir.
    struct Scratch {
        dir: tempfile::TempDir,
    }

    impl Scratch {
        fn new(echo: &str, manifest: &str) -> Scratch {
            let scratch = Scratch {
                dir: tempfile::tempdir().expect("creating a tempdir"),
            };
            scratch.write("proto/echo/v1/echo.proto", echo);
            scratch.write("proto/services.toml", manifest);
            scratch
        }

        fn write(&self, relative: &str, contents: &str) {
            let path = self.dir.path().join(relative);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, contents).unwrap();
        }

        fn proto(&self) -> PathBuf {
            self.dir.path().join("proto")
        }

        fn out(&self) -> PathBuf {
            self.dir.path().join("out")
        }

        /// Runs `gen` (or `gen --check`) and returns its error, with the tempdir shown as `$TMP`.
        fn sync_err(&self, check: bool) -> String {
            let err = sync(&self.proto(), &self.out(), check).expect_err("gen fails");
            format!("{err:#}").replace(&self.dir.path().display().to_string(), "$TMP")
        }

        /// Every file under `out/` with its contents.
        fn out_files(&self) -> BTreeMap<String, Vec<u8>> {
            let mut files = BTreeMap::new();
            let out = self.out();
            if out.exists() {
                for entry in fs::read_dir(&out).unwrap() {
                    let entry = entry.unwrap();
                    let name = entry.file_name().to_string_lossy().into_owned();
                    files.insert(name, fs::read(entry.path()).unwrap());
                }
            }
            files
        }
    }

    #[test]
    fn broken_proto_leaves_out_dir_untouched() {
        let scratch = Scratch::new(
            &ECHO.replace("string text = 1;", "string text = 1"),
            MANIFEST,
        );
        scratch.write("out/echo.v1.rs", "// stale\n");
        scratch.write("out/old.rs", "// no longer generated\n");
        let before = scratch.out_files();

        assert_eq!(
            scratch.sync_err(false),
            "$TMP/proto/echo/v1/echo.proto:6:1: expected ';' or '[', but found '}'"
        );
        assert_eq!(scratch.out_files(), before);
    }

    #[test]
    fn broken_manifest_leaves_out_dir_untouched() {
        let scratch = Scratch::new(ECHO, &MANIFEST.replace("Echo\"\n", "Echo Plugin\"\n"));
        scratch.write("out/echo.v1.rs", "// stale\n");
        let before = scratch.out_files();

        assert_eq!(
            scratch.sync_err(false),
            "$TMP/proto/services.toml:3:8: plugin type `Echo Plugin` must be an identifier such as `KeyManager`"
        );
        assert_eq!(scratch.out_files(), before);
    }

    #[test]
    fn service_without_role_creates_no_out_dir() {
        let scratch = Scratch::new(ECHO, "");
        assert_eq!(
            scratch.sync_err(false),
            "$TMP/proto/echo/v1/echo.proto:8:1: service `echo.v1.Echo` has no role: declare it in \
             $TMP/proto/services.toml under one of [[plugin]], [[service]], [[host_service]] or \
             [[private]]"
        );
        assert!(
            !scratch.out().exists(),
            "gen created {}",
            scratch.out().display()
        );
    }

    #[test]
    fn gen_writes_then_check_passes() {
        let scratch = Scratch::new(ECHO, MANIFEST);
        scratch.write("out/echo.v1.rs", "// stale\n");
        scratch.write("out/old.rs", "// no longer generated\n");
        let before = scratch.out_files();

        assert_eq!(
            scratch.sync_err(true),
            "4 generated file(s) out of date in $TMP/out:\n\
             \x20 $TMP/out/echo.v1.rs: stale (differs from what `cargo xtask gen` writes)\n\
             \x20 $TMP/out/mod.rs: missing\n\
             \x20 $TMP/out/file_descriptor_set.bin: missing\n\
             \x20 $TMP/out/old.rs: extra (no longer generated)\n\
             run `cargo xtask gen` to update them, then commit the result"
        );
        assert_eq!(scratch.out_files(), before, "`gen --check` wrote to out/");

        sync(&scratch.proto(), &scratch.out(), false).expect("gen succeeds");
        let written = scratch.out_files();
        let names: Vec<&str> = written.keys().map(String::as_str).collect();
        assert_eq!(names, ["echo.v1.rs", "file_descriptor_set.bin", "mod.rs"]);
        let files = generate(&scratch.proto()).unwrap();
        for file in &files {
            assert!(
                written[&file.path] == file.contents,
                "{} differs",
                file.path
            );
        }
        sync(&scratch.proto(), &scratch.out(), true).expect("gen --check passes after gen");
    }
}
