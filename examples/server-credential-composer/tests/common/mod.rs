//! What the tests share: configurations the plugin accepts and refuses, and each RPC's
//! current answer. When you write an RPC, change its assertion here.

use spire_plugin_sdk::proto::spire::plugin::server::credentialcomposer::v1::{
    self as api, credential_composer_client::CredentialComposerClient,
};
use spire_plugin_sdk::tonic::Code;
use spire_plugin_sdk::tonic::transport::Channel;

/// A configuration the plugin accepts: the `plugin_data` of `plugin.hcl` (a test in
/// `binary.rs` keeps the two equal).
pub const GOOD_HCL: &str = r#"
organization = "Example Org"
"#;

/// A configuration with a key the plugin does not know.
pub const UNKNOWN_KEY_HCL: &str = r#"
organization = "Example Org"
no_such_key = true
"#;

/// A configuration whose `organization` the validation refuses.
pub const INVALID_HCL: &str = r#"
organization = "  "
"#;

/// What the plugin says about [`INVALID_HCL`].
pub const INVALID_PROBLEM: &str = "`organization` must not be empty";

/// Calls every RPC of the CredentialComposer service with an empty request and checks its
/// answer: `Unimplemented`, naming the RPC, until it is written.
pub async fn assert_rpc_answers(mut client: CredentialComposerClient<Channel>) {
    let status = client
        .compose_server_x509ca(api::ComposeServerX509caRequest::default())
        .await
        .expect_err("ComposeServerX509CA is not written yet");
    assert_eq!(
        status.code(),
        Code::Unimplemented,
        "ComposeServerX509CA: {status:?}"
    );
    assert!(
        status.message().contains("ComposeServerX509CA"),
        "ComposeServerX509CA: {status:?}"
    );
    let status = client
        .compose_server_x509svid(api::ComposeServerX509svidRequest::default())
        .await
        .expect_err("ComposeServerX509SVID is not written yet");
    assert_eq!(
        status.code(),
        Code::Unimplemented,
        "ComposeServerX509SVID: {status:?}"
    );
    assert!(
        status.message().contains("ComposeServerX509SVID"),
        "ComposeServerX509SVID: {status:?}"
    );
    let status = client
        .compose_agent_x509svid(api::ComposeAgentX509svidRequest::default())
        .await
        .expect_err("ComposeAgentX509SVID is not written yet");
    assert_eq!(
        status.code(),
        Code::Unimplemented,
        "ComposeAgentX509SVID: {status:?}"
    );
    assert!(
        status.message().contains("ComposeAgentX509SVID"),
        "ComposeAgentX509SVID: {status:?}"
    );
    let status = client
        .compose_workload_x509svid(api::ComposeWorkloadX509svidRequest::default())
        .await
        .expect_err("ComposeWorkloadX509SVID is not written yet");
    assert_eq!(
        status.code(),
        Code::Unimplemented,
        "ComposeWorkloadX509SVID: {status:?}"
    );
    assert!(
        status.message().contains("ComposeWorkloadX509SVID"),
        "ComposeWorkloadX509SVID: {status:?}"
    );
    let status = client
        .compose_workload_jwtsvid(api::ComposeWorkloadJwtsvidRequest::default())
        .await
        .expect_err("ComposeWorkloadJWTSVID is not written yet");
    assert_eq!(
        status.code(),
        Code::Unimplemented,
        "ComposeWorkloadJWTSVID: {status:?}"
    );
    assert!(
        status.message().contains("ComposeWorkloadJWTSVID"),
        "ComposeWorkloadJWTSVID: {status:?}"
    );
}
