//! What the tests share: configurations the plugin accepts and refuses, and each RPC's
//! current answer. When you write an RPC, change its assertion here.

use spire_plugin_sdk::proto::spire::plugin::agent::nodeattestor::v1::{
    self as api, node_attestor_client::NodeAttestorClient,
};
use spire_plugin_sdk::tonic::Code;
use spire_plugin_sdk::tonic::transport::Channel;

/// A configuration the plugin accepts: the `plugin_data` of `plugin.hcl` (a test in
/// `binary.rs` keeps the two equal).
pub const GOOD_HCL: &str = r#"
token_path = "/var/run/node/token"
"#;

/// A configuration with a key the plugin does not know.
pub const UNKNOWN_KEY_HCL: &str = r#"
token_path = "/var/run/node/token"
no_such_key = true
"#;

/// A configuration whose `token_path` the validation refuses.
pub const INVALID_HCL: &str = r#"
token_path = "token"
"#;

/// What the plugin says about [`INVALID_HCL`].
pub const INVALID_PROBLEM: &str = "`token_path` must be an absolute path";

/// Calls every RPC of the NodeAttestor service with an empty request and checks its
/// answer: `Unimplemented`, naming the RPC, until it is written.
pub async fn assert_rpc_answers(mut client: NodeAttestorClient<Channel>) {
    let status = client
        .aid_attestation(tokio_stream::iter([api::Challenge::default()]))
        .await
        .expect_err("AidAttestation is not written yet");
    assert_eq!(
        status.code(),
        Code::Unimplemented,
        "AidAttestation: {status:?}"
    );
    assert!(
        status.message().contains("AidAttestation"),
        "AidAttestation: {status:?}"
    );
}
