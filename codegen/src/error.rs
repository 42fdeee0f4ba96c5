//! The one error type of the codegen library: opaque, with accessors, and a message that names
//! the file, line and column (or the proto element) at fault.

use std::fmt;

/// Why [`generate`](crate::generate) or [`load`](crate::load) refused a proto tree.
///
/// The message always starts with a location: `file:line:col` for errors in a `.proto` file or in
/// the role manifest, or the manifest's file name when no line is known. Match on the accessors
/// rather than on the text.
#[derive(Debug, thiserror::Error)]
#[error("{location}: {message}")]
pub struct Error {
    kind: ErrorKind,
    location: Location,
    message: String,
}

/// What part of the input the error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorKind {
    /// A `.proto` file does not parse, imports a missing file, or fails semantic checks.
    Proto,
    /// The role manifest does not parse or does not match the services of the tree.
    Manifest,
    /// Code emission failed; this is a bug in the generator, not in the input.
    Emit,
}

/// A place in an input file. Lines and columns are 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) file: String,
    pub(crate) line_col: Option<(usize, usize)>,
}

impl Location {
    pub(crate) fn file(file: impl Into<String>) -> Self {
        Location {
            file: file.into(),
            line_col: None,
        }
    }

    /// The location of byte `offset` in `source`, which is the text of `file`.
    pub(crate) fn at_offset(file: impl Into<String>, source: &str, offset: usize) -> Self {
        let before = &source[..offset.min(source.len())];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        Location {
            file: file.into(),
            line_col: Some((line, col)),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line_col {
            Some((line, col)) => write!(f, "{}:{line}:{col}", self.file),
            None => f.write_str(&self.file),
        }
    }
}

impl Error {
    pub(crate) fn proto(location: Location, message: impl Into<String>) -> Self {
        Error {
            kind: ErrorKind::Proto,
            location,
            message: message.into(),
        }
    }

    pub(crate) fn manifest(location: Location, message: impl Into<String>) -> Self {
        Error {
            kind: ErrorKind::Manifest,
            location,
            message: message.into(),
        }
    }

    pub(crate) fn emit(location: Location, message: impl Into<String>) -> Self {
        Error {
            kind: ErrorKind::Emit,
            location,
            message: message.into(),
        }
    }

    /// The file the error is about: a `.proto` path relative to the tree root, or the manifest.
    pub fn file(&self) -> &str {
        &self.location.file
    }

    /// The 1-based line in [`file`](Self::file), when the error points at one.
    pub fn line(&self) -> Option<usize> {
        self.location.line_col.map(|(line, _)| line)
    }

    /// The 1-based column in [`file`](Self::file), when the error points at one.
    pub fn column(&self) -> Option<usize> {
        self.location.line_col.map(|(_, col)| col)
    }

    /// The message without its location prefix.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// True when a `.proto` file is at fault (syntax, imports, types).
    pub fn is_proto(&self) -> bool {
        self.kind == ErrorKind::Proto
    }

    /// True when the role manifest is at fault, or disagrees with the services in the tree.
    pub fn is_manifest(&self) -> bool {
        self.kind == ErrorKind::Manifest
    }

    /// True when emitting Rust failed: a generator bug worth reporting.
    pub fn is_emit(&self) -> bool {
        self.kind == ErrorKind::Emit
    }
}
