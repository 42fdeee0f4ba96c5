//! The NodeAttestor service of `server-node-attestor`. Verifies the proof of identity an agent's
//! node sends and names the agent.
//!
//! Every RPC answers `Unimplemented` until you write it; the doc comment on each says what
//! SPIRE sends and what it expects back. Read the configuration with
//! [`ServerNodeAttestor::config`], SPIRE's AgentStore host service with
//! [`ServerNodeAttestor::agent_store`] and SPIRE's Metrics host service with
//! [`ServerNodeAttestor::metrics`].

use std::sync::{Arc, RwLock};

use spire_plugin_sdk::prelude::*;
use spire_plugin_sdk::proto::spire::hostservice::common::metrics::v1::{
    MetricsBridge, metrics_client::MetricsClient,
};
use spire_plugin_sdk::proto::spire::hostservice::server::agentstore::v1::{
    AgentStoreBridge, agent_store_client::AgentStoreClient,
};
use spire_plugin_sdk::proto::spire::plugin::server::nodeattestor::v1::{
    self as api, node_attestor_server::NodeAttestor,
};
use spire_plugin_sdk::tonic::Streaming;
use spire_plugin_sdk::tonic::transport::Channel;

use crate::config::ServerNodeAttestorConfig;

/// The plugin's state, shared by its services. Cheap to clone: every clone sees the same
/// configuration and host services, and SPIRE's calls arrive concurrently.
#[derive(Debug, Clone, Default)]
pub struct ServerNodeAttestor {
    config: Arc<RwLock<Option<Arc<ServerNodeAttestorConfig>>>>,
    host_services: HostServices,
}

impl ServerNodeAttestor {
    /// The configuration of the last successful `Configure`, or `FailedPrecondition` before
    /// there is one. Start each RPC with `let config = self.config()?;`.
    pub fn config(&self) -> Result<Arc<ServerNodeAttestorConfig>, Status> {
        self.config
            .read()
            .expect("configuration lock")
            .clone()
            .ok_or_else(|| Status::failed_precondition("the plugin is not configured yet"))
    }

    /// Replaces the configuration; called by `Configure` once the new one is valid, so RPCs
    /// in flight keep the one they started with.
    pub(crate) fn set_config(&self, config: ServerNodeAttestorConfig) {
        *self.config.write().expect("configuration lock") = Some(Arc::new(config));
    }

    /// The handle the SDK binds SPIRE's host services into at `Init`.
    pub fn host_services(&self) -> HostServices {
        self.host_services.clone()
    }

    /// A client for SPIRE's AgentStore host service
    /// (`spire.hostservice.server.agentstore.v1.AgentStore`), or `None` when SPIRE did not offer it
    /// at `Init` (as in tests that offer no host services).
    pub fn agent_store(&self) -> Option<AgentStoreClient<Channel>> {
        self.host_services.get::<AgentStoreBridge>()
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
impl NodeAttestor for ServerNodeAttestor {
    /// The stream Attest answers with.
    type AttestStream = ResponseStream<api::AttestResponse>;

    /// Runs one attestation of one agent over a bidirectional stream.
    ///
    /// Sequence of messages:
    ///   1. SPIRE Server opens the stream and sends a request carrying the
    ///      payload the agent submitted.
    ///   2. If the plugin needs the agent to prove something more, it sends a
    ///      response carrying a challenge. The server relays the challenge to
    ///      the agent, and the agent's reply comes back to the plugin as a
    ///      request carrying challenge_response. This round trip may be
    ///      repeated as many times as the plugin needs.
    ///   3. Once satisfied, the plugin sends a final response carrying
    ///      agent_attributes and ends the stream.
    ///
    /// To refuse the agent, return an error status (for example
    /// PERMISSION_DENIED) instead of agent attributes.
    ///
    /// SPIRE sends a stream of `AttestRequest`; answer with a stream of `AttestResponse`.
    async fn attest(
        &self,
        _request: Request<Streaming<api::AttestRequest>>,
    ) -> Result<Response<Self::AttestStream>, Status> {
        Err(not_implemented("Attest"))
    }
}

/// The answer of an RPC that is not written yet.
fn not_implemented(rpc: &str) -> Status {
    Status::unimplemented(format!("NodeAttestor.{rpc} is not implemented yet"))
}
