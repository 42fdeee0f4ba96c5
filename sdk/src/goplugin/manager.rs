//! Many plugins per host: [`PluginManager`] holds named plugins, each described by a
//! [`PluginSpec`] (a [`ClientConfig`] factory plus a [`RestartPolicy`]), starts each one lazily
//! on its first [`get`](PluginManager::get), makes calls to a crashed plugin fail fast with a
//! status naming its exit status and last stderr lines, restarts it when the policy allows, and
//! stops every plugin on [`close`](PluginManager::close) (or, in the background, on drop).
//! It does not reattach to running plugins, poll health, or restart anything eagerly: a crashed
//! plugin is restarted on the next `get`.
//!
//! # Design
//!
//! - **One start per plugin.** Each plugin has a slot guarded by a short, synchronous lock. The
//!   first `get` on an idle slot spawns a *start task* and leaves a [`watch`] receiver in the
//!   slot; every concurrent `get` waits on that receiver, so all of them share one process and
//!   one result. The start runs in its own task, so a caller that gives up (a dropped future,
//!   a timeout) cannot abort a start others are waiting for. A failed start is reported to
//!   every waiter and leaves the slot idle, so the next `get` tries again.
//! - **Ownership.** [`PluginClient::kill`] consumes the client, so one *supervisor task* per
//!   process owns the [`PluginClient`]; it waits for either the process to exit (a crash) or
//!   the manager to ask for a stop (then it runs go-plugin's `Kill`: Shutdown, grace period,
//!   SIGKILL). The client itself publishes how the process ended (a [`PluginExited`], named
//!   after the registered plugin) and removes the unix socket a crashed plugin left behind.
//! - **Fail fast: the client's channel.** [`PluginHandle::channel`] is the client's own
//!   [`PluginChannel`] ([`PluginClient::channel`]), a [`Service`] every generated tonic client
//!   accepts (`EchoClient::new(handle.channel())`): calls fail with `Unavailable` and the exit
//!   info once the process is gone, including calls in flight when it dies. The rules live in
//!   the host module, once; [`PluginHandle::check`] and [`PluginHandle::explain`] use them too.
//! - **Typed exit info.** The failing status's [`source`](std::error::Error::source) is a
//!   [`PluginExited`]; [`PluginExited::from_status`] gets it back, with the [`ExitInfo`].
//! - **Restarts.** With [`RestartPolicy::OnCrash`], a `get` after a crash starts a new process
//!   (waiting out the backoff since the crash), at most `max_restarts` times over the slot's
//!   life; [`unload`](PluginManager::unload) resets the count. Handles to the crashed process
//!   keep failing fast; callers take a fresh handle from `get`.
//! - **Stopping.** [`close`](PluginManager::close) stops every plugin in parallel (go-plugin's
//!   `CleanupClients`) and waits; a start in progress is cancelled (its child gets SIGKILL
//!   from `kill_on_drop` and is reaped by tokio). Dropping the last [`PluginManager`] clone
//!   starts the same stops in the background without waiting; the processes additionally die
//!   with the host through the parent-death signal.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tonic::Status;
#[cfg(doc)]
use tonic::codegen::Service;
use tonic::transport::Channel;

use super::broker::Broker;
use super::handshake::HandshakeLine;
use super::host::{ClientConfig, ExitInfo, ExitWatch, PluginClient, StartError};
pub use super::host::{ExitCause, PluginChannel, PluginExited};

/// Builds a fresh [`ClientConfig`] for each start ([`ClientConfig`] owns its sinks, so it is
/// made anew rather than cloned).
pub type ConfigFactory = Arc<dyn Fn() -> ClientConfig + Send + Sync>;

/// What the manager does when a plugin process exits without being asked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    /// Never restart (SPIRE's behaviour): `get` keeps failing with the crash until the plugin
    /// is [`unload`](PluginManager::unload)ed.
    #[default]
    Never,
    /// Restart on the next `get` after a crash, at most `max_restarts` times over the plugin's
    /// life (reset by [`unload`](PluginManager::unload)).
    OnCrash {
        /// How many restarts are allowed.
        max_restarts: u32,
        /// The least time between a crash and the restart's start; a `get` sooner than that
        /// waits out the rest.
        backoff: Duration,
    },
}

/// How to run one named plugin: the config factory and the restart policy.
#[derive(Clone)]
#[non_exhaustive]
pub struct PluginSpec {
    factory: ConfigFactory,
    restart: RestartPolicy,
}

impl fmt::Debug for PluginSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginSpec")
            .field("restart", &self.restart)
            .finish_non_exhaustive()
    }
}

impl PluginSpec {
    /// A plugin started from the configs `factory` builds (called once per start), with
    /// [`RestartPolicy::Never`].
    ///
    /// ```
    /// use spire_plugin_sdk::goplugin::HandshakeConfig;
    /// use spire_plugin_sdk::goplugin::ClientConfig;
    /// use spire_plugin_sdk::goplugin::PluginSpec;
    ///
    /// let handshake = HandshakeConfig::new(1, "BASIC_PLUGIN", "hello");
    /// let spec = PluginSpec::new(move || ClientConfig::new(handshake.clone(), [1], "/opt/plugins/kv"));
    /// ```
    pub fn new(factory: impl Fn() -> ClientConfig + Send + Sync + 'static) -> Self {
        PluginSpec {
            factory: Arc::new(factory),
            restart: RestartPolicy::Never,
        }
    }

    /// Sets what happens after a crash (default [`RestartPolicy::Never`]).
    ///
    /// ```
    /// # use spire_plugin_sdk::goplugin::HandshakeConfig;
    /// # use spire_plugin_sdk::goplugin::ClientConfig;
    /// use std::time::Duration;
    /// use spire_plugin_sdk::goplugin::{PluginSpec, RestartPolicy};
    /// # let handshake = HandshakeConfig::new(1, "BASIC_PLUGIN", "hello");
    ///
    /// let mut spec = PluginSpec::new(move || ClientConfig::new(handshake.clone(), [1], "/opt/plugins/kv"));
    /// spec.restart(RestartPolicy::OnCrash { max_restarts: 3, backoff: Duration::from_secs(1) });
    /// ```
    pub fn restart(&mut self, policy: RestartPolicy) -> &mut Self {
        self.restart = policy;
        self
    }
}

/// A [`PluginManager`] operation failed. Use the `is_*` accessors to tell the cases apart.
#[derive(Debug, Clone, thiserror::Error)]
#[error(transparent)]
pub struct ManagerError {
    kind: Box<ErrorKind>,
}

#[derive(Debug, Clone, thiserror::Error)]
enum ErrorKind {
    #[error("no plugin named {0:?} is registered")]
    UnknownPlugin(String),
    #[error("a plugin named {0:?} is already registered")]
    AlreadyRegistered(String),
    #[error("the plugin manager is closed")]
    Closed,
    #[error("plugin {0:?} was unloaded while starting")]
    Unloaded(String),
    #[error("failed to launch plugin {name:?}: {source}")]
    Start {
        name: String,
        #[source]
        source: Arc<StartError>,
    },
    #[error("{exited} (restarts used: {restarts})")]
    Crashed {
        #[source]
        exited: PluginExited,
        restarts: u32,
    },
}

impl ManagerError {
    fn new(kind: ErrorKind) -> Self {
        ManagerError {
            kind: Box::new(kind),
        }
    }

    /// No plugin by that name was registered.
    pub fn is_unknown_plugin(&self) -> bool {
        matches!(*self.kind, ErrorKind::UnknownPlugin(_))
    }

    /// The name was registered already.
    pub fn is_already_registered(&self) -> bool {
        matches!(*self.kind, ErrorKind::AlreadyRegistered(_))
    }

    /// The manager was closed (or dropped).
    pub fn is_closed(&self) -> bool {
        matches!(*self.kind, ErrorKind::Closed)
    }

    /// The plugin was unloaded while this start was in progress.
    pub fn is_unloaded(&self) -> bool {
        matches!(*self.kind, ErrorKind::Unloaded(_))
    }

    /// Starting the plugin failed; [`start_error`](Self::start_error) says why.
    pub fn is_start(&self) -> bool {
        matches!(*self.kind, ErrorKind::Start { .. })
    }

    /// The plugin crashed and its restart policy allows no (more) restarts;
    /// [`exited`](Self::exited) says how it ended.
    pub fn is_crashed(&self) -> bool {
        matches!(*self.kind, ErrorKind::Crashed { .. })
    }

    /// The plugin's name, when the error is about one plugin.
    pub fn name(&self) -> Option<&str> {
        match &*self.kind {
            ErrorKind::UnknownPlugin(name)
            | ErrorKind::AlreadyRegistered(name)
            | ErrorKind::Unloaded(name)
            | ErrorKind::Start { name, .. } => Some(name),
            ErrorKind::Crashed { exited, .. } => Some(exited.name()),
            ErrorKind::Closed => None,
        }
    }

    /// Why the start failed, for [`is_start`](Self::is_start) errors.
    pub fn start_error(&self) -> Option<&StartError> {
        match &*self.kind {
            ErrorKind::Start { source, .. } => Some(source),
            _ => None,
        }
    }

    /// How the plugin ended, for [`is_crashed`](Self::is_crashed) errors.
    pub fn exited(&self) -> Option<&PluginExited> {
        match &*self.kind {
            ErrorKind::Crashed { exited, .. } => Some(exited),
            _ => None,
        }
    }
}

impl From<ManagerError> for Status {
    /// `NotFound` for an unknown plugin, `AlreadyExists` for a duplicate, `Unavailable`
    /// otherwise; a crash keeps its [`PluginExited`] as the source.
    fn from(err: ManagerError) -> Status {
        let message = err.to_string();
        match *err.kind {
            ErrorKind::UnknownPlugin(_) => Status::not_found(message),
            ErrorKind::AlreadyRegistered(_) => Status::already_exists(message),
            ErrorKind::Crashed { exited, .. } => {
                let mut status = Status::unavailable(message);
                status.set_source(Arc::new(exited));
                status
            }
            ErrorKind::Closed | ErrorKind::Unloaded(_) | ErrorKind::Start { .. } => {
                Status::unavailable(message)
            }
        }
    }
}

/// Where a registered plugin is in its life, as [`PluginManager::state`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PluginState {
    /// Not running: never started, unloaded, or the last start failed.
    Idle,
    /// A start is in progress (or waiting out a restart backoff).
    Starting,
    /// Running.
    Running {
        /// The process ID.
        pid: Option<u32>,
    },
    /// Crashed and not (yet) restarted.
    Crashed {
        /// How it ended.
        exit: ExitInfo,
    },
    /// The manager is closed.
    Closed,
}

/// Named plugins, started lazily and stopped together. Cheap to clone; all clones share the
/// plugins. Needs a tokio runtime.
///
/// ```no_run
/// # async fn demo(spec: spire_plugin_sdk::goplugin::PluginSpec) -> Result<(), Box<dyn std::error::Error>> {
/// use spire_plugin_sdk::goplugin::PluginManager;
///
/// let manager = PluginManager::new();
/// manager.register("kv", &spec)?;
/// let kv = manager.get("kv").await?; // starts the process on first use
/// kv.ping().await?;
/// // Build typed clients on `kv.channel()`: calls fail fast once the process is gone.
/// manager.close().await; // stops every plugin, in parallel
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default)]
pub struct PluginManager {
    inner: Arc<Inner>,
}

impl fmt::Debug for PluginManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginManager")
            .field("plugins", &self.names())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Inner {
    plugins: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    slots: BTreeMap<String, Arc<Slot>>,
    closed: bool,
}

/// One named plugin.
struct Slot {
    name: String,
    spec: PluginSpec,
    state: Mutex<SlotState>,
}

struct SlotState {
    phase: Phase,
    /// Restarts after crashes since registration or the last unload.
    restarts: u32,
    /// Bumped on every start, so a late start task or supervisor never touches a newer phase.
    generation: u64,
}

type StartResult = Option<Result<PluginHandle, ManagerError>>;

enum Phase {
    Idle,
    Starting {
        done: watch::Receiver<StartResult>,
        cancel: CancellationToken,
    },
    Running {
        handle: PluginHandle,
        /// Dropping or firing it makes the supervisor stop the process.
        stop: oneshot::Sender<()>,
        generation: u64,
    },
    Crashed {
        exited: PluginExited,
        at: Instant,
    },
    Closed,
}

/// What must be awaited to finish stopping one slot.
enum Stopping {
    Nothing,
    Start(watch::Receiver<StartResult>),
    Process(PluginHandle),
}

impl Stopping {
    async fn finish(self) -> Option<PluginExited> {
        match self {
            Stopping::Nothing => None,
            Stopping::Start(mut done) => {
                let _ = done.wait_for(Option::is_some).await;
                None
            }
            Stopping::Process(handle) => Some(handle.wait().await),
        }
    }
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().expect("plugin slot lock")
    }

    /// Leaves `next` in the slot and returns what has to be awaited to stop the old phase.
    fn take(&self, state: &mut SlotState, next: Phase) -> Stopping {
        match std::mem::replace(&mut state.phase, next) {
            Phase::Starting { done, cancel } => {
                cancel.cancel();
                Stopping::Start(done)
            }
            Phase::Running { handle, stop, .. } => {
                let _ = stop.send(());
                Stopping::Process(handle)
            }
            Phase::Idle | Phase::Crashed { .. } | Phase::Closed => Stopping::Nothing,
        }
    }
}

impl PluginManager {
    /// An empty manager.
    pub fn new() -> Self {
        PluginManager::default()
    }

    /// Adds a plugin under `name`; nothing starts until the first [`get`](Self::get).
    pub fn register(&self, name: impl Into<String>, spec: &PluginSpec) -> Result<(), ManagerError> {
        let name = name.into();
        let mut registry = self.registry();
        if registry.closed {
            return Err(ManagerError::new(ErrorKind::Closed));
        }
        if registry.slots.contains_key(&name) {
            return Err(ManagerError::new(ErrorKind::AlreadyRegistered(name)));
        }
        let slot = Slot {
            name: name.clone(),
            spec: spec.clone(),
            state: Mutex::new(SlotState {
                phase: Phase::Idle,
                restarts: 0,
                generation: 0,
            }),
        };
        registry.slots.insert(name, Arc::new(slot));
        Ok(())
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.registry().slots.keys().cloned().collect()
    }

    /// Where the plugin is in its life; `None` if no such plugin is registered.
    pub fn state(&self, name: &str) -> Option<PluginState> {
        let slot = self.registry().slots.get(name).cloned()?;
        let state = slot.lock();
        Some(match &state.phase {
            Phase::Idle => PluginState::Idle,
            Phase::Starting { .. } => PluginState::Starting,
            Phase::Running { handle, .. } => match handle.exited() {
                Some(exited) => PluginState::Crashed {
                    exit: exited.exit().clone(),
                },
                None => PluginState::Running { pid: handle.pid() },
            },
            Phase::Crashed { exited, .. } => PluginState::Crashed {
                exit: exited.exit().clone(),
            },
            Phase::Closed => PluginState::Closed,
        })
    }

    /// A handle to the running plugin, starting it first if needed. Concurrent callers share
    /// one start and its outcome. After a crash, the plugin is restarted if its
    /// [`RestartPolicy`] allows, else this fails with [`ManagerError::is_crashed`]. A failed
    /// start is reported to every waiting caller; the next call tries again.
    pub async fn get(&self, name: &str) -> Result<PluginHandle, ManagerError> {
        let slot = self.slot(name)?;
        let mut done = {
            let mut state = slot.lock();
            // The client publishes a crash as soon as the process is reaped, possibly before the
            // supervisor has moved the slot on: a crashed process is never handed out.
            if let Phase::Running { handle, .. } = &state.phase
                && let Some(exited) = handle.exited()
                && exited.cause() == ExitCause::Crashed
            {
                state.phase = Phase::Crashed {
                    exited,
                    at: Instant::now(),
                };
            }
            match &state.phase {
                Phase::Running { handle, .. } => return Ok(handle.clone()),
                Phase::Starting { done, .. } => done.clone(),
                Phase::Closed => return Err(ManagerError::new(ErrorKind::Closed)),
                Phase::Idle => begin_start(&slot, &mut state, Duration::ZERO),
                Phase::Crashed { exited, at } => match slot.spec.restart {
                    RestartPolicy::OnCrash {
                        max_restarts,
                        backoff,
                    } if state.restarts < max_restarts => {
                        let delay = backoff.saturating_sub(at.elapsed());
                        state.restarts += 1;
                        tracing::info!(
                            plugin = %slot.name,
                            restart = state.restarts,
                            ?delay,
                            "restarting crashed plugin"
                        );
                        begin_start(&slot, &mut state, delay)
                    }
                    _ => {
                        return Err(ManagerError::new(ErrorKind::Crashed {
                            exited: exited.clone(),
                            restarts: state.restarts,
                        }));
                    }
                },
            }
        };
        let result = done.wait_for(Option::is_some).await.map(|r| r.clone());
        match result {
            Ok(Some(result)) => result,
            // The start task always publishes before it ends; a closed channel means the
            // runtime is shutting down.
            _ => Err(ManagerError::new(ErrorKind::Closed)),
        }
    }

    /// Stops the plugin if it is running or starting (go-plugin's `Kill`) and waits for it;
    /// the next [`get`](Self::get) starts it afresh, with its restart count and any crash
    /// forgotten. Returns how the process ended, if there was one.
    pub async fn unload(&self, name: &str) -> Result<Option<PluginExited>, ManagerError> {
        let slot = self.slot(name)?;
        let stopping = {
            let mut state = slot.lock();
            if matches!(state.phase, Phase::Closed) {
                return Err(ManagerError::new(ErrorKind::Closed));
            }
            state.restarts = 0;
            slot.take(&mut state, Phase::Idle)
        };
        Ok(stopping.finish().await)
    }

    /// Stops every plugin in parallel (go-plugin's `CleanupClients`) and waits until all are
    /// gone; starts in progress are cancelled. Afterwards `get` and `register` fail with
    /// [`ManagerError::is_closed`]. Returns how each process that was running ended; a later
    /// (or concurrent) call finds nothing left to stop and returns at once.
    pub async fn close(&self) -> Vec<PluginExited> {
        let stops = self.close_slots();
        futures_util::future::join_all(stops.into_iter().map(Stopping::finish))
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    fn close_slots(&self) -> Vec<Stopping> {
        let mut registry = self.registry();
        registry.closed = true;
        registry
            .slots
            .values()
            .map(|slot| {
                let mut state = slot.lock();
                slot.take(&mut state, Phase::Closed)
            })
            .collect()
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner.plugins.lock().expect("plugin registry lock")
    }

    fn slot(&self, name: &str) -> Result<Arc<Slot>, ManagerError> {
        let registry = self.registry();
        if registry.closed {
            return Err(ManagerError::new(ErrorKind::Closed));
        }
        registry
            .slots
            .get(name)
            .cloned()
            .ok_or_else(|| ManagerError::new(ErrorKind::UnknownPlugin(name.to_owned())))
    }
}

impl Drop for Inner {
    /// Starts stopping every plugin in the background (the supervisors see their stop senders
    /// dropped); nothing waits. Call [`PluginManager::close`] to wait.
    fn drop(&mut self) {
        let registry = self.plugins.get_mut().unwrap_or_else(|e| e.into_inner());
        registry.closed = true;
        for slot in registry.slots.values() {
            let mut state = slot.lock();
            drop(slot.take(&mut state, Phase::Closed));
        }
    }
}

/// Moves the slot to `Starting` and spawns the start task; returns the receiver all callers
/// wait on.
fn begin_start(
    slot: &Arc<Slot>,
    state: &mut SlotState,
    delay: Duration,
) -> watch::Receiver<StartResult> {
    state.generation += 1;
    let (done_tx, done) = watch::channel(None);
    let cancel = CancellationToken::new();
    state.phase = Phase::Starting {
        done: done.clone(),
        cancel: cancel.clone(),
    };
    tokio::spawn(start_task(
        slot.clone(),
        state.generation,
        delay,
        cancel,
        done_tx,
    ));
    done
}

async fn start_task(
    slot: Arc<Slot>,
    generation: u64,
    delay: Duration,
    cancel: CancellationToken,
    done: watch::Sender<StartResult>,
) {
    let start = async {
        tokio::time::sleep(delay).await;
        let mut config = (slot.spec.factory)();
        config.name(slot.name.clone());
        PluginClient::start(config).await
    };
    // Cancelling drops the start future: a spawned child is SIGKILLed (`kill_on_drop`).
    let started = cancel.run_until_cancelled(start).await;
    let result = match started {
        None => Err(cancelled_error(&slot)),
        Some(Err(err)) => {
            let mut state = slot.lock();
            if state.generation == generation && matches!(state.phase, Phase::Starting { .. }) {
                state.phase = Phase::Idle;
            }
            tracing::error!(plugin = %slot.name, error = %err, "plugin failed to start");
            Err(ManagerError::new(ErrorKind::Start {
                name: slot.name.clone(),
                source: Arc::new(err),
            }))
        }
        Some(Ok(client)) => match install(&slot, generation, client) {
            Ok(handle) => Ok(handle),
            Err((client, err)) => {
                // Closed or unloaded after the start finished but before we got the lock.
                client.kill().await;
                Err(err)
            }
        },
    };
    done.send_replace(Some(result));
}

/// Makes a started client the slot's running process, unless the slot moved on meanwhile.
#[allow(
    clippy::result_large_err,
    reason = "the client is handed back to be killed"
)]
fn install(
    slot: &Arc<Slot>,
    generation: u64,
    client: PluginClient,
) -> Result<PluginHandle, (PluginClient, ManagerError)> {
    let mut state = slot.lock();
    if state.generation != generation || !matches!(state.phase, Phase::Starting { .. }) {
        return Err((client, cancelled_error_locked(slot, &state)));
    }
    let (handle, stop) = supervise(client, slot, generation);
    tracing::debug!(plugin = %slot.name, pid = ?handle.pid(), "plugin started");
    state.phase = Phase::Running {
        handle: handle.clone(),
        stop,
        generation,
    };
    Ok(handle)
}

fn cancelled_error(slot: &Slot) -> ManagerError {
    cancelled_error_locked(slot, &slot.lock())
}

fn cancelled_error_locked(slot: &Slot, state: &SlotState) -> ManagerError {
    if matches!(state.phase, Phase::Closed) {
        ManagerError::new(ErrorKind::Closed)
    } else {
        ManagerError::new(ErrorKind::Unloaded(slot.name.clone()))
    }
}

/// Spawns the supervisor that owns `client`; returns the handle for callers and the stop
/// sender for the slot.
fn supervise(
    client: PluginClient,
    slot: &Arc<Slot>,
    generation: u64,
) -> (PluginHandle, oneshot::Sender<()>) {
    let (stop_tx, stop) = oneshot::channel();
    let handle = PluginHandle {
        inner: Arc::new(HandleInner {
            name: slot.name.clone(),
            pid: client.pid(),
            negotiated_version: client.negotiated_version(),
            handshake: client.handshake().clone(),
            broker: client.broker().clone(),
            channel: client.channel(),
            raw_channel: client.raw_channel(),
            exit: client.exit_watch(),
        }),
    };
    tokio::spawn(run_supervisor(client, slot.clone(), generation, stop));
    (handle, stop_tx)
}

async fn run_supervisor(
    client: PluginClient,
    slot: Arc<Slot>,
    generation: u64,
    mut stop: oneshot::Receiver<()>,
) {
    // A dropped sender (the manager is gone) also means stop.
    let crashed = tokio::select! {
        exited = client.wait_exited() => Some(exited),
        _ = &mut stop => None,
    };
    match crashed {
        Some(exited) => {
            tracing::error!(plugin = %slot.name, %exited, "plugin crashed");
            // Closes the broker; the process is already reaped, so this returns at once.
            let _ = client.kill().await;
            let mut state = slot.lock();
            if matches!(state.phase, Phase::Running { generation: g, .. } if g == generation) {
                state.phase = Phase::Crashed {
                    exited,
                    at: Instant::now(),
                };
            }
        }
        None => {
            client.kill().await;
        }
    }
}

/// One running (or exited) plugin process, as [`PluginManager::get`] hands it out. Cheap to
/// clone. The manager owns the process; a handle only talks to it, and keeps reporting how it
/// ended after it is gone (take a fresh handle from `get` after a restart).
#[derive(Debug, Clone)]
pub struct PluginHandle {
    inner: Arc<HandleInner>,
}

#[derive(Debug)]
struct HandleInner {
    name: String,
    pid: Option<u32>,
    negotiated_version: u32,
    handshake: HandshakeLine,
    broker: Broker,
    /// The client's fail-fast channel, and the exit watch it explains with.
    channel: PluginChannel,
    raw_channel: Channel,
    exit: ExitWatch,
}

impl PluginHandle {
    /// The plugin's registered name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The process ID.
    pub fn pid(&self) -> Option<u32> {
        self.inner.pid
    }

    /// The app protocol version the plugin chose.
    pub fn negotiated_version(&self) -> u32 {
        self.inner.negotiated_version
    }

    /// The handshake line the plugin printed.
    pub fn handshake(&self) -> &HandshakeLine {
        &self.inner.handshake
    }

    /// This host's broker for the plugin (closed once the process is gone).
    pub fn broker(&self) -> &Broker {
        &self.inner.broker
    }

    /// The client's channel ([`PluginClient::channel`]) for typed clients
    /// (`FooClient::new(handle.channel())`): fails fast with `Unavailable` and a
    /// [`PluginExited`] source once the process is gone, including calls in flight when it
    /// dies.
    pub fn channel(&self) -> PluginChannel {
        self.inner.channel.clone()
    }

    /// The plain tonic channel (e.g. for a `ClientBridge::client`): no fail-fast; pair it with
    /// [`check`](Self::check) and [`explain`](Self::explain).
    pub fn raw_channel(&self) -> Channel {
        self.inner.raw_channel.clone()
    }

    /// How the process ended, once it has.
    pub fn exited(&self) -> Option<PluginExited> {
        self.inner.exit.exited()
    }

    /// Waits until the process has exited (crashed or stopped).
    pub async fn wait(&self) -> PluginExited {
        self.inner.exit.wait().await
    }

    /// `Ok` while the process runs; once it has exited, the `Unavailable` status calls get.
    pub fn check(&self) -> Result<(), Status> {
        self.inner.exit.check()
    }

    /// For calls made on [`raw_channel`](Self::raw_channel): the status a call through
    /// [`channel`](Self::channel) would have failed with ([`PluginClient::explain`]'s rules).
    pub async fn explain(&self, status: Status) -> Status {
        self.inner.exit.explain(status).await
    }

    /// Checks the plugin's health service (`grpc.health.v1`, service `plugin`), failing fast
    /// like [`channel`](Self::channel).
    pub async fn ping(&self) -> Result<(), Status> {
        super::host::ping(self.channel()).await
    }
}
