//! `cargo xtask bench compat`: runs `cargo xtask compat` (this binary) and `buf breaking` on
//! every case of `tests/compat`, for the WIRE and WIRE_JSON categories, in the same run. Reports
//! wall time and peak memory as ratios (ours / buf) and where the two verdicts disagree.
//!
//! buf comes from the npm registry (`@bufbuild/buf`, pinned below), installed on first use into
//! `target/compat-bench/buf` and run as its native binary, so node's start-up is not counted.
//! Peak memory is each process's maximum resident set, read with `/usr/bin/time -f %M` in a
//! separate pass so that the timed passes run the tools bare.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::flags::BenchCompat;

/// The buf release the benchmark installs.
const BUF_VERSION: &str = "1.75.0";
/// Where buf is installed, relative to the workspace root.
const BUF_DIR: &str = "target/compat-bench/buf";
const CORPUS: &str = "tests/compat";
/// The categories compared with buf, as (ours, buf's).
const CATEGORIES: [(&str, &str); 2] = [("wire", "WIRE"), ("wire-json", "WIRE_JSON")];

/// Rules of ours that buf's categories lack, and why they break the wire.
const OURS_ONLY: &[(&str, &str)] = &[(
    "GRPC_METHOD_NO_DELETE",
    "package, service and rpc names form the gRPC method path, so renaming or deleting them breaks every client at the wire level; buf's WIRE and WIRE_JSON only judge message encodings",
)];

pub(crate) fn run(flags: &BenchCompat) -> Result<()> {
    let root = std::env::current_dir()?;
    let buf = install_buf(&root)?;
    let ours = std::env::current_exe().context("locating the xtask binary")?;
    let cases = cases(&root.join(CORPUS))?;
    eprintln!(
        "bench compat: {} cases x {} categories, ours = {}, buf = {BUF_VERSION}",
        cases.len(),
        CATEGORIES.len(),
        ours.display()
    );

    // Verdicts and agreement (also the warm-up run).
    let mut agree = [0usize; CATEGORIES.len()];
    let mut same_rules = [0usize; CATEGORIES.len()];
    let mut disagreements: Vec<Disagreement> = Vec::new();
    for case in &cases {
        for (i, (our_category, buf_category)) in CATEGORIES.iter().enumerate() {
            let ours_found = run_ours(&ours, case, our_category)?;
            let buf_found = run_buf(&buf, case, buf_category)?;
            let shared: BTreeSet<String> = ours_found
                .iter()
                .filter(|r| !OURS_ONLY.iter().any(|(id, _)| id == r))
                .cloned()
                .collect();
            if shared == buf_found {
                same_rules[i] += 1;
            }
            if ours_found.is_empty() == buf_found.is_empty() {
                agree[i] += 1;
                continue;
            }
            let name = case.file_name().map(|n| n.to_string_lossy().into_owned());
            let name = name.unwrap_or_default();
            match disagreements
                .iter_mut()
                .find(|d| d.case == name && d.ours == ours_found && d.buf == buf_found)
            {
                Some(d) => d.categories.push(buf_category),
                None => disagreements.push(Disagreement {
                    case: name,
                    categories: vec![buf_category],
                    ours: ours_found,
                    buf: buf_found,
                }),
            }
        }
    }

    // Wall time: the whole corpus per tool, interleaved so drift hits both alike.
    let runs = flags.runs.max(1);
    let mut our_times = Vec::with_capacity(runs);
    let mut buf_times = Vec::with_capacity(runs);
    for _ in 0..runs {
        our_times.push(time(|| {
            corpus_pass(&cases, |case, c| run_ours(&ours, case, c.0))
        })?);
        buf_times.push(time(|| {
            corpus_pass(&cases, |case, c| run_buf(&buf, case, c.1))
        })?);
    }
    let (our_time, buf_time) = (median(&mut our_times), median(&mut buf_times));

    // Peak memory: the largest resident set of any one invocation.
    let mut our_peak = 0u64;
    let mut buf_peak = 0u64;
    for case in &cases {
        for (our_category, buf_category) in CATEGORIES {
            let mut command = Command::new(&ours);
            ours_args(&mut command, case, our_category);
            our_peak = our_peak.max(peak_rss(command)?);
            let mut command = Command::new(&buf);
            buf_args(&mut command, case, buf_category);
            buf_peak = buf_peak.max(peak_rss(command)?);
        }
    }

    let invocations = cases.len() * CATEGORIES.len();
    println!(
        "compat vs buf breaking {BUF_VERSION}: {} corpus cases, {invocations} invocations per tool per run",
        cases.len()
    );
    println!(
        "  wall time (median of {runs} runs): ours {:.3} s, buf {:.3} s, ratio {:.3} (target <= 0.25)",
        our_time.as_secs_f64(),
        buf_time.as_secs_f64(),
        our_time.as_secs_f64() / buf_time.as_secs_f64()
    );
    println!(
        "  peak memory (max RSS of one invocation): ours {:.1} MiB, buf {:.1} MiB, ratio {:.3}",
        our_peak as f64 / 1024.0,
        buf_peak as f64 / 1024.0,
        our_peak as f64 / buf_peak as f64
    );
    for (i, (_, buf_category)) in CATEGORIES.iter().enumerate() {
        println!(
            "  agreement {buf_category}: verdict {}/{n} cases, same rule IDs {}/{n} (ours-only rules aside)",
            agree[i],
            same_rules[i],
            n = cases.len()
        );
    }
    if disagreements.is_empty() {
        println!("  no disagreements");
        return Ok(());
    }
    println!("  disagreements ({} cases):", disagreements.len());
    let mut reasons = BTreeSet::new();
    for d in &disagreements {
        let explained = d.buf.is_empty()
            && d.ours
                .iter()
                .all(|r| OURS_ONLY.iter().any(|(id, _)| id == r));
        if explained {
            reasons.extend(d.ours.iter().cloned());
        }
        println!(
            "    {} [{}]: ours {}, buf {}{}",
            d.case,
            d.categories.join(", "),
            verdict(&d.ours),
            verdict(&d.buf),
            if explained { "" } else { " (unexplained)" }
        );
    }
    for (id, why) in OURS_ONLY.iter().filter(|(id, _)| reasons.contains(*id)) {
        println!("  why {id} differs: {why}");
    }
    Ok(())
}

/// Installs buf with npm unless the pinned version is already there; returns its native binary.
fn install_buf(root: &Path) -> Result<PathBuf> {
    let dir = root.join(BUF_DIR);
    let binary = dir.join("node_modules/@bufbuild/buf-linux-x64/bin/buf");
    let installed = Command::new(&binary)
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == BUF_VERSION);
    if installed {
        return Ok(binary);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    eprintln!("bench compat: installing @bufbuild/buf@{BUF_VERSION} into {BUF_DIR}");
    let status = Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--no-save",
            "--prefix",
        ])
        .arg(&dir)
        .arg(format!("@bufbuild/buf@{BUF_VERSION}"))
        .status()
        .context("running npm (the benchmark needs Node.js and npm to install buf)")?;
    if !status.success() {
        bail!("npm install @bufbuild/buf@{BUF_VERSION} failed ({status})");
    }
    if !binary.exists() {
        bail!(
            "npm installed buf, but not the linux-x64 binary at {}; this benchmark supports x86-64 Linux only",
            binary.display()
        );
    }
    Ok(binary)
}

fn cases(corpus: &Path) -> Result<Vec<PathBuf>> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(corpus)
        .with_context(|| format!("listing {}", corpus.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    cases.retain(|c| c.join("previous").is_dir() && c.join("current").is_dir());
    cases.sort();
    Ok(cases)
}

fn ours_args(command: &mut Command, case: &Path, category: &str) {
    command
        .arg("compat")
        .arg("--against")
        .arg(case.join("previous"))
        .arg("--head")
        .arg(case.join("current"))
        .args(["--category", category, "--format", "json"]);
}

fn buf_args(command: &mut Command, case: &Path, category: &str) {
    // buf places the module of `--config` at the working directory, which must not contain the
    // inputs: run it from the system's temporary directory, with absolute paths.
    command
        .current_dir(std::env::temp_dir())
        .arg("breaking")
        .arg(case.join("current"))
        .arg("--against")
        .arg(case.join("previous"))
        .arg("--config")
        .arg(format!(
            r#"{{"version":"v2","breaking":{{"use":["{category}"]}}}}"#
        ))
        .args(["--error-format", "json"]);
}

/// Runs our checker; returns the IDs of the rules that found a break.
fn run_ours(ours: &Path, case: &Path, category: &str) -> Result<BTreeSet<String>> {
    let mut command = Command::new(ours);
    ours_args(&mut command, case, category);
    let output = command.output().context("running xtask compat")?;
    match output.status.code() {
        Some(0 | 1) => {}
        _ => bail!(
            "xtask compat failed on {}: {}",
            case.display(),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("parsing xtask compat JSON")?;
    Ok(report["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["rule"].as_str().map(str::to_owned))
        .collect())
}

/// Runs buf; returns the IDs of the rules that found a break (exit status 100).
fn run_buf(buf: &Path, case: &Path, category: &str) -> Result<BTreeSet<String>> {
    let mut command = Command::new(buf);
    buf_args(&mut command, case, category);
    let output = command.output().context("running buf breaking")?;
    match output.status.code() {
        Some(0 | 100) => {}
        _ => bail!(
            "buf breaking failed on {}: {}{}",
            case.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let finding: serde_json::Value =
                serde_json::from_str(line).context("parsing buf's JSON output")?;
            Ok(finding["type"].as_str().unwrap_or("?").to_owned())
        })
        .collect()
}

/// One case where the verdicts differ, in one or more categories.
struct Disagreement {
    case: String,
    categories: Vec<&'static str>,
    ours: BTreeSet<String>,
    buf: BTreeSet<String>,
}

fn verdict(rules: &BTreeSet<String>) -> String {
    if rules.is_empty() {
        "compatible".to_owned()
    } else {
        let rules: Vec<&str> = rules.iter().map(String::as_str).collect();
        format!("breaking ({})", rules.join(", "))
    }
}

/// Runs `run` once per (case, category).
fn corpus_pass(
    cases: &[PathBuf],
    mut run: impl FnMut(&Path, (&str, &str)) -> Result<BTreeSet<String>>,
) -> Result<()> {
    for case in cases {
        for category in CATEGORIES {
            run(case, category)?;
        }
    }
    Ok(())
}

fn time(f: impl FnOnce() -> Result<()>) -> Result<Duration> {
    let start = Instant::now();
    f()?;
    Ok(start.elapsed())
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// The maximum resident set size of `command`, in KiB, measured by `/usr/bin/time`.
fn peak_rss(command: Command) -> Result<u64> {
    let mut timed = Command::new("/usr/bin/time");
    timed.args(["-f", "%M"]).arg(command.get_program());
    timed.args(command.get_args());
    if let Some(dir) = command.get_current_dir() {
        timed.current_dir(dir);
    }
    let output = timed
        .stdout(Stdio::null())
        .output()
        .context("running /usr/bin/time (install the `time` package for the memory figures)")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    stderr
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .next_back()
        .with_context(|| format!("no peak RSS in /usr/bin/time output: {stderr}"))
}
