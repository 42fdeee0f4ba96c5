//! The CredentialComposer service of `server-credential-composer`. Adjusts the attributes and
//! claims of credentials the SPIRE server mints.
//!
//! Every RPC answers `Unimplemented` until you write it; the doc comment on each says what
//! SPIRE sends and what it expects back. Read the configuration with
//! [`ServerCredentialComposer::config`] and SPIRE's Metrics host service with
//! [`ServerCredentialComposer::metrics`].

use std::sync::{Arc, RwLock};

use spire_plugin_sdk::prelude::*;
use spire_plugin_sdk::proto::spire::hostservice::common::metrics::v1::{
    MetricsBridge, metrics_client::MetricsClient,
};
use spire_plugin_sdk::proto::spire::plugin::server::credentialcomposer::v1::{
    self as api, credential_composer_server::CredentialComposer,
};
use spire_plugin_sdk::tonic::transport::Channel;

use crate::config::ServerCredentialComposerConfig;

/// The plugin's state, shared by its services. Cheap to clone: every clone sees the same
/// configuration and host services, and SPIRE's calls arrive concurrently.
#[derive(Debug, Clone, Default)]
pub struct ServerCredentialComposer {
    config: Arc<RwLock<Option<Arc<ServerCredentialComposerConfig>>>>,
    host_services: HostServices,
}

impl ServerCredentialComposer {
    /// The configuration of the last successful `Configure`, or `FailedPrecondition` before
    /// there is one. Start each RPC with `let config = self.config()?;`.
    pub fn config(&self) -> Result<Arc<ServerCredentialComposerConfig>, Status> {
        self.config
            .read()
            .expect("configuration lock")
            .clone()
            .ok_or_else(|| Status::failed_precondition("the plugin is not configured yet"))
    }

    /// Replaces the configuration; called by `Configure` once the new one is valid, so RPCs
    /// in flight keep the one they started with.
    pub(crate) fn set_config(&self, config: ServerCredentialComposerConfig) {
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
impl CredentialComposer for ServerCredentialComposer {
    /// Lets the plugin shape the X.509 CA certificate that SPIRE Server mints
    /// for itself. The resulting certificate must still be a valid SPIFFE
    /// signing certificate.
    ///
    /// SPIRE sends one `ComposeServerX509caRequest`; answer with one `ComposeServerX509caResponse`.
    async fn compose_server_x509ca(
        &self,
        _request: Request<api::ComposeServerX509caRequest>,
    ) -> Result<Response<api::ComposeServerX509caResponse>, Status> {
        Err(not_implemented("ComposeServerX509CA"))
    }

    /// Lets the plugin shape SPIRE Server's own X509-SVID. The result must
    /// still be a valid SPIFFE leaf X509-SVID, and its SPIFFE ID (URI SAN)
    /// cannot be altered.
    ///
    /// SPIRE sends one `ComposeServerX509svidRequest`; answer with one `ComposeServerX509svidResponse`.
    async fn compose_server_x509svid(
        &self,
        _request: Request<api::ComposeServerX509svidRequest>,
    ) -> Result<Response<api::ComposeServerX509svidResponse>, Status> {
        Err(not_implemented("ComposeServerX509SVID"))
    }

    /// Lets the plugin shape the X509-SVID issued to a SPIRE Agent. The result
    /// must still be a valid SPIFFE leaf X509-SVID, and its SPIFFE ID (URI SAN)
    /// cannot be altered.
    ///
    /// SPIRE sends one `ComposeAgentX509svidRequest`; answer with one `ComposeAgentX509svidResponse`.
    async fn compose_agent_x509svid(
        &self,
        _request: Request<api::ComposeAgentX509svidRequest>,
    ) -> Result<Response<api::ComposeAgentX509svidResponse>, Status> {
        Err(not_implemented("ComposeAgentX509SVID"))
    }

    /// Lets the plugin shape an X509-SVID issued to a workload. The result must
    /// still be a valid SPIFFE leaf X509-SVID, and its SPIFFE ID (URI SAN)
    /// cannot be altered.
    ///
    /// SPIRE sends one `ComposeWorkloadX509svidRequest`; answer with one `ComposeWorkloadX509svidResponse`.
    async fn compose_workload_x509svid(
        &self,
        _request: Request<api::ComposeWorkloadX509svidRequest>,
    ) -> Result<Response<api::ComposeWorkloadX509svidResponse>, Status> {
        Err(not_implemented("ComposeWorkloadX509SVID"))
    }

    /// Lets the plugin shape the claims of a JWT-SVID issued to a workload. The
    /// result must still be a valid SPIFFE JWT-SVID, and its subject (the
    /// SPIFFE ID) cannot be altered.
    ///
    /// SPIRE sends one `ComposeWorkloadJwtsvidRequest`; answer with one `ComposeWorkloadJwtsvidResponse`.
    async fn compose_workload_jwtsvid(
        &self,
        _request: Request<api::ComposeWorkloadJwtsvidRequest>,
    ) -> Result<Response<api::ComposeWorkloadJwtsvidResponse>, Status> {
        Err(not_implemented("ComposeWorkloadJWTSVID"))
    }
}

/// The answer of an RPC that is not written yet.
fn not_implemented(rpc: &str) -> Status {
    Status::unimplemented(format!("CredentialComposer.{rpc} is not implemented yet"))
}
