//! The plugin served inside the test process by `plugintest`, with SPIRE's part played by the
//! test: `Init`, `Configure` with good and bad HCL, `Validate`, every RPC, `Deinit`.

mod common;

use server_bundle_publisher::{ServerBundlePublisher, ServerBundlePublisherConfig};
use spire_plugin_sdk::proto::spire::plugin::server::bundlepublisher::v1::BundlePublisherBridge;
use spire_plugin_sdk::proto::spire::service::common::config::v1::{
    ConfigBridge, CoreConfiguration, ValidateRequest,
};
use spire_plugin_sdk::spire::check;
use spire_plugin_sdk::spire::plugin::parse_config;
use spire_plugin_sdk::spire::plugintest::{self, Options};
use spire_plugin_sdk::tonic::Code;

fn configured_with(hcl: &str) -> Options {
    Options::new().configuration(hcl)
}

#[tokio::test]
async fn serves_its_services_and_accepts_the_example_configuration() {
    let served = plugintest::serve(
        server_bundle_publisher::plugin(),
        configured_with(common::GOOD_HCL),
    )
    .await
    .expect("the example configuration is accepted");
    assert_eq!(
        served.service_names(),
        [
            "spire.plugin.server.bundlepublisher.v1.BundlePublisher",
            "spire.service.common.config.v1.Config"
        ]
    );
    served.close().await.expect("Deinit succeeds");
}

#[tokio::test]
async fn configure_keeps_the_typed_configuration_and_a_refused_one_changes_nothing() {
    let state = ServerBundlePublisher::default();
    assert_eq!(
        state.config().expect_err("not configured yet").code(),
        Code::FailedPrecondition
    );
    let served = plugintest::serve(
        server_bundle_publisher::plugin_with(state.clone()),
        configured_with(common::GOOD_HCL),
    )
    .await
    .expect("configured");
    let expected = ServerBundlePublisherConfig {
        trust_domain: plugintest::DEFAULT_TRUST_DOMAIN.to_owned(),
        ..parse_config(common::GOOD_HCL).expect("GOOD_HCL decodes")
    };
    assert_eq!(*state.config().expect("configured"), expected);

    let err = served
        .configure(common::INVALID_HCL)
        .await
        .expect_err("refused");
    assert_eq!(
        err.status().map(|s| s.code()),
        Some(Code::InvalidArgument),
        "{err}"
    );
    assert_eq!(*state.config().expect("still configured"), expected);
    served.close().await.expect("Deinit succeeds");
}

#[tokio::test]
async fn binds_the_host_services_spire_offers_and_runs_without_them() {
    // The host services SPIRE offers on this side, answering harmlessly (plugin-check's).
    let state = ServerBundlePublisher::default();
    let served = plugintest::serve(
        server_bundle_publisher::plugin_with(state.clone()),
        configured_with(common::GOOD_HCL)
            .host_services(check::host_services(spire_plugin_sdk::spire::Side::Server)),
    )
    .await
    .expect("configured");
    assert!(state.metrics().is_some(), "Metrics is bound");
    served.close().await.expect("Deinit succeeds");

    let state = ServerBundlePublisher::default();
    let served = plugintest::serve(
        server_bundle_publisher::plugin_with(state.clone()),
        configured_with(common::GOOD_HCL),
    )
    .await
    .expect("the host services are optional");
    assert!(state.metrics().is_none(), "Metrics is not offered");
    served.close().await.expect("Deinit succeeds");
}

#[tokio::test]
async fn every_rpc_gives_its_current_answer() {
    let served = plugintest::serve(
        server_bundle_publisher::plugin(),
        configured_with(common::GOOD_HCL),
    )
    .await
    .expect("configured");
    common::assert_rpc_answers(served.client::<BundlePublisherBridge>().expect("client")).await;
    served.close().await.expect("Deinit succeeds");
}

#[tokio::test]
async fn refuses_unknown_keys() {
    let err = plugintest::serve(
        server_bundle_publisher::plugin(),
        configured_with(common::UNKNOWN_KEY_HCL),
    )
    .await
    .expect_err("an unknown key is refused");
    let status = err.status().expect("Configure answered");
    assert_eq!(status.code(), Code::InvalidArgument, "{err}");
    assert!(status.message().contains("no_such_key"), "{err}");
}

#[tokio::test]
async fn refuses_invalid_values() {
    let err = plugintest::serve(
        server_bundle_publisher::plugin(),
        configured_with(common::INVALID_HCL),
    )
    .await
    .expect_err("an invalid value is refused");
    let status = err.status().expect("Configure answered");
    assert_eq!(status.code(), Code::InvalidArgument, "{err}");
    assert!(status.message().contains(common::INVALID_PROBLEM), "{err}");
}

#[tokio::test]
async fn refuses_a_missing_configuration() {
    // SPIRE sends an empty configuration when the declaration has no `plugin_data`.
    let err = plugintest::serve(server_bundle_publisher::plugin(), configured_with(""))
        .await
        .expect_err("required keys are missing");
    let status = err.status().expect("Configure answered");
    assert_eq!(status.code(), Code::InvalidArgument, "{err}");
    assert!(status.message().contains("destination"), "{err}");
}

#[tokio::test]
async fn validate_reports_problems() {
    let served = plugintest::serve(
        server_bundle_publisher::plugin(),
        configured_with(common::GOOD_HCL),
    )
    .await
    .expect("configured");
    let mut config = served.client::<ConfigBridge>().expect("Config client");
    for (hcl, expected_note) in [
        (common::GOOD_HCL, None),
        (common::INVALID_HCL, Some(common::INVALID_PROBLEM)),
        (common::UNKNOWN_KEY_HCL, Some("no_such_key")),
    ] {
        let answer = config
            .validate(ValidateRequest {
                core_configuration: Some(CoreConfiguration {
                    trust_domain: "example.org".to_owned(),
                }),
                hcl_configuration: hcl.to_owned(),
            })
            .await
            .expect("Validate answers")
            .into_inner();
        assert_eq!(answer.valid, expected_note.is_none(), "{hcl}: {answer:?}");
        if let Some(note) = expected_note {
            assert!(
                answer.notes.iter().any(|n| n.contains(note)),
                "{hcl}: {answer:?}"
            );
        }
    }
    served.close().await.expect("Deinit succeeds");
}
