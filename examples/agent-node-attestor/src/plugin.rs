//! The NodeAttestor service of `agent-node-attestor`. Proves the identity of the node the SPIRE
//! agent runs on to the SPIRE server.
//!
//! Every RPC answers `Unimplemented` until you write it; the doc comment on each says what
//! SPIRE sends and what it expects back. Read the configuration with
//! [`AgentNodeAttestor::config`] and SPIRE's Metrics host service with
//! [`AgentNodeAttestor::metrics`].

use std::sync::{Arc, RwLock};

use spire_plugin_sdk::prelude::*;
use spire_plugin_sdk::proto::spire::hostservice::common::metrics::v1::{
    MetricsBridge, metrics_client::MetricsClient,
};
use spire_plugin_sdk::proto::spire::plugin::agent::nodeattestor::v1::{
    self as api, node_attestor_server::NodeAttestor,
};
use spire_plugin_sdk::tonic::Streaming;
use spire_plugin_sdk::tonic::transport::Channel;

use crate::config::AgentNodeAttestorConfig;

/// The plugin's state, shared by its services. Cheap to clone: every clone sees the same
/// configuration and host services, and SPIRE's calls arrive concurrently.
#[derive(Debug, Clone, Default)]
pub struct AgentNodeAttestor {
    config: Arc<RwLock<Option<Arc<AgentNodeAttestorConfig>>>>,
    host_services: HostServices,
}

impl AgentNodeAttestor {
    /// The configuration of the last successful `Configure`, or `FailedPrecondition` before
    /// there is one. Start each RPC with `let config = self.config()?;`.
    pub fn config(&self) -> Result<Arc<AgentNodeAttestorConfig>, Status> {
        self.config
            .read()
            .expect("configuration lock")
            .clone()
            .ok_or_else(|| Status::failed_precondition("the plugin is not configured yet"))
    }

    /// Replaces the configuration; called by `Configure` once the new one is valid, so RPCs
    /// in flight keep the one they started with.
    pub(crate) fn set_config(&self, config: AgentNodeAttestorConfig) {
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
impl NodeAttestor for AgentNodeAttestor {
    /// The stream AidAttestation answers with.
    type AidAttestationStream = ResponseStream<api::PayloadOrChallengeResponse>;

    /// Runs one node attestation exchange over a bidirectional stream.
    ///
    /// Sequence of events:
    /// 1. The agent opens the stream. It does not send anything first.
    /// 2. The plugin sends one message carrying `payload`, the attestation
    ///    evidence the agent forwards to the server.
    /// 3. If the server-side attestor needs more proof, it replies with a
    ///    challenge. The agent sends that challenge to the plugin as a
    ///    `Challenge` message, and the plugin answers with a message carrying
    ///    `challenge_response`, which the agent relays back to the server.
    /// 4. Step 3 repeats for as many rounds as the server asks for.
    /// 5. The agent closes the stream once the server is done.
    ///
    /// The agent only ever writes to the stream to deliver a server challenge.
    /// A plugin whose attestation method has no challenge round may finish the
    /// call right after sending the payload.
    ///
    /// SPIRE sends a stream of `Challenge`; answer with a stream of `PayloadOrChallengeResponse`.
    async fn aid_attestation(
        &self,
        _request: Request<Streaming<api::Challenge>>,
    ) -> Result<Response<Self::AidAttestationStream>, Status> {
        Err(not_implemented("AidAttestation"))
    }
}

/// The answer of an RPC that is not written yet.
fn not_implemented(rpc: &str) -> Status {
    Status::unimplemented(format!("NodeAttestor.{rpc} is not implemented yet"))
}
