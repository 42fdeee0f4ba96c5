//! The SVIDStore service of `agent-svid-store`. Writes workload SVIDs the SPIRE agent mints into an
//! external store.
//!
//! Every RPC answers `Unimplemented` until you write it; the doc comment on each says what
//! SPIRE sends and what it expects back. Read the configuration with
//! [`AgentSvidStore::config`] and SPIRE's Metrics host service with
//! [`AgentSvidStore::metrics`].

use std::sync::{Arc, RwLock};

use spire_plugin_sdk::prelude::*;
use spire_plugin_sdk::proto::spire::hostservice::common::metrics::v1::{
    MetricsBridge, metrics_client::MetricsClient,
};
use spire_plugin_sdk::proto::spire::plugin::agent::svidstore::v1::{
    self as api, svid_store_server::SvidStore,
};
use spire_plugin_sdk::tonic::transport::Channel;

use crate::config::AgentSvidStoreConfig;

/// The plugin's state, shared by its services. Cheap to clone: every clone sees the same
/// configuration and host services, and SPIRE's calls arrive concurrently.
#[derive(Debug, Clone, Default)]
pub struct AgentSvidStore {
    config: Arc<RwLock<Option<Arc<AgentSvidStoreConfig>>>>,
    host_services: HostServices,
}

impl AgentSvidStore {
    /// The configuration of the last successful `Configure`, or `FailedPrecondition` before
    /// there is one. Start each RPC with `let config = self.config()?;`.
    pub fn config(&self) -> Result<Arc<AgentSvidStoreConfig>, Status> {
        self.config
            .read()
            .expect("configuration lock")
            .clone()
            .ok_or_else(|| Status::failed_precondition("the plugin is not configured yet"))
    }

    /// Replaces the configuration; called by `Configure` once the new one is valid, so RPCs
    /// in flight keep the one they started with.
    pub(crate) fn set_config(&self, config: AgentSvidStoreConfig) {
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
impl SvidStore for AgentSvidStore {
    /// Writes (or overwrites) an X509-SVID in the secret store. The agent calls
    /// this again whenever the SVID is renewed or its bundles change.
    ///
    /// SPIRE sends one `PutX509svidRequest`; answer with one `PutX509svidResponse`.
    async fn put_x509svid(
        &self,
        _request: Request<api::PutX509svidRequest>,
    ) -> Result<Response<api::PutX509svidResponse>, Status> {
        Err(not_implemented("PutX509SVID"))
    }

    /// Removes a previously stored SVID from the secret store, for example when
    /// its registration entry is deleted.
    ///
    /// SPIRE sends one `DeleteX509svidRequest`; answer with one `DeleteX509svidResponse`.
    async fn delete_x509svid(
        &self,
        _request: Request<api::DeleteX509svidRequest>,
    ) -> Result<Response<api::DeleteX509svidResponse>, Status> {
        Err(not_implemented("DeleteX509SVID"))
    }
}

/// The answer of an RPC that is not written yet.
fn not_implemented(rpc: &str) -> Status {
    Status::unimplemented(format!("SVIDStore.{rpc} is not implemented yet"))
}
