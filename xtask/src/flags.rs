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
    /// Measure tasks side by side with their Go/other-tool equivalents and print ratios.
    Bench(Bench),
}

#[derive(Debug, Args)]
pub(crate) struct Gen {
    /// Regenerate in memory and fail, naming every stale, missing or extra file, instead of
    /// writing.
    #[arg(long)]
    pub(crate) check: bool,
}

#[derive(Debug, Args)]
pub(crate) struct Bench {
    /// Which benchmark to run.
    #[command(subcommand)]
    pub(crate) which: BenchWhich,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BenchWhich {
    /// `cargo xtask gen` and `gen --check` against protoc + protoc-gen-go + protoc-gen-go-grpc.
    Gen(BenchGen),
}

#[derive(Debug, Args)]
pub(crate) struct BenchGen {
    /// Runs of each command (after one warm-up run); the median is reported.
    #[arg(long, default_value_t = 10)]
    pub(crate) runs: usize,
}
