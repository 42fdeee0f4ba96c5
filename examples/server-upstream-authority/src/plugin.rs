//! The UpstreamAuthority service of `server-upstream-authority`. Signs the SPIRE server's CA with
//! an upstream CA and hands out its roots.
//!
//! Every RPC answers `Unimplemented` until you write it; the doc comment on each says what
//! SPIRE sends and what it expects back. Read the configuration with
//! [`ServerUpstreamAuthority::config`] and SPIRE's Metrics host service with
//! [`ServerUpstreamAuthority::metrics`].

use std::sync::{Arc, RwLock};

use spire_plugin_sdk::prelude::*;
use spire_plugin_sdk::proto::spire::hostservice::common::metrics::v1::{
    MetricsBridge, metrics_client::MetricsClient,
};
use spire_plugin_sdk::proto::spire::plugin::server::upstreamauthority::v1::{
    self as api, upstream_authority_server::UpstreamAuthority,
};
use spire_plugin_sdk::tonic::transport::Channel;

use crate::config::ServerUpstreamAuthorityConfig;

/// The plugin's state, shared by its services. Cheap to clone: every clone sees the same
/// configuration and host services, and SPIRE's calls arrive concurrently.
#[derive(Debug, Clone, Default)]
pub struct ServerUpstreamAuthority {
    config: Arc<RwLock<Option<Arc<ServerUpstreamAuthorityConfig>>>>,
    host_services: HostServices,
}

impl ServerUpstreamAuthority {
    /// The configuration of the last successful `Configure`, or `FailedPrecondition` before
    /// there is one. Start each RPC with `let config = self.config()?;`.
    pub fn config(&self) -> Result<Arc<ServerUpstreamAuthorityConfig>, Status> {
        self.config
            .read()
            .expect("configuration lock")
            .clone()
            .ok_or_else(|| Status::failed_precondition("the plugin is not configured yet"))
    }

    /// Replaces the configuration; called by `Configure` once the new one is valid, so RPCs
    /// in flight keep the one they started with.
    pub(crate) fn set_config(&self, config: ServerUpstreamAuthorityConfig) {
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
impl UpstreamAuthority for ServerUpstreamAuthority {
    /// The stream MintX509CAAndSubscribe answers with.
    type MintX509CAAndSubscribeStream = ResponseStream<api::MintX509caResponse>;

    /// Signs the server's CA request with the upstream authority. The first
    /// message on the stream must carry the resulting CA chain and the current
    /// upstream roots. A plugin that can watch for root changes keeps the
    /// stream open and sends a new message each time the roots change; a
    /// plugin that cannot simply ends the stream after the first message.
    ///
    /// Do not end the stream because of a temporary failure while watching for
    /// root changes: SPIRE Server only opens a new stream when it next rotates
    /// its X.509 CA, so a closed stream means no updates until then.
    ///
    /// SPIRE sends one `MintX509caRequest`; answer with a stream of `MintX509caResponse`.
    async fn mint_x509ca_and_subscribe(
        &self,
        _request: Request<api::MintX509caRequest>,
    ) -> Result<Response<Self::MintX509CAAndSubscribeStream>, Status> {
        Err(not_implemented("MintX509CAAndSubscribe"))
    }

    /// The stream PublishJWTKeyAndSubscribe answers with.
    type PublishJWTKeyAndSubscribeStream = ResponseStream<api::PublishJwtKeyResponse>;

    /// Publishes one of the server's JWT signing keys upstream. The first
    /// message on the stream must carry the resulting set of upstream JWT keys.
    /// A plugin that can watch for changes keeps the stream open and sends a
    /// new message whenever that set changes; otherwise it ends the stream
    /// after the first message.
    ///
    /// Support is optional: a plugin that does not offer it returns
    /// UNIMPLEMENTED.
    ///
    /// As with the X.509 RPC, keep the stream open through temporary failures;
    /// SPIRE Server only opens a new one at its next JWT key rotation.
    ///
    /// SPIRE sends one `PublishJwtKeyRequest`; answer with a stream of `PublishJwtKeyResponse`.
    async fn publish_jwt_key_and_subscribe(
        &self,
        _request: Request<api::PublishJwtKeyRequest>,
    ) -> Result<Response<Self::PublishJWTKeyAndSubscribeStream>, Status> {
        Err(not_implemented("PublishJWTKeyAndSubscribe"))
    }

    /// The stream SubscribeToLocalBundle answers with.
    type SubscribeToLocalBundleStream = ResponseStream<api::SubscribeToLocalBundleResponse>;

    /// Reports the trust bundle of the server's own trust domain as the
    /// upstream authority knows it, i.e. its current X.509 roots and JWT
    /// public keys. The first message carries the current state. A plugin that
    /// can watch for changes keeps the stream open and sends a new message each
    /// time the bundle changes; otherwise it ends the stream after the first
    /// message.
    ///
    /// Support is optional: a plugin that does not offer it returns
    /// UNIMPLEMENTED.
    ///
    /// SPIRE sends one `SubscribeToLocalBundleRequest`; answer with a stream of `SubscribeToLocalBundleResponse`.
    async fn subscribe_to_local_bundle(
        &self,
        _request: Request<api::SubscribeToLocalBundleRequest>,
    ) -> Result<Response<Self::SubscribeToLocalBundleStream>, Status> {
        Err(not_implemented("SubscribeToLocalBundle"))
    }
}

/// The answer of an RPC that is not written yet.
fn not_implemented(rpc: &str) -> Status {
    Status::unimplemented(format!("UpstreamAuthority.{rpc} is not implemented yet"))
}
