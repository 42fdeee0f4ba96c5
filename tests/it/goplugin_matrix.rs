//! The go-plugin interop matrix, plugin side: the real go-plugin host (`tests/go/cmd/gohost`)
//! launches our Rust plugin (`interop-plugin`) in every combination of AutoMTLS, network,
//! version negotiation and gRPC broker multiplexing (yamux), and checks handshake, ping, calls
//! (one of 3 MiB each way), stdio forwarding, log forwarding, broker round trips in both
//! directions, a brokered server the plugin stops (its connection fails, the next one serves),
//! Shutdown with process exit and socket removal; with multiplexing also that the
//! host really ran yamux and neither side's yamux logged a warning or error.

use std::process::Command;
use std::time::Duration;

use serde::Deserialize;

use crate::support::{go_binary, run_with_deadline};

#[derive(Debug, Deserialize)]
struct Report {
    negotiated_version: u32,
    checks: Vec<Check>,
}

#[derive(Debug, Deserialize)]
struct Check {
    name: String,
    ok: bool,
    #[serde(default)]
    detail: String,
}

/// One cell of the matrix.
#[derive(Debug, Clone, Copy)]
struct Cell {
    auto_mtls: bool,
    tcp: bool,
    /// The host sets `GRPCBrokerMultiplex` (gohost `-mux`).
    mux: bool,
    /// (versions the host lists, versions the plugin serves, the one negotiation must pick)
    versions: (&'static str, &'static str, u32),
}

/// Every check gohost makes; each must be present and pass in every cell.
const CHECKS: &[&str] = &[
    "handshake",
    "negotiated_version",
    "ping",
    "dispense",
    "call",
    "large_call",
    "stdio",
    "logs",
    "broker_host_accepts",
    "broker_plugin_accepts",
    "broker_plugin_stops",
    "shutdown",
];

fn run_cell(cell: Cell) -> Result<(), String> {
    let (host_versions, plugin_versions, expected) = cell.versions;
    let mut plugin_args = format!("--versions {plugin_versions}");
    if cell.tcp {
        plugin_args.push_str(" --tcp");
    }
    let mut command = Command::new(go_binary("gohost"));
    command
        .arg("-plugin")
        .arg(env!("CARGO_BIN_EXE_interop-plugin"))
        .args(["-args", &plugin_args, "-versions", host_versions])
        .args(["-expect-version", &expected.to_string()]);
    if cell.auto_mtls {
        command.arg("-automtls");
    }
    if cell.mux {
        command.arg("-mux");
    }
    let output = run_with_deadline(command, Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Report = serde_json::from_str(stdout.trim()).map_err(|err| {
        format!(
            "gohost printed no report ({err}); status {}, stderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    let mut problems = Vec::new();
    let extra = [
        (!cell.tcp).then_some("socket_removed"),
        cell.mux.then_some("multiplexed"),
    ];
    for name in CHECKS.iter().copied().chain(extra.into_iter().flatten()) {
        match report.checks.iter().find(|c| c.name == name) {
            Some(check) if check.ok => {}
            Some(check) => problems.push(format!("{name}: {}", check.detail)),
            None => problems.push(format!("{name}: not run")),
        }
    }
    if report.negotiated_version != expected {
        problems.push(format!(
            "negotiated {} instead of {expected}",
            report.negotiated_version
        ));
    }
    if !output.status.success() && problems.is_empty() {
        problems.push(format!("gohost exited with {}", output.status));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

#[test]
fn go_host_drives_rust_plugin() {
    let mut cells = Vec::new();
    for mux in [false, true] {
        for auto_mtls in [false, true] {
            for tcp in [false, true] {
                for versions in [("1", "1", 1), ("5,6", "1,2,5,6", 6)] {
                    cells.push(Cell {
                        auto_mtls,
                        tcp,
                        mux,
                        versions,
                    });
                }
            }
        }
    }
    let failures: Vec<String> = cells
        .iter()
        .filter_map(|&cell| run_cell(cell).err().map(|err| format!("{cell:?}: {err}")))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cells failed:\n{}",
        failures.len(),
        cells.len(),
        failures.join("\n")
    );
}
