//! The Notifier service of `server-notifier`. Tells other systems about SPIRE server events such as
//! a changed bundle.
//!
//! Every RPC answers `Unimplemented` until you write it; the doc comment on each says what
//! SPIRE sends and what it expects back. Read the configuration with
//! [`ServerNotifier::config`], SPIRE's IdentityProvider host service with
//! [`ServerNotifier::identity_provider`] and SPIRE's Metrics host service with
//! [`ServerNotifier::metrics`].

use std::sync::{Arc, RwLock};

use spire_plugin_sdk::prelude::*;
use spire_plugin_sdk::proto::spire::hostservice::common::metrics::v1::{
    MetricsBridge, metrics_client::MetricsClient,
};
use spire_plugin_sdk::proto::spire::hostservice::server::identityprovider::v1::{
    IdentityProviderBridge, identity_provider_client::IdentityProviderClient,
};
use spire_plugin_sdk::proto::spire::plugin::server::notifier::v1::{
    self as api, notifier_server::Notifier,
};
use spire_plugin_sdk::tonic::transport::Channel;

use crate::config::ServerNotifierConfig;

/// The plugin's state, shared by its services. Cheap to clone: every clone sees the same
/// configuration and host services, and SPIRE's calls arrive concurrently.
#[derive(Debug, Clone, Default)]
pub struct ServerNotifier {
    config: Arc<RwLock<Option<Arc<ServerNotifierConfig>>>>,
    host_services: HostServices,
}

impl ServerNotifier {
    /// The configuration of the last successful `Configure`, or `FailedPrecondition` before
    /// there is one. Start each RPC with `let config = self.config()?;`.
    pub fn config(&self) -> Result<Arc<ServerNotifierConfig>, Status> {
        self.config
            .read()
            .expect("configuration lock")
            .clone()
            .ok_or_else(|| Status::failed_precondition("the plugin is not configured yet"))
    }

    /// Replaces the configuration; called by `Configure` once the new one is valid, so RPCs
    /// in flight keep the one they started with.
    pub(crate) fn set_config(&self, config: ServerNotifierConfig) {
        *self.config.write().expect("configuration lock") = Some(Arc::new(config));
    }

    /// The handle the SDK binds SPIRE's host services into at `Init`.
    pub fn host_services(&self) -> HostServices {
        self.host_services.clone()
    }

    /// A client for SPIRE's IdentityProvider host service
    /// (`spire.hostservice.server.identityprovider.v1.IdentityProvider`), or `None` when SPIRE did
    /// not offer it at `Init` (as in tests that offer no host services).
    pub fn identity_provider(&self) -> Option<IdentityProviderClient<Channel>> {
        self.host_services.get::<IdentityProviderBridge>()
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
impl Notifier for ServerNotifier {
    /// Fire-and-forget notification. SPIRE Server logs any error the plugin
    /// returns here but does not change its behaviour because of it.
    ///
    /// SPIRE sends one `NotifyRequest`; answer with one `NotifyResponse`.
    async fn notify(
        &self,
        _request: Request<api::NotifyRequest>,
    ) -> Result<Response<api::NotifyResponse>, Status> {
        Err(not_implemented("Notify"))
    }

    /// Notification whose outcome matters. SPIRE Server waits for the plugin to
    /// answer, and an error status changes what the server does; the effect of
    /// an error depends on the event and is described alongside each event in
    /// NotifyAndAdviseRequest.
    ///
    /// SPIRE sends one `NotifyAndAdviseRequest`; answer with one `NotifyAndAdviseResponse`.
    async fn notify_and_advise(
        &self,
        _request: Request<api::NotifyAndAdviseRequest>,
    ) -> Result<Response<api::NotifyAndAdviseResponse>, Status> {
        Err(not_implemented("NotifyAndAdvise"))
    }
}

/// The answer of an RPC that is not written yet.
fn not_implemented(rpc: &str) -> Status {
    Status::unimplemented(format!("Notifier.{rpc} is not implemented yet"))
}
