//! Rust SPIRE plugins (`tests/src/bin/spire-*.rs`, served with
//! `spire_plugin_sdk::spire::plugin::Plugin`) loaded by a SPIRE-style Go host
//! (`tests/go/cmd/spirehost`: real go-plugin and spire-plugin-sdk modules): handshake with the
//! type as cookie, host services on broker ID 1, Init, Configure with good and bad HCL, each
//! plugin type's RPCs, host-service calls arriving at the host, Deinit, Kill and cleanup.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{go_binary, run_with_deadline};

/// Runs the Go host with `spec` (the plugin path is filled in); returns the report and whether
/// the host exited 0.
fn run(plugin: &str, mut spec: Value) -> (Value, bool) {
    spec["plugin"] = json!(plugin);
    let mut command = Command::new(go_binary("spirehost"));
    command.arg("-spec").arg(spec.to_string());
    let output = run_with_deadline(command, Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|err| {
        panic!(
            "spirehost printed no report ({err}):\nstdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (report, output.status.success())
}

/// Asserts every check passed and that each of `required` was run.
fn assert_all_passed(report: &Value, passed: bool, required: &[&str]) {
    let checks = report["checks"].as_array().expect("checks");
    let failed: Vec<&Value> = checks.iter().filter(|c| c["ok"] != json!(true)).collect();
    assert!(
        passed && failed.is_empty(),
        "failed checks: {failed:#?}\nreport: {report:#}"
    );
    for name in required {
        assert!(
            checks.iter().any(|c| c["name"] == json!(name)),
            "check {name} did not run: {report:#}"
        );
    }
}

/// The checks every full run has, besides the scenario's.
const LIFECYCLE: &[&str] = &[
    "handshake",
    "dispense",
    "init",
    "configure",
    "configure_logged",
    "reconfigure",
    "validate",
    "deinit",
    "deinit_ran_close_hook",
    "shutdown",
    "socket_removed",
];

fn bad(hcl: &str, key: &str, line: u32) -> Value {
    json!({ "hcl": hcl, "key": key, "line": line })
}

fn assert_names(report: &Value, plugin_service: &str) {
    assert_eq!(
        report["plugin_service_names"],
        json!([plugin_service, "spire.service.common.config.v1.Config"])
    );
}

#[test]
fn server_node_attestor_streams_a_challenge_and_uses_agent_store() {
    let spec = json!({
        "scenario": "nodeattestor",
        "host_services": ["metrics", "agentstore"],
        "bad_configs": [
            // Unknown key (the plugin's struct denies unknown fields), quoted as SPIRE prints it.
            bad("\"challenge\" = \"x\"\n\"secret\" = \"y\"\n\"bogus\" = 1\n", "bogus", 3),
            // Malformed HCL.
            bad("challenge = = \"x\"\n", "syntax error", 1),
            // Wrong type.
            bad("challenge = \"x\"\nsecret = \"y\"\nselectors = \"a:b\"\n", "selectors", 3),
            // No data at all: required keys are missing.
            bad("", "missing field `challenge`", 0),
        ],
    });
    let (report, passed) = run(env!("CARGO_BIN_EXE_spire-nodeattestor"), spec);
    let mut required = LIFECYCLE.to_vec();
    required.extend([
        "bad_config_0",
        "bad_config_1",
        "bad_config_2",
        "bad_config_3",
        "rpc_attest",
        "rpc_attest_wrong_answer",
        "host_service_calls",
    ]);
    assert_all_passed(&report, passed, &required);
    assert_names(&report, "spire.plugin.server.nodeattestor.v1.NodeAttestor");
    assert_eq!(
        report["host_calls"],
        json!(["AgentStore.GetAgentInfo spiffe://example.org/spire/agent/rust/node-1"])
    );
}

#[test]
fn optional_host_service_not_offered_is_left_unbound() {
    let spec = json!({ "scenario": "nodeattestor", "host_services": [] });
    let (report, passed) = run(env!("CARGO_BIN_EXE_spire-nodeattestor"), spec);
    let mut required = LIFECYCLE.to_vec();
    required.extend(["rpc_attest", "host_service_calls"]);
    assert_all_passed(&report, passed, &required);
    assert_eq!(report["host_calls"], Value::Null);
}

#[test]
fn server_upstream_authority_answers_and_keeps_streams_open() {
    let spec = json!({
        "scenario": "upstreamauthority",
        "host_services": ["metrics", "agentstore"],
        "bad_configs": [
            bad("roots = [\"a\"]\njwt_key_id = \"k\"\nextra {\n  x = 1\n}\n", "extra", 3),
            bad("roots = [\"a\"\n", "syntax error", 0),
        ],
    });
    let (report, passed) = run(env!("CARGO_BIN_EXE_spire-upstreamauthority"), spec);
    let mut required = LIFECYCLE.to_vec();
    required.extend([
        "bad_config_0",
        "bad_config_1",
        "rpc_mint_x509ca",
        "rpc_mint_x509ca_stays_open",
        "rpc_publish_jwt_key",
        "rpc_publish_jwt_key_stays_open",
        "rpc_subscribe_local_bundle_unimplemented",
    ]);
    assert_all_passed(&report, passed, &required);
    assert_names(
        &report,
        "spire.plugin.server.upstreamauthority.v1.UpstreamAuthority",
    );
}

#[test]
fn server_key_manager_emits_a_metric_through_the_host() {
    let spec = json!({
        "scenario": "keymanager",
        "host_services": ["metrics"],
        "bad_configs": [
            bad("key_prefix = [\"a\"]\n", "key_prefix", 1),
            bad("key_prefix = \"a\"\nkey_prefx = \"b\"\n", "key_prefx", 2),
        ],
    });
    let (report, passed) = run(env!("CARGO_BIN_EXE_spire-keymanager"), spec);
    let mut required = LIFECYCLE.to_vec();
    required.extend([
        "bad_config_0",
        "bad_config_1",
        "rpc_generate_key",
        "host_service_calls",
        "rpc_get_public_keys",
        "rpc_sign_data",
        "rpc_get_public_key_not_found",
        "rpc_generate_key_invalid",
    ]);
    assert_all_passed(&report, passed, &required);
    assert_names(&report, "spire.plugin.server.keymanager.v1.KeyManager");
    assert_eq!(
        report["host_calls"],
        json!(["Metrics.IncrCounter rust_keymanager.generate_key 1 {key_id=k1}"])
    );
}

#[test]
fn init_fails_when_a_required_host_service_is_not_offered() {
    let spec = json!({
        "scenario": "keymanager",
        "host_services": ["agentstore"],
        "expect_init_error": "required host service not offered by the host: spire.hostservice.common.metrics.v1.Metrics",
    });
    let (report, passed) = run(env!("CARGO_BIN_EXE_spire-keymanager"), spec);
    assert_all_passed(
        &report,
        passed,
        &[
            "handshake",
            "dispense",
            "init_refused",
            "shutdown",
            "socket_removed",
        ],
    );
}

#[test]
fn agent_workload_attestor_answers_selectors_from_config() {
    let spec = json!({
        "scenario": "workloadattestor",
        "host_services": ["metrics"],
        "bad_configs": [
            bad("selectors = [\"a\",\n", "syntax error", 0),
            bad("selectors = 3\n", "selectors", 1),
            bad("\"pids\" = {}\n", "missing field `selectors`", 0),
        ],
    });
    let (report, passed) = run(env!("CARGO_BIN_EXE_spire-workloadattestor"), spec);
    let mut required = LIFECYCLE.to_vec();
    required.extend([
        "bad_config_0",
        "bad_config_1",
        "bad_config_2",
        "rpc_attest_pid_42",
        "rpc_attest_pid_7",
    ]);
    assert_all_passed(&report, passed, &required);
    assert_names(
        &report,
        "spire.plugin.agent.workloadattestor.v1.WorkloadAttestor",
    );
}
