//! Plugin-side failure modes and edge cases of `PluginServer`, run against the real
//! `interop-plugin` binary in a cleared environment: the exact error on stderr, the exit status,
//! no handshake on stdout, and no leftovers (every child reaped, the socket directory empty).
//! Also: SIGINT ignored, unix socket group and mode, and gRPC reflection.

use std::collections::BTreeSet;
use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Gid, Group, Pid};
use spire_plugin_sdk::goplugin::__private as transport;
use spire_plugin_sdk::goplugin::__private::NOT_A_PLUGIN_MESSAGE;
use spire_plugin_sdk::proto::plugin::Empty;
use spire_plugin_sdk::proto::plugin::grpc_controller_client::GrpcControllerClient;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::support::run_with_deadline;

/// The plugin under test.
const PLUGIN: &str = env!("CARGO_BIN_EXE_interop-plugin");

/// How long any single child may take to start, fail or exit: a hang guard, not a measurement.
const DEADLINE: Duration = Duration::from_secs(60);

/// go-plugin's message for a missing or wrong cookie, spelled out independently of the constant.
const NOT_A_PLUGIN_LITERAL: &str = "This binary is a plugin. These are not meant to be executed \
    directly.\nPlease execute the program that consumes these plugins, which will\nload any \
    plugins automatically\n";

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// The cookie variable and value the interop plugin expects.
fn cookie() -> (String, String) {
    let handshake = spire_plugin_tests::interop_handshake();
    (handshake.magic_cookie_key, handshake.magic_cookie_value)
}

/// A command for the plugin with only `PATH`, `TMPDIR` and `PLUGIN_UNIX_SOCKET_DIR` (both the
/// test's own `dir`) set, plus `env` (which may override them). No cookie unless `env` has it.
fn bare_command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(PLUGIN);
    command
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("TMPDIR", dir)
        .env("PLUGIN_UNIX_SOCKET_DIR", dir);
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

/// [`bare_command`] with the right cookie set, as a host would launch the plugin.
fn command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let (key, value) = cookie();
    let mut command = bare_command(dir, args, &[]);
    command.env(key, value);
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

/// The names in `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|entry| {
            entry
                .expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

fn assert_empty_dir(dir: &Path) {
    assert_eq!(
        entries(dir),
        Vec::<String>::new(),
        "{} should be empty",
        dir.display()
    );
}

/// Runs a command that must fail before the handshake: status 1, nothing on stdout, the child
/// reaped. Returns its stderr.
fn run_failing(command: Command) -> String {
    let description = format!("{command:?}");
    let Output {
        status,
        stdout,
        stderr,
    } = run_with_deadline(command, DEADLINE);
    let stderr = String::from_utf8(stderr).expect("stderr is UTF-8");
    assert_eq!(
        status.code(),
        Some(1),
        "{description}: exit status {status}; stderr:\n{stderr}"
    );
    assert_eq!(
        String::from_utf8_lossy(&stdout),
        "",
        "{description}: no handshake (nothing on stdout) expected; stderr:\n{stderr}"
    );
    stderr
}

/// Asserts `text` is `prefix`, then a non-empty run of ASCII digits, then `suffix`: a message
/// naming a socket path `<dir>/plugin<digits>`.
fn assert_with_digits(text: &str, prefix: &str, suffix: &str) {
    let rest = text
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{text:?} should start with {prefix:?}"));
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    assert!(digits > 0, "{text:?}: expected digits after {prefix:?}");
    assert_eq!(
        &rest[digits..],
        suffix,
        "{text:?}: unexpected text after the socket path"
    );
}

/// A plugin child that printed its handshake. Dropping it kills and reaps the process.
struct Running {
    child: Option<Child>,
    /// The handshake line, `\n` included.
    line: String,
    /// What else the plugin writes to stdout (must stay empty), collected until EOF.
    stdout_rest: Option<JoinHandle<String>>,
    /// Everything the plugin writes to stderr, collected until EOF.
    stderr: Option<JoinHandle<String>>,
}

/// How a [`Running`] plugin ended.
#[derive(Debug)]
struct Ended {
    status: ExitStatus,
    stdout_rest: String,
    stderr: String,
}

impl Running {
    /// Spawns `command` and waits (up to [`DEADLINE`]) for its first stdout line.
    fn start(mut command: Command) -> Running {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {command:?}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || read_all(stderr));
        let (line_tx, line_rx) = mpsc::channel();
        let stdout_rest = std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = line_tx.send(line);
            read_all(reader)
        });
        let mut running = Running {
            child: Some(child),
            line: String::new(),
            stdout_rest: Some(stdout_rest),
            stderr: Some(stderr),
        };
        match line_rx.recv_timeout(DEADLINE) {
            Ok(line) if !line.is_empty() => running.line = line,
            Ok(_) => {
                let ended = running.wait();
                panic!("{command:?} printed no handshake line: {ended:?}");
            }
            Err(_) => {
                let ended = running.kill();
                panic!("{command:?} printed no handshake within {DEADLINE:?}: {ended:?}");
            }
        }
        running
    }

    fn pid(&self) -> Pid {
        let id = self.child.as_ref().expect("child not yet reaped").id();
        Pid::from_raw(i32::try_from(id).expect("pid fits i32"))
    }

    /// The handshake's fields.
    fn fields(&self) -> Vec<&str> {
        self.line
            .strip_suffix('\n')
            .expect("the handshake line ends in \\n")
            .split('|')
            .collect()
    }

    /// The handshake's unix socket path, checked to be `<dir>/plugin<digits>`.
    fn socket_path(&self, dir: &Path) -> PathBuf {
        let fields = self.fields();
        assert_eq!(fields[2], "unix", "handshake {:?}", self.line);
        let path = PathBuf::from(fields[3]);
        assert_eq!(path.parent(), Some(dir), "handshake {:?}", self.line);
        let name = path
            .file_name()
            .expect("socket file name")
            .to_string_lossy()
            .into_owned();
        assert_with_digits(&name, "plugin", "");
        path
    }

    /// Waits (up to [`DEADLINE`], then kills) for the process to exit on its own.
    fn wait(&mut self) -> Ended {
        let start = Instant::now();
        while self
            .child
            .as_mut()
            .expect("child not yet reaped")
            .try_wait()
            .expect("polling the child")
            .is_none()
        {
            if start.elapsed() > DEADLINE {
                let ended = self.kill();
                panic!("the plugin did not exit within {DEADLINE:?}; killed: {ended:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.reap()
    }

    /// SIGKILLs the process (what a go-plugin host does to a plugin it rejects) and reaps it.
    fn kill(&mut self) -> Ended {
        let _ = self.child.as_mut().expect("child not yet reaped").kill();
        self.reap()
    }

    fn reap(&mut self) -> Ended {
        let mut child = self.child.take().expect("child not yet reaped");
        let status = child.wait().expect("reaping the child");
        let join = |handle: Option<JoinHandle<String>>| {
            handle
                .map(|h| h.join().expect("reader thread"))
                .unwrap_or_default()
        };
        Ended {
            status,
            stdout_rest: join(self.stdout_rest.take()),
            stderr: join(self.stderr.take()),
        }
    }

    /// Calls `GRPCController/Shutdown` as a host does and waits for a clean exit: status 0,
    /// nothing more on stdout.
    fn shut_down(&mut self) -> Ended {
        let (network, address) = {
            let fields = self.fields();
            (fields[2].to_owned(), fields[3].to_owned())
        };
        block_on(async {
            let channel = connect(&network, &address).await;
            GrpcControllerClient::new(channel)
                .shutdown(Empty {})
                .await
                .expect("GRPCController/Shutdown");
        });
        let ended = self.wait();
        assert_eq!(
            ended.status.code(),
            Some(0),
            "exit after Shutdown: {ended:?}"
        );
        assert_eq!(
            ended.stdout_rest, "",
            "stdout after the handshake: {ended:?}"
        );
        ended
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn read_all(mut reader: impl Read) -> String {
    let mut bytes = Vec::new();
    let _ = reader.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Runs `future` on a fresh single-threaded runtime, dropped (with any connection it holds)
/// before this returns.
fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(future)
}

async fn connect(network: &str, address: &str) -> Channel {
    transport::dial(network, address, None)
        .await
        .unwrap_or_else(|e| panic!("dialing the plugin at {network} {address}: {e}"))
}

async fn health(channel: Channel) -> ServingStatus {
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "plugin".to_owned(),
        })
        .await
        .expect("grpc.health.v1.Health/Check");
    response.into_inner().status()
}

// ---------------------------------------------------------------------------------------------
// 1. Cookie
// ---------------------------------------------------------------------------------------------

#[test]
fn missing_or_wrong_cookie_prints_go_plugins_message_and_exits_1() {
    assert_eq!(NOT_A_PLUGIN_MESSAGE, NOT_A_PLUGIN_LITERAL);
    let (key, value) = cookie();
    let wrong_case = value.to_uppercase();
    let with_newline = format!("{value}\n");
    let cases: [(&str, Vec<(&str, &str)>); 5] = [
        ("missing", vec![]),
        ("wrong value", vec![(&key, "not-the-cookie")]),
        ("empty value", vec![(&key, "")]),
        ("value in another case", vec![(&key, &wrong_case)]),
        ("value with a trailing newline", vec![(&key, &with_newline)]),
    ];
    for (name, env) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        // Every other protocol variable set as a host would, so only the cookie is at fault.
        let mut env = env;
        env.extend([
            ("PLUGIN_MIN_PORT", "10000"),
            ("PLUGIN_MAX_PORT", "25000"),
            ("PLUGIN_PROTOCOL_VERSIONS", "1"),
        ]);
        let stderr = run_failing(bare_command(dir.path(), &[], &env));
        assert_eq!(stderr, NOT_A_PLUGIN_LITERAL, "{name}");
        assert_empty_dir(dir.path());
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Version negotiation
// ---------------------------------------------------------------------------------------------

#[test]
fn no_common_version_still_handshakes_with_the_lowest() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut plugin = Running::start(command(
        dir.path(),
        &["--versions", "2,1"],
        &[("PLUGIN_PROTOCOL_VERSIONS", "7")],
    ));
    let socket = plugin.socket_path(dir.path());
    assert_eq!(
        plugin.line,
        format!("1|1|unix|{}|grpc|\n", socket.display())
    );
    assert!(socket.exists(), "the plugin serves on {}", socket.display());
    // The host is the one to reject version 1; a Go host then SIGKILLs the plugin.
    let ended = plugin.kill();
    assert_eq!(
        ended.status.signal(),
        Some(Signal::SIGKILL as i32),
        "{ended:?}"
    );
    assert_eq!(ended.stdout_rest, "", "{ended:?}");
    assert_eq!(
        ended.stderr, "",
        "a fallback is not an error on the plugin side: {ended:?}"
    );
    // SIGKILL leaves the socket file (a go-plugin host removes its socket dir); nothing else.
    assert_eq!(
        entries(dir.path()),
        [socket.file_name().unwrap().to_string_lossy()]
    );
}

#[test]
fn invalid_version_items_are_reported_and_skipped() {
    // `x` is skipped and negotiation carries on to `2`: not the lowest-version fallback (1).
    let dir = tempfile::tempdir().expect("temp dir");
    let mut plugin = Running::start(command(
        dir.path(),
        &["--versions", "1,2"],
        &[("PLUGIN_PROTOCOL_VERSIONS", "x,2")],
    ));
    let socket = plugin.socket_path(dir.path());
    assert_eq!(
        plugin.line,
        format!("1|2|unix|{}|grpc|\n", socket.display())
    );
    let ended = plugin.shut_down();
    assert!(
        ended
            .stderr
            .starts_with("server sent invalid plugin version \"x\""),
        "stderr: {:?}",
        ended.stderr
    );
    assert_empty_dir(dir.path());

    // Several bad items (an empty one included), each reported without a newline, as Go does.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut plugin = Running::start(command(
        dir.path(),
        &["--versions", "1,2"],
        &[("PLUGIN_PROTOCOL_VERSIONS", "x,1,,v2")],
    ));
    assert_eq!(plugin.fields()[1], "1", "handshake {:?}", plugin.line);
    let ended = plugin.shut_down();
    assert!(
        ended.stderr.starts_with(
            "server sent invalid plugin version \"x\"server sent invalid plugin version \
             \"\"server sent invalid plugin version \"v2\""
        ),
        "stderr: {:?}",
        ended.stderr
    );
    assert_empty_dir(dir.path());
}

// ---------------------------------------------------------------------------------------------
// 3. Port range (TCP)
// ---------------------------------------------------------------------------------------------

#[test]
fn invalid_port_range_with_tcp_fails_before_the_handshake() {
    let cases = [
        (
            ("20000", "10000"),
            "plugin init error: PLUGIN_MIN_PORT value of 20000 is greater than PLUGIN_MAX_PORT \
             value of 10000\n",
        ),
        (
            ("abc", "25000"),
            "plugin init error: couldn't get value from PLUGIN_MIN_PORT: strconv.ParseInt: \
             parsing \"abc\": invalid syntax\n",
        ),
        (
            ("10000", "25k"),
            "plugin init error: couldn't get value from PLUGIN_MAX_PORT: strconv.ParseInt: \
             parsing \"25k\": invalid syntax\n",
        ),
    ];
    for ((min, max), want) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        let env = [("PLUGIN_MIN_PORT", min), ("PLUGIN_MAX_PORT", max)];
        let stderr = run_failing(command(dir.path(), &["--tcp"], &env));
        assert_eq!(stderr, want, "PLUGIN_MIN_PORT={min} PLUGIN_MAX_PORT={max}");
        assert_empty_dir(dir.path());
    }
}

#[test]
fn port_range_is_ignored_on_unix_sockets() {
    // Like a Go plugin outside Windows: the range only matters when listening on TCP.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut plugin = Running::start(command(
        dir.path(),
        &[],
        &[("PLUGIN_MIN_PORT", "20000"), ("PLUGIN_MAX_PORT", "10000")],
    ));
    let socket = plugin.socket_path(dir.path());
    assert_eq!(
        plugin.line,
        format!("1|1|unix|{}|grpc|\n", socket.display())
    );
    plugin.shut_down();
    assert_empty_dir(dir.path());
}

// ---------------------------------------------------------------------------------------------
// 4. AutoMTLS
// ---------------------------------------------------------------------------------------------

#[test]
fn malformed_client_cert_fails_fast() {
    // Go logs "client cert provided but failed to parse" and then rejects every client; we
    // refuse to start instead.
    let dir = tempfile::tempdir().expect("temp dir");
    let stderr = run_failing(command(
        dir.path(),
        &[],
        &[("PLUGIN_CLIENT_CERT", "not a pem")],
    ));
    assert_eq!(
        stderr,
        "plugin init error: AutoMTLS: malformed peer certificate PEM: no CERTIFICATE block \
         found\n"
    );
    assert_empty_dir(dir.path());

    // A well-formed PEM block whose body is not a certificate.
    let dir = tempfile::tempdir().expect("temp dir");
    let junk = "-----BEGIN CERTIFICATE-----\nAAECAwQF\n-----END CERTIFICATE-----\n";
    let stderr = run_failing(command(dir.path(), &[], &[("PLUGIN_CLIENT_CERT", junk)]));
    assert!(
        stderr.starts_with("plugin init error: AutoMTLS: malformed peer certificate: ")
            && stderr.ends_with('\n')
            && stderr.lines().count() == 1,
        "stderr: {stderr:?}"
    );
    assert_empty_dir(dir.path());
}

// ---------------------------------------------------------------------------------------------
// 5. Socket directory
// ---------------------------------------------------------------------------------------------

#[test]
fn unusable_socket_dir_names_the_path() {
    let fixtures = tempfile::tempdir().expect("temp dir");

    // A directory we may not write to. Root may write anywhere, so then use a path below a
    // regular file instead, which nobody can create anything in.
    let read_only = fixtures.path().join("read-only");
    std::fs::create_dir(&read_only).expect("creating the read-only dir");
    std::fs::set_permissions(&read_only, std::fs::Permissions::from_mode(0o500))
        .expect("chmod 0500");
    let probe = read_only.join("probe");
    let (unwritable, reason) = if std::fs::File::create(&probe).is_ok() {
        std::fs::remove_file(&probe).expect("removing the probe");
        let file = fixtures.path().join("regular-file");
        std::fs::write(&file, b"").expect("creating a regular file");
        (file.join("sub"), "Not a directory (os error 20)")
    } else {
        (read_only.clone(), "Permission denied (os error 13)")
    };
    let missing = fixtures.path().join("does-not-exist");
    let fixture_names = entries(fixtures.path());

    for (socket_dir, reason) in [
        (&unwritable, reason),
        (&missing, "No such file or directory (os error 2)"),
    ] {
        // TMPDIR is a usable directory: the plugin must not fall back to it.
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir_text = socket_dir.to_str().expect("UTF-8 path");
        let stderr = run_failing(command(
            tmp.path(),
            &[],
            &[("PLUGIN_UNIX_SOCKET_DIR", dir_text)],
        ));
        assert_with_digits(
            &stderr,
            &format!("plugin init error: couldn't bind plugin unix socket {dir_text}/plugin"),
            &format!(": {reason}\n"),
        );
        assert_empty_dir(tmp.path());
    }
    assert_eq!(entries(fixtures.path()), fixture_names);
    assert_empty_dir(&read_only);
}

#[test]
fn socket_dir_defaults_to_tmpdir() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = command(dir.path(), &[], &[]);
    command.env_remove("PLUGIN_UNIX_SOCKET_DIR");
    let mut plugin = Running::start(command);
    let socket = plugin.socket_path(dir.path());
    assert!(socket.exists(), "{}", socket.display());
    plugin.shut_down();
    assert_empty_dir(dir.path());
}

// ---------------------------------------------------------------------------------------------
// 6. SIGINT
// ---------------------------------------------------------------------------------------------

#[test]
fn sigint_is_ignored_and_shutdown_still_works() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut plugin = Running::start(command(dir.path(), &[], &[]));
    let socket = plugin.socket_path(dir.path());
    let address = socket.to_str().expect("UTF-8 path").to_owned();
    let pid = plugin.pid();

    // Sent as soon as the handshake is read, the moment a host (or a terminal's Ctrl-C) could.
    kill(pid, Signal::SIGINT).expect("sending SIGINT");
    block_on(async {
        assert_eq!(
            health(connect("unix", &address).await).await,
            ServingStatus::Serving
        );
    });
    kill(pid, Signal::SIGINT).expect("sending SIGINT again");
    block_on(async {
        let channel = connect("unix", &address).await;
        assert_eq!(health(channel.clone()).await, ServingStatus::Serving);
        GrpcControllerClient::new(channel)
            .shutdown(Empty {})
            .await
            .expect("GRPCController/Shutdown");
    });
    let ended = plugin.wait();
    assert_eq!(ended.status.code(), Some(0), "{ended:?}");
    assert_eq!(ended.stdout_rest, "", "{ended:?}");
    assert!(!socket.exists(), "{} should be removed", socket.display());
    assert_empty_dir(dir.path());
}

// ---------------------------------------------------------------------------------------------
// 7. Socket group
// ---------------------------------------------------------------------------------------------

/// Starts the plugin with `PLUGIN_UNIX_SOCKET_GROUP=group` and checks the socket's group and
/// mode while it serves, then shuts it down.
fn check_socket_group(group: &str, want_gid: u32) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut plugin = Running::start(command(
        dir.path(),
        &[],
        &[("PLUGIN_UNIX_SOCKET_GROUP", group)],
    ));
    let socket = plugin.socket_path(dir.path());
    let metadata = std::fs::symlink_metadata(&socket).expect("stat the socket");
    assert_eq!(
        metadata.gid(),
        want_gid,
        "group of {} for {group:?}",
        socket.display()
    );
    assert_eq!(
        metadata.mode() & 0o7777,
        0o660,
        "mode of {} for {group:?}",
        socket.display()
    );
    plugin.shut_down();
    assert_empty_dir(dir.path());
}

#[test]
fn socket_group_by_gid_and_name() {
    let gid = nix::unistd::getgid();
    check_socket_group(&gid.as_raw().to_string(), gid.as_raw());
    let name = Group::from_gid(gid)
        .expect("looking up our group")
        .unwrap_or_else(|| panic!("gid {gid} has a name in the group database"))
        .name;
    check_socket_group(&name, gid.as_raw());
    // Root may chown to any gid: then also prove the group really changes.
    if nix::unistd::geteuid().is_root() {
        let other = Gid::from_raw(gid.as_raw() + 4242);
        check_socket_group(&other.as_raw().to_string(), other.as_raw());
    }
}

#[test]
fn unknown_socket_group_fails_and_removes_the_socket() {
    let dir = tempfile::tempdir().expect("temp dir");
    let group = "no-such-group-plugin-errors";
    let stderr = run_failing(command(
        dir.path(),
        &[],
        &[("PLUGIN_UNIX_SOCKET_GROUP", group)],
    ));
    assert_with_digits(
        &stderr,
        &format!(
            "plugin init error: couldn't set group \"{group}\" on plugin socket {}/plugin",
            dir.path().display()
        ),
        ": no such group\n",
    );
    assert_empty_dir(dir.path());
}

// ---------------------------------------------------------------------------------------------
// 8. gRPC reflection
// ---------------------------------------------------------------------------------------------

async fn list_services_v1(channel: Channel) -> Result<BTreeSet<String>, tonic::Status> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream_once(request))
        .await?
        .into_inner();
    let response = responses.message().await?.expect("one reflection response");
    match response.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            Ok(list.service.into_iter().map(|s| s.name).collect())
        }
        other => panic!("unexpected v1 reflection response: {other:?}"),
    }
}

async fn list_services_v1alpha(channel: Channel) -> Result<BTreeSet<String>, tonic::Status> {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream_once(request))
        .await?
        .into_inner();
    let response = responses.message().await?.expect("one reflection response");
    match response.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            Ok(list.service.into_iter().map(|s| s.name).collect())
        }
        other => panic!("unexpected v1alpha reflection response: {other:?}"),
    }
}

/// A request stream holding just `item`.
fn tokio_stream_once<T: Send + 'static>(item: T) -> impl tonic::IntoStreamingRequest<Message = T> {
    tokio_stream::iter([item])
}

#[test]
fn reflection_lists_the_interop_services() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut plugin = Running::start(command(dir.path(), &["--reflection"], &[]));
    let socket = plugin.socket_path(dir.path());
    let address = socket.to_str().expect("UTF-8 path").to_owned();
    let (v1, v1alpha) = block_on(async {
        let channel = connect("unix", &address).await;
        (
            list_services_v1(channel.clone())
                .await
                .expect("v1 reflection"),
            list_services_v1alpha(channel)
                .await
                .expect("v1alpha reflection"),
        )
    });
    for (version, services) in [("v1", &v1), ("v1alpha", &v1alpha)] {
        assert!(
            services.contains("interop.v1.Echo"),
            "{version} lists {services:?}"
        );
    }
    plugin.shut_down();
    assert_empty_dir(dir.path());
}

#[test]
fn reflection_is_off_unless_asked_for() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut plugin = Running::start(command(dir.path(), &[], &[]));
    let socket = plugin.socket_path(dir.path());
    let address = socket.to_str().expect("UTF-8 path").to_owned();
    let (v1, v1alpha) = block_on(async {
        let channel = connect("unix", &address).await;
        (
            list_services_v1(channel.clone()).await,
            list_services_v1alpha(channel).await,
        )
    });
    for (version, result) in [("v1", v1), ("v1alpha", v1alpha)] {
        let status = result.expect_err("reflection is not served");
        assert_eq!(
            status.code(),
            tonic::Code::Unimplemented,
            "{version}: {status:?}"
        );
    }
    plugin.shut_down();
    assert_empty_dir(dir.path());
}

// ---------------------------------------------------------------------------------------------
// Brokered sockets
// ---------------------------------------------------------------------------------------------

#[test]
fn brokered_sockets_are_removed_on_shutdown() {
    use spire_plugin_tests::interop::interop::v1::echo_client::EchoClient;

    let dir = tempfile::tempdir().expect("temp dir");
    let mut plugin = Running::start(command(dir.path(), &[], &[]));
    let socket = plugin.socket_path(dir.path());
    let address = socket.to_str().expect("UTF-8 path").to_owned();
    // This runtime, and with it a connection to the brokered socket, outlives the plugin.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let id = runtime.block_on(async {
        let mut main = EchoClient::new(connect("unix", &address).await);
        main.serve(()).await.expect("Echo/Serve").into_inner()
    });
    assert_eq!(id, 1, "the plugin's first broker ID");
    // The plugin accepted on a fresh socket in the same directory.
    let brokered: Vec<PathBuf> = entries(dir.path())
        .into_iter()
        .map(|name| dir.path().join(name))
        .filter(|path| *path != socket)
        .collect();
    assert_eq!(
        brokered.len(),
        1,
        "one brokered socket besides {}",
        socket.display()
    );
    let brokered = brokered[0].to_str().expect("UTF-8 path").to_owned();
    let held = runtime.block_on(async {
        let channel = connect("unix", &brokered).await;
        let answer = EchoClient::new(channel.clone())
            .say("over the broker".to_owned())
            .await
            .expect("Echo/Say on the brokered socket");
        assert_eq!(answer.into_inner(), "plugin-echo: over the broker");
        channel
    });
    plugin.shut_down();
    assert_empty_dir(dir.path());
    drop(held);
    drop(runtime);
}
