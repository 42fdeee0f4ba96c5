//! The KeyManager service of `agent-key-manager`. Creates and holds the private keys of the SPIRE
//! agent and signs with them.
//!
//! Every RPC answers `Unimplemented` until you write it; the doc comment on each says what
//! SPIRE sends and what it expects back. Read the configuration with
//! [`AgentKeyManager::config`] and SPIRE's Metrics host service with
//! [`AgentKeyManager::metrics`].

use std::sync::{Arc, RwLock};

use spire_plugin_sdk::prelude::*;
use spire_plugin_sdk::proto::spire::hostservice::common::metrics::v1::{
    MetricsBridge, metrics_client::MetricsClient,
};
use spire_plugin_sdk::proto::spire::plugin::agent::keymanager::v1::{
    self as api, key_manager_server::KeyManager,
};
use spire_plugin_sdk::tonic::transport::Channel;

use crate::config::AgentKeyManagerConfig;

/// The plugin's state, shared by its services. Cheap to clone: every clone sees the same
/// configuration and host services, and SPIRE's calls arrive concurrently.
#[derive(Debug, Clone, Default)]
pub struct AgentKeyManager {
    config: Arc<RwLock<Option<Arc<AgentKeyManagerConfig>>>>,
    host_services: HostServices,
}

impl AgentKeyManager {
    /// The configuration of the last successful `Configure`, or `FailedPrecondition` before
    /// there is one. Start each RPC with `let config = self.config()?;`.
    pub fn config(&self) -> Result<Arc<AgentKeyManagerConfig>, Status> {
        self.config
            .read()
            .expect("configuration lock")
            .clone()
            .ok_or_else(|| Status::failed_precondition("the plugin is not configured yet"))
    }

    /// Replaces the configuration; called by `Configure` once the new one is valid, so RPCs
    /// in flight keep the one they started with.
    pub(crate) fn set_config(&self, config: AgentKeyManagerConfig) {
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
impl KeyManager for AgentKeyManager {
    /// Creates a private key and stores it under the requested ID. When the ID is
    /// already in use, the old key is replaced and the new one must report a
    /// fingerprint that differs from the one it replaced (see
    /// `PublicKey.fingerprint`).
    ///
    /// SPIRE sends one `GenerateKeyRequest`; answer with one `GenerateKeyResponse`.
    async fn generate_key(
        &self,
        _request: Request<api::GenerateKeyRequest>,
    ) -> Result<Response<api::GenerateKeyResponse>, Status> {
        Err(not_implemented("GenerateKey"))
    }

    /// Looks up a single key by ID and returns its public description. Respond
    /// with the gRPC status NOT_FOUND when no key is stored under that ID.
    ///
    /// SPIRE sends one `GetPublicKeyRequest`; answer with one `GetPublicKeyResponse`.
    async fn get_public_key(
        &self,
        _request: Request<api::GetPublicKeyRequest>,
    ) -> Result<Response<api::GetPublicKeyResponse>, Status> {
        Err(not_implemented("GetPublicKey"))
    }

    /// Lists the public description of every key the plugin currently holds.
    ///
    /// SPIRE sends one `GetPublicKeysRequest`; answer with one `GetPublicKeysResponse`.
    async fn get_public_keys(
        &self,
        _request: Request<api::GetPublicKeysRequest>,
    ) -> Result<Response<api::GetPublicKeysResponse>, Status> {
        Err(not_implemented("GetPublicKeys"))
    }

    /// Produces a signature over the supplied bytes with the key stored under the
    /// given ID, and reports which key instance (by fingerprint) did the signing.
    /// Respond with the gRPC status NOT_FOUND when the ID is unknown.
    ///
    /// SPIRE sends one `SignDataRequest`; answer with one `SignDataResponse`.
    async fn sign_data(
        &self,
        _request: Request<api::SignDataRequest>,
    ) -> Result<Response<api::SignDataResponse>, Status> {
        Err(not_implemented("SignData"))
    }
}

/// The answer of an RPC that is not written yet.
fn not_implemented(rpc: &str) -> Status {
    Status::unimplemented(format!("KeyManager.{rpc} is not implemented yet"))
}
