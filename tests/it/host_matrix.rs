//! The go-plugin interop matrix, host side: our Rust host (`PluginClient`) launches a Go plugin
//! written with the real go-plugin (`tests/go/cmd/goplugin`), and our Rust plugin over TCP, with
//! AutoMTLS on and off, broker multiplexing on and off, and one or several protocol versions, and
//! checks health, a call, stdio and log forwarding, broker round trips in both directions (the
//! host's server on `accept_and_serve` and on `accept` + `incoming`, both with the broker's TLS),
//! brokered servers stopped by either side (socket gone, further calls fail), and Shutdown with
//! process exit and socket removal.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spire_plugin_sdk::bridge::{ClientBridge, MAX_MESSAGE_SIZE};
use spire_plugin_sdk::goplugin::hclog::{Level, LogEntry, LogSink};
use spire_plugin_sdk::goplugin::{ClientConfig, PluginClient};
use spire_plugin_tests::interop::interop::v1::EchoBridge;
use spire_plugin_tests::interop::interop::v1::echo_client::EchoClient;
use spire_plugin_tests::{Responder, interop_handshake};
use tonic::service::RoutesBuilder;

use crate::support::go_binary;

/// Collects bytes written by the host's stdio sinks.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("capture lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("capture lock")).into_owned()
    }
}

/// Collects the plugin's parsed log entries.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<LogEntry>>>);

impl LogSink for Logs {
    fn log(&mut self, entry: LogEntry) {
        self.0.lock().expect("log lock").push(entry);
    }
}

impl Logs {
    fn with_message(&self, message: &str) -> Vec<LogEntry> {
        self.0
            .lock()
            .expect("log lock")
            .iter()
            .filter(|e| e.message == message)
            .cloned()
            .collect()
    }
}

/// The `plugin<digits>` sockets the host's broker made in `dir`.
fn host_sockets(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("plugin"))
                .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
                .count()
        })
        .unwrap_or(0)
}

/// Polls `cond` every 20 ms for up to 10 s: stdio and logs arrive on their own streams.
async fn eventually(what: &str, cond: impl Fn() -> bool) -> Result<(), String> {
    for _ in 0..500 {
        if cond() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!("timed out waiting for {what}"))
}

/// Which plugin a cell launches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plugin {
    /// `tests/go/cmd/goplugin`, written with the real go-plugin (always a unix socket on Linux).
    Go,
    /// Our `interop-plugin`, listening on loopback TCP.
    RustTcp,
}

impl Plugin {
    fn config(self, host_versions: &[u32], plugin_versions: &str) -> ClientConfig {
        let handshake = interop_handshake();
        let versions = host_versions.iter().copied();
        match self {
            Plugin::Go => {
                let mut config = ClientConfig::new(handshake, versions, go_binary("goplugin"));
                config.args(["-versions", plugin_versions]);
                config
            }
            Plugin::RustTcp => {
                let mut config =
                    ClientConfig::new(handshake, versions, env!("CARGO_BIN_EXE_interop-plugin"));
                config.args(["--versions", plugin_versions, "--tcp"]);
                config
            }
        }
    }

    /// The `plugin_side` field its log lines carry.
    fn side(self) -> &'static str {
        match self {
            Plugin::Go => "go",
            Plugin::RustTcp => "rust",
        }
    }
}

async fn run_cell(
    plugin: Plugin,
    auto_mtls: bool,
    multiplex: bool,
    host_versions: &[u32],
    plugin_versions: &str,
    expected: u32,
) -> Result<(), String> {
    let stdout = Captured::default();
    let stderr = Captured::default();
    let logs = Logs::default();
    // The host's brokered sockets go here, to be counted.
    let dir = tempfile::Builder::new()
        .prefix("host-matrix")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let mut config = plugin.config(host_versions, plugin_versions);
    config
        .unix_socket_dir(dir.path())
        .auto_mtls(auto_mtls)
        .multiplex(multiplex)
        .sync_stdout(stdout.clone())
        .sync_stderr(stderr.clone())
        .log_sink(logs.clone());
    let client = PluginClient::start(config)
        .await
        .map_err(|e| format!("start: {e}"))?;
    let mut problems = Vec::new();
    let mut check = |name: &str, result: Result<(), String>| {
        if let Err(err) = result {
            problems.push(format!("{name}: {err}"));
        }
    };

    check(
        "negotiated_version",
        match client.negotiated_version() {
            v if v == expected => Ok(()),
            v => Err(format!("negotiated {v}, want {expected}")),
        },
    );
    check(
        "multiplexed",
        match client.handshake().multiplex == multiplex
            && client.broker().muxer().is_some() == multiplex
        {
            true => Ok(()),
            false => Err(format!(
                "handshake multiplex={}, want {multiplex}",
                client.handshake().multiplex
            )),
        },
    );
    check("ping", client.ping().await.map_err(|s| s.to_string()));
    let mut echo = EchoClient::new(client.channel()).max_decoding_message_size(MAX_MESSAGE_SIZE);
    check(
        "call",
        match echo.say("hello".to_owned()).await {
            Ok(answer) if answer.get_ref() == "echo: hello" => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );

    // 3 MiB each way: far past yamux's 256 KiB window and many HTTP/2 frames, so message limits
    // and flow control are exercised.
    let big = "x".repeat(3 << 20);
    check(
        "large_call",
        match echo.say(big.clone()).await {
            Ok(answer) if answer.get_ref().len() == big.len() + "echo: ".len() => Ok(()),
            Ok(answer) => Err(format!("answer of {} bytes", answer.get_ref().len())),
            Err(status) => Err(status.to_string()),
        },
    );

    let marker = format!("marker-{}", std::process::id());
    let stdio = async {
        echo.print(marker.clone())
            .await
            .map_err(|s| s.to_string())?;
        eventually("forwarded stdio", || {
            stdout.text().contains(&format!("stdout:{marker}"))
                && stderr.text().contains(&format!("stderr:{marker}"))
        })
        .await
    };
    check("stdio", stdio.await);

    let message = format!("log-{marker}");
    let logs_ok = async {
        echo.log(message.clone()).await.map_err(|s| s.to_string())?;
        eventually("log entries", || logs.with_message(&message).len() >= 5).await?;
        let entries = logs.with_message(&message);
        let levels: Vec<Level> = entries.iter().map(|e| e.level).collect();
        for level in [
            Level::Trace,
            Level::Debug,
            Level::Info,
            Level::Warn,
            Level::Error,
        ] {
            if !levels.contains(&level) {
                return Err(format!("no {level:?} entry; got {levels:?}"));
            }
        }
        for entry in &entries {
            let field = |key: &str| {
                entry
                    .fields
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
            };
            if field("answer") != Some(serde_json::json!(42))
                || field("plugin_side") != Some(serde_json::json!(plugin.side()))
            {
                return Err(format!(
                    "entry lacks answer=42 plugin_side={}: {entry:?}",
                    plugin.side()
                ));
            }
        }
        Ok(())
    };
    check("logs", logs_ok.await);

    // Host accepts, plugin dials; then the host stops the server: its socket is removed and the
    // plugin's next dial of the ID fails.
    let host_accepts = async {
        let id = client.broker().next_id();
        let server = client
            .broker()
            .accept_and_serve(id, [EchoBridge::bridged(Responder { prefix: "host-" })])
            .map_err(|e| e.to_string())?;
        match echo.call_back(id).await {
            Ok(answer) if answer.get_ref() == "host-echo: callback" => {}
            other => return Err(format!("{other:?}")),
        }
        server.stop().await;
        let left = host_sockets(dir.path());
        if left != 0 {
            return Err(format!("{left} host socket(s) left after stop"));
        }
        // go-plugin's Dial takes each ConnInfo once, so a Go plugin's second dial of an ID
        // times out (5 s) whether or not the server stopped: nothing to learn there.
        if (plugin != Plugin::Go || multiplex)
            && let Ok(answer) = echo.call_back(id).await
        {
            return Err(format!("the stopped server answered {answer:?}"));
        }
        Ok(())
    };
    check("broker_host_accepts", host_accepts.await);

    // Host accepts with its own server on `accept` + `incoming`: the broker's TLS applies.
    let host_listener = async {
        let id = client.broker().next_id();
        let listener = client.broker().accept(id).map_err(|e| e.to_string())?;
        let mut routes = RoutesBuilder::default();
        EchoBridge::register(
            &mut routes,
            Responder {
                prefix: "listener-",
            },
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(
            tonic::transport::Server::builder().serve_with_incoming_shutdown(
                routes.routes().prepare(),
                listener.incoming(),
                async {
                    let _ = stopped.await;
                },
            ),
        );
        let answer = echo.call_back(id).await;
        let _ = stop.send(());
        let _ = server.await;
        match answer {
            Ok(answer) if answer.get_ref() == "listener-echo: callback" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    };
    check("broker_host_listener", host_listener.await);

    // Plugin accepts, host dials.
    let mut first = None;
    let plugin_accepts = async {
        let id = echo
            .serve(())
            .await
            .map_err(|s| s.to_string())?
            .into_inner();
        let channel = client.broker().dial(id).await.map_err(|e| e.to_string())?;
        first = Some(channel.clone());
        match EchoBridge::client(channel).say("x".to_owned()).await {
            Ok(answer) if answer.get_ref() == "plugin-echo: x" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    };
    check("broker_plugin_accepts", plugin_accepts.await);

    // The plugin stops a brokered server (its next Serve stops the first one): the first
    // channel fails from then on, the new ID serves.
    if let Some(first) = first {
        let plugin_stops = async {
            let id = echo
                .serve(())
                .await
                .map_err(|s| s.to_string())?
                .into_inner();
            let stale = tokio::time::timeout(
                Duration::from_secs(10),
                EchoBridge::client(first).say("stale".to_owned()),
            )
            .await;
            if let Ok(Ok(answer)) = stale {
                return Err(format!("the stopped server answered {answer:?}"));
            }
            let channel = client.broker().dial(id).await.map_err(|e| e.to_string())?;
            match EchoBridge::client(channel).say("y".to_owned()).await {
                Ok(answer) if answer.get_ref() == "plugin-echo: y" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        };
        check("broker_plugin_stops", plugin_stops.await);
    }

    let socket = (client.handshake().network.to_string() == "unix")
        .then(|| client.handshake().address.clone());
    let exit = client.kill().await;
    check(
        "shutdown",
        if exit.status.is_some_and(|status| status.success()) {
            Ok(())
        } else {
            Err(format!("{exit}"))
        },
    );
    if let Some(socket) = socket {
        check(
            "socket_removed",
            match std::path::Path::new(&socket).exists() {
                false => Ok(()),
                true => Err(format!("{socket} left behind")),
            },
        );
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_host_drives_go_and_rust_plugins() {
    let mut failures = Vec::new();
    let mut cells = 0;
    for plugin in [Plugin::Go, Plugin::RustTcp] {
        for auto_mtls in [false, true] {
            for multiplex in [false, true] {
                for (host, served, expected) in [(&[1][..], "1", 1), (&[5, 6][..], "1,2,5,6", 6)] {
                    cells += 1;
                    let result =
                        run_cell(plugin, auto_mtls, multiplex, host, served, expected).await;
                    if let Err(err) = result {
                        failures.push(format!(
                            "{plugin:?} auto_mtls={auto_mtls} multiplex={multiplex} \
                             host={host:?} plugin={served}: {err}"
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cells} cells failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
