//! The SPIRE catalog (`spire_plugin_sdk::spire::catalog`) against Go plugins written with the
//! real spire-plugin-sdk (`tests/go/cmd/spireplugin`): declarations parsed from HCL, load with
//! Init and Configure, calls of each kind (unary, bidirectional and server streaming), a host
//! service called by the plugin, reconfigure on data-file change, unload with Deinit, and each
//! of SPIRE's load errors with its exact text. Every test checks its plugin processes are gone.

use std::path::{Path, PathBuf};
use std::time::Duration;

use spire_plugin_sdk::proto::spire::hostservice::common::metrics::v1::MetricsBridge;
use spire_plugin_sdk::proto::spire::plugin::agent::keymanager::v1::{
    GenerateKeyRequest, GetPublicKeysRequest, KeyManagerBridge, KeyType,
};
use spire_plugin_sdk::proto::spire::plugin::agent::workloadattestor::v1::{
    AttestRequest as WorkloadAttestRequest, WorkloadAttestorBridge,
};
use spire_plugin_sdk::proto::spire::plugin::server::nodeattestor::v1::{
    AttestRequest, NodeAttestorBridge, attest_request, attest_response,
};
use spire_plugin_sdk::proto::spire::plugin::server::upstreamauthority::v1::{
    MintX509caRequest, UpstreamAuthorityBridge,
};
use spire_plugin_sdk::spire::Side;
use spire_plugin_sdk::spire::catalog::{
    CatalogError, LoadOptions, LoadedPlugin, OfferedHostServices, PluginData, PluginDeclaration,
    load, parse_plugins, sha256_hex,
};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::support::{RecordingMetrics, go_binary};

fn plugin_binary() -> PathBuf {
    go_binary("spireplugin")
}

/// A unique `-tag` for the processes one test starts.
fn tag(test: &str) -> String {
    format!("-tag=spire-catalog-{test}-{}", std::process::id())
}

/// True while a process (zombies included: unreaped) carries `tag` on its command line.
fn tagged_process_exists(tag: &str) -> bool {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().parse::<u32>().is_ok())
        .any(|entry| {
            std::fs::read(entry.path().join("cmdline"))
                .is_ok_and(|cmdline| cmdline.split(|b| *b == 0).any(|arg| arg == tag.as_bytes()))
        })
}

/// A declaration of the test plugin as `plugin_type` "`name`", serving `go_type` with `flags`.
fn declaration(
    plugin_type: &str,
    name: &str,
    go_type: &str,
    tag: &str,
    flags: &[&str],
) -> PluginDeclaration {
    let mut decl = PluginDeclaration::new(plugin_type, name, plugin_binary());
    decl.args = [format!("-type={go_type}"), tag.to_owned()]
        .into_iter()
        .chain(flags.iter().map(|f| (*f).to_owned()))
        .collect();
    decl
}

fn options() -> LoadOptions {
    LoadOptions::new("example.org")
}

/// Loads a plugin that must fail to load; returns the error text, checking nothing is left.
async fn load_error(side: Side, decl: &PluginDeclaration, options: &LoadOptions) -> String {
    let tag = decl.args[1].clone();
    let err = load(side, decl, options, OfferedHostServices::new())
        .await
        .expect_err("the load must fail");
    assert!(
        !tagged_process_exists(&tag),
        "plugin process left after a failed load"
    );
    err.to_string()
}

/// Unloads, checking Deinit succeeded and the process is gone (reaped: no zombie either).
async fn unload(plugin: LoadedPlugin) {
    let pid = plugin
        .plugin_client()
        .pid()
        .expect("launched plugins have a pid");
    let unloaded = plugin.unload().await;
    assert!(unloaded.deinit.is_ok(), "{:?}", unloaded.deinit);
    assert!(unloaded.exit.status.is_some());
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "plugin process left after unload"
    );
}

/// Attests pid 7 and returns the selector values (the Go plugin reports its configuration).
async fn attest(plugin: &LoadedPlugin) -> Vec<String> {
    let mut client = plugin.client::<WorkloadAttestorBridge>().unwrap();
    client
        .attest(WorkloadAttestRequest { pid: 7 })
        .await
        .expect("Attest")
        .into_inner()
        .selector_values
}

#[tokio::test]
async fn loads_each_type_from_hcl_and_calls_it() {
    let tag = tag("types");
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("closed");
    let bin = plugin_binary();
    let text = format!(
        r#"
        plugins {{
            KeyManager "memory" {{
                plugin_cmd = "{bin}"
                plugin_args = ["-type=agent-keymanager", "{tag}", "-close-marker={marker}"]
                plugin_checksum = "{sum}"
                plugin_data {{
                    fingerprint_prefix = "fp-"
                }}
            }}
            WorkloadAttestor "echo" {{
                plugin_cmd = "{bin}"
                plugin_args = ["-type=agent-workloadattestor", "{tag}"]
                plugin_data {{
                    foo = "bar"
                    longer = 2
                }}
            }}
            WorkloadAttestor "plain" {{
                plugin_cmd = "{bin}"
                plugin_args = ["-type=agent-workloadattestor", "{tag}"]
            }}
            KeyManager "off" {{
                plugin_cmd = "{bin}"
                enabled = false
            }}
        }}"#,
        bin = bin.display(),
        marker = marker.display(),
        sum = sha256_hex(&std::fs::read(&bin).unwrap()),
    );
    let decls = parse_plugins(&text).unwrap();
    assert_eq!(decls.len(), 4);
    assert!(!decls[3].enabled);
    let disabled = load(
        Side::Agent,
        &decls[3],
        &options(),
        OfferedHostServices::new(),
    )
    .await;
    assert!(matches!(disabled, Err(CatalogError::Disabled { .. })));

    // KeyManager: unary calls, configured from the plugin_data block.
    let km = load(
        Side::Agent,
        &decls[0],
        &options(),
        OfferedHostServices::new(),
    )
    .await
    .unwrap();
    assert_eq!(
        km.service_names(),
        [
            "spire.plugin.agent.keymanager.v1.KeyManager",
            "spire.service.common.config.v1.Config"
        ]
    );
    let mut client = km.client::<KeyManagerBridge>().unwrap();
    let key = client
        .generate_key(GenerateKeyRequest {
            key_id: "k1".into(),
            key_type: KeyType::EcP256 as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .public_key
        .unwrap();
    assert_eq!(key.fingerprint, "fp-k1");
    let keys = client
        .get_public_keys(GetPublicKeysRequest {})
        .await
        .unwrap()
        .into_inner()
        .public_keys;
    assert_eq!(keys.len(), 1);
    assert!(matches!(
        km.client::<WorkloadAttestorBridge>(),
        Err(CatalogError::NotServed { .. })
    ));
    unload(km).await;
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "closed",
        "Deinit must reach the plugin (the SDK then calls Close)"
    );

    // WorkloadAttestor: what Configure carried, exactly as SPIRE sends it.
    let wa = load(
        Side::Agent,
        &decls[1],
        &options(),
        OfferedHostServices::new(),
    )
    .await
    .unwrap();
    assert_eq!(
        attest(&wa).await,
        [
            "pid:7",
            "trust_domain:example.org",
            "configured:1",
            "hcl:\"foo\"    = \"bar\"\n\"longer\" = 2"
        ]
    );
    // No data: Configure is still called, with "".
    let plain = load(
        Side::Agent,
        &decls[2],
        &options(),
        OfferedHostServices::new(),
    )
    .await
    .unwrap();
    assert_eq!(attest(&plain).await[2..], ["configured:1", "hcl:"]);
    unload(wa).await;
    unload(plain).await;
    assert!(!tagged_process_exists(&tag));
}

#[tokio::test]
async fn server_node_attestor_bidirectional_stream() {
    let tag = tag("nodeattestor");
    let mut decl = declaration(
        "NodeAttestor",
        "challenge",
        "server-nodeattestor",
        &tag,
        &[],
    );
    decl.data = PluginData::Inline("\"selector\" = \"blue\"".into());
    let plugin = load(Side::Server, &decl, &options(), OfferedHostServices::new())
        .await
        .unwrap();
    let mut client = plugin.client::<NodeAttestorBridge>().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(AttestRequest {
        request: Some(attest_request::Request::Payload(b"node1".to_vec())),
    })
    .await
    .unwrap();
    let mut responses = client
        .attest(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let challenge = responses.next().await.unwrap().unwrap().response;
    assert_eq!(
        challenge,
        Some(attest_response::Response::Challenge(
            b"challenge:node1".to_vec()
        ))
    );
    tx.send(AttestRequest {
        request: Some(attest_request::Request::ChallengeResponse(
            b"response:node1".to_vec(),
        )),
    })
    .await
    .unwrap();
    let Some(attest_response::Response::AgentAttributes(attributes)) =
        responses.next().await.unwrap().unwrap().response
    else {
        panic!("expected agent attributes");
    };
    assert_eq!(
        attributes.spiffe_id,
        "spiffe://example.org/spire/agent/test/node1"
    );
    assert_eq!(attributes.selector_values, ["selector:blue"]);
    assert!(responses.next().await.is_none());
    unload(plugin).await;
}

#[tokio::test]
async fn server_upstream_authority_server_stream() {
    let tag = tag("upstream");
    let mut decl = declaration(
        "UpstreamAuthority",
        "up",
        "server-upstreamauthority",
        &tag,
        &[],
    );
    decl.data = PluginData::Inline("\"updates\" = 4".into());
    let plugin = load(Side::Server, &decl, &options(), OfferedHostServices::new())
        .await
        .unwrap();
    let mut client = plugin.client::<UpstreamAuthorityBridge>().unwrap();
    let mut stream = client
        .mint_x509ca_and_subscribe(MintX509caRequest {
            csr: b"csr".to_vec(),
            preferred_ttl: 60,
        })
        .await
        .unwrap()
        .into_inner();
    let mut roots = Vec::new();
    while let Some(response) = stream.next().await {
        let response = response.unwrap();
        assert_eq!(response.x509_ca_chain[0].asn1, b"csr");
        roots.push(String::from_utf8(response.upstream_x509_roots[0].asn1.clone()).unwrap());
    }
    assert_eq!(roots, ["root-0", "root-1", "root-2", "root-3"]);
    unload(plugin).await;
}

#[tokio::test]
async fn plugin_calls_a_host_service_on_broker_id_1() {
    let tag = tag("metrics");
    let decl = declaration(
        "WorkloadAttestor",
        "metered",
        "agent-workloadattestor",
        &tag,
        &["-metrics"],
    );
    let metrics = RecordingMetrics::default();
    let host = OfferedHostServices::new().with(MetricsBridge::bridged(metrics.clone()));
    assert_eq!(
        host.names(),
        ["spire.hostservice.common.metrics.v1.Metrics"]
    );
    let plugin = load(Side::Agent, &decl, &options(), host).await.unwrap();
    attest(&plugin).await;
    let calls = metrics.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].key, ["workload", "attest"]);
    assert_eq!(calls[0].labels[0].value, "7");
    unload(plugin).await;

    // Without the host service offered, the plugin's BrokerHostServices fails Init.
    let err = load_error(Side::Agent, &decl, &options()).await;
    assert_eq!(
        err,
        "failed to load plugin \"metered\": failed to initialize plugin: \
         rpc error: code = Unknown desc = the Metrics host service is not offered"
    );
}

#[tokio::test]
async fn reconfigures_only_when_the_data_file_changes() {
    let tag = tag("reconfigure");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data.conf");
    std::fs::write(&file, "a = 1\n").unwrap();
    let mut decl = declaration(
        "WorkloadAttestor",
        "file",
        "agent-workloadattestor",
        &tag,
        &[],
    );
    decl.data = PluginData::File(file.clone());
    let mut plugin = load(Side::Agent, &decl, &options(), OfferedHostServices::new())
        .await
        .unwrap();
    assert_eq!(attest(&plugin).await[2..], ["configured:1", "hcl:a = 1\n"]);
    assert!(!plugin.reconfigure().await.unwrap(), "unchanged file");
    std::fs::write(&file, "a = 2\n").unwrap();
    assert!(plugin.reconfigure().await.unwrap(), "changed file");
    assert_eq!(attest(&plugin).await[2..], ["configured:2", "hcl:a = 2\n"]);
    assert!(!plugin.reconfigure().await.unwrap(), "unchanged again");
    assert_eq!(attest(&plugin).await[2], "configured:2");
    unload(plugin).await;
}

fn checksum_decl(tag: &str, checksum: &str) -> PluginDeclaration {
    let mut decl = declaration("KeyManager", "sum", "agent-keymanager", tag, &[]);
    decl.checksum = Some(checksum.to_owned());
    decl
}

#[tokio::test]
async fn checksum_errors() {
    let tag = tag("checksum");
    let not_hex = load_error(
        Side::Agent,
        &checksum_decl(&tag, &"zz".repeat(32)),
        &options(),
    )
    .await;
    assert_eq!(
        not_hex,
        "failed to load plugin \"sum\": checksum is not a valid hex string"
    );
    let short = load_error(
        Side::Agent,
        &checksum_decl(&tag, &"ab".repeat(20)),
        &options(),
    )
    .await;
    assert_eq!(
        short,
        "failed to load plugin \"sum\": expected checksum of length 64; got 40"
    );
    let mismatch = load_error(
        Side::Agent,
        &checksum_decl(&tag, &"00".repeat(32)),
        &options(),
    )
    .await;
    assert_eq!(
        mismatch,
        "failed to load plugin \"sum\": failed to launch plugin: checksums did not match"
    );
}

#[tokio::test]
async fn wrong_plugin_interface() {
    let tag = tag("interface");
    // An agent KeyManager declared on a server: same cookie, other service.
    let decl = declaration("KeyManager", "agentkm", "agent-keymanager", &tag, &[]);
    let err = load_error(Side::Server, &decl, &options()).await;
    assert_eq!(
        err,
        "failed to load plugin \"agentkm\": no supported plugin interface found in: \
         [\"spire.plugin.agent.keymanager.v1.KeyManager\" \"spire.service.common.config.v1.Config\"]"
    );
    // A type with another cookie: the plugin refuses to start.
    let decl = declaration("NodeAttestor", "km", "agent-keymanager", &tag, &[]);
    let err = load_error(Side::Agent, &decl, &options()).await;
    assert!(
        err.starts_with("failed to load plugin \"km\": failed to launch plugin: "),
        "{err}"
    );
    let decl = declaration("Bogus", "b", "agent-keymanager", &tag, &[]);
    let err = load_error(Side::Agent, &decl, &options()).await;
    assert_eq!(
        err,
        "failed to load plugin \"b\": unsupported plugin type \"agent/Bogus\""
    );
}

#[tokio::test]
async fn configuration_errors() {
    let tag = tag("configure");
    // Data for a plugin without Config.
    let mut decl = declaration(
        "KeyManager",
        "noconf",
        "agent-keymanager",
        &tag,
        &["-no-config"],
    );
    decl.data = PluginData::Inline("\"a\" = 1".into());
    let err = load_error(Side::Agent, &decl, &options()).await;
    assert_eq!(
        err,
        "failed to load plugin \"noconf\": no supported configuration interface found"
    );
    // Without data it loads, and Configure is skipped.
    decl.data = PluginData::None;
    let plugin = load(Side::Agent, &decl, &options(), OfferedHostServices::new())
        .await
        .unwrap();
    assert_eq!(
        plugin.service_names(),
        ["spire.plugin.agent.keymanager.v1.KeyManager"]
    );
    unload(plugin).await;

    // Configure fails.
    let decl = declaration(
        "KeyManager",
        "bad",
        "agent-keymanager",
        &tag,
        &["-configure-fail"],
    );
    let err = load_error(Side::Agent, &decl, &options()).await;
    assert_eq!(
        err,
        "failed to configure plugin \"bad\": rpc error: code = Unknown desc = refusing configuration on purpose"
    );

    // Configure hangs: the call timeout ends it.
    let decl = declaration(
        "KeyManager",
        "hang",
        "agent-keymanager",
        &tag,
        &["-configure-hang"],
    );
    let mut options = options();
    options.call_timeout = Duration::from_millis(500);
    let err = load_error(Side::Agent, &decl, &options).await;
    assert_eq!(
        err,
        "failed to configure plugin \"hang\": rpc error: code = DeadlineExceeded desc = no answer within 500ms"
    );

    // Init fails.
    let decl = declaration(
        "KeyManager",
        "noinit",
        "agent-keymanager",
        &tag,
        &["-init-fail"],
    );
    let err = load_error(Side::Agent, &decl, &self::options()).await;
    assert_eq!(
        err,
        "failed to load plugin \"noinit\": failed to initialize plugin: \
         rpc error: code = Unknown desc = host services rejected on purpose"
    );

    // A data file that cannot be read.
    let mut decl = declaration("KeyManager", "nofile", "agent-keymanager", &tag, &[]);
    decl.data = PluginData::File(Path::new("/nonexistent/spire-catalog.conf").to_owned());
    let err = load_error(Side::Agent, &decl, &self::options()).await;
    assert!(
        err.starts_with("failed to configure plugin \"nofile\": failed to read plugin data file"),
        "{err}"
    );
}

#[test]
fn declaration_errors() {
    let dup = parse_plugins(
        r#"plugins {
            KeyManager "disk" { plugin_cmd = "a" }
            KeyManager "disk" { plugin_cmd = "b" }
        }"#,
    );
    assert_eq!(
        dup.unwrap_err().to_string(),
        "plugin \"KeyManager\"/\"disk\" declared more than once"
    );
    let both = parse_plugins(
        r#"plugins {
            KeyManager "disk" {
                plugin_cmd = "a"
                plugin_data { x = 1 }
                plugin_data_file = "f"
            }
        }"#,
    );
    assert_eq!(
        both.unwrap_err().to_string(),
        "plugin \"KeyManager\"/\"disk\": plugin_data and plugin_data_file are mutually exclusive"
    );
    let unknown = parse_plugins(
        r#"plugins {
            KeyManager "disk" {
                plugin_cmd = "a"
                tags = ["x"]
            }
        }"#,
    );
    assert_eq!(
        unknown.unwrap_err().to_string(),
        "plugin \"KeyManager\"/\"disk\": unknown key \"tags\""
    );
    let quoted = parse_plugins(
        r#"plugins {
            WorkloadAttestor "s" { plugin_data = "X" }
        }"#,
    );
    assert_eq!(quoted.unwrap()[0].data, PluginData::Inline("\"X\"".into()));
}
