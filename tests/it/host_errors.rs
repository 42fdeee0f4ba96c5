//! Host-side bad input for `PluginClient`: the Go plugin (`tests/go/cmd/goplugin`) in each of
//! its misbehaving modes, with the wrong cookie, with no common version, behind a wrong checksum,
//! a missing or non-executable binary, a plugin that dies in the middle of a call, and a client
//! dropped without `kill`. Each case checks the exact error (go-plugin's text where go-plugin has
//! one) and that nothing is left behind: the process is gone and reaped, the plugin's socket
//! directory is empty, and (in a process of its own, so that other tests' descriptors do not
//! count) the test process's open file descriptors do not grow across a batch of failures.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sha2::{Digest, Sha256};
use spire_plugin_sdk::goplugin::HandshakeError;
use spire_plugin_sdk::goplugin::{ClientConfig, ExitCause, PluginClient, PluginExited, StartError};
use spire_plugin_tests::interop::interop::v1::echo_client::EchoClient;
use spire_plugin_tests::interop_handshake;
use tonic::{Code, Status};

use crate::support::{go_binary, run_with_deadline};

/// How long anything awaited here may take: a hang guard, not a measurement.
const DEADLINE: Duration = Duration::from_secs(60);

/// The start timeout for plugins that never print a handshake (case 3).
const SHORT_START: Duration = Duration::from_secs(2);

/// go-plugin's runner diagnosis after an unrecognized handshake (`internal/cmdrunner`), spelled
/// out independently of the SDK's copy.
const DIAGNOSIS: &str = "This usually means\n  the plugin was not compiled for this architecture,\n  \
    the plugin is missing dynamic-link libraries necessary to run,\n  the plugin is not \
    executable by this process due to file permissions, or\n  the plugin failed to negotiate \
    the initial go-plugin protocol handshake\n";

/// What the Go plugin prints (on stderr, one entry a line) when the cookie is wrong.
const NOT_A_PLUGIN_LINES: [&str; 3] = [
    "This binary is a plugin. These are not meant to be executed directly.",
    "Please execute the program that consumes these plugins, which will",
    "load any plugins automatically",
];

/// Set in the child process that runs the file-descriptor batch.
const BATCH_ENV: &str = "HOST_ERRORS_FD_BATCH";
/// The Go plugin's path, handed to that child so it does not rebuild it.
const GOPLUGIN_ENV: &str = "HOST_ERRORS_GOPLUGIN";

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

fn goplugin() -> PathBuf {
    std::env::var_os(GOPLUGIN_ENV).map_or_else(|| go_binary("goplugin"), PathBuf::from)
}

fn sh_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// One launch's own directory: `sockets/` is the plugin's `PLUGIN_UNIX_SOCKET_DIR` and
/// `TMPDIR`; `pid` is where the launch script records the plugin's PID.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("sockets")).expect("creating sockets/");
        Sandbox { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn sockets(&self) -> PathBuf {
        self.path("sockets")
    }

    /// A config for `cmd` with host versions {1}, the interop handshake, and only `PATH`,
    /// `TMPDIR` and `PLUGIN_UNIX_SOCKET_DIR` (plus go-plugin's variables) in the environment.
    fn direct(&self, cmd: impl Into<PathBuf>, args: &[&str]) -> ClientConfig {
        let sockets = self.sockets().display().to_string();
        let mut config = ClientConfig::new(interop_handshake(), [1], cmd);
        config.args(args).skip_host_env(true).env([
            ("PATH", "/usr/local/bin:/usr/bin:/bin".to_owned()),
            ("TMPDIR", sockets.clone()),
            ("PLUGIN_UNIX_SOCKET_DIR", sockets),
        ]);
        config
    }

    /// A config that runs `/bin/sh -c '<record $$>; <body>' sh <args>`: the script writes its
    /// PID to `pid` first, and `exec` in `body` keeps that PID for the program it runs.
    fn sh(&self, body: &str, args: &[&str]) -> ClientConfig {
        let script = format!("echo $$ > {}; {body}", sh_quote(&self.path("pid")));
        let mut config = self.direct("/bin/sh", &[]);
        config.args(["-c", &script, "sh"].iter().chain(args));
        config
    }

    /// [`Sandbox::sh`] running the Go plugin with `args`.
    fn plugin(&self, args: &[&str]) -> ClientConfig {
        self.sh(&format!("exec {} \"$@\"", sh_quote(&goplugin())), args)
    }

    /// The PID the launch script recorded, if it ran.
    fn pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.path("pid")).ok()?;
        Some(text.trim().parse().expect("the pid file holds a number"))
    }

    fn socket_entries(&self) -> Vec<String> {
        entries(&self.sockets())
    }

    /// The plugin ran, is gone and reaped, and left nothing in its socket directory.
    fn assert_cleaned_up(&self) {
        let pid = self
            .pid()
            .expect("the launch script should have recorded its PID");
        assert_reaped(pid);
        assert_eq!(self.socket_entries(), Vec::<String>::new(), "socket dir");
    }

    /// Nothing ran at all, and the socket directory is empty.
    fn assert_nothing_ran(&self) {
        assert_eq!(self.pid(), None, "the plugin should never have run");
        assert_eq!(self.socket_entries(), Vec::<String>::new(), "socket dir");
    }
}

/// The names in `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|entry| {
            entry
                .expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// `/proc/<pid>` exists while the process runs and, as a zombie, until it is reaped.
fn proc_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn assert_reaped(pid: u32) {
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        panic!("process {pid} still exists (running, or a zombie nobody reaped): {stat}");
    }
}

/// Polls `done` every 20 ms until it holds, failing after [`DEADLINE`].
async fn poll_until(what: &str, mut done: impl FnMut() -> bool) {
    let polls = DEADLINE.as_millis() / 20;
    for _ in 0..polls {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("still waiting for {what} after {DEADLINE:?}");
}

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("{what} still pending after {DEADLINE:?}"))
}

async fn start_ok(config: ClientConfig) -> PluginClient {
    within("PluginClient::start", PluginClient::start(config))
        .await
        .unwrap_or_else(|e| panic!("the plugin should start: {e}"))
}

async fn start_err(config: ClientConfig) -> StartError {
    match within("PluginClient::start", PluginClient::start(config)).await {
        Ok(client) => {
            let exit = client.kill().await;
            panic!("the plugin started (and was killed: {exit}); expected an error");
        }
        Err(err) => err,
    }
}

/// The parts of a `StartError::Handshake`.
fn handshake_parts(err: &StartError) -> (&HandshakeError, &[String], Option<ExitStatus>) {
    match err {
        StartError::Handshake {
            source,
            stderr_tail,
            exit,
            ..
        } => (source, stderr_tail, *exit),
        other => panic!("expected a handshake error, got {other:?}: {other}"),
    }
}

/// `head` followed by the host's rendering of the stderr tail.
fn with_tail(head: &str, tail: &[String]) -> String {
    if tail.is_empty() {
        head.to_owned()
    } else {
        format!("{head}\nlast plugin stderr lines:\n  {}", tail.join("\n  "))
    }
}

// ---------------------------------------------------------------------------------------------
// Cases (each also runs in the file-descriptor batch)
// ---------------------------------------------------------------------------------------------

/// Case 1: the first stdout line is not a handshake. `quiet`: the plugin writes no stderr.
async fn unrecognized_first_line(mode: &str, line: &str, quiet: bool) {
    let sandbox = Sandbox::new();
    let err = start_err(sandbox.plugin(&["-mode", mode])).await;
    let (source, tail, exit) = handshake_parts(&err);
    let head = format!("Unrecognized remote plugin message: {line}\n{DIAGNOSIS}");
    assert!(
        matches!(
            source,
            HandshakeError::Unrecognized {
                stdout_closed: false,
                ..
            }
        ),
        "{source:?}"
    );
    assert_eq!(err.to_string(), with_tail(&head, tail));
    assert_eq!(
        exit, None,
        "the host killed the plugin, which had not exited"
    );
    if quiet {
        assert_eq!(tail, &[] as &[String]);
    }
    sandbox.assert_cleaned_up();
}

/// Case 1, by hand: a first line that is not UTF-8 is still reported as the line it is.
async fn non_utf8_first_line() {
    let sandbox = Sandbox::new();
    let err = start_err(sandbox.sh(r"printf '\377garbage\n'; exec sleep 600", &[])).await;
    let (source, tail, exit) = handshake_parts(&err);
    assert_eq!(
        source.to_string(),
        format!("Unrecognized remote plugin message: \u{FFFD}garbage\n{DIAGNOSIS}")
    );
    assert_eq!((tail, exit), (&[] as &[String], None));
    sandbox.assert_cleaned_up();
}

/// Case 1, by hand: stdout closed without a line while the process lives on. go-plugin's text,
/// once the start timeout shows the process is not merely exiting.
async fn stdout_closed_without_a_line() {
    let sandbox = Sandbox::new();
    let mut config = sandbox.sh("exec sleep 600 >&-", &[]);
    config.start_timeout(SHORT_START);
    let err = start_err(config).await;
    let (source, tail, exit) = handshake_parts(&err);
    assert_eq!(
        err.to_string(),
        format!(
            "Unrecognized remote plugin message: \nFailed to read any lines from plugin's \
             stdout\n{DIAGNOSIS}"
        )
    );
    assert!(matches!(source, HandshakeError::Unrecognized { .. }));
    assert_eq!((tail, exit), (&[] as &[String], None));
    sandbox.assert_cleaned_up();
}

/// Kills the process whose PID is in the file, if any, when dropped.
struct KillOnDrop(PathBuf);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0).map(|text| text.trim().parse::<i32>()) {
            let _ = kill(Pid::from_raw(pid.expect("a PID")), Signal::SIGKILL);
        }
    }
}

/// Case 1, by hand: a process the plugin left behind keeps its stderr open; `start` still
/// returns (with the tail it has) instead of waiting for that process.
async fn leftover_process_holding_stderr() {
    let sandbox = Sandbox::new();
    let grandchild = sandbox.path("grandchild");
    let body = format!(
        "sleep 600 & echo $! > {}; echo not a handshake; exec sleep 600",
        sh_quote(&grandchild)
    );
    // Not the host's to stop (go-plugin does not kill process groups either): the test's.
    let _leftover = KillOnDrop(grandchild.clone());
    let err = start_err(sandbox.sh(&body, &[])).await;
    assert_eq!(
        err.to_string(),
        format!("Unrecognized remote plugin message: not a handshake\n{DIAGNOSIS}")
    );
    sandbox.assert_cleaned_up();
}

/// Case 2: the plugin exits before its handshake.
async fn exits_before_handshake() {
    let sandbox = Sandbox::new();
    let err = start_err(sandbox.plugin(&["-mode", "exit"])).await;
    let (source, tail, exit) = handshake_parts(&err);
    assert_eq!(source, &HandshakeError::ExitedBeforeHandshake);
    assert_eq!(exit.and_then(|s| s.code()), Some(2), "{err}");
    assert_eq!(tail, ["goplugin: exiting before the handshake as asked"]);
    assert_eq!(
        err.to_string(),
        "plugin exited before we could connect\nplugin process exited (exit status: 2)\nlast \
         plugin stderr lines:\n  goplugin: exiting before the handshake as asked"
    );
    sandbox.assert_cleaned_up();
}

/// Case 3: the plugin never prints its handshake.
async fn hangs_before_handshake() {
    let sandbox = Sandbox::new();
    let mut config = sandbox.plugin(&["-mode", "hang"]);
    config.start_timeout(SHORT_START);
    let err = start_err(config).await;
    let (source, tail, exit) = handshake_parts(&err);
    assert_eq!(source, &HandshakeError::StartTimeout);
    assert_eq!(err.to_string(), "timeout while waiting for plugin to start");
    assert_eq!((tail, exit), (&[] as &[String], None));
    sandbox.assert_cleaned_up();
}

/// Case 4: the host supports only version 7, the plugin serves 1 (and, as a Go plugin does,
/// still handshakes with its lowest version); the host rejects it and kills it.
async fn no_common_version() {
    let sandbox = Sandbox::new();
    let mut config = sandbox.plugin(&["-versions", "1"]);
    config.versions([7]);
    let err = start_err(config).await;
    let (source, tail, exit) = handshake_parts(&err);
    let head = "incompatible API version with plugin. Plugin version: 1, Client versions: [7]";
    assert_eq!(
        source,
        &HandshakeError::IncompatibleAppVersion {
            plugin: 1,
            host: vec![7]
        }
    );
    assert_eq!(err.to_string(), with_tail(head, tail));
    assert_eq!(exit, None, "the host killed the plugin, which was serving");
    // It was listening when killed: its socket must not outlive it.
    sandbox.assert_cleaned_up();
}

/// Case 5: a wrong checksum stops the launch before anything runs; the right one starts.
async fn checksums() {
    let sandbox = Sandbox::new();
    let mut config = sandbox.plugin(&[]);
    config.checksum(Some(sha256(b"not the plugin")));
    let err = start_err(config).await;
    assert!(matches!(err, StartError::ChecksumMismatch), "{err:?}");
    assert_eq!(err.to_string(), "checksums did not match");
    sandbox.assert_nothing_ran();

    let missing = sandbox.path("no-such-plugin");
    let mut config = sandbox.direct(&missing, &[]);
    config.checksum(Some(sha256(b"")));
    let err = start_err(config).await;
    assert_eq!(
        err.to_string(),
        format!(
            "error verifying checksum: {}: No such file or directory (os error 2)",
            missing.display()
        )
    );
    sandbox.assert_nothing_ran();

    let binary = goplugin();
    let mut config = sandbox.direct(&binary, &[]);
    config.checksum(Some(sha256(
        &std::fs::read(&binary).expect("reading the plugin"),
    )));
    let client = start_ok(config).await;
    let pid = client.pid().expect("a launched plugin has a PID");
    within("ping", client.ping())
        .await
        .expect("the plugin answers");
    let exit = within("kill", client.kill()).await;
    assert_eq!(exit.status.and_then(|s| s.code()), Some(0), "{exit}");
    assert_reaped(pid);
    assert_eq!(sandbox.socket_entries(), Vec::<String>::new(), "socket dir");
}

/// Case 6: the plugin dies during a call. The failure, and every later call's, is explained
/// with the exit status; `wait` reports status 3.
async fn dies_mid_call() {
    let sandbox = Sandbox::new();
    let client = start_ok(sandbox.plugin(&[])).await;
    assert_eq!(client.pid(), sandbox.pid(), "exec keeps the script's PID");
    let mut echo = EchoClient::new(client.channel());
    within("Echo.Say", echo.say("before".to_owned()))
        .await
        .expect("the plugin answers before it crashes");

    // The call in flight fails as soon as the process is reaped, explained by the channel.
    let failed = within("Echo.Crash", echo.crash(()))
        .await
        .expect_err("Crash exits the plugin instead of answering");
    let exit = within("the plugin's exit", client.wait()).await;
    assert_eq!(exit.status.and_then(|s| s.code()), Some(3), "{exit}");
    assert!(
        exit.to_string()
            .starts_with("plugin process exited (exit status: 3)"),
        "{exit}"
    );
    assert_eq!(failed.code(), Code::Unavailable, "{failed:?}");
    assert!(
        failed
            .message()
            .starts_with(&format!("plugin \"sh\" crashed: {exit}")),
        "{failed:?}"
    );
    let exited = PluginExited::from_status(&failed).expect("a PluginExited source");
    assert_eq!((exited.exit(), exited.cause()), (&exit, ExitCause::Crashed));
    // `explain` (for statuses from elsewhere) says the same.
    let explained = client.explain(Status::unknown("transport error")).await;
    assert_eq!(explained.code(), Code::Unavailable, "{explained:?}");
    assert_eq!(
        explained.message(),
        format!("plugin \"sh\" crashed: {exit} (call failed: transport error)")
    );

    // Later calls fail at once, without touching the connection.
    for attempt in 0..3 {
        let later = within(
            "a call after the crash",
            echo.say(format!("after {attempt}")),
        )
        .await
        .expect_err("the plugin is gone");
        assert_eq!(later.code(), Code::Unavailable, "{later:?}");
        assert_eq!(later.message(), format!("plugin \"sh\" crashed: {exit}"));
    }

    assert_eq!(client.exited(), Some(exit.clone()));
    let killed = within("kill", client.kill()).await;
    assert_eq!(killed, exit, "kill after the exit reports the same exit");
    sandbox.assert_cleaned_up();
}

/// Case 7: the binary is missing, or not executable; relative paths are reported absolute.
async fn spawn_failures() {
    let sandbox = Sandbox::new();
    let missing = sandbox.path("no-such-plugin");
    let err = start_err(sandbox.direct(&missing, &[])).await;
    assert!(matches!(err, StartError::Spawn { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "error starting plugin {}: No such file or directory (os error 2)",
            missing.display()
        )
    );
    sandbox.assert_nothing_ran();

    let relative = Path::new("no-such-dir-for-host-errors/plugin");
    let err = start_err(sandbox.direct(relative, &[])).await;
    let absolute = std::env::current_dir().expect("cwd").join(relative);
    assert_eq!(
        err.to_string(),
        format!(
            "error starting plugin {}: No such file or directory (os error 2)",
            absolute.display()
        )
    );

    let not_executable = sandbox.path("not-executable");
    std::fs::write(&not_executable, "#!/bin/sh\necho $$ > pid\n").expect("writing the file");
    std::fs::set_permissions(&not_executable, std::fs::Permissions::from_mode(0o644))
        .expect("chmod 644");
    let err = start_err(sandbox.direct(&not_executable, &[])).await;
    assert_eq!(
        err.to_string(),
        format!(
            "error starting plugin {}: Permission denied (os error 13)",
            not_executable.display()
        )
    );
    sandbox.assert_nothing_ran();
}

/// Case 8: the host's cookie value differs; the Go plugin refuses with go-plugin's message.
async fn wrong_cookie() {
    let sandbox = Sandbox::new();
    let mut config = sandbox.plugin(&[]);
    let mut handshake = interop_handshake();
    handshake.magic_cookie_value = "not-the-interop-cookie".to_owned();
    config.handshake(handshake);
    let err = start_err(config).await;
    let (source, tail, exit) = handshake_parts(&err);
    assert_eq!(source, &HandshakeError::ExitedBeforeHandshake);
    assert_eq!(exit.and_then(|s| s.code()), Some(1), "{err}");
    assert_eq!(tail, NOT_A_PLUGIN_LINES);
    assert_eq!(
        err.to_string(),
        "plugin exited before we could connect\nplugin process exited (exit status: 1)\nlast \
         plugin stderr lines:\n  This binary is a plugin. These are not meant to be executed \
         directly.\n  Please execute the program that consumes these plugins, which will\n  load \
         any plugins automatically"
    );
    sandbox.assert_cleaned_up();
}

/// A client dropped without `kill` still ends (and reaps) the plugin and removes its sockets.
async fn dropped_client() {
    let sandbox = Sandbox::new();
    let client = start_ok(sandbox.plugin(&[])).await;
    let pid = client.pid().expect("a launched plugin has a PID");
    within("ping", client.ping())
        .await
        .expect("the plugin answers");
    assert!(proc_exists(pid));
    drop(client);
    poll_until(
        "the dropped plugin to be reaped and its sockets removed",
        || !proc_exists(pid) && sandbox.socket_entries().is_empty(),
    )
    .await;
    sandbox.assert_cleaned_up();
}

async fn every_case() {
    unrecognized_first_line("garbage", "this is not a handshake", true).await;
    unrecognized_first_line("truncated", "1|1|unix", true).await;
    unrecognized_first_line("noise", "hello from a chatty plugin", false).await;
    non_utf8_first_line().await;
    stdout_closed_without_a_line().await;
    leftover_process_holding_stderr().await;
    exits_before_handshake().await;
    hangs_before_handshake().await;
    no_common_version().await;
    checksums().await;
    dies_mid_call().await;
    spawn_failures().await;
    wrong_cookie().await;
    dropped_client().await;
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_handshake_line() {
    unrecognized_first_line("garbage", "this is not a handshake", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_handshake_line() {
    unrecognized_first_line("truncated", "1|1|unix", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stray_stdout_before_handshake() {
    unrecognized_first_line("noise", "hello from a chatty plugin", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_utf8_handshake_line() {
    non_utf8_first_line().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_closed_by_a_live_plugin() {
    stdout_closed_without_a_line().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stderr_held_open_by_a_leftover_process() {
    leftover_process_holding_stderr().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_exits_before_handshake() {
    exits_before_handshake().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_hangs_before_handshake() {
    hangs_before_handshake().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_common_protocol_version() {
    no_common_version().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksum_mismatch_and_match() {
    checksums().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_dies_mid_call() {
    dies_mid_call().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_non_executable_binary() {
    spawn_failures().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_cookie_value() {
    wrong_cookie().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_client_ends_the_plugin() {
    dropped_client().await;
}

fn open_fds() -> Vec<String> {
    let mut fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .expect("listing /proc/self/fd")
        .filter_map(Result::ok)
        .map(|entry| {
            let target = std::fs::read_link(entry.path())
                .map_or_else(|_| "?".to_owned(), |t| t.display().to_string());
            format!("{} -> {target}", entry.file_name().to_string_lossy())
        })
        .collect();
    fds.sort();
    fds
}

/// Every case once to warm up (runtime, signal pipe, blocking pool), then twice more; once
/// background tasks have finished, no more descriptors may be open than after the warm-up.
#[allow(clippy::print_stdout, reason = "the counts are the batch's report")]
async fn fd_batch() {
    every_case().await;
    let before = open_fds();
    for _ in 0..2 {
        every_case().await;
    }
    let at_end = open_fds().len();
    let mut settled = Vec::new();
    let polls = DEADLINE.as_millis() / 20;
    for _ in 0..polls {
        settled = open_fds();
        if settled.len() <= before.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "open fds: {} after the warm-up, {at_end} right after the batch, {} settled",
        before.len(),
        settled.len()
    );
    assert!(
        settled.len() <= before.len(),
        "open descriptors grew from {} to {}:\nbefore:\n  {}\nafter:\n  {}",
        before.len(),
        settled.len(),
        before.join("\n  "),
        settled.join("\n  ")
    );
}

/// Runs [`fd_batch`] in a child process running only this test, so that no other test's
/// descriptors come and go in the count.
#[test]
fn file_descriptors_do_not_grow_across_failures() {
    if std::env::var_os(BATCH_ENV).is_some() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        runtime.block_on(fd_batch());
        return;
    }
    let name = "host_errors::file_descriptors_do_not_grow_across_failures";
    let mut command = Command::new(std::env::current_exe().expect("test binary path"));
    command
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(BATCH_ENV, "1")
        .env(GOPLUGIN_ENV, go_binary("goplugin"));
    let output = run_with_deadline(command, Duration::from_secs(600));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed") && stdout.contains("open fds: "),
        "the batch failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
}

// ---------------------------------------------------------------------------------------------
// Socket directories, start failures, kill and dead plugins
// ---------------------------------------------------------------------------------------------

/// A fresh, empty directory whose path is exactly `len` bytes, under `/tmp` (not the test's
/// TMPDIR, which may be long itself); removed when dropped.
struct SizedDir {
    _base: tempfile::TempDir,
    path: PathBuf,
}

impl SizedDir {
    fn new(len: usize) -> SizedDir {
        let base = tempfile::Builder::new()
            .prefix("sz")
            .tempdir_in("/tmp")
            .expect("a dir in /tmp");
        let used = base.path().as_os_str().len() + 1;
        let path = base.path().join("d".repeat(len - used));
        std::fs::create_dir(&path).expect("creating the sized dir");
        assert_eq!(path.as_os_str().len(), len);
        SizedDir { _base: base, path }
    }
}

/// A config for `cmd` whose plugin sees only `PATH` and `TMPDIR=dir` (no
/// `PLUGIN_UNIX_SOCKET_DIR`): it binds its socket in its TMPDIR, as a go-plugin host leaves it to.
fn in_tmpdir(cmd: impl Into<PathBuf>, dir: &Path) -> ClientConfig {
    let mut config = ClientConfig::new(interop_handshake(), [1], cmd);
    config.skip_host_env(true).env([
        ("PATH", "/usr/local/bin:/usr/bin:/bin".to_owned()),
        ("TMPDIR", dir.display().to_string()),
    ]);
    config
}

/// go-plugin's own host lets a Go plugin bind straight in an 80-byte TMPDIR (the socket path is
/// at most 97 bytes); ours must too, and must leave nothing there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_plugin_starts_under_an_80_byte_tmpdir() {
    let dir = SizedDir::new(80);
    let client = start_ok(in_tmpdir(goplugin(), &dir.path)).await;
    let socket = PathBuf::from(&client.handshake().address);
    assert_eq!(socket.parent(), Some(dir.path.as_path()), "{socket:?}");
    let answer = within(
        "Echo.Say",
        EchoClient::new(client.channel()).say("80".to_owned()),
    )
    .await
    .expect("the plugin answers");
    assert_eq!(answer.into_inner(), "echo: 80");
    let exit = within("kill", client.kill()).await;
    assert!(exit.status.is_some_and(|s| s.success()), "{exit}");
    assert_eq!(entries(&dir.path), Vec::<String>::new());
}

/// A socket directory too long for any socket in it: the Go plugin fails in bind; the start
/// error keeps its hclog fields (the bind error) and says why (the directory, its length, the
/// limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_too_long_socket_dir_fails_with_the_reason() {
    let dir = SizedDir::new(100);
    let err = start_err(in_tmpdir(goplugin(), &dir.path)).await;
    let (source, tail, _) = handshake_parts(&err);
    assert_eq!(source, &HandshakeError::ExitedBeforeHandshake, "{err}");
    let bind = tail
        .iter()
        .find(|line| line.starts_with("plugin init error"))
        .unwrap_or_else(|| panic!("no init error in the tail: {tail:?}"));
    assert!(
        bind.contains(&format!(
            "error=\"listen unix {}/plugin",
            dir.path.display()
        )) && bind.ends_with(": bind: invalid argument\""),
        "the hclog fields are lost: {bind:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "the plugin's unix socket directory {} is 100 bytes long",
            dir.path.display()
        )) && text.contains("over the 107-byte limit of a unix socket path"),
        "{text}"
    );
    let StartError::Handshake { socket_dir, .. } = &err else {
        unreachable!("checked above")
    };
    let too_long = socket_dir.as_ref().expect("the socket dir diagnosis");
    assert_eq!(
        (&too_long.dir, too_long.len, too_long.limit),
        (&dir.path, 100, 107)
    );

    // Our Rust plugin says the same in its own words.
    let err = start_err(in_tmpdir(env!("CARGO_BIN_EXE_interop-plugin"), &dir.path)).await;
    let (_, tail, _) = handshake_parts(&err);
    assert!(
        tail.iter().any(|line| line.contains(&format!(
            "couldn't bind plugin unix socket: unix socket path {}/plugin",
            dir.path.display()
        )) && line.contains("bytes long, over the 107-byte limit")),
        "{tail:?}"
    );
    assert_eq!(entries(&dir.path), Vec::<String>::new());
}

/// Collects the plugin's parsed log messages.
#[derive(Clone, Default)]
struct Messages(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl spire_plugin_sdk::goplugin::hclog::LogSink for Messages {
    fn log(&mut self, entry: spire_plugin_sdk::goplugin::hclog::LogEntry) {
        self.0.lock().expect("log lock").push(entry.message);
    }
}

/// `kill` closes the host's connection after Shutdown (as go-plugin's does), channel clones and
/// open streams included, so our plugin's graceful stop finishes at once instead of waiting its
/// grace out for the host's stdio stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_closes_the_hosts_connection_so_the_plugin_need_not_wait_out_its_grace() {
    let sandbox = Sandbox::new();
    let logs = Messages::default();
    let mut config = sandbox.direct(env!("CARGO_BIN_EXE_interop-plugin"), &[]);
    config.log_sink(logs.clone());
    let client = start_ok(config).await;
    let held = client.channel();
    let mut health = tonic_health::pb::health_client::HealthClient::new(held.clone());
    let mut watch = within(
        "Health.Watch",
        health.watch(tonic_health::pb::HealthCheckRequest {
            service: "plugin".to_owned(),
        }),
    )
    .await
    .expect("watch")
    .into_inner();
    within("the first health message", watch.message())
        .await
        .expect("first health message");

    let exit = within("kill", client.kill()).await;
    assert!(exit.status.is_some_and(|s| s.success()), "{exit}");
    let messages = logs.0.lock().expect("log lock").clone();
    assert!(
        !messages
            .iter()
            .any(|m| m.contains("shutdown grace ran out")),
        "the plugin had to wait out its grace: {messages:?}"
    );
    // The stream and the held clone end with the connection; a call names the stop.
    match within("the watch stream", watch.message()).await {
        Ok(None) => {}
        Err(status) => assert_eq!(status.code(), Code::Unavailable, "{status:?}"),
        Ok(Some(message)) => panic!("a health message after kill: {message:?}"),
    }
    let later = within(
        "a call after kill",
        EchoClient::new(held).say("x".to_owned()),
    )
    .await
    .expect_err("the plugin is gone");
    assert_eq!(later.code(), Code::Unavailable, "{later:?}");
    assert!(
        later
            .message()
            .starts_with("plugin \"interop-plugin\" was stopped by the host"),
        "{later:?}"
    );
}

/// A plugin killed by someone else (SIGKILL): the call in flight, a stream open at the time,
/// and every later call through `PluginClient::channel` fail with `Unavailable` naming the
/// signal, for a Go and a Rust plugin alike (tonic alone says `Unknown: transport error`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_call_and_after_is_unavailable_with_the_exit_status() {
    for (label, cmd) in [
        ("goplugin", goplugin()),
        (
            "interop-plugin",
            PathBuf::from(env!("CARGO_BIN_EXE_interop-plugin")),
        ),
    ] {
        let sandbox = Sandbox::new();
        let client = start_ok(sandbox.direct(&cmd, &[])).await;
        let pid = client.pid().expect("a pid");
        let mut health = tonic_health::pb::health_client::HealthClient::new(client.channel());
        let mut watch = within(
            "Health.Watch",
            health.watch(tonic_health::pb::HealthCheckRequest {
                service: "plugin".to_owned(),
            }),
        )
        .await
        .expect("watch")
        .into_inner();
        within("the first health message", watch.message())
            .await
            .expect("first health message");
        // A unary call in flight: dialing a broker ID nobody accepts waits (for seconds).
        let mut echo = EchoClient::new(client.channel());
        let in_flight = tokio::spawn({
            let mut echo = echo.clone();
            async move { echo.call_back(4_000_000).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("SIGKILL");

        let expect_killed = |what: &str, status: &Status| {
            assert_eq!(
                status.code(),
                Code::Unavailable,
                "{label} {what}: {status:?}"
            );
            assert!(
                status.message().starts_with(&format!(
                    "plugin {label:?} crashed: plugin process exited (signal: 9 (SIGKILL))"
                )),
                "{label} {what}: {status:?}"
            );
            let exited = PluginExited::from_status(status).expect("a PluginExited source");
            assert_eq!(exited.cause(), ExitCause::Crashed);
        };
        let status = within("the call in flight", in_flight)
            .await
            .expect("the call's task")
            .expect_err("the plugin died");
        expect_killed("in flight", &status);
        let status = within("the open stream", watch.message())
            .await
            .expect_err("the plugin died");
        expect_killed("stream", &status);
        for attempt in 0..2 {
            let status = within("a later call", echo.say(format!("after {attempt}")))
                .await
                .expect_err("the plugin is gone");
            expect_killed("later", &status);
        }
        within("kill", client.kill()).await;
        assert_eq!(sandbox.socket_entries(), Vec::<String>::new(), "{label}");
    }
}

/// `cmd` follows go-plugin's `exec.Command`: a name without `/` is looked up in `PATH`, so the
/// usual `sh -c "<command line>"` works; a name found nowhere is reported as given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cmd_is_looked_up_in_path_and_sh_c_runs_a_command_line() {
    let sandbox = Sandbox::new();
    let line = format!("exec {} -versions 1", sh_quote(&goplugin()));
    let mut config = sandbox.direct("sh", &[]);
    config.args(["-c", &line]);
    let client = start_ok(config).await;
    let answer = within(
        "Echo.Say",
        EchoClient::new(client.channel()).say("sh".to_owned()),
    )
    .await
    .expect("the plugin answers");
    assert_eq!(answer.into_inner(), "echo: sh");
    let exit = within("kill", client.kill()).await;
    assert!(exit.status.is_some_and(|s| s.success()), "{exit}");

    let err = start_err(sandbox.direct("no-such-plugin-in-path", &[])).await;
    assert_eq!(
        err.to_string(),
        "error starting plugin no-such-plugin-in-path: No such file or directory (os error 2)"
    );
    sandbox.assert_nothing_ran();
}
