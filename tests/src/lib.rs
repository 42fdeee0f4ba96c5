//! Shared helpers for the integration tests in `tests/it`; the tests themselves live there.

use std::path::PathBuf;

/// The root of the workspace (the directory holding `proto/`, `sdk/` and `tests/`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent directory")
        .to_path_buf()
}
