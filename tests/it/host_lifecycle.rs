//! Many plugins per host (`goplugin::manager::PluginManager`) against real plugins: lazy start,
//! one start shared by concurrent first callers, a failed start reported to every waiter and
//! retried, a crash (the Go plugin's `Echo.Crash`, exit status 3) failing calls fast with the exit
//! status and last stderr lines, the restart policy, `close` and drop stopping every plugin, and
//! 1,000 load/unload cycles leaving no process, file descriptor or socket behind (run in a
//! re-executed copy of this binary, so no other test's processes or descriptors are counted).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use spire_plugin_sdk::goplugin::ClientConfig;
use spire_plugin_sdk::goplugin::{
    ExitCause, PluginChannel, PluginExited, PluginHandle, PluginManager, PluginSpec, PluginState,
    RestartPolicy,
};
use spire_plugin_tests::interop::interop::v1::echo_client::EchoClient;
use spire_plugin_tests::interop_handshake;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::support::{go_binary, run_with_deadline};

/// One test's plugins: their sockets (plugin and host side) go to a private directory, which
/// also marks their processes (it is in each one's environment).
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            dir: tempfile::Builder::new()
                .prefix("lifecycle")
                .tempdir()
                .expect("tempdir"),
        }
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The Go plugin (`tests/go/cmd/goplugin`) with extra `args`.
    fn go(&self, args: &[&str]) -> PluginSpec {
        let binary = go_binary("goplugin");
        let dir = self.dir().to_path_buf();
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        PluginSpec::new(move || {
            let mut config = config(&binary, &dir);
            config.args(&args);
            config
        })
    }

    /// The Rust plugin (`interop-plugin`).
    fn rust(&self) -> PluginSpec {
        let binary = PathBuf::from(env!("CARGO_BIN_EXE_interop-plugin"));
        let dir = self.dir().to_path_buf();
        PluginSpec::new(move || config(&binary, &dir))
    }

    /// Our live (or unreaped) children started with this fixture's directory (zombies have no
    /// readable environment; `is_our_child` covers those for known pids).
    fn children(&self) -> Vec<u32> {
        // Both PLUGIN_UNIX_SOCKET_DIR and TMPDIR are passed on as given.
        let marker = format!("TMPDIR={}", self.dir().display());
        children_of_self()
            .into_keys()
            .filter(|pid| {
                fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                    env.split(|b| *b == 0)
                        .any(|entry| entry == marker.as_bytes())
                })
            })
            .collect()
    }

    /// What is left in the socket directory.
    fn leftovers(&self) -> Vec<PathBuf> {
        fs::read_dir(self.dir())
            .expect("socket dir")
            .map(|entry| entry.expect("dir entry").path())
            .collect()
    }
}

/// A config whose plugin sees only our environment: sockets in `dir` (both plugin and host
/// side), and the host's own `TMPDIR`/`PLUGIN_UNIX_SOCKET_DIR` cannot override it.
fn config(binary: &Path, dir: &Path) -> ClientConfig {
    let mut config = ClientConfig::new(interop_handshake(), [1], binary);
    let dir_text = dir.display().to_string();
    config
        .skip_host_env(true)
        .env([
            ("PLUGIN_UNIX_SOCKET_DIR", dir_text.clone()),
            ("TMPDIR", dir_text),
        ])
        .unix_socket_dir(dir);
    config
}

/// Our child processes (pid → state letter), zombies included, from `/proc/<pid>/stat`
/// (`/proc` lists processes, not threads).
fn children_of_self() -> BTreeMap<u32, char> {
    let me = std::process::id();
    let mut children = BTreeMap::new();
    for entry in fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some((state, ppid)) = stat(pid)
            && ppid == me
        {
            children.insert(pid, state);
        }
    }
    children
}

/// A process's state letter and parent, or `None` once it is gone.
fn stat(pid: u32) -> Option<(char, u32)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid …`; comm may contain spaces and parentheses.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// True while `pid` is our child, running or not yet reaped.
fn is_our_child(pid: u32) -> bool {
    stat(pid).is_some_and(|(_, ppid)| ppid == std::process::id())
}

/// Polls `cond` every 20 ms for up to 10 s.
async fn eventually(cond: impl Fn() -> bool) -> bool {
    for _ in 0..500 {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

fn echo(handle: &PluginHandle) -> EchoClient<PluginChannel> {
    EchoClient::new(handle.channel())
}

async fn say(handle: &PluginHandle, text: &str) -> Result<String, tonic::Status> {
    Ok(echo(handle).say(text.to_owned()).await?.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_starts_before_the_first_get() {
    let fixture = Fixture::new();
    let manager = PluginManager::new();
    manager
        .register("echo", &fixture.go(&[]))
        .expect("register");
    assert_eq!(manager.state("echo"), Some(PluginState::Idle));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        fixture.children(),
        Vec::<u32>::new(),
        "a process before get"
    );

    let handle = manager.get("echo").await.expect("get");
    let pid = handle.pid().expect("pid");
    assert_eq!(fixture.children(), vec![pid]);
    assert_eq!(
        manager.state("echo"),
        Some(PluginState::Running { pid: Some(pid) })
    );
    assert_eq!(say(&handle, "lazy").await.expect("call"), "echo: lazy");
    // A second get reuses the running process.
    assert_eq!(manager.get("echo").await.expect("get").pid(), Some(pid));

    let stopped = manager.close().await;
    assert_eq!(stopped.len(), 1);
    assert!(!is_our_child(pid), "{pid} still running after close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_callers_share_one_start() {
    let fixture = Fixture::new();
    let manager = PluginManager::new();
    manager
        .register("echo", &fixture.go(&[]))
        .expect("register");

    let callers: Vec<_> = (0..8)
        .map(|i| {
            let manager = manager.clone();
            tokio::spawn(async move {
                let handle = manager.get("echo").await.expect("get");
                let answer = say(&handle, &format!("caller {i}")).await.expect("call");
                assert_eq!(answer, format!("echo: caller {i}"));
                handle.pid().expect("pid")
            })
        })
        .collect();
    let mut pids = Vec::new();
    for caller in callers {
        pids.push(caller.await.expect("caller task"));
    }
    pids.dedup();
    assert_eq!(pids.len(), 1, "callers saw different processes: {pids:?}");
    assert_eq!(fixture.children(), pids, "exactly one process started");

    manager.close().await;
    assert_eq!(fixture.children(), Vec::<u32>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_start_reaches_every_waiter_and_is_retried() {
    let fixture = Fixture::new();
    let binary = go_binary("goplugin");
    let dir = fixture.dir().to_path_buf();
    let broken = Arc::new(AtomicBool::new(true));
    let spec = {
        let broken = broken.clone();
        PluginSpec::new(move || {
            let mut config = config(&binary, &dir);
            if broken.load(Ordering::SeqCst) {
                // Exits with status 2 before the handshake.
                config.args(["-mode", "exit"]);
            }
            config
        })
    };
    let manager = PluginManager::new();
    manager.register("echo", &spec).expect("register");

    let waiters: Vec<_> = (0..8)
        .map(|_| {
            let manager = manager.clone();
            tokio::spawn(async move { manager.get("echo").await })
        })
        .collect();
    for waiter in waiters {
        let err = waiter
            .await
            .expect("waiter task")
            .expect_err("start must fail");
        assert!(err.is_start(), "{err}");
        assert_eq!(err.name(), Some("echo"));
        let text = err.to_string();
        assert!(
            text.contains("exiting before the handshake as asked"),
            "no stderr in {text}"
        );
    }
    assert_eq!(manager.state("echo"), Some(PluginState::Idle));
    assert!(eventually(|| fixture.children().is_empty()).await);

    broken.store(false, Ordering::SeqCst);
    let handle = manager.get("echo").await.expect("retried start");
    assert_eq!(say(&handle, "again").await.expect("call"), "echo: again");
    manager.close().await;
}

/// Asserts `status` is the fail-fast status for a crash with exit status 3 whose stderr tail
/// holds `marker`.
fn assert_crash_status(status: &tonic::Status, marker: &str) {
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("exit status: 3"),
        "no exit status in {status:?}"
    );
    assert!(
        status.message().contains(marker),
        "no stderr tail in {status:?}"
    );
    let exited = PluginExited::from_status(status).expect("a PluginExited source");
    assert_eq!(exited.cause(), ExitCause::Crashed);
    assert_eq!(exited.name(), "echo");
    assert_eq!(exited.exit().status.and_then(|s| s.code()), Some(3));
    // The tail keeps the hclog line's fields after the message.
    let line = format!("{marker} answer=42 plugin_side=go");
    assert!(
        exited.exit().stderr_tail.contains(&line),
        "{:?}",
        exited.exit().stderr_tail
    );
}

/// Logs `marker` (so it is among the last stderr lines), then crashes the plugin with
/// `Echo.Crash`; returns the crashing call's status.
async fn crash(handle: &PluginHandle, marker: &str) -> tonic::Status {
    let mut echo = echo(handle);
    echo.log(marker.to_owned()).await.expect("log");
    // The log lines travel on stderr; let them arrive before the process dies.
    tokio::time::sleep(Duration::from_millis(100)).await;
    echo.crash(()).await.expect_err("Crash cannot answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(
    clippy::print_stdout,
    reason = "reports how fast the fail-fast path was"
)]
async fn a_crash_fails_calls_fast_with_the_exit_status_and_stderr() {
    let fixture = Fixture::new();
    let manager = PluginManager::new();
    manager
        .register("echo", &fixture.go(&[]))
        .expect("register");
    let handle = manager.get("echo").await.expect("get");
    let pid = handle.pid().expect("pid");

    // A stream open when the process dies: its response has begun (the first message is the
    // current health), so the failure shows up in the body.
    let mut health = HealthClient::new(handle.channel());
    let mut watch = health
        .watch(HealthCheckRequest {
            service: "plugin".to_owned(),
        })
        .await
        .expect("watch")
        .into_inner();
    let first = watch.message().await.expect("first health message");
    assert_eq!(first.map(|m| m.status), Some(ServingStatus::Serving as i32));

    // The call in flight when the process dies.
    let status = crash(&handle, "before-crash").await;
    assert_crash_status(&status, "before-crash");
    assert!(!is_our_child(pid), "crashed plugin not reaped");
    let broken = watch.message().await.expect_err("the stream must break");
    assert_crash_status(&broken, "before-crash");

    // Later calls on the old handle fail at once with the same information.
    let started = Instant::now();
    let later = say(&handle, "too late").await.expect_err("plugin is gone");
    let took = started.elapsed();
    assert_crash_status(&later, "before-crash");
    assert_eq!(
        PluginExited::from_status(&later),
        PluginExited::from_status(&status)
    );
    println!("fail-fast call after the crash took {took:?}");
    assert_crash_status(&handle.ping().await.expect_err("ping"), "before-crash");
    assert_crash_status(&handle.check().expect_err("check"), "before-crash");

    // No restart policy: `get` reports the crash too, and so does the status made from it.
    let err = manager.get("echo").await.expect_err("no restart");
    assert!(err.is_crashed(), "{err}");
    assert_eq!(
        err.exited()
            .and_then(|e| e.exit().status)
            .and_then(|s| s.code()),
        Some(3)
    );
    assert_crash_status(&tonic::Status::from(err), "before-crash");
    assert!(matches!(
        manager.state("echo"),
        Some(PluginState::Crashed { .. })
    ));
    // The crashed plugin's socket was removed for it.
    assert_eq!(fixture.leftovers(), Vec::<PathBuf>::new());

    // Unloading forgets the crash; the next get starts a new process.
    manager.unload("echo").await.expect("unload");
    let fresh = manager.get("echo").await.expect("get after unload");
    assert_ne!(fresh.pid(), Some(pid));
    assert_eq!(say(&fresh, "back").await.expect("call"), "echo: back");
    manager.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_restart_policy_restarts_after_a_crash() {
    let fixture = Fixture::new();
    let mut spec = fixture.go(&[]);
    spec.restart(RestartPolicy::OnCrash {
        max_restarts: 1,
        backoff: Duration::from_millis(200),
    });
    let manager = PluginManager::new();
    manager.register("echo", &spec).expect("register");

    let first = manager.get("echo").await.expect("get");
    let first_pid = first.pid().expect("pid");
    assert_crash_status(&crash(&first, "crash-one").await, "crash-one");

    let crashed_at = Instant::now();
    let second = manager.get("echo").await.expect("restart");
    let second_pid = second.pid().expect("pid");
    assert_ne!(second_pid, first_pid);
    assert!(
        crashed_at.elapsed() >= Duration::from_millis(150),
        "the backoff was not waited out"
    );
    assert_eq!(say(&second, "again").await.expect("call"), "echo: again");
    // The old handle still reports the old crash.
    assert_crash_status(
        &say(&first, "x").await.expect_err("old handle"),
        "crash-one",
    );
    assert_eq!(fixture.children(), vec![second_pid]);

    // The one allowed restart is used up.
    assert_crash_status(&crash(&second, "crash-two").await, "crash-two");
    let err = manager.get("echo").await.expect_err("no restarts left");
    assert!(err.is_crashed(), "{err}");
    assert!(err.to_string().contains("restarts used: 1"), "{err}");
    manager.close().await;
    assert_eq!(fixture.children(), Vec::<u32>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_stops_every_plugin() {
    let fixture = Fixture::new();
    let manager = PluginManager::new();
    manager
        .register("go-1", &fixture.go(&[]))
        .expect("register");
    manager
        .register("go-2", &fixture.go(&[]))
        .expect("register");
    manager.register("rust", &fixture.rust()).expect("register");
    manager
        .register("never-used", &fixture.go(&[]))
        .expect("register");
    assert!(
        manager
            .register("rust", &fixture.rust())
            .expect_err("duplicate")
            .is_already_registered()
    );

    let mut pids = Vec::new();
    for name in ["go-1", "go-2", "rust"] {
        let handle = manager.get(name).await.expect("get");
        assert_eq!(
            say(&handle, name).await.expect("call"),
            format!("echo: {name}")
        );
        pids.push(handle.pid().expect("pid"));
    }
    pids.sort_unstable();
    let mut children = fixture.children();
    children.sort_unstable();
    assert_eq!(children, pids);

    let mut stopped = manager.close().await;
    stopped.sort_by(|a, b| a.name().cmp(b.name()));
    let names: Vec<&str> = stopped.iter().map(PluginExited::name).collect();
    assert_eq!(names, ["go-1", "go-2", "rust"]);
    for exited in &stopped {
        assert_eq!(exited.cause(), ExitCause::Stopped);
        assert!(
            exited.exit().status.is_some_and(|s| s.success()),
            "{exited}: not a graceful exit"
        );
    }
    for pid in &pids {
        assert!(!is_our_child(*pid), "{pid} survived close");
    }
    assert_eq!(fixture.leftovers(), Vec::<PathBuf>::new());
    let err = manager.get("go-1").await.expect_err("closed");
    assert!(err.is_closed(), "{err}");
    assert_eq!(manager.state("never-used"), Some(PluginState::Closed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_manager_stops_its_plugins() {
    let fixture = Fixture::new();
    let manager = PluginManager::new();
    manager.register("go", &fixture.go(&[])).expect("register");
    manager.register("rust", &fixture.rust()).expect("register");
    let go = manager.get("go").await.expect("get");
    let rust = manager.get("rust").await.expect("get");
    drop(manager);
    // Handles outlive the manager; they report the stop instead of hanging.
    for handle in [&go, &rust] {
        let exited = handle.wait().await;
        assert_eq!(exited.cause(), ExitCause::Stopped);
        assert!(!is_our_child(handle.pid().expect("pid")));
    }
    let status = say(&rust, "after drop").await.expect_err("stopped");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("was stopped by the host"),
        "{status:?}"
    );
    assert!(
        eventually(|| fixture.children().is_empty()).await,
        "plugins left running: {:?}",
        fixture.children()
    );
}

const ISOLATED: &str = "SPIRE_HOST_LIFECYCLE_ISOLATED";
const CYCLES: usize = 1_000;
const WORKERS: usize = 4;

/// Re-runs this test alone in a fresh copy of the test binary (the cycles below count every
/// process and descriptor of the process they run in, so no other test may share it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(
    clippy::print_stdout,
    reason = "the cycle count, time and leak counts are the report"
)]
async fn load_unload_cycles_leak_nothing() {
    if std::env::var_os(ISOLATED).is_some() {
        return cycles().await;
    }
    let mut command = std::process::Command::new(std::env::current_exe().expect("test binary"));
    command
        .args([
            "host_lifecycle::load_unload_cycles_leak_nothing",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ISOLATED, "1");
    let output =
        tokio::task::spawn_blocking(move || run_with_deadline(command, Duration::from_secs(600)))
            .await
            .expect("runner task");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Vec<&str> = stdout
        .lines()
        .filter_map(|line| line.find("cycles:").map(|at| &line[at..]))
        .collect();
    println!("{}", report.join("\n"));
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "isolated run failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The open descriptors of this process, by number, with what each points at.
fn open_fds() -> BTreeMap<u32, String> {
    fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .flatten()
        .filter_map(|entry| {
            let fd = entry.file_name().to_str()?.parse().ok()?;
            let target = fs::read_link(entry.path()).ok()?;
            Some((fd, target.display().to_string()))
        })
        .collect()
}

/// `CYCLES` times: start a plugin, call it, stop it; `WORKERS` plugins cycle at once. The Go
/// plugin is used because it is the faster one to stop: go-plugin's `Shutdown` stops its server
/// at once, while ours (`interop-plugin`) waits out its 500 ms shutdown grace for the host's
/// connection to close (about 520 ms per cycle against 18 ms).
/// Then nothing may be left: no child process (not even a zombie), not one descriptor more than
/// after a warm-up cycle per worker, and no socket file.
#[allow(
    clippy::print_stdout,
    reason = "the cycle count, time and leak counts are the report"
)]
async fn cycles() {
    let fixture = Fixture::new();
    let manager = PluginManager::new();
    let names: Vec<String> = (0..WORKERS).map(|i| format!("rust-{i}")).collect();
    for name in &names {
        manager
            .register(name.as_str(), &fixture.go(&[]))
            .expect("register");
    }
    let cycle = |manager: PluginManager, name: String, rounds: usize| async move {
        for round in 0..rounds {
            let handle = manager.get(&name).await.expect("get");
            let text = format!("{name} round {round}");
            assert_eq!(
                say(&handle, &text).await.expect("call"),
                format!("echo: {text}")
            );
            let exited = manager
                .unload(&name)
                .await
                .expect("unload")
                .expect("was running");
            assert!(
                exited.exit().status.is_some_and(|s| s.success()),
                "{exited}: not a graceful exit"
            );
        }
    };
    let run = |rounds: usize| {
        let tasks: Vec<_> = names
            .iter()
            .map(|name| tokio::spawn(cycle(manager.clone(), name.clone(), rounds)))
            .collect();
        async move {
            for task in tasks {
                task.await.expect("cycle task");
            }
        }
    };

    // Warm up: the runtime's lazily created parts (the SIGCHLD pipe, the blocking pool) exist
    // from here on, so the baseline below is exact.
    run(1).await;
    let settled = |baseline: &BTreeMap<u32, String>| open_fds().len() <= baseline.len();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline = open_fds();
    let children_before = children_of_self();

    let started = Instant::now();
    run(CYCLES / WORKERS).await;
    let elapsed = started.elapsed();

    // Connections close in the background once the process is gone; give them a moment.
    let fds_settled = eventually(|| settled(&baseline)).await;
    let after = open_fds();
    let children_after = children_of_self();
    let leftovers = fixture.leftovers();
    println!(
        "cycles: {CYCLES} load/unload cycles ({WORKERS} plugins at once) in {elapsed:.2?} \
         ({:.1} ms per cycle per plugin); open fds {} before, {} after; child processes {} \
         before, {} after; socket dir entries after: {}",
        elapsed.as_secs_f64() * 1000.0 * WORKERS as f64 / CYCLES as f64,
        baseline.len(),
        after.len(),
        children_before.len(),
        children_after.len(),
        leftovers.len(),
    );
    let extra: Vec<_> = after
        .iter()
        .filter(|(fd, target)| baseline.get(fd) != Some(target))
        .collect();
    assert!(
        fds_settled,
        "descriptors leaked: {} before, {} after; new or changed: {extra:?}",
        baseline.len(),
        after.len()
    );
    assert!(
        children_after.is_empty(),
        "child processes left (pid → state): {children_after:?}"
    );
    assert!(leftovers.is_empty(), "sockets left: {leftovers:?}");

    manager.close().await;
}
