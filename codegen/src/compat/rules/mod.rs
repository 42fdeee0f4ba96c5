//! The rules, one small function each, grouped by the proto element they look at. A rule only
//! compares the pair (or the sides) a walker hands it and reports through `Out`; its ID,
//! purpose and categories live in the table in `compat/mod.rs`.

pub(crate) mod enum_;
pub(crate) mod field;
pub(crate) mod file;
pub(crate) mod message;
pub(crate) mod package;
pub(crate) mod service;
pub(crate) mod source;

/// `["a", "b"]` → `"a", "b"`, as buf quotes lists of names.
pub(crate) fn quoted<S: AsRef<str>>(names: &[S]) -> String {
    names
        .iter()
        .map(|n| format!("\"{}\"", n.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}
