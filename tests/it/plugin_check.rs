//! The plugin conformance check (`spire_plugin_sdk::spire::check`, behind `cargo xtask
//! plugin-check`) against every Rust test plugin (`tests/src/bin/spire-*.rs`) and every type of
//! the Go SDK test plugin (`tests/go/cmd/spireplugin`): all pass, and broken setups fail at the
//! right step with SPIRE's reason (wrong type, Configure refusing, data without a Config
//! service, checksum mismatch). No plugin process may be left behind.

use std::path::PathBuf;

use spire_plugin_sdk::spire::PluginType;
use spire_plugin_sdk::spire::catalog::sha256_hex;
use spire_plugin_sdk::spire::check::{CheckOptions, Outcome, Report, StepName, run};

use crate::support::go_binary;

/// A unique `-tag` for the processes one test starts.
fn tag(test: &str) -> String {
    format!("-tag=plugin-check-{test}-{}", std::process::id())
}

/// True while a process (zombies included) carries `tag` on its command line.
fn tagged_process_exists(tag: &str) -> bool {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().parse::<u32>().is_ok())
        .any(|entry| {
            std::fs::read(entry.path().join("cmdline"))
                .is_ok_and(|cmdline| cmdline.split(|b| *b == 0).any(|arg| arg == tag.as_bytes()))
        })
}

/// Options for the Go test plugin serving `go_type` as `target`, with `flags`.
fn go(target: &str, go_type: &str, tag: &str, flags: &[&str]) -> CheckOptions {
    let mut options = CheckOptions::new(
        target.parse().expect("a SPIRE plugin type"),
        go_binary("spireplugin"),
    );
    options.args = [format!("-type={go_type}"), tag.to_owned()]
        .into_iter()
        .chain(flags.iter().map(|f| (*f).to_owned()))
        .collect();
    options
}

fn rust(target: &str, bin: &str, config: &str) -> CheckOptions {
    let mut options = CheckOptions::new(
        target.parse().expect("a SPIRE plugin type"),
        PathBuf::from(bin),
    );
    options.config = Some(config.to_owned());
    options
}

fn assert_passed(report: &Report) {
    assert!(report.passed(), "{}", report.to_text());
    let names: Vec<&str> = report.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "type",
            "config",
            "checksum",
            "launch",
            "init",
            "services",
            "configure",
            "validate",
            "rpc",
            "unload"
        ],
        "{}",
        report.to_text()
    );
}

/// Asserts the check failed at `step` with a reason containing `reason`.
fn assert_failed(report: &Report, step: &str, reason: &str) {
    let failure = report
        .failure()
        .unwrap_or_else(|| panic!("the check must fail:\n{}", report.to_text()));
    assert_eq!(failure.name.as_str(), step, "{}", report.to_text());
    assert!(failure.detail.contains(reason), "{}", report.to_text());
    assert!(report.to_text().contains(&format!("FAIL: {step}: ")));
}

#[tokio::test]
async fn passes_every_rust_test_plugin() {
    let cases = [
        rust(
            "server/KeyManager",
            env!("CARGO_BIN_EXE_spire-keymanager"),
            "key_prefix = \"km\"\n",
        ),
        rust(
            "server/NodeAttestor",
            env!("CARGO_BIN_EXE_spire-nodeattestor"),
            "plugin_data {\n  challenge = \"nonce\"\n  secret = \"s\"\n}\n",
        ),
        rust(
            "server/UpstreamAuthority",
            env!("CARGO_BIN_EXE_spire-upstreamauthority"),
            "roots = [\"root-1\"]\njwt_key_id = \"upstream\"\n",
        ),
        rust(
            "agent/WorkloadAttestor",
            env!("CARGO_BIN_EXE_spire-workloadattestor"),
            "plugin_data {\n  selectors = [\"team:blue\"]\n}\n",
        ),
    ];
    for mut options in cases {
        let bytes = std::fs::read(&options.cmd).unwrap();
        options.checksum = Some(sha256_hex(&bytes));
        let report = run(&options).await;
        assert_passed(&report);
        assert!(
            report
                .step(StepName::Checksum)
                .unwrap()
                .detail
                .ends_with("matches")
        );
        let rpc = report.step(StepName::Rpc).unwrap();
        if options.plugin_type.to_string() == "server/UpstreamAuthority" {
            assert_eq!(rpc.outcome, Outcome::Skip);
        } else {
            assert_eq!(rpc.outcome, Outcome::Pass, "{}", report.to_text());
        }
    }
}

#[tokio::test]
async fn passes_every_go_test_plugin_type() {
    let tag = tag("go-pass");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("plugin.hcl");
    std::fs::write(&config, "plugin_data {\n  selector = \"a:b\"\n}\n").unwrap();
    for (target, go_type) in [
        ("agent/KeyManager", "agent-keymanager"),
        ("agent/WorkloadAttestor", "agent-workloadattestor"),
        ("server/NodeAttestor", "server-nodeattestor"),
        ("server/UpstreamAuthority", "server-upstreamauthority"),
    ] {
        let mut options = go(target, go_type, &tag, &[]);
        options.config = Some(std::fs::read_to_string(&config).unwrap());
        let report = run(&options).await;
        assert_passed(&report);
        assert!(
            report
                .step(StepName::Services)
                .unwrap()
                .detail
                .contains("also: spire.service.common.config.v1.Config"),
            "{}",
            report.to_text()
        );
        assert!(!tagged_process_exists(&tag), "plugin left after {target}");
    }
    // Without --config, and as JSON.
    let json = run(&go(
        "agent/WorkloadAttestor",
        "agent-workloadattestor",
        &tag,
        &[],
    ))
    .await
    .to_json();
    assert_eq!(json["passed"], true, "{json}");
    assert_eq!(json["steps"][8]["name"], "rpc");
    assert_eq!(json["steps"][8]["outcome"], "ok");
}

#[tokio::test]
async fn an_unimplemented_rpc_is_a_warning() {
    // A Go SDK KeyManager whose RPCs all answer the SDK's own UNIMPLEMENTED.
    let tag = tag("unwritten");
    let report = run(&go(
        "agent/KeyManager",
        "agent-keymanager-unwritten",
        &tag,
        &["-no-config"],
    ))
    .await;
    assert_passed(&report);
    let rpc = report.step(StepName::Rpc).unwrap();
    assert_eq!(rpc.outcome, Outcome::Warn, "{}", report.to_text());
    assert!(
        rpc.detail.starts_with(
            "GetPublicKeys: served but not implemented yet (rpc error: code = Unimplemented"
        ),
        "{}",
        report.to_text()
    );
    assert!(report.to_text().contains("  ! rpc       GetPublicKeys: "));
    assert!(report.to_text().ends_with("PASS\n"));
    let json = report.to_json();
    assert_eq!(json["steps"][8]["outcome"], "warn", "{json}");
    assert_eq!(json["passed"], true, "{json}");
    assert!(!tagged_process_exists(&tag));
}

#[tokio::test]
async fn credential_composer_composes_default_attributes() {
    // A Go SDK CredentialComposer adding the configured policy OID to the server CA.
    let tag = tag("composer");
    let mut options = go(
        "server/CredentialComposer",
        "server-credentialcomposer",
        &tag,
        &[],
    );
    options.config = Some("plugin_data {\n  policy = \"1.2.3.4\"\n}\n".to_owned());
    let report = run(&options).await;
    assert_passed(&report);
    let rpc = report.step(StepName::Rpc).unwrap();
    assert_eq!(rpc.outcome, Outcome::Pass, "{}", report.to_text());
    assert_eq!(rpc.detail, "ComposeServerX509CA: attributes composed");
    assert!(!tagged_process_exists(&tag));
}

#[tokio::test]
async fn no_config_service_without_data_passes() {
    let tag = tag("no-config");
    let report = run(&go(
        "agent/KeyManager",
        "agent-keymanager",
        &tag,
        &["-no-config"],
    ))
    .await;
    assert!(report.passed(), "{}", report.to_text());
    assert_eq!(
        report.step(StepName::Validate).unwrap().outcome,
        Outcome::Skip
    );
    assert!(!tagged_process_exists(&tag));
}

#[tokio::test]
async fn fails_at_the_right_step_with_the_reason() {
    let tag = tag("fail");
    // An agent KeyManager checked as a server KeyManager.
    let report = run(&go("server/KeyManager", "agent-keymanager", &tag, &[])).await;
    assert_failed(&report, "services", "no supported plugin interface found");

    // Configure refuses.
    let mut options = go(
        "agent/KeyManager",
        "agent-keymanager",
        &tag,
        &["-configure-fail"],
    );
    options.config = Some("a = \"b\"\n".to_owned());
    assert_failed(
        &run(&options).await,
        "configure",
        "refusing configuration on purpose",
    );

    // A Rust plugin refusing an unknown key.
    let options = rust(
        "server/KeyManager",
        env!("CARGO_BIN_EXE_spire-keymanager"),
        "key_prefix = \"km\"\nbogus = 1\n",
    );
    assert_failed(
        &run(&options).await,
        "configure",
        "failed to configure plugin",
    );

    // Data but no Config service.
    let mut options = go(
        "agent/KeyManager",
        "agent-keymanager",
        &tag,
        &["-no-config"],
    );
    options.config = Some("plugin_data {\n  a = \"b\"\n}\n".to_owned());
    assert_failed(
        &run(&options).await,
        "configure",
        "no supported configuration interface found",
    );

    // Init fails.
    let report = run(&go(
        "agent/KeyManager",
        "agent-keymanager",
        &tag,
        &["-init-fail"],
    ))
    .await;
    assert_failed(&report, "init", "failed to initialize plugin");

    // Checksum mismatch: stopped before launching.
    let mut options = go("agent/KeyManager", "agent-keymanager", &tag, &[]);
    options.checksum = Some("00".repeat(32));
    let report = run(&options).await;
    assert_failed(&report, "checksum", "checksum mismatch: expected 0000");
    assert!(report.step(StepName::Launch).is_none());

    // Malformed checksum; an unknown type is refused where the text is read, naming the types.
    options.checksum = Some("xyz".to_owned());
    assert_failed(&run(&options).await, "checksum", "not a valid hex string");
    let unknown = "agent/Nope".parse::<PluginType>().unwrap_err().to_string();
    assert!(
        unknown.starts_with("unsupported plugin type \"agent/Nope\"; supported: agent/KeyManager,"),
        "{unknown}"
    );

    assert!(!tagged_process_exists(&tag), "plugin process left behind");
}
