//! What the tests share: configurations the plugin accepts and refuses, and each RPC's
//! current answer. When you write an RPC, change its assertion here.

use spire_plugin_sdk::proto::spire::plugin::agent::svidstore::v1::{
    self as api, svid_store_client::SvidStoreClient,
};
use spire_plugin_sdk::tonic::Code;
use spire_plugin_sdk::tonic::transport::Channel;

/// A configuration the plugin accepts: the `plugin_data` of `plugin.hcl` (a test in
/// `binary.rs` keeps the two equal).
pub const GOOD_HCL: &str = r#"
store = "workload-svids"
"#;

/// A configuration with a key the plugin does not know.
pub const UNKNOWN_KEY_HCL: &str = r#"
store = "workload-svids"
no_such_key = true
"#;

/// A configuration whose `store` the validation refuses.
pub const INVALID_HCL: &str = r#"
store = ""
"#;

/// What the plugin says about [`INVALID_HCL`].
pub const INVALID_PROBLEM: &str = "`store` must not be empty";

/// Calls every RPC of the SVIDStore service with an empty request and checks its
/// answer: `Unimplemented`, naming the RPC, until it is written.
pub async fn assert_rpc_answers(mut client: SvidStoreClient<Channel>) {
    let status = client
        .put_x509svid(api::PutX509svidRequest::default())
        .await
        .expect_err("PutX509SVID is not written yet");
    assert_eq!(
        status.code(),
        Code::Unimplemented,
        "PutX509SVID: {status:?}"
    );
    assert!(
        status.message().contains("PutX509SVID"),
        "PutX509SVID: {status:?}"
    );
    let status = client
        .delete_x509svid(api::DeleteX509svidRequest::default())
        .await
        .expect_err("DeleteX509SVID is not written yet");
    assert_eq!(
        status.code(),
        Code::Unimplemented,
        "DeleteX509SVID: {status:?}"
    );
    assert!(
        status.message().contains("DeleteX509SVID"),
        "DeleteX509SVID: {status:?}"
    );
}
