//! The whole command line of `cargo xtask`, declared in one place.

use clap::{Args, Parser, Subcommand};

/// Project tasks for the Rust go-plugin / SPIRE plugin SDK.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
pub(crate) struct Xtask {
    #[command(subcommand)]
    pub(crate) task: Task,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Task {
    /// Generate Rust from `proto/` into `sdk/src/proto/` (committed code).
    Gen(Gen),
}

#[derive(Debug, Args)]
pub(crate) struct Gen {
    /// Regenerate in memory and fail, naming every stale, missing or extra file, instead of
    /// writing.
    #[arg(long)]
    pub(crate) check: bool,
}
