//! `cargo xtask`: the project's tasks in plain Rust (no shell scripts, no protoc). `main` parses
//! the command line, moves to the workspace root and hands over to the task's module.

mod bench;
mod flags;
mod gen_code;
mod util;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let flags = flags::Xtask::parse();
    std::env::set_current_dir(util::project_root())?;
    match flags.task {
        flags::Task::Gen(gen_flags) => gen_code::run(&gen_flags),
        flags::Task::Bench(bench_flags) => bench::run(&bench_flags),
    }
}
