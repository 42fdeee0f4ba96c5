//! `cargo xtask`: the project's tasks in plain Rust (no shell scripts, no protoc). `main` parses
//! the command line, moves to the workspace root and hands over to the task's module.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line tool prints"
)]

mod bench;
mod compat;
mod flags;
mod gen_code;
mod plugin_check;
mod scaffold;
mod util;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let flags = flags::Xtask::parse();
    let invoked_from = std::env::current_dir()?;
    std::env::set_current_dir(util::project_root())?;
    match flags.task {
        flags::Task::Gen(gen_flags) => gen_code::run(&gen_flags),
        flags::Task::Bench(bench_flags) => bench::run(&bench_flags),
        flags::Task::Compat(compat_flags) => compat::run(&compat_flags),
        flags::Task::PluginCheck(check_flags) => plugin_check::run(&check_flags, &invoked_from),
        flags::Task::New(new_flags) => scaffold::new(&new_flags, &invoked_from),
    }
}
