//! Sockets for go-plugin connections, used by both sides: listeners chosen by go-plugin's rules
//! (a unix socket `plugin<digits>` in the socket directory, or loopback TCP within a port
//! range), incoming connection streams (optionally TLS-wrapped) for tonic servers, and dialing a
//! `network`/`address` pair into a tonic [`Channel`].

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint, Uri};

use super::env::PortRange;
use super::tls;

/// Where a listener should live.
#[derive(Debug, Clone, Default)]
pub enum ListenSpec {
    /// A unix socket `plugin<random digits>` in `dir` (the temp dir when `None`), chowned to
    /// `group` (a name or numeric gid) and made 0660 when a group is given.
    #[default]
    Unix,
    /// Loopback TCP on the first free port of the range.
    Tcp(PortRange),
}

/// Settings shared by every listener a side creates (main and brokered).
#[derive(Debug, Clone, Default)]
pub struct SocketOptions {
    /// The directory for unix sockets (`PLUGIN_UNIX_SOCKET_DIR`), else the temp dir.
    pub unix_dir: Option<PathBuf>,
    /// The group for unix sockets (`PLUGIN_UNIX_SOCKET_GROUP`).
    pub unix_group: Option<String>,
}

/// The longest path a unix socket address holds: `sun_path` (108 bytes on Linux, 104 on the
/// BSDs and macOS) less its terminating NUL.
pub const MAX_UNIX_SOCKET_PATH: usize = if cfg!(any(target_os = "linux", target_os = "android")) {
    107
} else {
    103
};

/// A unix socket path longer than [`MAX_UNIX_SOCKET_PATH`]: binding it would fail inside the
/// kernel with a bare "invalid argument".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unix socket path {} is {len} bytes long, over the {limit}-byte limit of a unix socket \
     address (sun_path); use a shorter socket directory (PLUGIN_UNIX_SOCKET_DIR or TMPDIR)",
    path.display()
)]
pub struct SocketPathTooLong {
    /// The path.
    pub path: PathBuf,
    /// Its length in bytes.
    pub len: usize,
    /// [`MAX_UNIX_SOCKET_PATH`].
    pub limit: usize,
}

impl SocketPathTooLong {
    /// `Some` when `path` does not fit in a unix socket address.
    pub fn check(path: &Path) -> Option<SocketPathTooLong> {
        let len = path.as_os_str().len();
        (len > MAX_UNIX_SOCKET_PATH).then(|| SocketPathTooLong {
            path: path.to_owned(),
            len,
            limit: MAX_UNIX_SOCKET_PATH,
        })
    }
}

/// Failure to create a listener.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// The socket directory is too long for a unix socket path in it.
    #[error("couldn't bind plugin unix socket: {0}")]
    PathTooLong(SocketPathTooLong),
    /// The unix socket could not be bound.
    #[error("couldn't bind plugin unix socket {path}: {source}")]
    Unix {
        /// The socket path tried.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// No port in the range could be bound.
    #[error("couldn't bind plugin TCP listener")]
    NoPort,
    /// The socket group could not be resolved or applied.
    #[error("couldn't set group {group:?} on plugin socket {path}: {reason}")]
    Group {
        /// The group asked for.
        group: String,
        /// The socket path.
        path: PathBuf,
        /// Why it failed.
        reason: String,
    },
}

/// A bound listener; a unix socket file is removed when this is dropped.
#[derive(Debug)]
pub struct Listener {
    inner: ListenerKind,
    /// Removes the unix socket file on drop.
    _guard: Option<SocketFile>,
}

#[derive(Debug)]
enum ListenerKind {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// Deletes a unix socket path when dropped.
#[derive(Debug)]
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Listener {
    /// Binds a listener per `spec` and `options`.
    pub fn bind(spec: &ListenSpec, options: &SocketOptions) -> Result<Listener, ListenError> {
        match spec {
            ListenSpec::Unix => bind_unix(options),
            ListenSpec::Tcp(range) => bind_tcp(range),
        }
    }

    /// The network name for the handshake and ConnInfo: `unix` or `tcp`.
    pub fn network(&self) -> &'static str {
        match self.inner {
            ListenerKind::Unix(_) => "unix",
            ListenerKind::Tcp(_) => "tcp",
        }
    }

    /// The address for the handshake and ConnInfo: the socket path or `127.0.0.1:port`.
    pub fn address(&self) -> String {
        match &self.inner {
            ListenerKind::Unix(l) => l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
                .unwrap_or_default(),
            ListenerKind::Tcp(l) => l.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        }
    }

    /// The unix socket path, if this is a unix listener.
    pub fn socket_path(&self) -> Option<&Path> {
        self._guard.as_ref().map(|g| g.0.as_path())
    }

    /// Accepts one raw connection.
    pub async fn accept(&self) -> io::Result<BoxedIo> {
        match &self.inner {
            ListenerKind::Unix(l) => Ok(BoxedIo::new(l.accept().await?.0)),
            ListenerKind::Tcp(l) => {
                let (stream, _) = l.accept().await?;
                stream.set_nodelay(true)?;
                Ok(BoxedIo::new(stream))
            }
        }
    }

    /// Turns the listener into a stream of (TLS-wrapped, if `tls` is set) connections for a
    /// tonic server. Failed TLS handshakes are dropped (and logged) without stopping the stream.
    /// The listener (and its socket file) lives as long as the stream.
    pub fn incoming(
        self,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> ReceiverStream<io::Result<BoxedIo>> {
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            loop {
                let conn = tokio::select! {
                    conn = self.accept() => conn,
                    () = tx.closed() => return,
                };
                match (conn, &tls) {
                    (Ok(io), Some(config)) => {
                        let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
                        let tx = tx.clone();
                        tokio::spawn(async move {
                            match acceptor.accept(io).await {
                                Ok(stream) => {
                                    let _ = tx.send(Ok(BoxedIo::new(stream))).await;
                                }
                                Err(err) => {
                                    tracing::debug!(error = %err, "plugin TLS handshake failed")
                                }
                            }
                        });
                    }
                    (Ok(io), None) => {
                        if tx.send(Ok(io)).await.is_err() {
                            return;
                        }
                    }
                    (Err(err), _) => {
                        if tx.send(Err(err)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        ReceiverStream::new(rx)
    }
}

fn bind_unix(options: &SocketOptions) -> Result<Listener, ListenError> {
    let dir = options.unix_dir.clone().unwrap_or_else(std::env::temp_dir);
    // Like go-plugin: a fresh `plugin<digits>` name; retry on the unlikely collision.
    let mut last_err = None;
    for _ in 0..16 {
        let path = dir.join(format!("plugin{}", fastrand::u32(..)));
        if let Some(too_long) = SocketPathTooLong::check(&path) {
            return Err(ListenError::PathTooLong(too_long));
        }
        match UnixListener::bind(&path) {
            Ok(listener) => {
                let guard = SocketFile(path.clone());
                if let Some(group) = &options.unix_group {
                    apply_group(&path, group)?;
                }
                return Ok(Listener {
                    inner: ListenerKind::Unix(listener),
                    _guard: Some(guard),
                });
            }
            Err(err) if err.kind() == io::ErrorKind::AddrInUse => last_err = Some((path, err)),
            Err(source) => return Err(ListenError::Unix { path, source }),
        }
    }
    let (path, source) = last_err.expect("the loop ran at least once");
    Err(ListenError::Unix { path, source })
}

fn apply_group(path: &Path, group: &str) -> Result<(), ListenError> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |reason: String| ListenError::Group {
        group: group.to_owned(),
        path: path.to_owned(),
        reason,
    };
    let gid = match group.parse::<u32>() {
        Ok(gid) => gid,
        Err(_) => match nix::unistd::Group::from_name(group) {
            Ok(Some(found)) => found.gid.as_raw(),
            Ok(None) => return Err(fail("no such group".to_owned())),
            Err(err) => return Err(fail(err.to_string())),
        },
    };
    std::os::unix::fs::chown(path, None, Some(gid)).map_err(|e| fail(e.to_string()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| fail(e.to_string()))
}

fn bind_tcp(range: &PortRange) -> Result<Listener, ListenError> {
    // 0..=0 (no range given) lets the OS pick a port.
    for port in range.min..=range.max {
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port))
            && listener.set_nonblocking(true).is_ok()
            && let Ok(listener) = TcpListener::from_std(listener)
        {
            return Ok(Listener {
                inner: ListenerKind::Tcp(listener),
                _guard: None,
            });
        }
    }
    Err(ListenError::NoPort)
}

/// Any byte stream a go-plugin connection runs on: unix, TCP, or TLS over either.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A boxed [`Io`], accepted by tonic servers as a connection.
pub struct BoxedIo(Pin<Box<dyn Io>>);

impl BoxedIo {
    /// Boxes a stream.
    pub fn new(io: impl Io) -> Self {
        BoxedIo(Box::pin(io))
    }
}

impl std::fmt::Debug for BoxedIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BoxedIo")
    }
}

impl Connected for BoxedIo {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for BoxedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().0.as_mut().poll_read(cx, buf)
    }
}

impl AsyncWrite for BoxedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().0.as_mut().poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().0.as_mut().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().0.as_mut().poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().0.as_mut().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

/// Failure to dial a plugin or brokered address.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// go-plugin accepts only `unix` and `tcp`.
    #[error("unknown address type: {0}")]
    UnknownNetwork(String),
    /// The raw connection failed.
    #[error("connecting to {network} {address}: {source}")]
    Io {
        /// The network.
        network: String,
        /// The address.
        address: String,
        /// The OS error.
        source: io::Error,
    },
    /// The connection or its HTTP/2 setup failed.
    #[error("dialing {network} {address}: {source}")]
    Connect {
        /// The network.
        network: String,
        /// The address.
        address: String,
        /// What went wrong.
        source: tonic::transport::Error,
    },
}

/// Dials `network`/`address` (as sent in a handshake or ConnInfo) into a tonic channel, over
/// TLS when `tls` is set (server name `localhost`, as go-plugin uses). The HTTP authority is
/// `localhost`, whatever the address.
pub async fn dial(
    network: &str,
    address: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Channel, DialError> {
    dial_closable(network, address, tls, CancellationToken::new()).await
}

/// [`dial`], with the channel's connections ended when `close` is cancelled, however many
/// clones of the channel are still held (go-plugin's `ClientConn.Close`): each one reads end
/// of file and fails to write from then on, and no new connection is made.
pub(crate) async fn dial_closable(
    network: &str,
    address: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
    close: CancellationToken,
) -> Result<Channel, DialError> {
    let target = Target::parse(network, address)?;
    let endpoint = Endpoint::from_static("http://localhost")
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true);
    let connector = tower::service_fn(move |_: Uri| {
        let target = target.clone();
        let tls = tls.clone();
        let close = close.clone();
        async move {
            if close.is_cancelled() {
                return Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "the connection to the plugin was closed by the host",
                ));
            }
            let raw = target.connect().await?;
            let io = match tls {
                Some(config) => {
                    let connector = tokio_rustls::TlsConnector::from(config);
                    BoxedIo::new(connector.connect(tls::server_name(), raw).await?)
                }
                None => raw,
            };
            Ok::<_, io::Error>(TokioIo::new(CutIo::new(io, &close, OnCut::EndOfFile)))
        }
    });
    endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|source| DialError::Connect {
            network: network.to_owned(),
            address: address.to_owned(),
            source,
        })
}

/// What a [`CutIo`] does once its token is cancelled.
#[derive(Debug, Clone, Copy)]
pub(crate) enum OnCut {
    /// An orderly close: reads see end of file, writes `BrokenPipe` (the host closing its
    /// connection to a plugin, as go-plugin's `ClientConn.Close`).
    EndOfFile,
    /// A forced stop: reads, writes and flushes fail with `ConnectionAborted` and this message
    /// (a brokered server cutting the connections its graceful stop could not end).
    Abort(&'static str),
}

/// A connection that ends once its token is cancelled, as [`OnCut`] says, however many tasks
/// still hold it; dropping it then closes the socket.
pub(crate) struct CutIo {
    io: BoxedIo,
    cut: Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
    on_cut: OnCut,
}

impl CutIo {
    pub(crate) fn new(io: BoxedIo, token: &CancellationToken, on_cut: OnCut) -> Self {
        CutIo {
            io,
            cut: Box::pin(token.clone().cancelled_owned()),
            on_cut,
        }
    }

    /// True once cut; otherwise registers `cx` to be woken on the cut.
    fn poll_cut(&mut self, cx: &mut Context<'_>) -> bool {
        self.cut.as_mut().poll(cx).is_ready()
    }

    fn aborted(message: &'static str) -> io::Error {
        io::Error::new(io::ErrorKind::ConnectionAborted, message)
    }
}

impl AsyncRead for CutIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poll_cut(cx) {
            return Poll::Ready(match this.on_cut {
                OnCut::EndOfFile => Ok(()),
                OnCut::Abort(message) => Err(CutIo::aborted(message)),
            });
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for CutIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.poll_cut(cx) {
            return Poll::Ready(Err(match this.on_cut {
                OnCut::EndOfFile => io::ErrorKind::BrokenPipe.into(),
                OnCut::Abort(message) => CutIo::aborted(message),
            }));
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let OnCut::Abort(message) = this.on_cut
            && this.poll_cut(cx)
        {
            return Poll::Ready(Err(CutIo::aborted(message)));
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[derive(Debug, Clone)]
enum Target {
    Unix(PathBuf),
    Tcp(String),
}

impl Target {
    fn parse(network: &str, address: &str) -> Result<Target, DialError> {
        match network {
            "unix" => Ok(Target::Unix(PathBuf::from(address))),
            "tcp" => Ok(Target::Tcp(address.to_owned())),
            other => Err(DialError::UnknownNetwork(other.to_owned())),
        }
    }

    async fn connect(&self) -> io::Result<BoxedIo> {
        Ok(match self {
            Target::Unix(path) => BoxedIo::new(UnixStream::connect(path).await?),
            Target::Tcp(addr) => {
                let stream = TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                BoxedIo::new(stream)
            }
        })
    }
}

/// Opens one raw connection to `network`/`address` (for a multiplexed session on top).
pub async fn connect_raw(network: &str, address: &str) -> Result<BoxedIo, DialError> {
    Target::parse(network, address)?
        .connect()
        .await
        .map_err(|source| DialError::Io {
            network: network.to_owned(),
            address: address.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_too_long_socket_dir_is_reported_with_path_length_and_limit() {
        let dir = PathBuf::from(format!("/tmp/{}", "d".repeat(100)));
        let options = SocketOptions {
            unix_dir: Some(dir.clone()),
            unix_group: None,
        };
        let err = Listener::bind(&ListenSpec::Unix, &options).expect_err("path too long");
        let ListenError::PathTooLong(too_long) = &err else {
            panic!("expected PathTooLong, got {err:?}");
        };
        assert!(too_long.path.starts_with(&dir), "{too_long:?}");
        assert_eq!(too_long.len, too_long.path.as_os_str().len());
        assert!(too_long.len > MAX_UNIX_SOCKET_PATH);
        assert_eq!(too_long.limit, MAX_UNIX_SOCKET_PATH);
        let text = err.to_string();
        assert!(
            text.contains(&format!(
                "{} is {} bytes long, over the {MAX_UNIX_SOCKET_PATH}-byte limit",
                too_long.path.display(),
                too_long.len
            )),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_socket_path_at_the_limit_binds() {
        let base = PathBuf::from(format!("/tmp/sock-limit-{}", std::process::id()));
        // `plugin` and at most 10 digits after the separator.
        let room = MAX_UNIX_SOCKET_PATH - base.as_os_str().len() - 1 - "plugin".len() - 10;
        let dir = base.join("d".repeat(room - 1));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let options = SocketOptions {
            unix_dir: Some(dir),
            unix_group: None,
        };
        let listener = Listener::bind(&ListenSpec::Unix, &options).expect("bind");
        assert!(listener.address().len() <= MAX_UNIX_SOCKET_PATH);
        drop(listener);
        let _ = std::fs::remove_dir_all(&base);
    }
}
