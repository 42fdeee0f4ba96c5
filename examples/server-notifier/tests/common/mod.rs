//! What the tests share: configurations the plugin accepts and refuses, and each RPC's
//! current answer. When you write an RPC, change its assertion here.

use spire_plugin_sdk::proto::spire::plugin::server::notifier::v1::{
    self as api, notifier_client::NotifierClient,
};
use spire_plugin_sdk::tonic::Code;
use spire_plugin_sdk::tonic::transport::Channel;

/// A configuration the plugin accepts: the `plugin_data` of `plugin.hcl` (a test in
/// `binary.rs` keeps the two equal).
pub const GOOD_HCL: &str = r#"
destination = "https://bundles.example.org/notify"
"#;

/// A configuration with a key the plugin does not know.
pub const UNKNOWN_KEY_HCL: &str = r#"
destination = "https://bundles.example.org/notify"
no_such_key = true
"#;

/// A configuration whose `destination` the validation refuses.
pub const INVALID_HCL: &str = r#"
destination = ""
"#;

/// What the plugin says about [`INVALID_HCL`].
pub const INVALID_PROBLEM: &str = "`destination` must not be empty";

/// Calls every RPC of the Notifier service with an empty request and checks its
/// answer: `Unimplemented`, naming the RPC, until it is written.
pub async fn assert_rpc_answers(mut client: NotifierClient<Channel>) {
    let status = client
        .notify(api::NotifyRequest::default())
        .await
        .expect_err("Notify is not written yet");
    assert_eq!(status.code(), Code::Unimplemented, "Notify: {status:?}");
    assert!(status.message().contains("Notify"), "Notify: {status:?}");
    let status = client
        .notify_and_advise(api::NotifyAndAdviseRequest::default())
        .await
        .expect_err("NotifyAndAdvise is not written yet");
    assert_eq!(
        status.code(),
        Code::Unimplemented,
        "NotifyAndAdvise: {status:?}"
    );
    assert!(
        status.message().contains("NotifyAndAdvise"),
        "NotifyAndAdvise: {status:?}"
    );
}
