//! `cargo xtask gen [--check]`: renders `proto/` into `sdk/src/proto/` through the codegen
//! library, or (with `--check`) proves the committed files are exactly what it would write.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};
use spire_plugin_codegen::{Config, GeneratedFile};

use crate::flags;
use crate::util::read_proto_tree;

/// Where the proto tree lives, relative to the workspace root.
pub(crate) const PROTO_DIR: &str = "proto";
/// Where the generated Rust goes, relative to the workspace root.
pub(crate) const OUT_DIR: &str = "sdk/src/proto";

pub(crate) fn run(flags: &flags::Gen) -> Result<()> {
    let root = Path::new(".");
    let files = generate(root)?;
    let out = root.join(OUT_DIR);
    let drift = compare(&out, &files)?;
    if flags.check {
        if drift.is_empty() {
            eprintln!("{OUT_DIR}: {} generated files are fresh", files.len());
            return Ok(());
        }
        bail!("{}", report(&drift));
    }
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    for file in &files {
        let path = out.join(&file.path);
        if drift.iter().any(|d| d.path == file.path) {
            fs::write(&path, &file.contents)
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    for extra in drift.iter().filter(|d| d.kind == DriftKind::Extra) {
        let path = out.join(&extra.path);
        fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    eprintln!(
        "{OUT_DIR}: {} files generated, {} changed, {} removed",
        files.len(),
        drift.iter().filter(|d| d.kind != DriftKind::Extra).count(),
        drift.iter().filter(|d| d.kind == DriftKind::Extra).count()
    );
    Ok(())
}

/// Renders the workspace's proto tree in memory.
pub(crate) fn generate(root: &Path) -> Result<Vec<GeneratedFile>> {
    let tree = read_proto_tree(&root.join(PROTO_DIR))?;
    let mut config = Config::default();
    config.generated_by("cargo xtask gen");
    spire_plugin_codegen::generate(&config, &tree)
        .map_err(|err| anyhow::format_err!("{PROTO_DIR}/{err}"))
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
    if out.is_dir() {
        let mut present: Vec<String> = fs::read_dir(out)
            .with_context(|| format!("listing {}", out.display()))?
            .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()
            .with_context(|| format!("listing {}", out.display()))?;
        present.sort();
        for name in present {
            if !expected.contains(name.as_str()) {
                drift.push(Drift {
                    path: name,
                    kind: DriftKind::Extra,
                });
            }
        }
    }
    Ok(drift)
}

pub(crate) fn report(drift: &[Drift]) -> String {
    let mut text = format!(
        "{} generated file(s) out of date in {OUT_DIR}:\n",
        drift.len()
    );
    for d in drift {
        let what = match d.kind {
            DriftKind::Missing => "missing",
            DriftKind::Stale => "stale (differs from what proto/ generates)",
            DriftKind::Extra => "extra (no longer generated)",
        };
        text.push_str(&format!("  {OUT_DIR}/{}: {what}\n", d.path));
    }
    text.push_str("run `cargo xtask gen` to update them, then commit the result");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed generated code is exactly what `cargo xtask gen` writes.
    #[test]
    fn generated_code_is_fresh() {
        let root = crate::util::project_root();
        let files = generate(&root).expect("proto/ generates");
        let drift = compare(&root.join(OUT_DIR), &files).expect("sdk/src/proto is readable");
        assert!(drift.is_empty(), "{}", report(&drift));
    }
}
