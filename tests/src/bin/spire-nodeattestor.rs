//! A Rust SPIRE server NodeAttestor for the SPIRE-style Go host (`tests/go/cmd/spirehost`):
//! bidirectional streaming with one challenge round, AgentStore as an optional host service.
//!
//! Configuration (unknown keys are refused):
//!
//! ```hcl
//! challenge = "nonce"        # sent to the agent
//! secret    = "s3cret"       # the agent must answer "<challenge>:<secret>"
//! selectors = ["a:b"]        # added to the agent's selectors
//! ```
//!
//! The agent's payload is `agent:<name>`; the answer's SPIFFE ID is
//! `spiffe://<trust domain>/spire/agent/rust/<name>`. When the host offers AgentStore, the
//! plugin asks it about the agent and adds `agentstore:known` or `agentstore:unknown`.

use std::sync::{Arc, RwLock};

use serde::Deserialize;
use spire_plugin_sdk::proto::spire::hostservice::server::agentstore::v1::{
    AgentStoreBridge, GetAgentInfoRequest,
};
use spire_plugin_sdk::proto::spire::plugin::server::nodeattestor::v1::{
    AgentAttributes, AttestRequest, AttestResponse, NodeAttestorBridge, attest_request,
    attest_response, node_attestor_server::NodeAttestor,
};
use spire_plugin_sdk::proto::spire::service::common::config::v1::{
    ConfigBridge, ConfigureRequest, ConfigureResponse, ValidateRequest, ValidateResponse,
    config_server::Config,
};
use spire_plugin_sdk::spire::plugin::Configuration;
use spire_plugin_sdk::spire::plugin::PluginError;
use spire_plugin_sdk::spire::plugin::{HostServices, Plugin, Requirement};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status, Streaming};

/// The plugin's own configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AttestorConfig {
    challenge: String,
    secret: String,
    #[serde(default)]
    selectors: Vec<String>,
}

/// Shared between the NodeAttestor and Config services.
#[derive(Clone, Default)]
struct Attestor {
    config: Arc<RwLock<Option<Configuration<AttestorConfig>>>>,
    hosts: HostServices,
}

impl Attestor {
    fn configured(&self) -> Result<Configuration<AttestorConfig>, PluginError> {
        self.config
            .read()
            .expect("config lock")
            .clone()
            .ok_or_else(|| PluginError::FailedPrecondition("not configured".into()))
    }

    async fn attest_one(
        &self,
        mut requests: Streaming<AttestRequest>,
        config: Configuration<AttestorConfig>,
        responses: &tokio::sync::mpsc::Sender<Result<AttestResponse, Status>>,
    ) -> Result<AttestResponse, Status> {
        let payload = match requests.message().await? {
            Some(AttestRequest {
                request: Some(attest_request::Request::Payload(payload)),
            }) => payload,
            _ => return Err(Status::invalid_argument("expected a payload first")),
        };
        let payload = String::from_utf8(payload)
            .map_err(|_| Status::invalid_argument("payload is not UTF-8"))?;
        let name = payload
            .strip_prefix("agent:")
            .ok_or_else(|| Status::invalid_argument("payload must be `agent:<name>`"))?
            .to_owned();
        let challenge = AttestResponse {
            response: Some(attest_response::Response::Challenge(
                config.plugin.challenge.clone().into_bytes(),
            )),
        };
        responses
            .send(Ok(challenge))
            .await
            .map_err(|_| Status::cancelled("the server went away"))?;
        let answer = match requests.message().await? {
            Some(AttestRequest {
                request: Some(attest_request::Request::ChallengeResponse(answer)),
            }) => answer,
            _ => return Err(Status::invalid_argument("expected a challenge response")),
        };
        let expected = format!("{}:{}", config.plugin.challenge, config.plugin.secret);
        if answer != expected.as_bytes() {
            return Err(PluginError::PermissionDenied("challenge response mismatch".into()).into());
        }
        let spiffe_id = format!(
            "spiffe://{}/spire/agent/rust/{name}",
            config.core.trust_domain
        );
        let mut selector_values = config.plugin.selectors.clone();
        if let Some(mut store) = self.hosts.get::<AgentStoreBridge>() {
            let known = match store
                .get_agent_info(GetAgentInfoRequest {
                    agent_id: spiffe_id.clone(),
                })
                .await
            {
                Ok(_) => "known",
                Err(status) if status.code() == Code::NotFound => "unknown",
                Err(status) => return Err(status),
            };
            selector_values.push(format!("agentstore:{known}"));
        }
        tracing::info!(agent = %spiffe_id, "agent attested");
        Ok(AttestResponse {
            response: Some(attest_response::Response::AgentAttributes(
                AgentAttributes {
                    spiffe_id,
                    selector_values,
                    can_reattest: true,
                },
            )),
        })
    }
}

#[tonic::async_trait]
impl NodeAttestor for Attestor {
    type AttestStream = ReceiverStream<Result<AttestResponse, Status>>;

    async fn attest(
        &self,
        request: Request<Streaming<AttestRequest>>,
    ) -> Result<Response<Self::AttestStream>, Status> {
        let config = self.configured()?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let this = self.clone();
        let requests = request.into_inner();
        tokio::spawn(async move {
            let last = this.attest_one(requests, config, &tx).await;
            if let Err(status) = &last {
                tracing::warn!(error = %status.message(), "attestation refused");
            }
            let _ = tx.send(last).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[tonic::async_trait]
impl Config for Attestor {
    async fn configure(
        &self,
        request: Request<ConfigureRequest>,
    ) -> Result<Response<ConfigureResponse>, Status> {
        let config = Configuration::<AttestorConfig>::from_configure(request.get_ref())?;
        tracing::info!(trust_domain = %config.core.trust_domain, "configured");
        *self.config.write().expect("config lock") = Some(config);
        Ok(Response::new(ConfigureResponse {}))
    }

    async fn validate(
        &self,
        request: Request<ValidateRequest>,
    ) -> Result<Response<ValidateResponse>, Status> {
        Ok(Response::new(
            match Configuration::<AttestorConfig>::from_validate(request.get_ref()) {
                Ok(_) => ValidateResponse {
                    valid: true,
                    notes: Vec::new(),
                },
                Err(err) => ValidateResponse {
                    valid: false,
                    notes: vec![err.to_string()],
                },
            },
        ))
    }
}

#[tokio::main]
async fn main() {
    let hosts = HostServices::new();
    let attestor = Attestor {
        hosts: hosts.clone(),
        ..Attestor::default()
    };
    Plugin::new(NodeAttestorBridge::bridged(attestor.clone()))
        .service(ConfigBridge::bridged(attestor))
        .host_service::<AgentStoreBridge>(Requirement::Optional)
        .host_services(hosts)
        .on_close(|| async {
            tracing::info!("plugin closed");
            Ok::<(), std::convert::Infallible>(())
        })
        .serve_or_exit()
        .await
}
