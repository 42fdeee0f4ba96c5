//! [`HostServices`]: the shared handle through which plugin code reaches the host services
//! (Metrics, IdentityProvider, AgentStore) that `Init` bound.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tonic::Status;
use tonic::transport::Channel;

use crate::bridge::ClientBridge;

/// Whether a plugin can run without a host service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Requirement {
    /// `Init` fails (`FailedPrecondition`) when the host does not offer the service.
    Required,
    /// Bound when offered; [`HostServices::get`] returns `None` otherwise.
    Optional,
}

/// Clients for the host services bound at `Init`, shared between the plugin's implementations
/// and the SDK. Clone it into each implementation before serving; the SDK fills it when SPIRE
/// calls `Init` (before `Configure`).
///
/// ```
/// use spire_plugin_sdk::proto::spire::hostservice::common::metrics::v1::MetricsBridge;
/// use spire_plugin_sdk::spire::plugin::HostServices;
///
/// let hosts = HostServices::new();
/// assert!(hosts.get::<MetricsBridge>().is_none()); // nothing bound before Init
/// ```
#[derive(Debug, Clone, Default)]
pub struct HostServices {
    bound: Arc<RwLock<HashMap<&'static str, Channel>>>,
}

impl HostServices {
    /// An empty handle.
    pub fn new() -> HostServices {
        HostServices::default()
    }

    /// A client for host service `B` when `Init` bound it.
    pub fn get<B: ClientBridge>(&self) -> Option<B::Client> {
        let bound = self.bound.read().expect("host services lock");
        bound.get(B::INFO.full_name).cloned().map(B::client)
    }

    /// Like [`get`](Self::get), as an error status when the service is not bound, for use
    /// with `?` in RPC handlers.
    ///
    /// # Errors
    ///
    /// [`NOT_OFFERED`](Self::NOT_OFFERED) (`Unimplemented`), naming the service: the host did
    /// not offer it (or `Init` has not run). This is deliberately not `FailedPrecondition`,
    /// which SPIRE's own host services answer for "not ready yet" (IdentityProvider before the
    /// server CA exists), so a caller can tell "retry later" from "this host has no such
    /// service".
    pub fn require<B: ClientBridge>(&self) -> Result<B::Client, Status> {
        self.get::<B>().ok_or_else(|| {
            Status::new(
                Self::NOT_OFFERED,
                format!(
                    "host service {} was not offered by the host",
                    B::INFO.full_name
                ),
            )
        })
    }

    /// The code [`require`](Self::require) answers with when a host service was not offered:
    /// `Unimplemented`, the code gRPC uses for an operation this peer does not support.
    pub const NOT_OFFERED: tonic::Code = tonic::Code::Unimplemented;

    /// Whether host service `B` is bound.
    pub fn is_bound<B: ClientBridge>(&self) -> bool {
        let bound = self.bound.read().expect("host services lock");
        bound.contains_key(B::INFO.full_name)
    }

    /// Replaces the bound set (called by `Init`).
    pub(crate) fn rebind(&self, services: impl IntoIterator<Item = (&'static str, Channel)>) {
        let mut bound = self.bound.write().expect("host services lock");
        bound.clear();
        bound.extend(services);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::spire::hostservice::common::metrics::v1::MetricsBridge;

    #[test]
    fn a_service_not_offered_is_unimplemented_not_failed_precondition() {
        let hosts = HostServices::new();
        let status = hosts.require::<MetricsBridge>().unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unimplemented);
        assert_ne!(status.code(), tonic::Code::FailedPrecondition);
        assert_eq!(
            status.message(),
            "host service spire.hostservice.common.metrics.v1.Metrics was not offered by the host"
        );
    }
}
