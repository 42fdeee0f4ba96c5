//! What the tests share: configurations the plugin accepts and refuses, and each RPC's
//! current answer. When you write an RPC, change its assertion here.

use spire_plugin_sdk::proto::spire::plugin::server::upstreamauthority::v1::{
    self as api, upstream_authority_client::UpstreamAuthorityClient,
};
use spire_plugin_sdk::tonic::Code;
use spire_plugin_sdk::tonic::transport::Channel;

/// A configuration the plugin accepts: the `plugin_data` of `plugin.hcl` (a test in
/// `binary.rs` keeps the two equal).
pub const GOOD_HCL: &str = r#"
ca_ttl_seconds = 86400
"#;

/// A configuration with a key the plugin does not know.
pub const UNKNOWN_KEY_HCL: &str = r#"
ca_ttl_seconds = 86400
no_such_key = true
"#;

/// A configuration whose `ca_ttl_seconds` the validation refuses.
pub const INVALID_HCL: &str = r#"
ca_ttl_seconds = 0
"#;

/// What the plugin says about [`INVALID_HCL`].
pub const INVALID_PROBLEM: &str = "`ca_ttl_seconds` must be greater than zero";

/// Calls every RPC of the UpstreamAuthority service with an empty request and checks its
/// answer: `Unimplemented`, naming the RPC, until it is written.
pub async fn assert_rpc_answers(mut client: UpstreamAuthorityClient<Channel>) {
    let status = client
        .mint_x509ca_and_subscribe(api::MintX509caRequest::default())
        .await
        .expect_err("MintX509CAAndSubscribe is not written yet");
    assert_eq!(
        status.code(),
        Code::Unimplemented,
        "MintX509CAAndSubscribe: {status:?}"
    );
    assert!(
        status.message().contains("MintX509CAAndSubscribe"),
        "MintX509CAAndSubscribe: {status:?}"
    );
    let status = client
        .publish_jwt_key_and_subscribe(api::PublishJwtKeyRequest::default())
        .await
        .expect_err("PublishJWTKeyAndSubscribe is not written yet");
    assert_eq!(
        status.code(),
        Code::Unimplemented,
        "PublishJWTKeyAndSubscribe: {status:?}"
    );
    assert!(
        status.message().contains("PublishJWTKeyAndSubscribe"),
        "PublishJWTKeyAndSubscribe: {status:?}"
    );
    let status = client
        .subscribe_to_local_bundle(api::SubscribeToLocalBundleRequest::default())
        .await
        .expect_err("SubscribeToLocalBundle is not written yet");
    assert_eq!(
        status.code(),
        Code::Unimplemented,
        "SubscribeToLocalBundle: {status:?}"
    );
    assert!(
        status.message().contains("SubscribeToLocalBundle"),
        "SubscribeToLocalBundle: {status:?}"
    );
}
