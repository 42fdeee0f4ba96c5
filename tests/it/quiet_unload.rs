//! A normal unload is quiet: 20 start/ping/kill cycles of our Rust plugin and of the Go plugin
//! (`tests/go/cmd/goplugin`) under our host, through every AutoMTLS × multiplexing combination,
//! log nothing at warn or error about the connection ending (h2 errors, broken pipes, resets):
//! neither on the host's own `tracing` output nor in the plugin's forwarded log lines. The host
//! side runs on a current-thread runtime inside `tracing::subscriber::with_default`, so every
//! task it spawns logs into this test's subscriber and no other test's.

use std::io::Write;
use std::sync::{Arc, Mutex};

use spire_plugin_sdk::goplugin::hclog::{Level, LogEntry, LogSink};
use spire_plugin_sdk::goplugin::{ClientConfig, PluginClient};
use spire_plugin_tests::interop_handshake;

use crate::support::go_binary;

/// Start/kill cycles per plugin.
const CYCLES: usize = 20;

/// Everything the host's `tracing` writes, as text lines (level included).
#[derive(Clone, Default)]
struct HostLog(Arc<Mutex<Vec<u8>>>);

impl Write for HostLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl HostLog {
    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().expect("log lock"))
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// The plugins' parsed log lines at warn or above, rendered with their fields.
#[derive(Clone, Default)]
struct PluginLogs(Arc<Mutex<Vec<String>>>);

impl LogSink for PluginLogs {
    fn log(&mut self, entry: LogEntry) {
        if matches!(entry.level, Level::Warn | Level::Error) {
            self.0.lock().expect("log lock").push(format!(
                "{:?} {} {:?}",
                entry.level, entry.message, entry.fields
            ));
        }
    }
}

/// True for a line about a connection ending: what an orderly close must not log loudly.
fn mentions_connection_end(line: &str) -> bool {
    let line = line.to_ascii_lowercase();
    [
        "h2",
        "brokenpipe",
        "broken pipe",
        "error reading a body",
        "connection reset",
        "connectionreset",
        "goaway",
    ]
    .iter()
    .any(|needle| line.contains(needle))
}

#[derive(Debug, Clone, Copy)]
enum Plugin {
    Rust,
    Go,
}

async fn cycles(plugin: Plugin, dir: &std::path::Path, logs: &PluginLogs) -> Vec<String> {
    let mut problems = Vec::new();
    for cycle in 0..CYCLES {
        let (auto_mtls, multiplex) = (cycle % 2 == 1, cycle % 4 >= 2);
        let mut config = match plugin {
            Plugin::Rust => ClientConfig::new(
                interop_handshake(),
                [1],
                env!("CARGO_BIN_EXE_interop-plugin"),
            ),
            Plugin::Go => ClientConfig::new(interop_handshake(), [1], go_binary("goplugin")),
        };
        config
            .auto_mtls(auto_mtls)
            .multiplex(multiplex)
            .unix_socket_dir(dir)
            .log_sink(logs.clone());
        let client = match PluginClient::start(config).await {
            Ok(client) => client,
            Err(err) => {
                problems.push(format!("{plugin:?} cycle {cycle}: start: {err}"));
                continue;
            }
        };
        if let Err(status) = client.ping().await {
            problems.push(format!("{plugin:?} cycle {cycle}: ping: {status}"));
        }
        let exit = client.kill().await;
        if !exit.status.is_some_and(|status| status.success()) {
            problems.push(format!("{plugin:?} cycle {cycle}: {exit}"));
        }
    }
    problems
}

#[test]
fn normal_unloads_log_no_connection_errors() {
    let host_log = HostLog::default();
    let writer = host_log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let plugin_logs = PluginLogs::default();
    let dir = tempfile::Builder::new()
        .prefix("quiet")
        .tempdir()
        .expect("tempdir");
    let problems = tracing::subscriber::with_default(subscriber, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let mut problems = cycles(Plugin::Rust, dir.path(), &plugin_logs).await;
            problems.extend(cycles(Plugin::Go, dir.path(), &plugin_logs).await);
            // Late background tasks (broker readers, stdio) get a moment to log.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            problems
        })
    });
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    let loud_host: Vec<String> = host_log
        .lines()
        .into_iter()
        .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
        .filter(|line| mentions_connection_end(line))
        .collect();
    let loud_plugin: Vec<String> = plugin_logs
        .0
        .lock()
        .expect("log lock")
        .iter()
        .filter(|line| mentions_connection_end(line))
        .cloned()
        .collect();
    assert!(
        loud_host.is_empty() && loud_plugin.is_empty(),
        "orderly unloads logged connection errors at warn/error:\nhost:\n  {}\nplugins:\n  {}",
        loud_host.join("\n  "),
        loud_plugin.join("\n  ")
    );
}
