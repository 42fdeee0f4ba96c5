//! The built `server-node-attestor` binary, loaded as SPIRE loads it: go-plugin handshake, `Init`,
//! `Configure`, every RPC, `Deinit`; and the conformance check `cargo xtask plugin-check` runs.

mod common;

use std::process::Command;

use server_node_attestor::ServerNodeAttestorConfig;
use spire_plugin_sdk::proto::spire::plugin::server::nodeattestor::v1::NodeAttestorBridge;
use spire_plugin_sdk::spire::catalog::{PluginData, parse_plugins, sha256_hex};
use spire_plugin_sdk::spire::check::{self, CheckOptions};
use spire_plugin_sdk::spire::plugin::parse_config;
use spire_plugin_sdk::spire::plugintest::{OfferedHostServices, load_binary};

const BINARY: &str = env!("CARGO_BIN_EXE_server-node-attestor");
const PLUGIN_TYPE: &str = "server/NodeAttestor";
const PLUGIN_HCL: &str = include_str!("../plugin.hcl");

#[test]
fn plugin_hcl_holds_the_configuration_the_tests_use() {
    let (data, _) = check::config_data(PLUGIN_HCL).expect("plugin.hcl has a plugin_data block");
    let example: ServerNodeAttestorConfig = parse_config(&data).expect("plugin.hcl decodes");
    let good: ServerNodeAttestorConfig = parse_config(common::GOOD_HCL).expect("GOOD_HCL decodes");
    assert_eq!(example, good);
    assert_eq!(example.validate(), Ok(()));
}

#[test]
fn the_declaration_script_fills_in_this_binarys_checksum() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/spire-declaration.sh");
    let output = Command::new("sh")
        .args([script, BINARY])
        .output()
        .expect("running sh");
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8(output.stdout).expect("UTF-8");
    let declarations = parse_plugins(&printed).expect("SPIRE can read the declaration");
    let [declaration] = declarations.as_slice() else {
        panic!("one declaration expected:\n{printed}");
    };
    assert_eq!(declaration.plugin_type, "NodeAttestor");
    assert_eq!(declaration.name, "server-node-attestor");
    assert_eq!(declaration.cmd, std::path::Path::new(BINARY));
    let binary = std::fs::read(BINARY).expect("reading the binary");
    assert_eq!(declaration.checksum, Some(sha256_hex(&binary)));
    let PluginData::Inline(data) = &declaration.data else {
        panic!("plugin_data expected:\n{printed}");
    };
    let declared: ServerNodeAttestorConfig = parse_config(data).expect("plugin_data decodes");
    let good: ServerNodeAttestorConfig = parse_config(common::GOOD_HCL).expect("GOOD_HCL decodes");
    assert_eq!(declared, good);
}

#[tokio::test]
async fn loads_configures_and_answers() {
    let plugin = load_binary(
        PLUGIN_TYPE,
        BINARY,
        common::GOOD_HCL,
        OfferedHostServices::new(),
    )
    .await
    .expect("the binary loads with the example configuration");
    assert!(plugin.serves("spire.plugin.server.nodeattestor.v1.NodeAttestor"));
    common::assert_rpc_answers(plugin.client::<NodeAttestorBridge>().expect("client")).await;
    let unloaded = plugin.unload().await;
    assert!(unloaded.deinit.is_ok(), "{unloaded:?}");
}

#[tokio::test]
async fn refuses_bad_configurations() {
    for (hcl, expected) in [
        (common::UNKNOWN_KEY_HCL, "no_such_key"),
        (common::INVALID_HCL, common::INVALID_PROBLEM),
    ] {
        let err = load_binary(PLUGIN_TYPE, BINARY, hcl, OfferedHostServices::new())
            .await
            .expect_err("the configuration is refused");
        let message = err.to_string();
        assert!(message.contains("failed to configure plugin"), "{message}");
        assert!(message.contains(expected), "{message}");
    }
}

#[tokio::test]
async fn passes_plugin_check() {
    let mut options = CheckOptions::new(PLUGIN_TYPE.parse().expect("a SPIRE plugin type"), BINARY);
    options.config = Some(PLUGIN_HCL.to_owned());
    let report = check::run(&options).await;
    assert!(report.passed(), "{}", report.to_text());
}
