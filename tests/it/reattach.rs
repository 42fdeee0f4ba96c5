//! Reattach, both sides: a Rust plugin served in debug mode prints its reattach details (the
//! JSON Terraform reads from `TF_REATTACH_PROVIDERS`) and our host attaches to it without
//! launching anything; a launched plugin's details let a second client attach; attaching to a
//! process that does not exist fails clearly.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use spire_plugin_sdk::goplugin::ReattachConfig;
use spire_plugin_sdk::goplugin::{AttachOptions, ClientConfig, PluginClient, StartError};
use spire_plugin_tests::interop::interop::v1::echo_client::EchoClient;
use spire_plugin_tests::interop_handshake;

/// The interop plugin in debug mode, in a clean environment with its own socket directory.
struct DebugPlugin {
    child: Child,
    reattach: ReattachConfig,
    dir: tempfile::TempDir,
}

impl DebugPlugin {
    fn start() -> DebugPlugin {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut child = Command::new(env!("CARGO_BIN_EXE_interop-plugin"))
            .arg("--debug")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("TMPDIR", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning interop-plugin --debug");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout is piped");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("reading the reattach line");
        let reattach: ReattachConfig = serde_json::from_str(line.trim())
            .unwrap_or_else(|err| panic!("debug mode printed {line:?}, not reattach JSON: {err}"));
        DebugPlugin {
            child,
            reattach,
            dir,
        }
    }

    fn socket_dir_is_empty(&self) -> bool {
        std::fs::read_dir(self.dir.path())
            .expect("listing the socket dir")
            .next()
            .is_none()
    }
}

impl Drop for DebugPlugin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn say(client: &PluginClient) -> String {
    EchoClient::new(client.channel())
        .say("reattached".to_owned())
        .await
        .expect("Say over the attached connection")
        .into_inner()
}

#[tokio::test]
async fn debug_mode_prints_reattach_details_and_accepts_an_attached_host() {
    let mut plugin = DebugPlugin::start();
    let reattach = plugin.reattach.clone();
    assert_eq!(reattach.protocol.to_string(), "grpc");
    assert_eq!(reattach.pid, plugin.child.id());
    assert!(
        reattach.test,
        "debug mode plugins manage their own lifetime"
    );
    assert_eq!(reattach.addr.network.to_string(), "unix");
    assert!(
        reattach
            .addr
            .string
            .starts_with(&plugin.dir.path().display().to_string())
    );

    // Attach, use, detach: the self-managed plugin keeps running.
    let first = PluginClient::attach(reattach.clone(), AttachOptions::default())
        .await
        .expect("attach");
    first
        .ping()
        .await
        .expect("health over the attached connection");
    assert_eq!(say(&first).await, "echo: reattached");
    first.detach();
    assert!(
        plugin
            .child
            .try_wait()
            .expect("polling the plugin")
            .is_none(),
        "detach stopped it"
    );

    // A second host attaches and stops it for good.
    let second = PluginClient::attach(reattach, AttachOptions::default())
        .await
        .expect("attach again");
    assert_eq!(say(&second).await, "echo: reattached");
    let exit = second.kill().await;
    assert_eq!(
        exit.status, None,
        "an attached plugin's status is not ours to read"
    );
    let status = plugin.child.wait().expect("reaping the plugin");
    assert!(
        status.success(),
        "the plugin ended with {status} after Shutdown"
    );
    assert!(
        plugin.socket_dir_is_empty(),
        "the plugin left its socket behind"
    );
}

#[tokio::test]
async fn debug_mode_stops_on_ctrl_c() {
    let mut plugin = DebugPlugin::start();
    let pid = nix::unistd::Pid::from_raw(i32::try_from(plugin.child.id()).expect("pid fits"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("sending SIGINT");
    let status = plugin.child.wait().expect("reaping the plugin");
    assert!(
        status.success(),
        "debug mode should stop cleanly on Ctrl-C, got {status}"
    );
    assert!(
        plugin.socket_dir_is_empty(),
        "the plugin left its socket behind"
    );
}

#[tokio::test]
async fn a_launched_plugin_can_be_attached_by_a_second_host() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut config = ClientConfig::new(
        interop_handshake(),
        [1],
        env!("CARGO_BIN_EXE_interop-plugin"),
    );
    config.env([("TMPDIR", dir.path().display().to_string())]);
    let owner = PluginClient::start(config)
        .await
        .expect("launching the plugin");
    let details = owner.reattach_config();
    assert!(!details.test, "a launched plugin is managed by its host");
    assert_eq!(Some(details.pid), owner.pid());

    let guest = PluginClient::attach(details, AttachOptions::default())
        .await
        .expect("attach");
    assert_eq!(say(&guest).await, "echo: reattached");
    guest.detach();
    assert_eq!(
        say(&owner).await,
        "echo: reattached",
        "the owner's connection still works"
    );
    let exit = owner.kill().await;
    assert!(exit.status.is_some_and(|s| s.success()), "{exit}");
}

#[tokio::test]
async fn attaching_to_a_missing_process_fails_clearly() {
    // PIDs are below 2^22 on Linux, so this one cannot exist.
    let reattach: ReattachConfig = serde_json::from_str(
        r#"{"Protocol":"grpc","ProtocolVersion":1,"Pid":4194304,"Addr":{"Network":"unix","String":"/nonexistent/plugin"}}"#,
    )
    .expect("valid reattach JSON");
    let err = PluginClient::attach(reattach, AttachOptions::default())
        .await
        .expect_err("no such process");
    assert!(
        matches!(err, StartError::ReattachNotFound { pid: 4194304 }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "reattachment process not found (pid 4194304)"
    );
}
