//! Compiling an in-memory proto tree into descriptors with protox, and turning protox's
//! diagnostics into errors that point at `file:line:col`. Reads nothing from disk.

use std::collections::BTreeMap;

use miette::Diagnostic;
use prost_types::FileDescriptorSet;
use protox::file::{File, FileResolver, GoogleFileResolver};

use crate::error::{Error, Location};

/// A proto tree held in memory: `.proto` sources keyed by their path relative to the tree root
/// (the path other files `import`), plus the role manifest.
///
/// The caller does all file IO; the library never touches the disk.
///
/// ```
/// let mut tree = spire_plugin_codegen::ProtoTree::default();
/// tree.file("echo/v1/echo.proto", "syntax = \"proto3\"; package echo.v1;")
///     .manifest("services.toml", "");
/// assert_eq!(tree.files().count(), 1);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ProtoTree {
    files: BTreeMap<String, String>,
    manifest: Option<(String, String)>,
}

impl ProtoTree {
    /// Adds (or replaces) the `.proto` file at `path` (relative, `/`-separated).
    pub fn file(&mut self, path: impl Into<String>, source: impl Into<String>) -> &mut Self {
        self.files.insert(path.into(), source.into());
        self
    }

    /// Sets the role manifest: its display name (used in error messages) and its TOML text.
    pub fn manifest(&mut self, name: impl Into<String>, source: impl Into<String>) -> &mut Self {
        self.manifest = Some((name.into(), source.into()));
        self
    }

    /// The `.proto` files in path order.
    pub fn files(&self) -> impl Iterator<Item = (&str, &str)> {
        self.files
            .iter()
            .map(|(path, source)| (path.as_str(), source.as_str()))
    }

    /// The source of one `.proto` file.
    pub fn source(&self, path: &str) -> Option<&str> {
        self.files.get(path).map(String::as_str)
    }

    /// The manifest's name and text, if one was set.
    pub(crate) fn manifest_source(&self) -> Option<(&str, &str)> {
        self.manifest
            .as_ref()
            .map(|(name, source)| (name.as_str(), source.as_str()))
    }
}

/// Compiles every file of the tree (with source info, so comments reach the generated docs).
///
/// Imports of `google/protobuf/*.proto` resolve to protox's built-in copies. The returned set
/// holds the tree's own files in dependency order, followed by nothing else: imported well-known
/// files are left out.
pub fn load(tree: &ProtoTree) -> Result<FileDescriptorSet, Error> {
    let fds = compile(tree, true)?;
    Ok(FileDescriptorSet {
        file: fds
            .file
            .into_iter()
            .filter(|f| tree.files.contains_key(f.name()))
            .collect(),
    })
}

/// Compiles the tree; `with_imports` keeps imported well-known files in the set.
pub(crate) fn compile(tree: &ProtoTree, with_imports: bool) -> Result<FileDescriptorSet, Error> {
    let resolver = MemoryResolver {
        files: tree.files.clone(),
        google: GoogleFileResolver::new(),
    };
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler
        .include_source_info(true)
        .include_imports(with_imports);
    for path in tree.files.keys() {
        compiler
            .open_file(path)
            .map_err(|err| proto_error(tree, &err))?;
    }
    Ok(compiler.file_descriptor_set())
}

/// Resolves the tree's own files from memory and `google/protobuf/*` from protox's copies.
struct MemoryResolver {
    files: BTreeMap<String, String>,
    google: GoogleFileResolver,
}

impl FileResolver for MemoryResolver {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match self.files.get(name) {
            Some(source) => File::from_source(name, source),
            None => self.google.open_file(name),
        }
    }
}

/// Maps a protox error to ours, locating its first labelled span in the file's source.
fn proto_error(tree: &ProtoTree, err: &protox::Error) -> Error {
    let file = err.file().unwrap_or("<proto tree>").to_owned();
    let offset = err
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|label| label.offset());
    let location = match (offset, tree.source(&file)) {
        (Some(offset), Some(source)) => Location::at_offset(file, source, offset),
        _ => Location::file(file),
    };
    let mut message = err.to_string();
    if let Some(help) = err.help() {
        message = format!(
            "{message} (help: {})",
            help.to_string().trim_end_matches('.')
        );
    }
    Error::proto(location, message)
}
