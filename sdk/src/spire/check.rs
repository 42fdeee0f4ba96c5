//! A conformance check of one SPIRE plugin binary (Go or Rust), run as SPIRE would load it
//! (through [`crate::spire::catalog`]) and reported step by step: type, config, checksum,
//! launch, Init, services, Configure, Validate, one safe RPC, unload. `cargo xtask
//! plugin-check` is a thin command line over [`run`].
//!
//! Configuration: when the file given is HCL with a top-level `plugin_data` (block or
//! attribute, as written inside a plugin declaration), the plugin is configured with that
//! body re-printed as SPIRE does; otherwise with the file's whole content, as with
//! `plugin_data_file`. See [`config_data`].
//!
//! RPC step: only calls that cannot change a real system are made — KeyManager
//! `GetPublicKeys`, WorkloadAttestor `Attest` of the checker's own PID, server NodeAttestor
//! `Attest` opened and closed without a message, CredentialComposer `ComposeServerX509CA` of
//! default attributes (composing is a pure function of the request). Other types
//! (UpstreamAuthority mints and publishes, agent NodeAttestor fetches identity documents, ...)
//! are skipped with the reason.
//! An RPC answering `Unimplemented` from a service the plugin reported in `Init` is a warning
//! (`!`), not a failure: the plugin is loadable and conformant, its author has not written
//! that RPC yet (every fresh `cargo xtask new` project is in that state).

use std::path::PathBuf;
use std::time::Duration;

use tonic::Code;

use crate::bridge::{ClientBridge, ServiceBridge};
use crate::proto::spire::hostservice::common::metrics::v1::{
    AddSampleRequest, EmitKeyRequest, IncrCounterRequest, MeasureSinceRequest, MetricsBridge,
    SetGaugeRequest, metrics_server::Metrics,
};
use crate::proto::spire::hostservice::server::agentstore::v1::{
    AgentStoreBridge, GetAgentInfoRequest, GetAgentInfoResponse, agent_store_server::AgentStore,
};
use crate::proto::spire::hostservice::server::identityprovider::v1::{
    FetchX509IdentityRequest, FetchX509IdentityResponse, IdentityProviderBridge,
    identity_provider_server::IdentityProvider,
};
use crate::proto::spire::service::common::config::v1::{
    ConfigBridge, CoreConfiguration, ValidateRequest,
};
use crate::spire::catalog::{
    CatalogError, LoadOptions, LoadedPlugin, OfferedHostServices, PluginData, PluginDeclaration,
    load, parse_checksum, parse_plugins, plugin_service, sha256_hex,
};

/// The name the checked plugin is declared under.
pub const PLUGIN_NAME: &str = "plugin-check";

/// What to check.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// `<side>/<Type>`, e.g. `agent/KeyManager`.
    pub target: String,
    /// The plugin binary.
    pub cmd: PathBuf,
    /// Its arguments (`plugin_args`).
    pub args: Vec<String>,
    /// The configuration file's content, if one was given (see [`config_data`]).
    pub config: Option<String>,
    /// The expected SHA-256 of the binary as hex (`plugin_checksum`).
    pub checksum: Option<String>,
    /// The trust domain sent in `Configure` and `Validate`.
    pub trust_domain: String,
    /// Limit for the handshake and for each call (Init, Configure, Validate, the RPC, Deinit).
    pub timeout: Duration,
}

impl CheckOptions {
    /// A check of `cmd` as `target`, no arguments, config or checksum, trust domain
    /// `example.org`, 30 s per step.
    pub fn new(target: impl Into<String>, cmd: impl Into<PathBuf>) -> Self {
        CheckOptions {
            target: target.into(),
            cmd: cmd.into(),
            args: Vec::new(),
            config: None,
            checksum: None,
            trust_domain: "example.org".to_owned(),
            timeout: Duration::from_secs(30),
        }
    }
}

/// A step's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The step passed.
    Pass,
    /// The step failed; the check stops here (but still unloads a loaded plugin).
    Fail,
    /// The step was not run, for the reason given.
    Skip,
    /// The step ran and the plugin answered, but not usefully yet: the safe RPC answered
    /// `Unimplemented` from a service the plugin advertises (a fresh `cargo xtask new`
    /// project does until its author writes the RPC). The check still passes.
    Warn,
}

impl Outcome {
    /// `ok`, `FAIL`, `skip` or `warn`.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Pass => "ok",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "skip",
            Outcome::Warn => "warn",
        }
    }

    fn mark(self) -> &'static str {
        match self {
            Outcome::Pass => "✓",
            Outcome::Fail => "✗",
            Outcome::Skip => "-",
            Outcome::Warn => "!",
        }
    }
}

/// One step of the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// `type`, `config`, `checksum`, `launch`, `init`, `services`, `configure`, `validate`,
    /// `rpc` or `unload`.
    pub name: &'static str,
    /// Its outcome.
    pub outcome: Outcome,
    /// What was found, or why it failed or was skipped.
    pub detail: String,
}

/// The steps run, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// `<side>/<Type>` as given.
    pub target: String,
    /// The binary.
    pub cmd: PathBuf,
    /// The steps.
    pub steps: Vec<Step>,
}

impl Report {
    fn push(&mut self, name: &'static str, outcome: Outcome, detail: impl Into<String>) {
        self.steps.push(Step {
            name,
            outcome,
            detail: detail.into(),
        });
    }

    /// True when no step failed.
    pub fn passed(&self) -> bool {
        self.failure().is_none()
    }

    /// The first failed step.
    pub fn failure(&self) -> Option<&Step> {
        self.steps.iter().find(|s| s.outcome == Outcome::Fail)
    }

    /// The step called `name`, if it ran.
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// One line per step (`✓`/`✗`/`-`/`!`, name, detail), then a `PASS`/`FAIL` line.
    pub fn to_text(&self) -> String {
        let mut out = format!("plugin-check {} {}\n", self.target, self.cmd.display());
        for step in &self.steps {
            out.push_str(&format!(
                "  {} {:<9} {}\n",
                step.outcome.mark(),
                step.name,
                step.detail
            ));
        }
        match self.failure() {
            None => out.push_str("PASS\n"),
            Some(step) => out.push_str(&format!("FAIL: {}: {}\n", step.name, step.detail)),
        }
        out
    }

    /// `{"target", "cmd", "passed", "steps": [{"name", "outcome", "detail"}]}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "target": self.target,
            "cmd": self.cmd.display().to_string(),
            "passed": self.passed(),
            "steps": self.steps.iter().map(|s| serde_json::json!({
                "name": s.name,
                "outcome": s.outcome.label(),
                "detail": s.detail,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Where the configuration data came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// The file's top-level `plugin_data`, re-printed as SPIRE does.
    PluginData,
    /// The whole file (not HCL, or no `plugin_data` in it), as `plugin_data_file` would be.
    WholeFile,
}

/// The data a plugin is configured with for a config file's `text`: its top-level
/// `plugin_data` block or attribute re-printed as SPIRE re-prints it, or else the whole text.
pub fn config_data(text: &str) -> Result<(String, ConfigSource), String> {
    let Ok(body) = hcl::parse(text) else {
        return Ok((text.to_owned(), ConfigSource::WholeFile));
    };
    let found: Vec<&hcl::Structure> = body
        .iter()
        .filter(|s| match s {
            hcl::Structure::Attribute(attr) => attr.key() == "plugin_data",
            hcl::Structure::Block(block) => block.identifier() == "plugin_data",
        })
        .collect();
    match found.as_slice() {
        [] => Ok((text.to_owned(), ConfigSource::WholeFile)),
        [one] => {
            let only = hcl::Body::builder().add_structure((*one).clone()).build();
            let printed = hcl::to_string(&only).map_err(|e| e.to_string())?;
            let decl = format!("Check \"check\" {{\n  plugin_cmd = \"x\"\n{printed}\n}}\n");
            let decls = parse_plugins(&decl).map_err(|e| e.to_string())?;
            match decls.into_iter().next().map(|d| d.data) {
                Some(PluginData::Inline(data)) => Ok((data, ConfigSource::PluginData)),
                _ => Ok((String::new(), ConfigSource::PluginData)),
            }
        }
        _ => Err("plugin_data is given more than once".to_owned()),
    }
}

/// Splits `<side>/<Type>`; `None` unless both parts are non-empty.
pub fn split_target(target: &str) -> Option<(&str, &str)> {
    let (side, plugin_type) = target.split_once('/')?;
    (!side.is_empty() && !plugin_type.is_empty() && !plugin_type.contains('/'))
        .then_some((side, plugin_type))
}

/// Every `<side>/<Type>` SPIRE supports, sorted.
pub fn supported_targets() -> Vec<String> {
    let mut targets: Vec<String> = crate::proto::SERVICES
        .iter()
        .filter_map(|info| Some(format!("{}/{}", info.side?, info.plugin_type?)))
        .collect();
    targets.sort();
    targets.dedup();
    targets
}

/// The host services SPIRE offers plugins on `side`: Metrics for the agent; Metrics,
/// AgentStore and IdentityProvider for the server. Here they answer safely: Metrics accepts
/// and drops every sample, AgentStore knows no agent (`NotFound`), IdentityProvider has no
/// identity to give (`Unimplemented`).
pub fn host_services(side: &str) -> OfferedHostServices {
    let host = OfferedHostServices::new().with(MetricsBridge::bridged(NullHost));
    if side == "server" {
        host.with(AgentStoreBridge::bridged(NullHost))
            .with(IdentityProviderBridge::bridged(NullHost))
    } else {
        host
    }
}

/// The in-process host services of a check.
#[derive(Debug, Clone, Copy)]
struct NullHost;

type Answer<T> = Result<tonic::Response<T>, tonic::Status>;

#[tonic::async_trait]
impl Metrics for NullHost {
    async fn set_gauge(&self, _: tonic::Request<SetGaugeRequest>) -> Answer<()> {
        Ok(tonic::Response::new(()))
    }
    async fn emit_key(&self, _: tonic::Request<EmitKeyRequest>) -> Answer<()> {
        Ok(tonic::Response::new(()))
    }
    async fn incr_counter(&self, _: tonic::Request<IncrCounterRequest>) -> Answer<()> {
        Ok(tonic::Response::new(()))
    }
    async fn add_sample(&self, _: tonic::Request<AddSampleRequest>) -> Answer<()> {
        Ok(tonic::Response::new(()))
    }
    async fn measure_since(&self, _: tonic::Request<MeasureSinceRequest>) -> Answer<()> {
        Ok(tonic::Response::new(()))
    }
}

#[tonic::async_trait]
impl AgentStore for NullHost {
    async fn get_agent_info(
        &self,
        _: tonic::Request<GetAgentInfoRequest>,
    ) -> Answer<GetAgentInfoResponse> {
        Err(tonic::Status::not_found(
            "no attested agents (plugin-check)",
        ))
    }
}

#[tonic::async_trait]
impl IdentityProvider for NullHost {
    async fn fetch_x509_identity(
        &self,
        _: tonic::Request<FetchX509IdentityRequest>,
    ) -> Answer<FetchX509IdentityResponse> {
        Err(tonic::Status::unimplemented(
            "plugin-check has no identity to give",
        ))
    }
}

fn status_text(status: &tonic::Status) -> String {
    format!("code = {:?} desc = {}", status.code(), status.message())
}

/// Runs the check; never panics on a misbehaving plugin, and leaves no process behind.
pub async fn run(options: &CheckOptions) -> Report {
    let mut report = Report {
        target: options.target.clone(),
        cmd: options.cmd.clone(),
        steps: Vec::new(),
    };
    let supported = supported_targets();
    let Some((side, plugin_type)) = split_target(&options.target) else {
        report.push(
            "type",
            Outcome::Fail,
            format!(
                "\"{}\" is not <side>/<Type>; supported: {}",
                options.target,
                supported.join(", ")
            ),
        );
        return report;
    };
    let Some(info) = plugin_service(side, plugin_type) else {
        report.push(
            "type",
            Outcome::Fail,
            format!(
                "unsupported plugin type \"{side}/{plugin_type}\"; supported: {}",
                supported.join(", ")
            ),
        );
        return report;
    };
    report.push(
        "type",
        Outcome::Pass,
        format!("{side}/{plugin_type} -> {}", info.full_name),
    );

    let data = match &options.config {
        None => {
            report.push("config", Outcome::Pass, "none given: configured with \"\"");
            String::new()
        }
        Some(text) => match config_data(text) {
            Ok((data, source)) => {
                let from = match source {
                    ConfigSource::PluginData => "the file's plugin_data",
                    ConfigSource::WholeFile => "the whole file",
                };
                report.push(
                    "config",
                    Outcome::Pass,
                    format!("{} bytes from {from}", data.len()),
                );
                data
            }
            Err(err) => {
                report.push("config", Outcome::Fail, err);
                return report;
            }
        },
    };

    match std::fs::read(&options.cmd) {
        Err(err) => {
            report.push(
                "checksum",
                Outcome::Fail,
                format!("cannot read {}: {err}", options.cmd.display()),
            );
            return report;
        }
        Ok(bytes) => {
            let computed = sha256_hex(&bytes);
            match &options.checksum {
                None => report.push(
                    "checksum",
                    Outcome::Pass,
                    format!("sha256 {computed} (none given to compare)"),
                ),
                Some(expected) => match parse_checksum(expected) {
                    Err(err) => {
                        report.push("checksum", Outcome::Fail, err.to_string());
                        return report;
                    }
                    Ok(_) if expected.eq_ignore_ascii_case(&computed) => report.push(
                        "checksum",
                        Outcome::Pass,
                        format!("sha256 {computed} matches"),
                    ),
                    Ok(_) => {
                        report.push(
                            "checksum",
                            Outcome::Fail,
                            format!("checksum mismatch: expected {expected}, computed {computed}"),
                        );
                        return report;
                    }
                },
            }
        }
    }

    let mut decl = PluginDeclaration::new(plugin_type, PLUGIN_NAME, &options.cmd);
    decl.args.clone_from(&options.args);
    decl.checksum.clone_from(&options.checksum);
    decl.data = if options.config.is_some() {
        PluginData::Inline(data.clone())
    } else {
        PluginData::None
    };
    let mut load_options = LoadOptions::new(options.trust_domain.clone());
    load_options.call_timeout = options.timeout;
    load_options.start_timeout = options.timeout;
    load_options.deinit_timeout = options.timeout;
    let host = host_services(side);
    let offered = host.names().join(", ");

    let plugin = match load(side, &decl, &load_options, host).await {
        Ok(plugin) => plugin,
        Err(err) => {
            load_failure(&mut report, &err, &offered);
            return report;
        }
    };
    let pid = plugin
        .plugin_client()
        .pid()
        .map_or_else(|| "?".to_owned(), |p| p.to_string());
    report.push(
        "launch",
        Outcome::Pass,
        format!("pid {pid}; go-plugin handshake (protocol 1, cookie {plugin_type}) accepted"),
    );
    report.push(
        "init",
        Outcome::Pass,
        format!("offered host services: {offered}"),
    );
    let is_known = |name: &str| crate::proto::SERVICES.iter().any(|i| i.full_name == name);
    let others: Vec<&str> = plugin
        .service_names()
        .iter()
        .map(String::as_str)
        .filter(|s| *s != info.full_name)
        .collect();
    let known: Vec<&str> = others.iter().copied().filter(|s| is_known(s)).collect();
    let unknown: Vec<&str> = others.iter().copied().filter(|s| !is_known(s)).collect();
    let mut detail = format!("{} present", info.full_name);
    if !known.is_empty() {
        detail.push_str(&format!("; also: {}", known.join(", ")));
    }
    if !unknown.is_empty() {
        detail.push_str(&format!("; unknown to SPIRE: {}", unknown.join(", ")));
    }
    report.push("services", Outcome::Pass, detail);
    let has_config = plugin.serves(ConfigBridge::INFO.full_name);
    if has_config {
        report.push(
            "configure",
            Outcome::Pass,
            format!(
                "accepted {} bytes (trust domain {})",
                data.len(),
                options.trust_domain
            ),
        );
    } else {
        report.push(
            "configure",
            Outcome::Pass,
            "no Config service and no data: not called (as SPIRE does)",
        );
    }

    if validate(&mut report, &plugin, has_config, &data, options).await {
        rpc(&mut report, &plugin, side, plugin_type, options.timeout).await;
    }

    let unloaded = plugin.unload().await;
    let exit = unloaded
        .exit
        .status
        .map_or_else(|| "status unknown".to_owned(), |status| status.to_string());
    match unloaded.deinit {
        Ok(()) => report.push(
            "unload",
            Outcome::Pass,
            format!("Deinit ok; process ended ({exit})"),
        ),
        Err(err) => report.push(
            "unload",
            Outcome::Fail,
            format!("Deinit failed: {err}; process ended ({exit})"),
        ),
    }
    report
}

/// Attributes a load error to the step it belongs to.
fn load_failure(report: &mut Report, err: &CatalogError, offered: &str) {
    let message = err.to_string();
    let steps: &[&'static str] = match err {
        CatalogError::Launch { .. } | CatalogError::Checksum { .. } => &["launch"],
        CatalogError::HostServices { .. } | CatalogError::Init { .. } => &["launch", "init"],
        CatalogError::NoPluginInterface { .. } => &["launch", "init", "services"],
        CatalogError::NoConfigInterface { .. }
        | CatalogError::DataFile { .. }
        | CatalogError::Configure { .. } => &["launch", "init", "services", "configure"],
        _ => &["launch"],
    };
    let (last, before) = steps.split_last().expect("at least one step");
    for step in before {
        let detail = match *step {
            "launch" => "go-plugin handshake accepted".to_owned(),
            "init" => format!("offered host services: {offered}"),
            _ => "plugin type's service present".to_owned(),
        };
        report.push(step, Outcome::Pass, detail);
    }
    report.push(last, Outcome::Fail, message);
}

/// `Validate` with the same data; `Unimplemented` tolerated. Returns false on failure.
async fn validate(
    report: &mut Report,
    plugin: &LoadedPlugin,
    has_config: bool,
    data: &str,
    options: &CheckOptions,
) -> bool {
    if !has_config {
        report.push("validate", Outcome::Skip, "no Config service");
        return true;
    }
    let mut client = ConfigBridge::client(plugin.plugin_client().raw_channel());
    let request = ValidateRequest {
        core_configuration: Some(CoreConfiguration {
            trust_domain: options.trust_domain.clone(),
        }),
        hcl_configuration: data.to_owned(),
    };
    match tokio::time::timeout(options.timeout, client.validate(request)).await {
        Err(_) => {
            report.push(
                "validate",
                Outcome::Fail,
                format!("no answer within {:?}", options.timeout),
            );
            false
        }
        Ok(Err(status)) if status.code() == Code::Unimplemented => {
            report.push("validate", Outcome::Pass, "not implemented (tolerated)");
            true
        }
        Ok(Err(status)) => {
            report.push("validate", Outcome::Fail, status_text(&status));
            false
        }
        Ok(Ok(response)) => {
            let response = response.into_inner();
            let notes = if response.notes.is_empty() {
                String::new()
            } else {
                format!(" (notes: {})", response.notes.join("; "))
            };
            if response.valid {
                report.push("validate", Outcome::Pass, format!("valid{notes}"));
                true
            } else {
                report.push(
                    "validate",
                    Outcome::Fail,
                    format!("invalid although Configure accepted the same data{notes}"),
                );
                false
            }
        }
    }
}

/// Makes the type's safe call, if it has one. Returns false on failure.
async fn rpc(
    report: &mut Report,
    plugin: &LoadedPlugin,
    side: &str,
    plugin_type: &str,
    limit: Duration,
) -> bool {
    use crate::proto::spire::plugin::{agent, server};
    let channel = plugin.plugin_client().raw_channel();
    let (what, result): (&str, Result<String, CallError>) = match (side, plugin_type) {
        ("agent", "KeyManager") => {
            let mut client = agent::keymanager::v1::KeyManagerBridge::client(channel);
            let call = client.get_public_keys(agent::keymanager::v1::GetPublicKeysRequest {});
            (
                "GetPublicKeys",
                unary(limit, call, |r| {
                    format!("{} public keys", r.public_keys.len())
                })
                .await,
            )
        }
        ("server", "KeyManager") => {
            let mut client = server::keymanager::v1::KeyManagerBridge::client(channel);
            let call = client.get_public_keys(server::keymanager::v1::GetPublicKeysRequest {});
            (
                "GetPublicKeys",
                unary(limit, call, |r| {
                    format!("{} public keys", r.public_keys.len())
                })
                .await,
            )
        }
        ("agent", "WorkloadAttestor") => {
            let pid = std::process::id();
            let mut client = agent::workloadattestor::v1::WorkloadAttestorBridge::client(channel);
            let call = client.attest(agent::workloadattestor::v1::AttestRequest {
                pid: i32::try_from(pid).unwrap_or(i32::MAX),
            });
            (
                "Attest",
                unary(limit, call, |r| {
                    format!("pid {pid}: {} selectors", r.selector_values.len())
                })
                .await,
            )
        }
        ("server", "NodeAttestor") => {
            let mut client = server::nodeattestor::v1::NodeAttestorBridge::client(channel);
            let empty = tokio_stream::empty::<server::nodeattestor::v1::AttestRequest>();
            (
                "Attest (empty stream)",
                empty_stream(limit, client.attest(empty)).await,
            )
        }
        ("server", "CredentialComposer") => {
            use server::credentialcomposer::v1 as composer;
            let mut client = composer::CredentialComposerBridge::client(channel);
            let call = client.compose_server_x509ca(composer::ComposeServerX509caRequest {
                attributes: Some(composer::X509caAttributes::default()),
            });
            (
                "ComposeServerX509CA",
                unary(limit, call, |r| match r.attributes {
                    Some(_) => "attributes composed".to_owned(),
                    None => "server defaults kept".to_owned(),
                })
                .await,
            )
        }
        ("server", "UpstreamAuthority") => {
            report.push(
                "rpc",
                Outcome::Skip,
                "MintX509CAAndSubscribe/PublishJWTKeyAndSubscribe sign or publish with the \
                 upstream CA: not called (the service is advertised)",
            );
            return true;
        }
        _ => {
            report.push(
                "rpc",
                Outcome::Skip,
                format!("no call of {side}/{plugin_type} is known to be harmless: not called"),
            );
            return true;
        }
    };
    match result {
        Ok(detail) => {
            report.push("rpc", Outcome::Pass, format!("{what}: {detail}"));
            true
        }
        Err(CallError::Unimplemented(reason)) => {
            report.push(
                "rpc",
                Outcome::Warn,
                format!("{what}: served but not implemented yet ({reason})"),
            );
            true
        }
        Err(CallError::Failed(reason)) => {
            report.push("rpc", Outcome::Fail, format!("{what}: {reason}"));
            false
        }
    }
}

/// Why the safe RPC gave no useful answer.
enum CallError {
    /// `Unimplemented` from a service `Init` reported: written, but not filled in yet.
    Unimplemented(String),
    /// Any other failure, or no answer in time.
    Failed(String),
}

impl CallError {
    fn from_status(status: &tonic::Status) -> CallError {
        if status.code() == Code::Unimplemented {
            CallError::Unimplemented(status_text(status))
        } else {
            CallError::Failed(status_text(status))
        }
    }
}

async fn unary<T>(
    limit: Duration,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    describe: impl FnOnce(&T) -> String,
) -> Result<String, CallError> {
    match tokio::time::timeout(limit, call).await {
        Err(_) => Err(CallError::Failed(format!("no answer within {limit:?}"))),
        Ok(Err(status)) => Err(CallError::from_status(&status)),
        Ok(Ok(response)) => Ok(describe(response.get_ref())),
    }
}

/// A bidirectional stream opened and closed without a message: any answer but
/// `Unimplemented` (an error for the missing message included) shows the RPC is implemented.
async fn empty_stream<T>(
    limit: Duration,
    call: impl Future<Output = Result<tonic::Response<tonic::Streaming<T>>, tonic::Status>>,
) -> Result<String, CallError> {
    let answer = tokio::time::timeout(limit, async {
        let mut stream = call.await?.into_inner();
        stream.message().await.map(|m| m.is_some())
    })
    .await;
    match answer {
        Err(_) => Ok(format!(
            "served (no answer within {limit:?} to an empty stream; cancelled)"
        )),
        Ok(Err(status)) if status.code() == Code::Unimplemented => {
            Err(CallError::from_status(&status))
        }
        Ok(Err(status)) => Ok(format!(
            "served (refused the empty stream: {})",
            status_text(&status)
        )),
        Ok(Ok(true)) => Ok("served (answered)".to_owned()),
        Ok(Ok(false)) => Ok("served (ended the stream)".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_targets() {
        assert_eq!(
            split_target("agent/KeyManager"),
            Some(("agent", "KeyManager"))
        );
        assert_eq!(split_target("agent"), None);
        assert_eq!(split_target("/KeyManager"), None);
        assert_eq!(split_target("agent/"), None);
        assert_eq!(split_target("a/b/c"), None);
    }

    #[test]
    fn lists_supported_targets() {
        let targets = supported_targets();
        assert!(targets.contains(&"agent/KeyManager".to_owned()));
        assert!(targets.contains(&"server/UpstreamAuthority".to_owned()));
        assert!(
            !targets
                .iter()
                .any(|t| t.contains("Init") || t.contains("Metrics"))
        );
    }

    #[test]
    fn takes_plugin_data_or_the_whole_file() {
        let (data, source) = config_data("plugin_data {\n  a = \"b\"\n}\n").unwrap();
        assert_eq!(source, ConfigSource::PluginData);
        // Re-printed as SPIRE does (keys quoted).
        assert_eq!(data.trim(), "\"a\" = \"b\"");
        let (data, source) = config_data("a = \"b\"\n").unwrap();
        assert_eq!(
            (data.as_str(), source),
            ("a = \"b\"\n", ConfigSource::WholeFile)
        );
        let (data, source) = config_data("not { hcl").unwrap();
        assert_eq!(
            (data.as_str(), source),
            ("not { hcl", ConfigSource::WholeFile)
        );
        assert!(config_data("plugin_data {}\nplugin_data {}\n").is_err());
    }

    #[tokio::test]
    async fn unknown_type_fails_first_step() {
        let report = run(&CheckOptions::new("agent/Nope", "/nonexistent")).await;
        assert_eq!(report.steps.len(), 1);
        assert_eq!(report.failure().unwrap().name, "type");
        assert!(
            report
                .to_text()
                .contains("FAIL: type: unsupported plugin type")
        );
        assert_eq!(report.to_json()["passed"], false);
    }

    #[tokio::test]
    async fn unreadable_binary_fails_checksum_step() {
        let report = run(&CheckOptions::new(
            "agent/KeyManager",
            "/nonexistent/plugin",
        ))
        .await;
        assert_eq!(report.failure().unwrap().name, "checksum");
    }
}
