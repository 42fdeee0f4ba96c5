//! `cargo xtask bench <which>`: benchmarks that run our tool and its Go (or other) equivalent in
//! the same run and report wall-time ratios. Never part of the test suite.

mod compat_bench;
mod gen_bench;

use anyhow::Result;

use crate::flags::{Bench, BenchWhich};

pub(crate) fn run(flags: &Bench) -> Result<()> {
    match &flags.which {
        BenchWhich::Gen(gen_flags) => gen_bench::run(gen_flags),
        BenchWhich::Compat(compat_flags) => compat_bench::run(compat_flags),
    }
}
