//! go-plugin's GRPCBroker, the same on both sides: allocate IDs, `accept` (listen on a fresh
//! socket and tell the peer where via `ConnInfo`), `accept_and_serve`, and `dial` (wait up to
//! 5 s for the peer's `ConnInfo`, then connect with the main connection's TLS settings).
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
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::{ReceiverStream, UnboundedReceiverStream};
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Request, Response, Status, Streaming};

use super::mux::{MuxError, MuxListener, Muxer};
use super::tls;
use super::transport::{
    self, BoxedIo, DialError, ListenError, ListenSpec, Listener, SocketOptions,
};
use crate::bridge::MAX_MESSAGE_SIZE;
use crate::proto::plugin::ConnInfo;
use crate::proto::plugin::conn_info::Knock;
use crate::proto::plugin::grpc_broker_client::GrpcBrokerClient;
use crate::proto::plugin::grpc_broker_server::{GrpcBroker, GrpcBrokerServer};

/// How long `dial` waits for the peer's `ConnInfo` (go-plugin's value).
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// TLS settings for brokered connections: the same pins as the main connection.
#[derive(Debug, Clone)]
pub struct BrokerTls {
    /// Used when this side accepts.
    pub server: Arc<rustls::ServerConfig>,
    /// Used when this side dials.
    pub client: Arc<rustls::ClientConfig>,
}

/// Errors of broker operations; texts follow go-plugin where it has one.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// No `ConnInfo` for the ID arrived within [`DIAL_TIMEOUT`].
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

/// What [`Broker::accept`] returns: a fresh socket, or (multiplexed) the yamux streams routed
/// to the ID.
#[derive(Debug)]
pub enum BrokerListener {
    /// A socket whose address was sent to the peer.
    Socket(Listener),
    /// A registration with the muxer.
    Multiplexed(MuxListener),
}

impl BrokerListener {
    /// Connections for a tonic server, TLS-wrapped when `tls` is set.
    pub fn incoming(
        self,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> ReceiverStream<io::Result<BoxedIo>> {
        match self {
            BrokerListener::Socket(listener) => listener.incoming(tls),
            BrokerListener::Multiplexed(listener) => listener.incoming(tls),
        }
    }
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
    socket_files: Mutex<Vec<std::path::PathBuf>>,
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
    /// registers a listener for `id` (the peer knocks before each dial).
    pub fn accept(&self, id: u32) -> Result<BrokerListener, BrokerError> {
        if self.inner.closed.is_cancelled() {
            return Err(BrokerError::Closed);
        }
        if let Some(mux) = &self.inner.mux {
            return Ok(BrokerListener::Multiplexed(mux.listen(id)));
        }
        let listener = Listener::bind(&self.inner.listen, &self.inner.sockets)?;
        if let Some(path) = listener.socket_path() {
            let mut files = self.inner.socket_files.lock().expect("broker lock");
            files.push(path.to_owned());
        }
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
        Ok(BrokerListener::Socket(listener))
    }

    /// [`accept`](Self::accept)s `id` and serves `routes` there (over TLS when the main
    /// connection uses it) until the broker closes.
    pub fn accept_and_serve(&self, id: u32, routes: Routes) -> Result<(), BrokerError> {
        let listener = self.accept(id)?;
        let incoming = listener.incoming(self.inner.tls.as_ref().map(|t| t.server.clone()));
        let closed = self.inner.closed.clone();
        tokio::spawn(async move {
            let result = super::panic::server()
                .serve_with_incoming_shutdown(routes.prepare(), incoming, closed.cancelled_owned())
                .await;
            if let Err(err) = result {
                tracing::debug!(error = %err, broker_id = id, "brokered server stopped");
            }
        });
        Ok(())
    }

    /// Waits up to [`DIAL_TIMEOUT`] for the peer's `ConnInfo` for `id` and connects to it;
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

    /// Sends a knock for `id` and waits up to [`DIAL_TIMEOUT`] for its ack.
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

    /// Stops brokered servers, fails pending and future dials, ends the `ConnInfo` stream and
    /// removes the unix sockets `accept` made.
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
                            tracing::debug!(%status, "broker stream ended with an error");
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
