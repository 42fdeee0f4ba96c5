//! [`PluginSession`]: SPIRE's conversation with one plugin once go-plugin has connected it —
//! host services on broker ID 1, `Init`, `Configure`/`Validate`, typed clients, `Deinit` — the one
//! implementation behind the catalog (a launched binary), `plugintest` (a plugin served in the
//! test process) and `check`. Every call has a limit; every failure keeps the plugin's
//! `tonic::Status` and prints it in Go's wording.

use std::time::Duration;

use tonic::transport::Channel;
use tonic::{Code, Status};

use super::catalog::{CatalogError, OfferedHostServices};
use crate::bridge::{ClientBridge, ServiceBridge};
use crate::goplugin::{Broker, BrokeredServer};
use crate::proto::spire::service::common::config::v1::{
    ConfigBridge, ConfigureRequest, CoreConfiguration, ValidateRequest, ValidateResponse,
};
use crate::proto::spire::service::private::init::v1::{DeinitRequest, InitBridge, InitRequest};

/// The broker ID SPIRE serves host services on (`private.HostServiceProviderID`); the same
/// constant the plugin side dials.
pub(crate) use super::plugin::HOST_SERVICE_BROKER_ID;

/// A SPIRE plugin after a successful `Init`: the services it reported, typed clients on its
/// connection, and SPIRE's calls (`Configure`, `Validate`, `Deinit`), each under the session's
/// call limit. Reached through [`LoadedPlugin`](super::catalog::LoadedPlugin) and
/// [`InProcess`](super::plugintest::InProcess), which deref to it.
#[derive(Debug)]
pub struct PluginSession {
    name: String,
    /// The host services' server on broker ID 1; stopped (its socket removed) with the session.
    _host_services: BrokeredServer,
    channel: Channel,
    services: Vec<String>,
    trust_domain: String,
    call_timeout: Duration,
}

impl PluginSession {
    /// Offers `host_services` on `host_broker` under broker ID 1 and calls `Init` with their
    /// names (SPIRE accepts ID 1 just before `Init`: a Go plugin dials it during `Init`).
    pub(crate) async fn init(
        name: String,
        channel: Channel,
        host_broker: &Broker,
        host_services: OfferedHostServices,
        trust_domain: String,
        call_timeout: Duration,
    ) -> Result<PluginSession, CatalogError> {
        let (servers, names) = host_services.into_parts();
        let host_services = host_broker
            .accept_and_serve(HOST_SERVICE_BROKER_ID, servers)
            .map_err(|source| CatalogError::HostServices {
                name: name.clone(),
                source,
            })?;
        let mut init = InitBridge::client(channel.clone());
        let request = InitRequest {
            host_service_names: names,
        };
        let response = call(call_timeout, init.init(request))
            .await
            .map_err(|status| CatalogError::Init {
                name: name.clone(),
                status,
            })?;
        Ok(PluginSession {
            name,
            _host_services: host_services,
            channel,
            services: response.plugin_service_names,
            trust_domain,
            call_timeout,
        })
    }

    /// The plugin's name in messages (its declaration's name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The full gRPC names the plugin reported in `Init`, plugin service first.
    pub fn service_names(&self) -> &[String] {
        &self.services
    }

    /// Whether the plugin reported `full_name` in `Init`.
    pub fn serves(&self, full_name: &str) -> bool {
        self.services.iter().any(|name| name == full_name)
    }

    /// The connection to the plugin, for clients there is no bridge for.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The trust domain `Configure` and `Validate` send.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The limit of each call the session makes.
    pub fn call_timeout(&self) -> Duration {
        self.call_timeout
    }

    /// A typed client for the plugin service or one of the plugin's services, e.g.
    /// `client::<KeyManagerBridge>()`.
    ///
    /// # Errors
    ///
    /// [`CatalogError::NotServed`] when the plugin did not report `B` in `Init`.
    pub fn client<B: ClientBridge>(&self) -> Result<B::Client, CatalogError> {
        if !self.serves(B::INFO.full_name) {
            return Err(CatalogError::NotServed {
                name: self.name.clone(),
                service: B::INFO.full_name,
                served: self.services.clone(),
            });
        }
        Ok(B::client(self.channel.clone()))
    }

    /// Calls `Configure` with the session's trust domain and `hcl` (SPIRE's `plugin_data`).
    ///
    /// # Errors
    ///
    /// [`CatalogError::NoConfigInterface`], or [`CatalogError::Configure`] with the plugin's
    /// status (`DeadlineExceeded` when it did not answer in time).
    pub async fn configure(&self, hcl: impl Into<String>) -> Result<(), CatalogError> {
        let mut config = self.config_client()?;
        let request = ConfigureRequest {
            core_configuration: Some(self.core()),
            hcl_configuration: hcl.into(),
        };
        call(self.call_timeout, config.configure(request))
            .await
            .map(drop)
            .map_err(|status| CatalogError::Configure {
                name: self.name.clone(),
                status,
            })
    }

    /// Calls `Validate` with the session's trust domain and `hcl`.
    ///
    /// # Errors
    ///
    /// [`CatalogError::NoConfigInterface`], or [`CatalogError::Validate`] with the plugin's
    /// status (`Unimplemented` for a plugin that does not validate).
    pub async fn validate(&self, hcl: impl Into<String>) -> Result<ValidateResponse, CatalogError> {
        let mut config = self.config_client()?;
        let request = ValidateRequest {
            core_configuration: Some(self.core()),
            hcl_configuration: hcl.into(),
        };
        call(self.call_timeout, config.validate(request))
            .await
            .map_err(|status| CatalogError::Validate {
                name: self.name.clone(),
                status,
            })
    }

    /// Calls `Deinit`, which runs the plugin's close hook.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Deinit`] with the plugin's status (`Unimplemented` from a plugin built
    /// before `Deinit` existed; SPIRE tolerates that).
    pub async fn deinit(&self, limit: Duration) -> Result<(), CatalogError> {
        let mut init = InitBridge::client(self.channel.clone());
        call(limit, init.deinit(DeinitRequest {}))
            .await
            .map(drop)
            .map_err(|status| CatalogError::Deinit {
                name: self.name.clone(),
                status,
            })
    }

    fn config_client(&self) -> Result<<ConfigBridge as ClientBridge>::Client, CatalogError> {
        if !self.serves(ConfigBridge::INFO.full_name) {
            return Err(CatalogError::NoConfigInterface {
                name: self.name.clone(),
            });
        }
        Ok(ConfigBridge::client(self.channel.clone()))
    }

    fn core(&self) -> CoreConfiguration {
        CoreConfiguration {
            trust_domain: self.trust_domain.clone(),
        }
    }
}

/// Makes a call, turning no answer within `limit` into `DeadlineExceeded` (the call is
/// cancelled).
pub(crate) async fn call<T>(
    limit: Duration,
    call: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, Status> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result.map(tonic::Response::into_inner),
        Err(_) => Err(Status::deadline_exceeded(format!(
            "no answer within {limit:?}"
        ))),
    }
}

/// A status as Go's `status.Error` prints it, `rpc error: code = X desc = msg`, with Go's code
/// names (`Canceled`, one `l`).
pub(crate) fn go_status(status: &Status) -> String {
    let code = match status.code() {
        Code::Cancelled => "Canceled".to_owned(),
        other => format!("{other:?}"),
    };
    format!("rpc error: code = {code} desc = {}", status.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_print_in_gos_words() {
        assert_eq!(
            go_status(&Status::cancelled("gone")),
            "rpc error: code = Canceled desc = gone"
        );
        assert_eq!(
            go_status(&Status::invalid_argument("bad")),
            "rpc error: code = InvalidArgument desc = bad"
        );
    }

    #[tokio::test]
    async fn a_call_without_an_answer_is_deadline_exceeded() {
        let never = std::future::pending::<Result<tonic::Response<()>, Status>>();
        let status = call(Duration::from_millis(10), never).await.unwrap_err();
        assert_eq!(status.code(), Code::DeadlineExceeded);
        assert_eq!(status.message(), "no answer within 10ms");
    }
}
