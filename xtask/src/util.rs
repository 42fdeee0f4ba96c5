//! Helpers shared by tasks: the workspace root and reading a proto tree from disk.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use spire_plugin_codegen::ProtoTree;

/// The workspace root: the parent of the `xtask` crate.
pub(crate) fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// The name of the role manifest at the root of a proto tree.
pub(crate) const MANIFEST: &str = "services.toml";

/// Reads every `.proto` file under `root` (paths relative to it) and the role manifest
/// `root/services.toml` into memory.
pub(crate) fn read_proto_tree(root: &Path) -> Result<ProtoTree> {
    let mut tree = ProtoTree::default();
    let mut files = Vec::new();
    collect_protos(root, &mut files)?;
    files.sort();
    for path in files {
        let relative = path.strip_prefix(root).expect("collected under root");
        let name = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        let source =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        tree.file(name, source);
    }
    let manifest = root.join(MANIFEST);
    let source =
        fs::read_to_string(&manifest).with_context(|| format!("reading {}", manifest.display()))?;
    tree.manifest(manifest.display().to_string(), source);
    Ok(tree)
}

fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let path = entry
            .with_context(|| format!("listing {}", dir.display()))?
            .path();
        if path.is_dir() {
            collect_protos(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            out.push(path);
        }
    }
    Ok(())
}
