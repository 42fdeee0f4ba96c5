//! `cargo xtask bench gen`: wall time of `cargo xtask gen` and `cargo xtask gen --check` beside
//! `protoc` + `protoc-gen-go` + `protoc-gen-go-grpc` generating Go for the same `.proto` files,
//! in the same run, reported as medians and ratios.
//!
//! The Go plugins are installed through the Go module proxy into `target/bench-tools/bin`;
//! `protoc` must be on `PATH` (Debian: `apt-get install protobuf-compiler`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::flags::BenchGen;
use crate::gen_code::PROTO_DIR;

/// Pinned versions of the Go generators we compare against.
const PROTOC_GEN_GO: &str = "google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12";
const PROTOC_GEN_GO_GRPC: &str = "google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2";

pub(crate) fn run(flags: &BenchGen) -> Result<()> {
    let root = std::env::current_dir()?;
    let tools = root.join("target/bench-tools");
    let bin = install_go_plugins(&tools)?;
    let protoc = which("protoc")
        .context("protoc is not on PATH; install it (Debian: apt-get install protobuf-compiler)")?;
    let xtask = build_xtask(&root)?;
    let protos = proto_files(&root.join(PROTO_DIR))?;
    let go_out = tools.join("go-out");

    let protoc_cmd = || {
        let _ = std::fs::remove_dir_all(&go_out);
        std::fs::create_dir_all(&go_out).expect("creating the Go output dir");
        let mut cmd = Command::new(&protoc);
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        cmd.env("PATH", path).arg(format!("-I{PROTO_DIR}"));
        cmd.arg(format!("--go_out={}", go_out.display()));
        cmd.arg(format!("--go-grpc_out={}", go_out.display()));
        for proto in &protos {
            // Our protos carry no go_package; map each file to a Go import path instead.
            let dir = Path::new(proto)
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let mapping = format!("M{proto}=example.com/bench/{dir}");
            cmd.arg(format!("--go_opt={mapping}"))
                .arg(format!("--go-grpc_opt={mapping}"));
        }
        cmd.args(&protos);
        cmd
    };
    let gen_cmd = |check: bool| {
        let mut cmd = Command::new(&xtask);
        cmd.arg("gen");
        if check {
            cmd.arg("--check");
        }
        cmd
    };
    let cargo_gen_cmd = || {
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args(["xtask", "gen", "--check"]);
        cmd
    };

    eprintln!(
        "{} proto files, {} runs each after one warm-up",
        protos.len(),
        flags.runs
    );
    let go = median(flags.runs, protoc_cmd)?;
    let full = median(flags.runs, || gen_cmd(false))?;
    let check = median(flags.runs, || gen_cmd(true))?;
    let via_cargo = median(flags.runs, cargo_gen_cmd)?;

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("{:<52} {:>10}  {:>8}", "command", "median ms", "vs Go");
    let rows = [
        ("protoc + protoc-gen-go + protoc-gen-go-grpc", go),
        ("xtask gen (binary, regenerate + compare + write)", full),
        ("xtask gen --check (binary, no-op)", check),
        ("cargo xtask gen --check (incl. cargo start-up)", via_cargo),
    ];
    for (name, time) in rows {
        println!(
            "{name:<52} {:>10.1}  {:>7.2}x",
            ms(time),
            time.as_secs_f64() / go.as_secs_f64()
        );
    }
    Ok(())
}

/// Runs the command once to warm caches, then `runs` times; returns the median wall time.
fn median(runs: usize, make: impl Fn() -> Command) -> Result<Duration> {
    let mut times = Vec::with_capacity(runs);
    for i in 0..=runs {
        let mut cmd = make();
        let start = Instant::now();
        let output = cmd.output().with_context(|| format!("running {cmd:?}"))?;
        let elapsed = start.elapsed();
        if !output.status.success() {
            bail!(
                "{cmd:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        if i > 0 {
            times.push(elapsed);
        }
    }
    times.sort();
    Ok(times[times.len() / 2])
}

fn install_go_plugins(tools: &Path) -> Result<PathBuf> {
    let bin = tools.join("bin");
    for module in [PROTOC_GEN_GO, PROTOC_GEN_GO_GRPC] {
        let status = Command::new("go")
            .args(["install", module])
            .env("GOBIN", &bin)
            .status()
            .with_context(|| format!("running go install {module} (is Go installed?)"))?;
        if !status.success() {
            bail!("go install {module} failed");
        }
    }
    Ok(bin)
}

fn build_xtask(root: &Path) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--package", "xtask"])
        .current_dir(root)
        .status()
        .context("building xtask")?;
    if !status.success() {
        bail!("building xtask failed");
    }
    Ok(root.join("target/debug/xtask"))
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|path| path.is_file())
}

/// The `.proto` files under `dir`, relative to it, sorted.
fn proto_files(dir: &Path) -> Result<Vec<String>> {
    let tree = crate::util::read_proto_tree(dir)?;
    Ok(tree.files().map(|(path, _)| path.to_owned()).collect())
}
