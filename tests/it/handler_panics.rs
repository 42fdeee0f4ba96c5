//! What a host sees when a plugin misbehaves inside an RPC: a handler that panics answers
//! `Internal` naming the panic and the plugin keeps serving (binary through the real handshake,
//! and in-process), and `plugin_data` that once panicked the decoder (`name = "café`, an
//! unclosed string with a multi-byte char) is refused with `InvalidArgument` naming line 1.

use spire_plugin_sdk::proto::spire::plugin::agent::workloadattestor::v1::{
    AttestRequest, WorkloadAttestorBridge,
};
use spire_plugin_sdk::spire::catalog::CatalogError;
use spire_plugin_sdk::spire::plugintest::{self, OfferedHostServices, Options};
use spire_plugin_tests::workload_attestor::{self, PANIC_PID};
use tonic::Code;
use tonic::transport::Channel;

use spire_plugin_sdk::proto::spire::plugin::agent::workloadattestor::v1::workload_attestor_client::WorkloadAttestorClient;

/// Attest panics for [`PANIC_PID`]: `Internal` with the panic's text; then a normal call on
/// the same connection succeeds.
async fn panic_then_answer(mut attestor: WorkloadAttestorClient<Channel>) {
    let status = attestor
        .attest(AttestRequest { pid: PANIC_PID })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert!(
        status
            .message()
            .contains("attest was asked to panic (pid -7)"),
        "{status:?}"
    );
    assert!(
        status
            .message()
            .contains("/spire.plugin.agent.workloadattestor.v1.WorkloadAttestor/Attest"),
        "{status:?}"
    );
    let answer = attestor
        .attest(AttestRequest { pid: 3 })
        .await
        .expect("the plugin keeps serving after a handler panic")
        .into_inner();
    assert_eq!(answer.selector_values, ["team:red", "pid:3"]);
}

#[tokio::test]
async fn a_panicking_handler_in_a_plugin_binary_answers_internal_and_keeps_serving() {
    let plugin = plugintest::load_binary(
        "agent/WorkloadAttestor",
        env!("CARGO_BIN_EXE_spire-workloadattestor"),
        "selectors = [\"team:red\"]",
        OfferedHostServices::new(),
    )
    .await
    .unwrap();
    panic_then_answer(plugin.client::<WorkloadAttestorBridge>().unwrap()).await;
    let unloaded = plugin.unload().await;
    assert!(unloaded.deinit.is_ok(), "{:?}", unloaded.deinit);
}

#[tokio::test]
async fn a_panicking_handler_served_in_process_answers_internal_and_keeps_serving() {
    let served = plugintest::serve(
        workload_attestor::plugin(),
        Options::new().configuration("selectors = [\"team:red\"]"),
    )
    .await
    .unwrap();
    panic_then_answer(served.client::<WorkloadAttestorBridge>().unwrap()).await;
    served.close().await.unwrap();
}

#[tokio::test]
async fn plugin_data_with_an_unclosed_multibyte_string_is_invalid_argument_naming_line_1() {
    let hcl = "selectors = [\"team:red\"]\nname = \"café";
    let hcl_line_1 = "name = \"café";
    // Through the built binary and the catalog's Configure, as SPIRE loads it.
    let err = plugintest::load_binary(
        "agent/WorkloadAttestor",
        env!("CARGO_BIN_EXE_spire-workloadattestor"),
        hcl_line_1,
        OfferedHostServices::new(),
    )
    .await
    .unwrap_err();
    let CatalogError::Configure { status, .. } = &err else {
        panic!("expected a Configure error, got {err}");
    };
    assert_eq!(status.code(), Code::InvalidArgument, "{err}");
    assert!(status.message().contains("line 1"), "{err}");
    assert!(!err.to_string().contains("h2 protocol error"), "{err}");

    // In-process, where the status itself is visible; the error is on line 2 there.
    let err = plugintest::serve(
        workload_attestor::plugin(),
        Options::new().configuration(hcl),
    )
    .await
    .unwrap_err();
    let status = err.status().expect("a Configure status");
    assert_eq!(status.code(), Code::InvalidArgument, "{err}");
    assert!(
        status
            .message()
            .starts_with("plugin configuration: syntax error at line 2"),
        "{status:?}"
    );
}
