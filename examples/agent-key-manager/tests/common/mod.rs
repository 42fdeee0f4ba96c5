//! What the tests share: configurations the plugin accepts and refuses, and each RPC's
//! current answer. When you write an RPC, change its assertion here.

use spire_plugin_sdk::proto::spire::plugin::agent::keymanager::v1::{
    self as api, key_manager_client::KeyManagerClient,
};
use spire_plugin_sdk::tonic::Code;
use spire_plugin_sdk::tonic::transport::Channel;

/// A configuration the plugin accepts: the `plugin_data` of `plugin.hcl` (a test in
/// `binary.rs` keeps the two equal).
pub const GOOD_HCL: &str = r#"
key_directory = "/var/lib/spire/keys"
"#;

/// A configuration with a key the plugin does not know.
pub const UNKNOWN_KEY_HCL: &str = r#"
key_directory = "/var/lib/spire/keys"
no_such_key = true
"#;

/// A configuration whose `key_directory` the validation refuses.
pub const INVALID_HCL: &str = r#"
key_directory = "keys"
"#;

/// What the plugin says about [`INVALID_HCL`].
pub const INVALID_PROBLEM: &str = "`key_directory` must be an absolute path";

/// Calls every RPC of the KeyManager service with an empty request and checks its
/// answer: `Unimplemented`, naming the RPC, until it is written.
pub async fn assert_rpc_answers(mut client: KeyManagerClient<Channel>) {
    let status = client
        .generate_key(api::GenerateKeyRequest::default())
        .await
        .expect_err("GenerateKey is not written yet");
    assert_eq!(
        status.code(),
        Code::Unimplemented,
        "GenerateKey: {status:?}"
    );
    assert!(
        status.message().contains("GenerateKey"),
        "GenerateKey: {status:?}"
    );
    let status = client
        .get_public_key(api::GetPublicKeyRequest::default())
        .await
        .expect_err("GetPublicKey is not written yet");
    assert_eq!(
        status.code(),
        Code::Unimplemented,
        "GetPublicKey: {status:?}"
    );
    assert!(
        status.message().contains("GetPublicKey"),
        "GetPublicKey: {status:?}"
    );
    let status = client
        .get_public_keys(api::GetPublicKeysRequest::default())
        .await
        .expect_err("GetPublicKeys is not written yet");
    assert_eq!(
        status.code(),
        Code::Unimplemented,
        "GetPublicKeys: {status:?}"
    );
    assert!(
        status.message().contains("GetPublicKeys"),
        "GetPublicKeys: {status:?}"
    );
    let status = client
        .sign_data(api::SignDataRequest::default())
        .await
        .expect_err("SignData is not written yet");
    assert_eq!(status.code(), Code::Unimplemented, "SignData: {status:?}");
    assert!(
        status.message().contains("SignData"),
        "SignData: {status:?}"
    );
}
