//! What the tests share: configurations the plugin accepts and refuses, and each RPC's
//! current answer. When you write an RPC, change its assertion here.

use spire_plugin_sdk::proto::spire::plugin::agent::workloadattestor::v1::{
    self as api, workload_attestor_client::WorkloadAttestorClient,
};
use spire_plugin_sdk::tonic::Code;
use spire_plugin_sdk::tonic::transport::Channel;

/// A configuration the plugin accepts: the `plugin_data` of `plugin.hcl` (a test in
/// `binary.rs` keeps the two equal).
pub const GOOD_HCL: &str = r#"
lookup_timeout_seconds = 5
"#;

/// A configuration with a key the plugin does not know.
pub const UNKNOWN_KEY_HCL: &str = r#"
lookup_timeout_seconds = 5
no_such_key = true
"#;

/// A configuration whose `lookup_timeout_seconds` the validation refuses.
pub const INVALID_HCL: &str = r#"
lookup_timeout_seconds = 0
"#;

/// What the plugin says about [`INVALID_HCL`].
pub const INVALID_PROBLEM: &str = "`lookup_timeout_seconds` must be greater than zero";

/// Calls every RPC of the WorkloadAttestor service with an empty request and checks its
/// answer: `Unimplemented`, naming the RPC, until it is written.
pub async fn assert_rpc_answers(mut client: WorkloadAttestorClient<Channel>) {
    let status = client
        .attest(api::AttestRequest::default())
        .await
        .expect_err("Attest is not written yet");
    assert_eq!(status.code(), Code::Unimplemented, "Attest: {status:?}");
    assert!(status.message().contains("Attest"), "Attest: {status:?}");
    let status = client
        .attest_reference(api::AttestReferenceRequest::default())
        .await
        .expect_err("AttestReference is not written yet");
    assert_eq!(
        status.code(),
        Code::Unimplemented,
        "AttestReference: {status:?}"
    );
    assert!(
        status.message().contains("AttestReference"),
        "AttestReference: {status:?}"
    );
}
