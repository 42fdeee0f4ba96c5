//! The WorkloadAttestor served by `src/bin/spire-workloadattestor.rs`, also served in-process by
//! the `plugintest` tests. See the binary's docs for its configuration and answers.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::Deserialize;
use spire_plugin_sdk::proto::spire::plugin::agent::workloadattestor::v1::{
    AttestReferenceRequest, AttestReferenceResponse, AttestRequest, AttestResponse,
    WorkloadAttestorBridge, workload_attestor_server::WorkloadAttestor,
};
use spire_plugin_sdk::proto::spire::service::common::config::v1::{
    ConfigBridge, ConfigureRequest, ConfigureResponse, ValidateRequest, ValidateResponse,
    config_server::Config,
};
use spire_plugin_sdk::spire::plugin::Configuration;
use spire_plugin_sdk::spire::plugin::Plugin;
use spire_plugin_sdk::spire::plugin::ResultExt;
use tonic::{Request, Response, Status};

/// The PID whose `Attest` panics, for the tests of handler panics (the host must get
/// `Internal` naming the panic, and the plugin must keep serving).
pub const PANIC_PID: i32 = -7;

/// The plugin's own configuration.
#[derive(Debug, Clone, Deserialize)]
struct AttestorConfig {
    selectors: Vec<String>,
    #[serde(default)]
    pids: BTreeMap<String, Vec<String>>,
}

#[derive(Clone, Default)]
struct Attestor {
    config: Arc<RwLock<Option<AttestorConfig>>>,
}

#[tonic::async_trait]
impl WorkloadAttestor for Attestor {
    async fn attest(
        &self,
        request: Request<AttestRequest>,
    ) -> Result<Response<AttestResponse>, Status> {
        let config = self
            .config
            .read()
            .expect("config lock")
            .clone()
            .ok_or("no configuration yet")
            .failed_precondition("attesting")?;
        let pid = request.into_inner().pid;
        if pid == PANIC_PID {
            panic!("attest was asked to panic (pid {pid})");
        }
        let mut selector_values = config.selectors.clone();
        selector_values.extend(
            config
                .pids
                .get(&pid.to_string())
                .cloned()
                .unwrap_or_default(),
        );
        selector_values.push(format!("pid:{pid}"));
        tracing::debug!(pid, "workload attested");
        Ok(Response::new(AttestResponse { selector_values }))
    }

    async fn attest_reference(
        &self,
        _request: Request<AttestReferenceRequest>,
    ) -> Result<Response<AttestReferenceResponse>, Status> {
        Err(Status::unimplemented("AttestReference is not supported"))
    }
}

#[tonic::async_trait]
impl Config for Attestor {
    async fn configure(
        &self,
        request: Request<ConfigureRequest>,
    ) -> Result<Response<ConfigureResponse>, Status> {
        let config = Configuration::<AttestorConfig>::from_configure(request.get_ref())?;
        tracing::info!(trust_domain = %config.core.trust_domain, "configured");
        *self.config.write().expect("config lock") = Some(config.plugin);
        Ok(Response::new(ConfigureResponse {}))
    }

    async fn validate(
        &self,
        request: Request<ValidateRequest>,
    ) -> Result<Response<ValidateResponse>, Status> {
        let result = Configuration::<AttestorConfig>::from_validate(request.get_ref());
        Ok(Response::new(ValidateResponse {
            valid: result.is_ok(),
            notes: result
                .err()
                .map(|err| err.to_string())
                .into_iter()
                .collect(),
        }))
    }
}

/// The plugin: WorkloadAttestor and Config, closing with a log line.
pub fn plugin() -> Plugin {
    let attestor = Attestor::default();
    Plugin::new(WorkloadAttestorBridge::bridged(attestor.clone()))
        .service(ConfigBridge::bridged(attestor))
        .on_close(|| async {
            tracing::info!("plugin closed");
            Ok::<(), std::convert::Infallible>(())
        })
}
