//! The plugin-author harness (`spire_plugin_sdk::spire::plugintest`): the test plugins of
//! `tests/src` (the same code as the `spire-*` binaries) served in-process — Configure with good
//! and bad HCL, RPC answers, a required host service provided by the test and missing, Deinit on
//! close, no sockets left — and the built binaries loaded out-of-process through the real
//! handshake.

use std::path::{Path, PathBuf};

use spire_plugin_sdk::proto::spire::hostservice::common::metrics::v1::MetricsBridge;
use spire_plugin_sdk::proto::spire::plugin::agent::workloadattestor::v1::{
    AttestRequest, WorkloadAttestorBridge,
};
use spire_plugin_sdk::proto::spire::plugin::server::keymanager::v1::{
    GenerateKeyRequest, KeyManagerBridge, KeyType, SignDataRequest,
};
use spire_plugin_sdk::proto::spire::service::common::config::v1::{
    ConfigBridge, CoreConfiguration, ValidateRequest,
};
use spire_plugin_sdk::spire::catalog::CatalogError;
use spire_plugin_sdk::spire::plugintest::{self, InProcess, OfferedHostServices, Options};
use spire_plugin_tests::{key_manager, workload_attestor};
use tokio::sync::oneshot;
use tonic::Code;

use crate::support::RecordingMetrics;

const WORKLOAD_ATTESTOR: &str = "spire.plugin.agent.workloadattestor.v1.WorkloadAttestor";
const KEY_MANAGER: &str = "spire.plugin.server.keymanager.v1.KeyManager";
const CONFIG: &str = "spire.service.common.config.v1.Config";
const METRICS: &str = "spire.hostservice.common.metrics.v1.Metrics";

/// The entries of `dir`.
fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect()
}

async fn attest(served: &InProcess, pid: i32) -> Vec<String> {
    let mut attestor = served.client::<WorkloadAttestorBridge>().unwrap();
    attestor
        .attest(AttestRequest { pid })
        .await
        .unwrap()
        .into_inner()
        .selector_values
}

#[tokio::test]
async fn workload_attestor_configures_answers_and_closes_with_deinit() {
    let (closed_tx, closed_rx) = oneshot::channel();
    let plugin = workload_attestor::plugin().on_close(move || async move {
        let _ = closed_tx.send(());
        Ok::<(), std::convert::Infallible>(())
    });
    let options =
        Options::new().configuration("selectors = [\"team:blue\"]\npids = { \"42\" = [\"x:y\"] }");
    let parent = tempfile::tempdir().unwrap();
    let served = plugintest::serve(plugin, options.temp_dir(parent.path()))
        .await
        .unwrap();
    assert_eq!(served.service_names(), [WORKLOAD_ATTESTOR, CONFIG]);
    assert_eq!(served.name(), "WorkloadAttestor");
    assert_eq!(attest(&served, 7).await, ["team:blue", "pid:7"]);
    assert_eq!(attest(&served, 42).await, ["team:blue", "x:y", "pid:42"]);
    // A service the plugin does not serve.
    let err = served.client::<KeyManagerBridge>().unwrap_err();
    assert!(matches!(err, CatalogError::NotServed { .. }), "{err}");
    assert!(err.to_string().contains(KEY_MANAGER), "{err}");

    // The sockets live in one private directory, gone after close.
    let dir = served.socket_dir().to_path_buf();
    assert_eq!(entries(parent.path()), std::slice::from_ref(&dir));
    let sockets = entries(&dir).len();
    assert!(
        sockets >= 2,
        "main and broker sockets expected, found {sockets}"
    );
    served.close().await.unwrap();
    closed_rx
        .await
        .expect("close runs Deinit, which runs the close hook");
    assert!(entries(parent.path()).is_empty(), "sockets left behind");
}

#[tokio::test]
async fn configure_refuses_bad_hcl_naming_the_key() {
    // Missing required key: InvalidArgument naming it, from serve itself.
    let err = plugintest::serve(
        workload_attestor::plugin(),
        Options::new().configuration("pids {}"),
    )
    .await
    .unwrap_err();
    let status = err.status().expect("a Configure status");
    assert_eq!(status.code(), Code::InvalidArgument, "{err}");
    assert!(status.message().contains("selectors"), "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with(
            "failed to configure plugin \"WorkloadAttestor\": rpc error: code = InvalidArgument desc = "
        ),
        "{text}"
    );

    // Unknown key (KeyManager denies them), configured by the test after serving.
    let metrics = RecordingMetrics::default();
    let served = plugintest::serve(
        key_manager::plugin(),
        Options::new()
            .name("disk")
            .skip_configure()
            .host_services(OfferedHostServices::new().with(MetricsBridge::bridged(metrics))),
    )
    .await
    .unwrap();
    let err = served
        .configure("key_prefix = \"km\"\nkey_prefx = \"typo\"")
        .await
        .unwrap_err();
    assert!(matches!(err, CatalogError::Configure { .. }), "{err}");
    let status = err.status().unwrap();
    assert_eq!(status.code(), Code::InvalidArgument, "{err}");
    assert!(status.message().contains("key_prefx"), "{err}");
    assert!(
        err.to_string()
            .starts_with("failed to configure plugin \"disk\": rpc error: code = "),
        "{err}"
    );
    // Not configured yet: the plugin says so.
    let mut keys = served.client::<KeyManagerBridge>().unwrap();
    let refused = keys
        .generate_key(GenerateKeyRequest {
            key_id: "a".into(),
            key_type: KeyType::EcP256.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    // Good HCL through the Config client works too.
    served.configure("key_prefix = \"km\"").await.unwrap();
    let mut config = served.client::<ConfigBridge>().unwrap();
    let valid = config
        .validate(ValidateRequest {
            core_configuration: Some(CoreConfiguration {
                trust_domain: "example.org".into(),
            }),
            hcl_configuration: "nope = 1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!valid.valid);
    served.close().await.unwrap();
}

#[tokio::test]
async fn key_manager_calls_the_host_service_the_test_provides() {
    let metrics = RecordingMetrics::default();
    let options = Options::new()
        .configuration("key_prefix = \"km\"")
        .trust_domain("td.example")
        .host_services(OfferedHostServices::new().with(MetricsBridge::bridged(metrics.clone())));
    let served = plugintest::serve(key_manager::plugin(), options)
        .await
        .unwrap();
    assert_eq!(served.service_names(), [KEY_MANAGER, CONFIG]);
    let mut keys = served.client::<KeyManagerBridge>().unwrap();
    let key = keys
        .generate_key(GenerateKeyRequest {
            key_id: "k1".into(),
            key_type: KeyType::EcP256.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .public_key
        .unwrap();
    assert_eq!(key.pkix_data, b"km:k1");
    assert_eq!(key.fingerprint, "fp:k1");
    let calls = metrics.calls();
    assert_eq!(calls.len(), 1, "the host-service call arrived once");
    assert_eq!(calls[0].key, ["rust_keymanager", "generate_key"]);
    assert_eq!(calls[0].labels[0].value, "k1");
    let signed = keys
        .sign_data(SignDataRequest {
            key_id: "k1".into(),
            data: b"hi".to_vec(),
            signer_opts: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(signed.signature, b"sig(k1):hi");
    served.close().await.unwrap();
}

#[tokio::test]
async fn a_missing_required_host_service_fails_init() {
    let parent = tempfile::tempdir().unwrap();
    let err = plugintest::serve(
        key_manager::plugin(),
        Options::new()
            .configuration("key_prefix = \"km\"")
            .temp_dir(parent.path()),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, CatalogError::Init { .. }), "{err}");
    assert_eq!(err.status().unwrap().code(), Code::FailedPrecondition);
    let text = err.to_string();
    assert!(
        text.starts_with(
            "failed to load plugin \"KeyManager\": failed to initialize plugin: rpc error: code = FailedPrecondition desc = "
        ),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "required host service not offered by the host: {METRICS}"
        )),
        "{text}"
    );
    // Nothing left behind by the failed serve.
    assert!(entries(parent.path()).is_empty(), "sockets left behind");
}

#[tokio::test]
async fn hcl_for_a_plugin_without_config_is_refused() {
    use spire_plugin_sdk::proto::spire::plugin::agent::workloadattestor::v1::{
        AttestReferenceRequest, AttestReferenceResponse, AttestResponse,
        workload_attestor_server::WorkloadAttestor,
    };

    /// A WorkloadAttestor without Config.
    struct Bare;

    #[tonic::async_trait]
    impl WorkloadAttestor for Bare {
        async fn attest(
            &self,
            _: tonic::Request<AttestRequest>,
        ) -> Result<tonic::Response<AttestResponse>, tonic::Status> {
            Ok(tonic::Response::new(AttestResponse {
                selector_values: vec!["bare".into()],
            }))
        }

        async fn attest_reference(
            &self,
            _: tonic::Request<AttestReferenceRequest>,
        ) -> Result<tonic::Response<AttestReferenceResponse>, tonic::Status> {
            Err(tonic::Status::unimplemented("no"))
        }
    }

    let plugin =
        || spire_plugin_sdk::spire::plugin::Plugin::new(WorkloadAttestorBridge::bridged(Bare));
    let err = plugintest::serve(plugin(), Options::new().configuration("a = 1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, CatalogError::NoConfigInterface { .. }),
        "{err}"
    );
    // Without HCL, Configure is skipped and the plugin answers.
    let served = plugintest::serve(plugin(), Options::new()).await.unwrap();
    assert_eq!(served.service_names(), [WORKLOAD_ATTESTOR]);
    assert_eq!(attest(&served, 1).await, ["bare"]);
    served.close().await.unwrap();
}

#[tokio::test]
async fn loads_the_built_workload_attestor_binary() {
    let plugin = plugintest::load_binary(
        "agent/WorkloadAttestor",
        env!("CARGO_BIN_EXE_spire-workloadattestor"),
        "selectors = [\"team:red\"]",
        OfferedHostServices::new(),
    )
    .await
    .unwrap();
    assert_eq!(plugin.name(), "spire-workloadattestor");
    assert_eq!(plugin.service_names(), [WORKLOAD_ATTESTOR, CONFIG]);
    let mut attestor = plugin.client::<WorkloadAttestorBridge>().unwrap();
    let answer = attestor
        .attest(AttestRequest { pid: 3 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.selector_values, ["team:red", "pid:3"]);
    let unloaded = plugin.unload().await;
    assert!(unloaded.deinit.is_ok(), "{:?}", unloaded.deinit);
}

#[tokio::test]
async fn loads_the_built_key_manager_binary_with_host_services() {
    let metrics = RecordingMetrics::default();
    let plugin = plugintest::load_binary(
        "server/KeyManager",
        env!("CARGO_BIN_EXE_spire-keymanager"),
        "key_prefix = \"bin\"",
        OfferedHostServices::new().with(MetricsBridge::bridged(metrics.clone())),
    )
    .await
    .unwrap();
    let mut keys = plugin.client::<KeyManagerBridge>().unwrap();
    let key = keys
        .generate_key(GenerateKeyRequest {
            key_id: "b1".into(),
            key_type: KeyType::EcP256.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .public_key
        .unwrap();
    assert_eq!(key.pkix_data, b"bin:b1");
    assert_eq!(metrics.calls().len(), 1);
    let unloaded = plugin.unload().await;
    assert!(unloaded.deinit.is_ok(), "{:?}", unloaded.deinit);

    // Without Metrics, Init fails with the plugin's error.
    let err = plugintest::load_binary(
        "server/KeyManager",
        env!("CARGO_BIN_EXE_spire-keymanager"),
        "key_prefix = \"bin\"",
        OfferedHostServices::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, CatalogError::Init { .. }), "{err}");
    assert!(err.to_string().contains(METRICS), "{err}");

    // A side/type that does not exist.
    let err = plugintest::load_binary(
        "agent/Nonsense",
        env!("CARGO_BIN_EXE_spire-keymanager"),
        "",
        OfferedHostServices::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, CatalogError::UnknownType { .. }), "{err}");
}
