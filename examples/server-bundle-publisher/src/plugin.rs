//! The BundlePublisher service of `server-bundle-publisher`. Publishes the trust bundle of the
//! SPIRE server wherever others fetch it.
//!
//! Every RPC answers `Unimplemented` until you write it; the doc comment on each says what
//! SPIRE sends and what it expects back. Read the configuration with
//! [`ServerBundlePublisher::config`] and SPIRE's Metrics host service with
//! [`ServerBundlePublisher::metrics`].

use std::sync::{Arc, RwLock};

use spire_plugin_sdk::prelude::*;
use spire_plugin_sdk::proto::spire::hostservice::common::metrics::v1::{
    MetricsBridge, metrics_client::MetricsClient,
};
use spire_plugin_sdk::proto::spire::plugin::server::bundlepublisher::v1::{
    self as api, bundle_publisher_server::BundlePublisher,
};
use spire_plugin_sdk::tonic::transport::Channel;

use crate::config::ServerBundlePublisherConfig;

/// The plugin's state, shared by its services. Cheap to clone: every clone sees the same
/// configuration and host services, and SPIRE's calls arrive concurrently.
#[derive(Debug, Clone, Default)]
pub struct ServerBundlePublisher {
    config: Arc<RwLock<Option<Arc<ServerBundlePublisherConfig>>>>,
    host_services: HostServices,
}

impl ServerBundlePublisher {
    /// The configuration of the last successful `Configure`, or `FailedPrecondition` before
    /// there is one. Start each RPC with `let config = self.config()?;`.
    pub fn config(&self) -> Result<Arc<ServerBundlePublisherConfig>, Status> {
        self.config
            .read()
            .expect("configuration lock")
            .clone()
            .ok_or_else(|| Status::failed_precondition("the plugin is not configured yet"))
    }

    /// Replaces the configuration; called by `Configure` once the new one is valid, so RPCs
    /// in flight keep the one they started with.
    pub(crate) fn set_config(&self, config: ServerBundlePublisherConfig) {
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
impl BundlePublisher for ServerBundlePublisher {
    /// Called by SPIRE Server whenever it wants the bundle written out. The
    /// plugin should write the bundle from the request to its configured
    /// destination and return once that is done; returning an error status
    /// tells the server that the publish attempt failed.
    ///
    /// SPIRE sends one `PublishBundleRequest`; answer with one `PublishBundleResponse`.
    async fn publish_bundle(
        &self,
        _request: Request<api::PublishBundleRequest>,
    ) -> Result<Response<api::PublishBundleResponse>, Status> {
        Err(not_implemented("PublishBundle"))
    }
}

/// The answer of an RPC that is not written yet.
fn not_implemented(rpc: &str) -> Status {
    Status::unimplemented(format!("BundlePublisher.{rpc} is not implemented yet"))
}
