//! go-plugin's GRPCBroker, the same on both sides: allocate IDs, `accept` (listen on a fresh
//! socket and tell the peer where via `ConnInfo`), `accept_and_serve`, and `dial` (wait up to
//! 5 s for the peer's `ConnInfo`, then connect with the main connection's TLS settings).
//!
//! Every brokered server has an owner: [`Broker::accept_and_serve`] returns a
//! [`BrokeredServer`] that stops the server (and removes its socket) when stopped or dropped, as
//! go-plugin's callers stop the `grpc.Server` they gave `AcceptAndServe`. Connections accepted
//! through [`Broker::accept`] use the broker's own TLS settings ([`BrokerListener::incoming`]),
//! so brokered servers work under AutoMTLS either way.
//!
//! The `ConnInfo` stream itself is carried by `plugin.GRPCBroker/StartStream`: the plugin side
//! serves it ([`BrokerService`]), the host side calls it ([`Broker::run_client`]). Unlike
//! go-plugin, a received `ConnInfo` stays cached for its ID, so the same ID can be dialled again
//! (SPIRE plugins dial host services on ID 1 lazily).
//!
//! With multiplexing ([`Broker::multiplexed`], see [`super::mux`]) no addresses travel: `accept`
//! registers a listener for the ID, and `dial` knocks (`ConnInfo{knock}`), waits up to 5 s for
//! the peer's ack, and opens a yamux stream, which the peer routes to that ID's listener.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::service::{Routes, RoutesBuilder};
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Request, Response, Status, Streaming};

use super::mux::{MuxError, MuxListener, Muxer};
use super::tls;
use super::transport::{
    self, BoxedIo, CutIo, DialError, ListenError, ListenSpec, Listener, OnCut, SocketOptions,
};
use crate::bridge::{BridgedServer, MAX_MESSAGE_SIZE};
use crate::proto::plugin::ConnInfo;
use crate::proto::plugin::conn_info::Knock;
use crate::proto::plugin::grpc_broker_client::GrpcBrokerClient;
use crate::proto::plugin::grpc_broker_server::{GrpcBroker, GrpcBrokerServer};

/// How long `dial` waits for the peer's `ConnInfo` (go-plugin's value).
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a stopping [`BrokeredServer`] lets calls in flight finish before it cuts its
/// connections. (go-plugin's `GracefulStop` waits without a bound; a brokered server that one
/// long-lived stream could keep alive forever is what this type exists to prevent.)
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// TLS settings for brokered connections: the same pins as the main connection.
#[derive(Debug, Clone)]
pub struct BrokerTls {
    /// Used when this side accepts.
    pub server: Arc<rustls::ServerConfig>,
    /// Used when this side dials.
    pub client: Arc<rustls::ClientConfig>,
}

/// Errors of broker operations; texts follow go-plugin where it has one. New variants may be
/// added, so matches need a wildcard arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// No `ConnInfo` for the ID arrived within [`BROKER_DIAL_TIMEOUT`](crate::goplugin::BROKER_DIAL_TIMEOUT).
    #[error("timeout waiting for connection info (broker id {0})")]
    Timeout(u32),
    /// The broker was closed.
    #[error("broker closed")]
    Closed,
    /// The listener for `accept` could not be created.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// Dialling the address the peer sent failed.
    #[error(transparent)]
    Dial(#[from] DialError),
    /// Multiplexed dial: the peer did not acknowledge the knock (in time, or with an error).
    #[error("failed to knock before dialling client: {0}")]
    Knock(String),
    /// Multiplexed: the yamux session failed or does not exist.
    #[error(transparent)]
    Mux(#[from] MuxError),
    /// Multiplexed dial: TLS or HTTP/2 over the new stream failed.
    #[error("connecting over a multiplexed stream (broker id {id}): {reason}")]
    Connect {
        /// The broker ID.
        id: u32,
        /// What went wrong.
        reason: String,
    },
}

/// What [`Broker::accept`] returns: a fresh socket whose address was sent to the peer, or
/// (multiplexed) a registration for the yamux streams the peer's knocks on the ID claim.
///
/// Dropping it (or the [`BrokerIncoming`] made from it) stops listening: the unix socket file
/// is removed and a multiplexed ID is unregistered, so the peer's dials fail from then on.
#[derive(Debug)]
pub struct BrokerListener {
    id: u32,
    source: Source,
    tls: Option<Arc<rustls::ServerConfig>>,
    socket: Option<Arc<SocketFile>>,
}

#[derive(Debug)]
enum Source {
    Socket(Listener),
    Multiplexed(MuxListener),
}

impl Source {
    /// The next raw connection; `None` once no more can come (the muxer is gone).
    async fn accept(&mut self) -> Option<io::Result<BoxedIo>> {
        match self {
            Source::Socket(listener) => Some(listener.accept().await),
            Source::Multiplexed(listener) => listener.accept().await.map(|s| Ok(BoxedIo::new(s))),
        }
    }
}

impl BrokerListener {
    /// The broker ID this listener accepts for.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// True when connections arrive as yamux streams of the multiplexed session, not on a
    /// socket of their own.
    pub fn is_multiplexed(&self) -> bool {
        matches!(self.source, Source::Multiplexed(_))
    }

    /// Connections for a tonic server (`serve_with_incoming…`), TLS-wrapped with the broker's
    /// own settings whenever the main connection uses AutoMTLS, so a peer dialling this ID
    /// through its broker gets the TLS it expects. Failed TLS handshakes are logged at debug and
    /// skipped. Listening stops when the returned stream is dropped.
    pub fn incoming(self) -> BrokerIncoming {
        let (tx, connections) = mpsc::channel(16);
        let stop = CancellationToken::new();
        let accepting = tokio::spawn(accept_loop(self.source, self.tls, tx, stop.clone()));
        BrokerIncoming {
            connections,
            stop,
            accepting: Some(accepting),
            _socket: self.socket,
        }
    }
}

/// The connections of a [`BrokerListener`], for a tonic server: `Stream<Item =
/// io::Result<BoxedIo>>`. Dropping it stops listening (socket file removed, multiplexed ID
/// unregistered); connections already handed out are unaffected.
#[derive(Debug)]
pub struct BrokerIncoming {
    connections: mpsc::Receiver<io::Result<BoxedIo>>,
    stop: CancellationToken,
    accepting: Option<JoinHandle<()>>,
    _socket: Option<Arc<SocketFile>>,
}

impl Stream for BrokerIncoming {
    type Item = io::Result<BoxedIo>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.connections.poll_recv(cx)
    }
}

impl Drop for BrokerIncoming {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Accepts raw connections from `source` until `stop` or until nobody takes them, running the
/// TLS handshake (one task each, so a slow peer holds up no other) when `tls` is set.
async fn accept_loop(
    mut source: Source,
    tls: Option<Arc<rustls::ServerConfig>>,
    tx: mpsc::Sender<io::Result<BoxedIo>>,
    stop: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            next = source.accept() => next,
            () = stop.cancelled() => return,
            () = tx.closed() => return,
        };
        let conn = match next {
            None => return,
            Some(Ok(conn)) => conn,
            Some(Err(err)) => {
                if tx.send(Err(err)).await.is_err() {
                    return;
                }
                // A persistent failure (no file descriptors left) must not spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        match &tls {
            Some(config) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
                let tx = tx.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        accepted = acceptor.accept(conn) => match accepted {
                            Ok(stream) => {
                                let _ = tx.send(Ok(BoxedIo::new(stream))).await;
                            }
                            Err(err) => {
                                tracing::debug!(error = %err, "brokered TLS handshake failed");
                            }
                        },
                        () = stop.cancelled() => {}
                    }
                });
            }
            None => {
                if tx.send(Ok(conn)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// A unix socket made by [`Broker::accept`]: removed from disk and from the broker's list
/// exactly once, when its server stops (or its listener is dropped), or by [`Broker::close`].
#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
    broker: Weak<Inner>,
    removed: AtomicBool,
}

impl SocketFile {
    fn remove(&self) {
        if self.removed.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = std::fs::remove_file(&self.path);
        if let Some(inner) = self.broker.upgrade() {
            let mut files = inner.socket_files.lock().expect("broker lock");
            files.retain(|path| *path != self.path);
        }
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        self.remove();
    }
}

/// A server [`Broker::accept_and_serve`] runs on a broker ID. It serves until [`stop`] is
/// called, this handle is dropped, or the broker closes; then the socket file is removed (or
/// the multiplexed ID unregistered), so the peer's dials of the ID fail, calls in flight get up
/// to [`STOP_GRACE`] to finish, and the remaining connections are cut.
///
/// [`stop`] waits for all of that; dropping starts the same and returns at once. To serve for
/// the broker's whole lifetime (SPIRE's host services on ID 1), keep the handle as long as the
/// broker, or [`detach`](Self::detach) it.
///
/// [`stop`]: Self::stop
#[must_use = "dropping a BrokeredServer stops it at once; keep it while the peer may dial its ID"]
#[derive(Debug)]
pub struct BrokeredServer {
    id: u32,
    /// Cancelled to stop; `None` once detached.
    stop: Option<CancellationToken>,
    task: Option<JoinHandle<()>>,
    socket: Option<Arc<SocketFile>>,
}

impl BrokeredServer {
    /// The broker ID the server is on.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// True once the server has stopped (after [`stop`](Self::stop), a drop, the broker's
    /// close, or the multiplexed session's end).
    pub fn is_stopped(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops the server and waits until it is gone: no longer accepting (socket file removed,
    /// multiplexed ID unregistered), calls in flight finished or, after [`STOP_GRACE`], cut,
    /// and every connection closed.
    pub async fn stop(mut self) {
        self.begin_stop();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Lets the server run until the broker closes, without a handle (go-plugin's
    /// `go broker.AcceptAndServe(…)` with the server never stopped). Use it only for servers
    /// meant to live as long as the broker: every detached server holds a socket until then.
    pub fn detach(mut self) {
        self.stop = None;
        self.task = None;
        self.socket = None;
    }

    fn begin_stop(&mut self) {
        if let Some(stop) = &self.stop {
            stop.cancel();
            if let Some(socket) = &self.socket {
                socket.remove();
            }
        }
    }
}

impl Drop for BrokeredServer {
    fn drop(&mut self) {
        self.begin_stop();
    }
}

/// True when a failed broker or stdio stream is the connection going away in an orderly
/// unload rather than a fault: the peer cancelled the stream, or our side had asked to close
/// (`closing`) and the failure is the transport ending (reset, broken pipe, end of file, HTTP/2
/// GOAWAY or body error, unavailable). Statuses the peer sent (say `Unimplemented`) and TLS
/// failures are faults either way.
pub(crate) fn is_orderly_end(status: &Status, closing: bool) -> bool {
    if status.code() == Code::Cancelled {
        return true;
    }
    if !closing {
        return false;
    }
    if status.code() == Code::Unavailable || connection_ended(status) {
        return true;
    }
    // tonic's text for HTTP/2 errors (GOAWAY, a reset connection, a body cut short), which
    // carries no source to inspect.
    matches!(status.code(), Code::Unknown | Code::Internal)
        && status.message().starts_with("h2 protocol error")
}

/// Whether `status`'s source chain holds an I/O error of a connection that ended.
fn connection_ended(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<io::Error>()
            && matches!(
                io.kind(),
                io::ErrorKind::BrokenPipe
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::NotConnected
            )
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// One side's broker. Cheap to clone; all clones share state.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    next_id: AtomicU32,
    outgoing: mpsc::UnboundedSender<ConnInfo>,
    outgoing_rx: Mutex<Option<mpsc::UnboundedReceiver<ConnInfo>>>,
    received: Mutex<HashMap<u32, ConnInfo>>,
    /// Knock acks by ID, each consumed by one multiplexed dial.
    acks: Mutex<HashMap<u32, ConnInfo>>,
    arrived: Notify,
    listen: ListenSpec,
    sockets: SocketOptions,
    tls: Option<BrokerTls>,
    closed: CancellationToken,
    mux: Option<Muxer>,
    /// Multiplexed dials are sequential: streams are routed by arrival order.
    dial_lock: tokio::sync::Mutex<()>,
    /// Unix sockets made by `accept`, removed by `close`: their listeners' own guards drop in
    /// spawned tasks, which may never run once the process exits.
    socket_files: Mutex<Vec<PathBuf>>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("next_id", &self.inner.next_id.load(Ordering::Relaxed))
            .field("tls", &self.inner.tls.is_some())
            .field("multiplexed", &self.inner.mux.is_some())
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// A broker whose `accept` listens per `listen`/`sockets` and whose connections use `tls`.
    pub fn new(listen: ListenSpec, sockets: SocketOptions, tls: Option<BrokerTls>) -> Broker {
        Broker::build(listen, sockets, tls, None)
    }

    /// A broker that brokers over `muxer`'s yamux session instead of fresh sockets.
    pub fn multiplexed(
        listen: ListenSpec,
        sockets: SocketOptions,
        tls: Option<BrokerTls>,
        muxer: Muxer,
    ) -> Broker {
        Broker::build(listen, sockets, tls, Some(muxer))
    }

    fn build(
        listen: ListenSpec,
        sockets: SocketOptions,
        tls: Option<BrokerTls>,
        mux: Option<Muxer>,
    ) -> Broker {
        let (outgoing, outgoing_rx) = mpsc::unbounded_channel();
        Broker {
            inner: Arc::new(Inner {
                next_id: AtomicU32::new(0),
                outgoing,
                outgoing_rx: Mutex::new(Some(outgoing_rx)),
                received: Mutex::new(HashMap::new()),
                acks: Mutex::new(HashMap::new()),
                arrived: Notify::new(),
                listen,
                sockets,
                tls,
                closed: CancellationToken::new(),
                mux,
                dial_lock: tokio::sync::Mutex::new(()),
                socket_files: Mutex::new(Vec::new()),
            }),
        }
    }

    /// A fresh ID for `accept`: 1, 2, 3… (each side counts on its own, as in go-plugin).
    pub fn next_id(&self) -> u32 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The muxer, when brokering is multiplexed.
    pub fn muxer(&self) -> Option<&Muxer> {
        self.inner.mux.as_ref()
    }

    /// Listens on a fresh socket and tells the peer its address under `id`; multiplexed, only
    /// registers a listener for `id` (the peer knocks before each dial). Serve the connections
    /// with [`BrokerListener::incoming`], which applies this broker's TLS settings.
    pub fn accept(&self, id: u32) -> Result<BrokerListener, BrokerError> {
        if self.inner.closed.is_cancelled() {
            return Err(BrokerError::Closed);
        }
        let tls = self.inner.tls.as_ref().map(|t| t.server.clone());
        if let Some(mux) = &self.inner.mux {
            return Ok(BrokerListener {
                id,
                source: Source::Multiplexed(mux.listen(id)),
                tls,
                socket: None,
            });
        }
        let listener = Listener::bind(&self.inner.listen, &self.inner.sockets)?;
        let socket = listener.socket_path().map(|path| {
            let mut files = self.inner.socket_files.lock().expect("broker lock");
            files.push(path.to_owned());
            Arc::new(SocketFile {
                path: path.to_owned(),
                broker: Arc::downgrade(&self.inner),
                removed: AtomicBool::new(false),
            })
        });
        let info = ConnInfo {
            service_id: id,
            network: listener.network().to_owned(),
            address: listener.address(),
            knock: None,
        };
        self.inner
            .outgoing
            .send(info)
            .map_err(|_| BrokerError::Closed)?;
        Ok(BrokerListener {
            id,
            source: Source::Socket(listener),
            tls,
            socket,
        })
    }

    /// [`accept`](Self::accept)s `id` and serves `services` there (over TLS when the main
    /// connection uses it) until the returned [`BrokeredServer`] is stopped or dropped, or the
    /// broker closes. go-plugin's `AcceptAndServe`, with the stop in the caller's hands.
    ///
    /// ```no_run
    /// # use spire_plugin_sdk::bridge::BridgedServer;
    /// # use spire_plugin_sdk::goplugin::{Broker, BrokerError};
    /// # async fn callback(broker: Broker, services: Vec<BridgedServer>) -> Result<(), BrokerError> {
    /// let id = broker.next_id();
    /// let server = broker.accept_and_serve(id, services)?;
    /// // … tell the peer `id`, let it call back …
    /// server.stop().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn accept_and_serve(
        &self,
        id: u32,
        services: impl IntoIterator<Item = BridgedServer>,
    ) -> Result<BrokeredServer, BrokerError> {
        let mut routes = RoutesBuilder::default();
        for service in services {
            service.register(&mut routes);
        }
        self.accept_and_serve_routes(id, routes.routes())
    }

    /// [`accept_and_serve`](Self::accept_and_serve) for a prepared router: for the SPIRE
    /// layer's host-service sets until they hold [`BridgedServer`]s.
    pub(crate) fn accept_and_serve_routes(
        &self,
        id: u32,
        routes: Routes,
    ) -> Result<BrokeredServer, BrokerError> {
        let listener = self.accept(id)?;
        let socket = listener.socket.clone();
        let mut incoming = listener.incoming();
        let accepting = incoming.accepting.take();
        let stop = self.inner.closed.child_token();
        let cut = CancellationToken::new();
        let severable = cut.clone();
        let incoming = incoming.map(move |conn| {
            // tonic runs each connection on a task of its own, which no shutdown signal can
            // end while a call is in flight: cut them once the grace has run out.
            conn.map(|io| {
                BoxedIo::new(CutIo::new(
                    io,
                    &severable,
                    OnCut::Abort("the brokered server stopped"),
                ))
            })
        });
        let stopping = stop.clone();
        let task = tokio::spawn(async move {
            let server = super::panic::server().serve_with_incoming_shutdown(
                routes.prepare(),
                incoming,
                stopping.clone().cancelled_owned(),
            );
            tokio::pin!(server);
            let result = tokio::select! {
                result = &mut server => result,
                () = async {
                    stopping.cancelled().await;
                    tokio::time::sleep(STOP_GRACE).await;
                } => {
                    tracing::debug!(broker_id = id, "cutting the brokered server's connections");
                    cut.cancel();
                    server.await
                }
            };
            cut.cancel();
            if let Err(err) = result {
                tracing::debug!(error = %err, broker_id = id, "brokered server stopped");
            }
            if let Some(accepting) = accepting {
                let _ = accepting.await;
            }
        });
        Ok(BrokeredServer {
            id,
            stop: Some(stop),
            task: Some(task),
            socket,
        })
    }

    /// Waits up to [`BROKER_DIAL_TIMEOUT`](crate::goplugin::BROKER_DIAL_TIMEOUT) for the peer's `ConnInfo` for `id` and connects to it;
    /// multiplexed, knocks on `id` and connects over a new yamux stream.
    pub async fn dial(&self, id: u32) -> Result<Channel, BrokerError> {
        if self.inner.mux.is_some() {
            return self.dial_multiplexed(id).await;
        }
        let info = self.wait_for(id).await?;
        let tls = self.inner.tls.as_ref().map(|t| t.client.clone());
        Ok(transport::dial(&info.network, &info.address, tls).await?)
    }

    async fn wait_for(&self, id: u32) -> Result<ConnInfo, BrokerError> {
        let deadline = tokio::time::Instant::now() + DIAL_TIMEOUT;
        loop {
            let arrived = self.inner.arrived.notified();
            if let Some(info) = self.lookup(id) {
                return Ok(info);
            }
            tokio::select! {
                () = arrived => {}
                () = self.inner.closed.cancelled() => return Err(BrokerError::Closed),
                () = tokio::time::sleep_until(deadline) => {
                    return self.lookup(id).ok_or(BrokerError::Timeout(id));
                }
            }
        }
    }

    fn lookup(&self, id: u32) -> Option<ConnInfo> {
        self.inner
            .received
            .lock()
            .expect("broker map lock")
            .get(&id)
            .cloned()
    }

    /// Multiplexed dial: the first stream is opened here (so errors are reported as such);
    /// reconnects of the channel knock again.
    async fn dial_multiplexed(&self, id: u32) -> Result<Channel, BrokerError> {
        let first = Mutex::new(Some(self.open_multiplexed(id).await?));
        let broker = self.clone();
        let connector = tower::service_fn(move |_: Uri| {
            let first = first.lock().expect("broker lock").take();
            let broker = broker.clone();
            async move {
                let io = match first {
                    Some(io) => io,
                    None => broker
                        .open_multiplexed(id)
                        .await
                        .map_err(io::Error::other)?,
                };
                Ok::<_, io::Error>(TokioIo::new(io))
            }
        });
        Endpoint::from_static("http://localhost")
            .connect_with_connector(connector)
            .await
            .map_err(|err| BrokerError::Connect {
                id,
                reason: err.to_string(),
            })
    }

    /// Knocks on `id`, waits for the ack, opens a stream and runs TLS over it when configured.
    async fn open_multiplexed(&self, id: u32) -> Result<BoxedIo, BrokerError> {
        let mux = self.inner.mux.as_ref().ok_or(BrokerError::Closed)?;
        let stream = {
            let _sequential = self.inner.dial_lock.lock().await;
            self.knock(id).await?;
            mux.open_stream().await?
        };
        match &self.inner.tls {
            Some(tls) => {
                let connector = tokio_rustls::TlsConnector::from(tls.client.clone());
                let stream = connector
                    .connect(tls::server_name(), stream)
                    .await
                    .map_err(|err| BrokerError::Connect {
                        id,
                        reason: err.to_string(),
                    })?;
                Ok(BoxedIo::new(stream))
            }
            None => Ok(BoxedIo::new(stream)),
        }
    }

    /// Sends a knock for `id` and waits up to [`BROKER_DIAL_TIMEOUT`](crate::goplugin::BROKER_DIAL_TIMEOUT) for its ack.
    async fn knock(&self, id: u32) -> Result<(), BrokerError> {
        // A late ack of an earlier, timed-out knock must not count for this one.
        self.inner.acks.lock().expect("broker lock").remove(&id);
        let knock = ConnInfo {
            service_id: id,
            knock: Some(Knock {
                knock: true,
                ack: false,
                error: String::new(),
            }),
            ..ConnInfo::default()
        };
        self.inner
            .outgoing
            .send(knock)
            .map_err(|_| BrokerError::Closed)?;
        let deadline = tokio::time::Instant::now() + DIAL_TIMEOUT;
        let ack = loop {
            let arrived = self.inner.arrived.notified();
            if let Some(ack) = self.inner.acks.lock().expect("broker lock").remove(&id) {
                break ack;
            }
            tokio::select! {
                () = arrived => {}
                () = self.inner.closed.cancelled() => return Err(BrokerError::Closed),
                () = tokio::time::sleep_until(deadline) => {
                    return Err(BrokerError::Knock(format!(
                        "timeout waiting for multiplexing knock handshake on id {id}"
                    )));
                }
            }
        };
        match ack.knock {
            Some(knock) if knock.error.is_empty() => Ok(()),
            Some(knock) => Err(BrokerError::Knock(format!(
                "failed to knock for id {id}: {}",
                knock.error
            ))),
            None => Err(BrokerError::Knock(format!(
                "handshake failed for multiplexing on id {id}"
            ))),
        }
    }

    /// Answers the peer's knock on `id`: the next inbound stream goes to `id`'s listener.
    fn answer_knock(&self, id: u32) {
        let error = match &self.inner.mux {
            Some(mux) => mux.accept_knock(id).err().unwrap_or_default(),
            None => format!("gRPC broker multiplexing is not enabled (knock on id {id})"),
        };
        if !error.is_empty() {
            tracing::debug!(broker_id = id, %error, "refusing a multiplexing knock");
        }
        let ack = ConnInfo {
            service_id: id,
            knock: Some(Knock {
                knock: true,
                ack: true,
                error,
            }),
            ..ConnInfo::default()
        };
        let _ = self.inner.outgoing.send(ack);
    }

    /// Records a `ConnInfo` the peer sent.
    fn receive(&self, info: ConnInfo) {
        match &info.knock {
            Some(knock) if knock.knock && !knock.ack => {
                self.answer_knock(info.service_id);
                return;
            }
            Some(knock) if knock.ack => {
                self.inner
                    .acks
                    .lock()
                    .expect("broker lock")
                    .insert(info.service_id, info);
                self.inner.arrived.notify_waiters();
                return;
            }
            _ => {}
        }
        self.inner
            .received
            .lock()
            .expect("broker map lock")
            .insert(info.service_id, info);
        self.inner.arrived.notify_waiters();
    }

    /// Stops brokered servers (each as [`BrokeredServer::stop`] does, without waiting), fails
    /// pending and future dials, ends the `ConnInfo` stream and removes the unix sockets `accept`
    /// made.
    pub fn close(&self) {
        self.inner.closed.cancel();
        let files = std::mem::take(&mut *self.inner.socket_files.lock().expect("broker lock"));
        for path in files {
            let _ = std::fs::remove_file(path);
        }
    }

    /// True once [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.is_cancelled()
    }

    /// The outgoing `ConnInfo` stream, ending when the broker closes; `None` if already taken.
    fn take_outgoing(&self) -> Option<impl Stream<Item = ConnInfo> + Send + 'static> {
        let rx = self.inner.outgoing_rx.lock().expect("broker lock").take()?;
        let closed = self.inner.closed.clone();
        Some(UnboundedReceiverStream::new(rx).take_until(closed.cancelled_owned()))
    }

    /// Reads the peer's `ConnInfo`s from `inbound` until it ends or the broker closes.
    fn spawn_reader(&self, mut inbound: Streaming<ConnInfo>) {
        let broker = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    message = inbound.next() => match message {
                        Some(Ok(info)) => broker.receive(info),
                        Some(Err(status)) => {
                            if is_orderly_end(&status, broker.is_closed()) {
                                tracing::debug!(%status, "broker stream ended with the connection");
                            } else {
                                tracing::warn!(%status, "broker stream failed");
                            }
                            return;
                        }
                        None => return,
                    },
                    () = broker.inner.closed.cancelled() => return,
                }
            }
        });
    }

    /// Host side: opens `StartStream` on the plugin's connection and runs it in the background.
    pub fn run_client(&self, channel: Channel) -> Result<(), Status> {
        let outgoing = self
            .take_outgoing()
            .ok_or_else(|| Status::failed_precondition("broker already running"))?;
        let mut client = GrpcBrokerClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        // A Go plugin sends the response headers only with its first ConnInfo, so opening the
        // stream must not be awaited here: that would wait for the plugin's first `accept`.
        let broker = self.clone();
        tokio::spawn(async move {
            match client.start_stream(outgoing).await {
                Ok(response) => broker.spawn_reader(response.into_inner()),
                // Unloading: the plugin went away before it sent anything (a Go plugin answers
                // the stream only with its first ConnInfo).
                Err(status) if is_orderly_end(&status, broker.is_closed()) => {
                    tracing::debug!(%status, "the plugin's broker stream ended with the connection");
                }
                Err(status) => tracing::warn!(%status, "the plugin's broker stream failed"),
            }
        });
        Ok(())
    }

    /// Plugin side: the `plugin.GRPCBroker` service for the main server.
    pub fn service(&self) -> GrpcBrokerServer<BrokerService> {
        GrpcBrokerServer::new(BrokerService {
            broker: self.clone(),
        })
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }
}

/// Serves `plugin.GRPCBroker/StartStream` for a [`Broker`] (plugin side).
#[derive(Debug, Clone)]
pub struct BrokerService {
    broker: Broker,
}

type ConnInfoStream = Pin<Box<dyn Stream<Item = Result<ConnInfo, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl GrpcBroker for BrokerService {
    type StartStreamStream = ConnInfoStream;

    async fn start_stream(
        &self,
        request: Request<Streaming<ConnInfo>>,
    ) -> Result<Response<Self::StartStreamStream>, Status> {
        let outgoing = self
            .broker
            .take_outgoing()
            .ok_or_else(|| Status::failed_precondition("the broker stream is already open"))?;
        self.broker.spawn_reader(request.into_inner());
        Ok(Response::new(Box::pin(outgoing.map(Ok))))
    }
}

#[cfg(test)]
mod tests;
