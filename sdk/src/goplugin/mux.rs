//! go-plugin's gRPC broker multiplexing (`GRPCBrokerMultiplex`, `PLUGIN_MULTIPLEX_GRPC=true`):
//! one raw connection between host and plugin carries a yamux session (the host is the yamux
//! client, the plugin the server), and the main gRPC connection and every brokered connection
//! are yamux streams on it. TLS, when used, runs inside each stream.
//!
//! Two layers, each usable by either role:
//! - [`MuxSession`]: a hashicorp/yamux-compatible session (the `yamux` crate, driven by a
//!   background task) with [`MuxSession::open_stream`] and [`MuxSession::accept_stream`].
//!   Streams are announced to the peer at once (SYN on open, ACK on accept), as hashicorp/yamux
//!   does; its 75 s open timeout kills the session if a stream is never acknowledged.
//! - [`Muxer`]: the broker's view, with go-plugin's positional routing: an accepted stream goes
//!   to the brokered listener of the oldest pending knock ([`Muxer::accept_knock`]), otherwise to
//!   the default sink (the plugin's main gRPC server; a host has none).

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};
use tokio_util::sync::CancellationToken;

use super::transport::{BoxedIo, Io, Listener};

/// How long the plugin waits for the host's connection, and how long broker operations wait
/// for the session to exist (go-plugin's value).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(5);

/// How long closing a session may take to flush its last frames.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The yamux role: the host is the client (odd stream IDs), the plugin the server (even IDs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The side that made the raw connection (the host).
    Client,
    /// The side that accepted it (the plugin).
    Server,
}

/// Failures of multiplexing; texts follow go-plugin where it has one.
#[derive(Debug, thiserror::Error)]
pub enum MuxError {
    /// The host did not connect within [`SESSION_TIMEOUT`].
    #[error("timed out waiting for connection to be established")]
    SessionTimeout,
    /// Accepting the host's connection failed.
    #[error("error establishing yamux session: {0}")]
    Accept(#[source] io::Error),
    /// The session ended (closed by either side, or after a protocol error).
    #[error("yamux session closed")]
    Closed,
    /// The session failed.
    #[error("yamux session failed: {0}")]
    Session(String),
    /// A new outbound stream could not be opened.
    #[error("error dialling new {role} stream: {reason}")]
    Open {
        /// `client` or `server`, as go-plugin words it.
        role: &'static str,
        /// Why.
        reason: String,
    },
}

/// One yamux stream, with tokio's I/O traits.
pub struct MuxStream(Compat<yamux::Stream>);

impl MuxStream {
    fn new(stream: yamux::Stream) -> MuxStream {
        MuxStream(stream.compat())
    }

    /// The yamux stream ID (odd: opened by the client; even: by the server).
    pub fn id(&self) -> u32 {
        self.0.get_ref().id().val()
    }

    /// Sends a frame with no payload, which carries a pending SYN or ACK flag: the `yamux`
    /// crate sends them lazily with the first data, hashicorp/yamux at once.
    async fn announce(&mut self) -> io::Result<()> {
        // An empty write still sends a (zero-length) data frame, carrying the flag.
        poll_fn(|cx| Pin::new(&mut *self).poll_write(cx, &[])).await?;
        self.flush().await
    }
}

impl std::fmt::Debug for MuxStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("MuxStream").field(&self.id()).finish()
    }
}

impl AsyncRead for MuxStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for MuxStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

type OpenReply = oneshot::Sender<Result<yamux::Stream, yamux::ConnectionError>>;

/// A yamux session over one raw connection, compatible with hashicorp/yamux v0.1.x. Cheap to
/// clone; the session lives until [`close`](Self::close) or until the connection ends.
#[derive(Clone)]
pub struct MuxSession {
    inner: Arc<SessionInner>,
}

struct SessionInner {
    role: Role,
    opens: mpsc::UnboundedSender<OpenReply>,
    inbound: tokio::sync::Mutex<mpsc::UnboundedReceiver<yamux::Stream>>,
    close: CancellationToken,
    ended: CancellationToken,
    /// Why the session ended, once it has: `None` for a clean end.
    failure: Mutex<Option<String>>,
}

impl std::fmt::Debug for MuxSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MuxSession")
            .field("role", &self.inner.role)
            .field("ended", &self.inner.ended.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl MuxSession {
    /// Runs a yamux session in `role` on `io` (a raw unix or TCP connection).
    pub fn new(io: impl Io, role: Role) -> MuxSession {
        let (opens, opens_rx) = mpsc::unbounded_channel();
        let (inbound_tx, inbound) = mpsc::unbounded_channel();
        let inner = Arc::new(SessionInner {
            role,
            opens,
            inbound: tokio::sync::Mutex::new(inbound),
            close: CancellationToken::new(),
            ended: CancellationToken::new(),
            failure: Mutex::new(None),
        });
        let mode = match role {
            Role::Client => yamux::Mode::Client,
            Role::Server => yamux::Mode::Server,
        };
        let connection =
            yamux::Connection::new(BoxedIo::new(io).compat(), yamux::Config::default(), mode);
        tokio::spawn(drive(connection, opens_rx, inbound_tx, inner.clone()));
        MuxSession { inner }
    }

    /// The host's side: a yamux client on the connection it made.
    pub fn client(io: impl Io) -> MuxSession {
        MuxSession::new(io, Role::Client)
    }

    /// The plugin's side: a yamux server on the connection it accepted.
    pub fn server(io: impl Io) -> MuxSession {
        MuxSession::new(io, Role::Server)
    }

    /// This session's role.
    pub fn role(&self) -> Role {
        self.inner.role
    }

    /// Opens a stream; its SYN is on its way to the peer when this returns, so streams reach
    /// the peer in the order they were opened.
    pub async fn open_stream(&self) -> Result<MuxStream, MuxError> {
        let role = match self.inner.role {
            Role::Client => "client",
            Role::Server => "server",
        };
        let (reply, opened) = oneshot::channel();
        self.inner.opens.send(reply).map_err(|_| MuxError::Closed)?;
        let stream = match opened.await {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => {
                return Err(MuxError::Open {
                    role,
                    reason: err.to_string(),
                });
            }
            Err(_) => return Err(MuxError::Closed),
        };
        let mut stream = MuxStream::new(stream);
        stream.announce().await.map_err(|err| MuxError::Open {
            role,
            reason: err.to_string(),
        })?;
        Ok(stream)
    }

    /// The next stream the peer opened, acknowledged at once; `None` once the session ended.
    pub async fn accept_stream(&self) -> Option<MuxStream> {
        loop {
            let stream = self.inner.inbound.lock().await.recv().await?;
            let mut stream = MuxStream::new(stream);
            match stream.announce().await {
                Ok(()) => return Some(stream),
                Err(err) => tracing::debug!(error = %err, "dropping a yamux stream reset early"),
            }
        }
    }

    /// Closes the session (a GoAway, then the connection); streams end.
    pub fn close(&self) {
        self.inner.close.cancel();
    }

    /// True once the session ended.
    pub fn is_closed(&self) -> bool {
        self.inner.ended.is_cancelled()
    }

    /// Waits until the session ended: `Ok` if closed by either side, otherwise the failure.
    pub async fn closed(&self) -> Result<(), MuxError> {
        self.inner.ended.cancelled().await;
        match self.inner.failure.lock().expect("mux lock").clone() {
            Some(reason) => Err(MuxError::Session(reason)),
            None => Ok(()),
        }
    }
}

/// Runs the yamux connection: opens requested outbound streams and hands inbound ones over,
/// until the connection ends or a close is requested.
async fn drive(
    mut connection: yamux::Connection<Compat<BoxedIo>>,
    mut opens: mpsc::UnboundedReceiver<OpenReply>,
    inbound: mpsc::UnboundedSender<yamux::Stream>,
    inner: Arc<SessionInner>,
) {
    let mut waiting: VecDeque<OpenReply> = VecDeque::new();
    let running =
        poll_fn(|cx| poll_session(&mut connection, cx, &mut opens, &mut waiting, &inbound));
    let outcome = tokio::select! {
        outcome = running => Some(outcome),
        () = inner.close.cancelled() => None,
    };
    let outcome = match outcome {
        Some(outcome) => outcome,
        None => {
            let closing = poll_fn(|cx| connection.poll_close(cx));
            if let Ok(Err(err)) = tokio::time::timeout(CLOSE_TIMEOUT, closing).await {
                tracing::debug!(error = %err, "closing the yamux session");
            }
            Ok(())
        }
    };
    match outcome {
        Ok(()) | Err(yamux::ConnectionError::Closed) => {
            tracing::debug!("yamux session ended");
        }
        Err(err) => {
            tracing::debug!(error = %err, "yamux session failed");
            *inner.failure.lock().expect("mux lock") = Some(err.to_string());
        }
    }
    drop(waiting);
    inner.ended.cancel();
}

fn poll_session(
    connection: &mut yamux::Connection<Compat<BoxedIo>>,
    cx: &mut Context<'_>,
    opens: &mut mpsc::UnboundedReceiver<OpenReply>,
    waiting: &mut VecDeque<OpenReply>,
    inbound: &mpsc::UnboundedSender<yamux::Stream>,
) -> Poll<Result<(), yamux::ConnectionError>> {
    while let Poll::Ready(Some(reply)) = opens.poll_recv(cx) {
        waiting.push_back(reply);
    }
    while let Some(reply) = waiting.front() {
        if reply.is_closed() {
            waiting.pop_front();
            continue;
        }
        match connection.poll_new_outbound(cx) {
            Poll::Ready(Ok(stream)) => {
                if let Some(reply) = waiting.pop_front() {
                    let _ = reply.send(Ok(stream));
                }
            }
            Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
            Poll::Pending => break,
        }
    }
    loop {
        match connection.poll_next_inbound(cx) {
            Poll::Ready(Some(Ok(stream))) => {
                // Nobody accepting any more: the dropped stream is reset.
                let _ = inbound.send(stream);
            }
            Poll::Ready(Some(Err(err))) => return Poll::Ready(Err(err)),
            Poll::Ready(None) => return Poll::Ready(Ok(())),
            Poll::Pending => return Poll::Pending,
        }
    }
}

/// The broker's multiplexer for one side: the session (once it exists), per-ID brokered
/// listeners and pending knocks. Cheap to clone; clones share state.
#[derive(Clone, Default)]
pub struct Muxer {
    inner: Arc<MuxerInner>,
}

struct MuxerInner {
    session: watch::Sender<Option<MuxSession>>,
    routes: Mutex<Routes>,
    next_registration: AtomicU64,
}

impl Default for MuxerInner {
    fn default() -> Self {
        MuxerInner {
            session: watch::Sender::new(None),
            routes: Mutex::new(Routes::default()),
            next_registration: AtomicU64::new(0),
        }
    }
}

#[derive(Default)]
struct Routes {
    /// Brokered IDs whose knock was acknowledged, oldest first; each claims the next stream.
    knocks: VecDeque<u32>,
    /// Listeners by broker ID, with their registration number.
    listeners: HashMap<u32, (u64, mpsc::UnboundedSender<MuxStream>)>,
}

enum Route {
    Brokered(u32, mpsc::UnboundedSender<MuxStream>),
    Unknown(u32),
    Default,
}

impl std::fmt::Debug for Muxer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Muxer")
            .field("session", &self.inner.session.borrow().is_some())
            .finish_non_exhaustive()
    }
}

/// What [`Muxer::serve_plugin`] gives the plugin's main server.
#[derive(Debug)]
pub struct PluginMux {
    /// The main gRPC server's connections (TLS-wrapped when configured).
    pub incoming: ReceiverStream<io::Result<BoxedIo>>,
    /// Resolves when the session could not be set up, failed, or ended.
    pub ended: oneshot::Receiver<Result<(), MuxError>>,
}

impl Muxer {
    /// A muxer without a session yet.
    pub fn new() -> Muxer {
        Muxer::default()
    }

    /// Uses `session` from now on and routes its inbound streams until it ends: to the
    /// brokered listener of the oldest pending knock, else to `default` (or, without one,
    /// resets them).
    pub fn attach(&self, session: MuxSession, default: Option<mpsc::UnboundedSender<MuxStream>>) {
        self.inner.session.send_replace(Some(session.clone()));
        let muxer = self.clone();
        tokio::spawn(async move {
            while let Some(stream) = session.accept_stream().await {
                match muxer.route() {
                    Route::Brokered(id, listener) => {
                        tracing::debug!(broker_id = id, "sending conn to brokered listener");
                        if listener.send(stream).is_err() {
                            tracing::debug!(broker_id = id, "brokered listener went away");
                        }
                    }
                    Route::Unknown(id) => {
                        tracing::debug!(
                            broker_id = id,
                            "received knock on ID that has no listener"
                        );
                    }
                    Route::Default => match &default {
                        Some(sink) => {
                            tracing::debug!("sending conn to default listener");
                            let _ = sink.send(stream);
                        }
                        None => tracing::debug!("unexpected yamux stream without a knock, reset"),
                    },
                }
            }
        });
    }

    fn route(&self) -> Route {
        let mut routes = self.inner.routes.lock().expect("mux lock");
        match routes.knocks.pop_front() {
            Some(id) => match routes.listeners.get(&id) {
                Some((_, listener)) => Route::Brokered(id, listener.clone()),
                None => Route::Unknown(id),
            },
            None => Route::Default,
        }
    }

    /// The plugin side of go-plugin's mux: accepts the host's one connection on `listener`
    /// (within [`SESSION_TIMEOUT`]), runs a yamux server on it, and feeds the streams no knock
    /// claims to the main gRPC server. The listener (and its socket file) is dropped once the
    /// connection is in: the host makes no other.
    pub fn serve_plugin(
        &self,
        listener: Listener,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> PluginMux {
        let (default_tx, default_rx) = mpsc::unbounded_channel();
        let incoming = serve_streams(default_rx, (), tls);
        let (ended_tx, ended) = oneshot::channel();
        let muxer = self.clone();
        tokio::spawn(async move {
            let outcome = async {
                let conn = match tokio::time::timeout(SESSION_TIMEOUT, listener.accept()).await {
                    Ok(Ok(conn)) => conn,
                    Ok(Err(err)) => return Err(MuxError::Accept(err)),
                    Err(_) => return Err(MuxError::SessionTimeout),
                };
                drop(listener);
                tracing::debug!("initial server connection accepted");
                let session = MuxSession::server(conn);
                muxer.attach(session.clone(), Some(default_tx.clone()));
                session.closed().await
            }
            .await;
            let _ = ended_tx.send(outcome);
            // Only now may `incoming` end, so the outcome is there before the server stops.
            drop(default_tx);
        });
        PluginMux { incoming, ended }
    }

    /// The session, waiting up to [`SESSION_TIMEOUT`] for it to be attached.
    pub async fn session(&self) -> Result<MuxSession, MuxError> {
        let mut session = self.inner.session.subscribe();
        match tokio::time::timeout(SESSION_TIMEOUT, session.wait_for(Option::is_some)).await {
            Ok(Ok(session)) => session.clone().ok_or(MuxError::Closed),
            Ok(Err(_)) => Err(MuxError::Closed),
            Err(_) => Err(MuxError::SessionTimeout),
        }
    }

    /// Opens a stream on the session (go-plugin's muxer `Dial`); the caller knocks first.
    pub async fn open_stream(&self) -> Result<MuxStream, MuxError> {
        self.session().await?.open_stream().await
    }

    /// Registers the brokered listener for `id`; it receives the streams that knocks on `id`
    /// claim, and unregisters when dropped.
    pub fn listen(&self, id: u32) -> MuxListener {
        let (tx, streams) = mpsc::unbounded_channel();
        let number = self.inner.next_registration.fetch_add(1, Ordering::Relaxed);
        self.inner
            .routes
            .lock()
            .expect("mux lock")
            .listeners
            .insert(id, (number, tx));
        MuxListener {
            id,
            streams,
            registration: Registration {
                muxer: self.clone(),
                id,
                number,
            },
        }
    }

    /// A knock for `id` arrived: the next inbound stream goes to its listener. Fails (with the
    /// text for the ack's `error`) when `id` has no listener.
    pub fn accept_knock(&self, id: u32) -> Result<(), String> {
        let mut routes = self.inner.routes.lock().expect("mux lock");
        if !routes.listeners.contains_key(&id) {
            return Err(format!("no listener for id {id}"));
        }
        routes.knocks.push_back(id);
        Ok(())
    }

    /// Closes the session, if there is one.
    pub fn close(&self) {
        if let Some(session) = self.inner.session.borrow().as_ref() {
            session.close();
        }
    }
}

/// A brokered listener in multiplexed mode: the streams knocks on its ID claimed.
#[derive(Debug)]
pub struct MuxListener {
    id: u32,
    streams: mpsc::UnboundedReceiver<MuxStream>,
    registration: Registration,
}

impl MuxListener {
    /// The broker ID.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The next stream for this ID; `None` once the muxer is gone.
    pub async fn accept(&mut self) -> Option<MuxStream> {
        self.streams.recv().await
    }

    /// The streams as connections for a tonic server (TLS-wrapped when `tls` is set); the
    /// listener stays registered as long as the stream is alive.
    pub fn incoming(
        self,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> ReceiverStream<io::Result<BoxedIo>> {
        serve_streams(self.streams, self.registration, tls)
    }
}

/// Unregisters a [`MuxListener`] (unless its ID was registered again since).
#[derive(Debug)]
struct Registration {
    muxer: Muxer,
    id: u32,
    number: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut routes = self.muxer.inner.routes.lock().expect("mux lock");
        if routes
            .listeners
            .get(&self.id)
            .is_some_and(|(number, _)| *number == self.number)
        {
            routes.listeners.remove(&self.id);
        }
    }
}

/// Feeds `streams` to a tonic server as connections, after a TLS handshake when `tls` is set
/// (failed handshakes are logged and dropped). `guard` lives as long as the task.
fn serve_streams(
    mut streams: mpsc::UnboundedReceiver<MuxStream>,
    guard: impl Send + 'static,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> ReceiverStream<io::Result<BoxedIo>> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let _guard = guard;
        loop {
            let stream = tokio::select! {
                stream = streams.recv() => stream,
                () = tx.closed() => return,
            };
            let Some(stream) = stream else { return };
            match &tls {
                Some(config) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        match acceptor.accept(stream).await {
                            Ok(stream) => {
                                let _ = tx.send(Ok(BoxedIo::new(stream))).await;
                            }
                            Err(err) => {
                                tracing::debug!(error = %err, "TLS handshake on a yamux stream failed")
                            }
                        }
                    });
                }
                None => {
                    if tx.send(Ok(BoxedIo::new(stream))).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests;
