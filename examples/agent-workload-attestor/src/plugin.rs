//! The WorkloadAttestor service of `agent-workload-attestor`. Tells the SPIRE agent which selectors
//! describe a workload process.
//!
//! Every RPC answers `Unimplemented` until you write it; the doc comment on each says what
//! SPIRE sends and what it expects back. Read the configuration with
//! [`AgentWorkloadAttestor::config`] and SPIRE's Metrics host service with
//! [`AgentWorkloadAttestor::metrics`].

use std::sync::{Arc, RwLock};

use spire_plugin_sdk::prelude::*;
use spire_plugin_sdk::proto::spire::hostservice::common::metrics::v1::{
    MetricsBridge, metrics_client::MetricsClient,
};
use spire_plugin_sdk::proto::spire::plugin::agent::workloadattestor::v1::{
    self as api, workload_attestor_server::WorkloadAttestor,
};
use spire_plugin_sdk::tonic::transport::Channel;

use crate::config::AgentWorkloadAttestorConfig;

/// The plugin's state, shared by its services. Cheap to clone: every clone sees the same
/// configuration and host services, and SPIRE's calls arrive concurrently.
#[derive(Debug, Clone, Default)]
pub struct AgentWorkloadAttestor {
    config: Arc<RwLock<Option<Arc<AgentWorkloadAttestorConfig>>>>,
    host_services: HostServices,
}

impl AgentWorkloadAttestor {
    /// The configuration of the last successful `Configure`, or `FailedPrecondition` before
    /// there is one. Start each RPC with `let config = self.config()?;`.
    pub fn config(&self) -> Result<Arc<AgentWorkloadAttestorConfig>, Status> {
        self.config
            .read()
            .expect("configuration lock")
            .clone()
            .ok_or_else(|| Status::failed_precondition("the plugin is not configured yet"))
    }

    /// Replaces the configuration; called by `Configure` once the new one is valid, so RPCs
    /// in flight keep the one they started with.
    pub(crate) fn set_config(&self, config: AgentWorkloadAttestorConfig) {
        *self.config.write().expect("configuration lock") = Some(Arc::new(config));
    }

    /// The handle the SDK binds SPIRE's host services into at `Init`.
    pub fn host_services(&self) -> HostServices {
        self.host_services.clone()
    }

    /// A client for SPIRE's Metrics host service (`spire.hostservice.common.metrics.v1.Metrics`),
    /// or `None` when SPIRE did not offer it at `Init` (as in tests that offer no host services).
    pub fn metrics(&self) -> Option<MetricsClient<Channel>> {
        self.host_services.get::<MetricsBridge>()
    }

    /// Runs once when SPIRE unloads the plugin (`Deinit`), before it stops the process:
    /// release what the RPCs opened (connections, files, background tasks).
    pub async fn close(&self) -> Result<(), Status> {
        tracing::info!("plugin closed");
        Ok(())
    }
}

#[async_trait]
impl WorkloadAttestor for AgentWorkloadAttestor {
    /// Collects selectors for the workload running as the given process.
    ///
    /// Outcomes:
    /// - The process is outside this plugin's domain (e.g. a Docker attestor
    ///   asked about a process that is not in a container): succeed with an
    ///   empty selector list.
    /// - The process is in this plugin's domain but some of its selectors could
    ///   not be determined: fail with an error rather than return a partial set.
    /// - Otherwise: succeed with the selectors found.
    ///
    /// SPIRE sends one `AttestRequest`; answer with one `AttestResponse`.
    async fn attest(
        &self,
        _request: Request<api::AttestRequest>,
    ) -> Result<Response<api::AttestResponse>, Status> {
        Err(not_implemented("Attest"))
    }

    /// Collects selectors for a workload named by a typed, opaque reference
    /// rather than a process ID (for example a PID reference or a Kubernetes
    /// object reference; see WorkloadReference in the SPIFFE Broker API). The
    /// host forwards the reference unchanged, type URL included.
    ///
    /// Plugins that do not support reference-based attestation should answer
    /// with the gRPC status UNIMPLEMENTED; the host then retries through Attest
    /// if the reference is a PID reference. Plugins that do support it but do
    /// not recognize the type of this particular reference should answer with
    /// INVALID_ARGUMENT. The empty/partial/complete rules of Attest apply here
    /// too.
    ///
    /// SPIRE sends one `AttestReferenceRequest`; answer with one `AttestReferenceResponse`.
    async fn attest_reference(
        &self,
        _request: Request<api::AttestReferenceRequest>,
    ) -> Result<Response<api::AttestReferenceResponse>, Status> {
        Err(not_implemented("AttestReference"))
    }
}

/// The answer of an RPC that is not written yet.
fn not_implemented(rpc: &str) -> Status {
    Status::unimplemented(format!("WorkloadAttestor.{rpc} is not implemented yet"))
}
