//! AutoMTLS against Go's own TLS stack: `tests/go/cmd/tlspeer` makes a certificate the way
//! go-plugin does and uses go-plugin's TLS config shape, and our `goplugin::tls` configs must
//! complete a handshake (ALPN `h2`, TLS 1.3 and 1.2) with it in both roles, while each side
//! refuses a certificate other than the pinned one. Also checks that our generated certificate
//! has the same fields as Go's. Needs the Go toolchain; the peer is built into
//! `<target>/go-bin/tlspeer`.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rustls::{CommonState, ProtocolVersion};
use spire_plugin_sdk::goplugin::__private::{
    Identity, PinnedCert, client_config, server_config, server_name,
};
use tokio::io::{
    AsyncBufReadExt as _, AsyncRead, AsyncWrite, AsyncWriteExt as _, BufReader as AsyncBufReader,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use x509_parser::prelude::{FromDer as _, X509Certificate};

use crate::support::go_binary;

/// The longest any single wait on the Go peer may take (it shares a busy machine).
const STEP: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// The Go peer
// ---------------------------------------------------------------------------------------------

/// Which TLS versions the Go peer may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GoTls {
    /// Go's default range, TLS 1.2 to 1.3: 1.3 is negotiated.
    Default,
    /// `MaxVersion: tls.VersionTLS12`.
    Max12,
}

impl GoTls {
    fn expected(self) -> (ProtocolVersion, &'static str) {
        match self {
            Self::Default => (ProtocolVersion::TLSv1_3, "TLS 1.3"),
            Self::Max12 => (ProtocolVersion::TLSv1_2, "TLS 1.2"),
        }
    }
}

/// A running `tlspeer`, followed line by line. Dropping it kills and reaps the process.
#[derive(Debug)]
struct GoPeer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: mpsc::UnboundedReceiver<String>,
    stderr: Arc<Mutex<String>>,
    seen: Vec<String>,
}

impl GoPeer {
    fn spawn(mode: &str, tls: GoTls, env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(go_binary("tlspeer"));
        command
            .arg(mode)
            .env_remove("PLUGIN_CLIENT_CERT")
            .env_remove("TLSPEER_MAX_VERSION")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if tls == GoTls::Max12 {
            command.env("TLSPEER_MAX_VERSION", "1.2");
        }
        let mut child = command.spawn().expect("starting tlspeer");

        let (tx, stdout) = mpsc::unbounded_channel();
        let out = child.stdout.take().expect("stdout is piped");
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("stderr is piped");
        let sink = Arc::clone(&stderr);
        thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            sink.lock().unwrap().push_str(&text);
        });

        Self {
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
            seen: Vec::new(),
        }
    }

    /// What the peer said so far, for failure messages.
    fn transcript(&self) -> String {
        format!(
            "stdout so far: {:#?}\nstderr: {}",
            self.seen,
            self.stderr.lock().unwrap()
        )
    }

    /// The next stdout line; panics if the peer exits or stalls first.
    async fn line(&mut self) -> String {
        match tokio::time::timeout(STEP, self.stdout.recv()).await {
            Ok(Some(line)) => {
                self.seen.push(line.clone());
                line
            }
            Ok(None) => panic!("tlspeer closed stdout early\n{}", self.transcript()),
            Err(_) => panic!(
                "tlspeer printed nothing for {STEP:?}\n{}",
                self.transcript()
            ),
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is still open");
        writeln!(stdin, "{line}").expect("writing to tlspeer's stdin");
        stdin.flush().expect("flushing tlspeer's stdin");
    }

    /// Reads stdout to its end, then reaps the process: the remaining lines and the status.
    async fn finish(&mut self) -> (Vec<String>, ExitStatus) {
        let mut rest = Vec::new();
        loop {
            match tokio::time::timeout(STEP, self.stdout.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    rest.push(line);
                }
                Ok(None) => break,
                Err(_) => panic!(
                    "tlspeer did not exit within {STEP:?}\n{}",
                    self.transcript()
                ),
            }
        }
        // Stdout is closed, so the process is exiting; this wait is immediate.
        let status = self.child.wait().expect("waiting for tlspeer");
        (rest, status)
    }
}

impl Drop for GoPeer {
    fn drop(&mut self) {
        // Harmless if it already exited; reaps it either way.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fields 4 and 6 of a go-plugin handshake line: the address and the certificate.
fn parse_handshake(line: &str) -> (String, String) {
    let fields: Vec<&str> = line.trim().split('|').collect();
    assert_eq!(
        fields.len(),
        6,
        "a go-plugin handshake line without mux: {line}"
    );
    assert_eq!(&fields[..3], &["1", "1", "tcp"], "{line}");
    assert_eq!(fields[4], "grpc", "{line}");
    assert!(
        !fields[5].ends_with('='),
        "Go writes field 6 unpadded: {line}"
    );
    (fields[3].to_owned(), fields[5].to_owned())
}

/// The PEM certificate in a `cert <base64 of PEM>` line.
fn parse_cert_line(line: &str) -> String {
    let b64 = line
        .strip_prefix("cert ")
        .unwrap_or_else(|| panic!("expected `cert <base64>`, got {line:?}"));
    String::from_utf8(STANDARD.decode(b64).expect("base64")).expect("PEM is text")
}

fn identity() -> Identity {
    Identity::generate().expect("generating an AutoMTLS identity")
}

/// The text of an I/O error from tokio-rustls, with the rustls error found inside.
fn error_text(error: &std::io::Error) -> String {
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => tls.to_string(),
        None => error.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Successful handshakes, both directions
// ---------------------------------------------------------------------------------------------

/// The negotiated session: ALPN `h2`, the expected TLS version, the pinned peer certificate.
fn check_session(session: &CommonState, tls: GoTls, peer: &PinnedCert) {
    assert_eq!(session.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(session.protocol_version(), Some(tls.expected().0));
    assert_eq!(session.peer_certificates().unwrap(), [peer.der().clone()]);
}

/// Sends a line, expects tlspeer's echo, and then tlspeer's account of a good session.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, go: &mut GoPeer, tls: GoTls) {
    stream.write_all(b"hello from rust\n").await.unwrap();
    stream.flush().await.unwrap();
    let mut reply = String::new();
    AsyncBufReader::new(stream)
        .read_line(&mut reply)
        .await
        .unwrap();
    assert_eq!(reply, "echo: hello from rust\n");

    let (lines, status) = go.finish().await;
    let go_version = tls.expected().1;
    assert_eq!(
        lines,
        [
            format!("handshake ok version={go_version} alpn=h2"),
            "echoed hello from rust".to_owned(),
        ]
    );
    assert!(status.success(), "{status}\n{}", go.transcript());
}

/// Go as the plugin (TLS server), Rust as the host (TLS client): the main connection.
async fn go_server_rust_client(tls: GoTls) {
    let host = identity();
    let mut go = GoPeer::spawn("server", tls, &[("PLUGIN_CLIENT_CERT", host.cert_pem())]);
    let (addr, cert) = parse_handshake(&go.line().await);
    let pin = PinnedCert::from_handshake(&cert).expect("Go's field 6 pins");

    let tcp = TcpStream::connect(&addr)
        .await
        .expect("connecting to tlspeer");
    let connector = TlsConnector::from(client_config(&host, &pin).unwrap());
    let mut stream = match connector.connect(server_name(), tcp).await {
        Ok(stream) => stream,
        Err(e) => panic!(
            "Rust client handshake failed: {}\n{}",
            error_text(&e),
            go.transcript()
        ),
    };
    check_session(stream.get_ref().1, tls, &pin);
    exchange(&mut stream, &mut go, tls).await;
}

/// Go as the host (TLS client), Rust as the plugin (TLS server).
async fn rust_server_go_client(tls: GoTls) {
    let mut go = GoPeer::spawn("client", tls, &[]);
    let host_pin = PinnedCert::from_pem(&parse_cert_line(&go.line().await))
        .expect("Go's PEM certificate pins");
    let plugin = identity();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    go.send(&format!("{addr}|{}", plugin.handshake_cert()));

    let (tcp, _) = tokio::time::timeout(STEP, listener.accept())
        .await
        .unwrap_or_else(|_| panic!("tlspeer never dialed\n{}", go.transcript()))
        .unwrap();
    let acceptor = TlsAcceptor::from(server_config(&plugin, &host_pin).unwrap());
    let mut stream = match acceptor.accept(tcp).await {
        Ok(stream) => stream,
        Err(e) => panic!(
            "Rust server handshake failed: {}\n{}",
            error_text(&e),
            go.transcript()
        ),
    };
    check_session(stream.get_ref().1, tls, &host_pin);
    exchange(&mut stream, &mut go, tls).await;
}

#[tokio::test]
async fn go_server_accepts_rust_client_tls13() {
    go_server_rust_client(GoTls::Default).await;
}

#[tokio::test]
async fn go_server_accepts_rust_client_tls12() {
    go_server_rust_client(GoTls::Max12).await;
}

#[tokio::test]
async fn rust_server_accepts_go_client_tls13() {
    rust_server_go_client(GoTls::Default).await;
}

#[tokio::test]
async fn rust_server_accepts_go_client_tls12() {
    rust_server_go_client(GoTls::Max12).await;
}

// ---------------------------------------------------------------------------------------------
// Refusals: each side accepts only the pinned certificate
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn go_server_rejects_rust_client_with_unpinned_cert() {
    let (host, stranger) = (identity(), identity());
    let mut go = GoPeer::spawn(
        "server",
        GoTls::Default,
        &[("PLUGIN_CLIENT_CERT", host.cert_pem())],
    );
    let (addr, cert) = parse_handshake(&go.line().await);
    let pin = PinnedCert::from_handshake(&cert).unwrap();

    // The stranger trusts the Go server, but Go expects the host's certificate.
    let tcp = TcpStream::connect(&addr).await.unwrap();
    let connector = TlsConnector::from(client_config(&stranger, &pin).unwrap());
    let outcome = match connector.connect(server_name(), tcp).await {
        // In TLS 1.3 the client finishes first and hears of the refusal on its next read.
        Ok(mut stream) => {
            let mut line = String::new();
            AsyncBufReader::new(&mut stream)
                .read_line(&mut line)
                .await
                .map(|_| line)
        }
        Err(e) => Err(e),
    };
    let error = outcome.expect_err("Go must refuse the unpinned client certificate");
    // Go's server answers an unknown authority with `unknown_ca` (its client, below, with
    // `bad_certificate`).
    assert_eq!(
        error_text(&error),
        "received fatal alert: UnknownCA",
        "{}",
        go.transcript()
    );

    let (lines, status) = go.finish().await;
    assert!(!status.success());
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("handshake error: tls: failed to verify certificate: x509: certificate signed by unknown authority"),
        "{lines:?}"
    );
}

#[tokio::test]
async fn rust_client_rejects_go_server_with_unpinned_cert() {
    let (host, stranger) = (identity(), identity());
    let mut go = GoPeer::spawn(
        "server",
        GoTls::Default,
        &[("PLUGIN_CLIENT_CERT", host.cert_pem())],
    );
    let (addr, _cert) = parse_handshake(&go.line().await);

    // The host pins some other certificate instead of the one Go announced.
    let tcp = TcpStream::connect(&addr).await.unwrap();
    let connector = TlsConnector::from(client_config(&host, &stranger.to_pinned()).unwrap());
    let error = connector
        .connect(server_name(), tcp)
        .await
        .expect_err("the Rust client must refuse the Go server's certificate");
    assert_eq!(
        error_text(&error),
        "invalid peer certificate: UnknownIssuer"
    );

    let (lines, status) = go.finish().await;
    assert!(!status.success());
    assert_eq!(
        lines,
        ["handshake error: remote error: tls: unknown certificate authority"]
    );
}

#[tokio::test]
async fn rust_server_rejects_go_client_with_unpinned_cert() {
    let mut go = GoPeer::spawn("client", GoTls::Default, &[]);
    let _go_cert = parse_cert_line(&go.line().await);
    let (plugin, stranger) = (identity(), identity());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    go.send(&format!(
        "{}|{}",
        listener.local_addr().unwrap(),
        plugin.handshake_cert()
    ));

    // The plugin pins some other host certificate than the Go client's.
    let (tcp, _) = tokio::time::timeout(STEP, listener.accept())
        .await
        .expect("tlspeer dials")
        .unwrap();
    let acceptor = TlsAcceptor::from(server_config(&plugin, &stranger.to_pinned()).unwrap());
    let error = acceptor
        .accept(tcp)
        .await
        .expect_err("the Rust server must refuse the Go client's certificate");
    assert_eq!(
        error_text(&error),
        "invalid peer certificate: UnknownIssuer"
    );

    let (lines, status) = go.finish().await;
    assert!(!status.success());
    // TLS 1.3: Go's client finishes its handshake before the server judges its certificate,
    // so it hears of the refusal when it reads.
    assert_eq!(
        lines,
        [
            "handshake ok version=TLS 1.3 alpn=h2",
            "read error: remote error: tls: unknown certificate authority",
        ],
        "{}",
        go.transcript()
    );
}

#[tokio::test]
async fn go_client_rejects_rust_server_with_unpinned_cert() {
    let mut go = GoPeer::spawn("client", GoTls::Default, &[]);
    let host_pin = PinnedCert::from_pem(&parse_cert_line(&go.line().await)).unwrap();
    let (plugin, stranger) = (identity(), identity());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    // Go is told to expect the stranger's certificate; the server presents the plugin's.
    go.send(&format!(
        "{}|{}",
        listener.local_addr().unwrap(),
        stranger.handshake_cert()
    ));

    let (tcp, _) = tokio::time::timeout(STEP, listener.accept())
        .await
        .expect("tlspeer dials")
        .unwrap();
    let acceptor = TlsAcceptor::from(server_config(&plugin, &host_pin).unwrap());
    let error = acceptor
        .accept(tcp)
        .await
        .expect_err("Go must refuse the Rust server's certificate");
    assert_eq!(error_text(&error), "received fatal alert: BadCertificate");

    let (lines, status) = go.finish().await;
    assert!(!status.success());
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("handshake error: tls: failed to verify certificate: x509: certificate signed by unknown authority"),
        "{lines:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Certificate shape
// ---------------------------------------------------------------------------------------------

/// Everything about a certificate that go-plugin fixes, as text; the validity length apart.
fn shape(der: &[u8]) -> (String, i64) {
    let (rest, cert) = X509Certificate::from_der(der).expect("certificate parses");
    assert!(rest.is_empty());
    let spki = cert.public_key();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|oid| oid.to_id_string());
    let mut extensions: Vec<String> = cert
        .extensions()
        .iter()
        .map(|ext| format!("{} critical={}", ext.oid.to_id_string(), ext.critical))
        .collect();
    extensions.sort();
    let serial = cert.raw_serial();
    let serial = serial.strip_prefix(&[0]).unwrap_or(serial);
    let text = format!(
        "version {}\nsignature {}\nkey {} {:?}\nsubject {}\nissuer {}\nserial <= 128 bits: {}\n\
         san {:?}\nbasic constraints {:?}\nkey usage {}\nextended key usage {:?}\nextensions {:#?}",
        cert.version().0,
        cert.signature_algorithm.algorithm.to_id_string(),
        spki.algorithm.algorithm.to_id_string(),
        curve,
        cert.subject(),
        cert.issuer(),
        serial.len() <= 16,
        cert.subject_alternative_name().unwrap().map(|san| san
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()),
        cert.basic_constraints()
            .unwrap()
            .map(|bc| format!("{:?}", bc.value)),
        cert.key_usage()
            .unwrap()
            .map(|ku| ku.value.to_string())
            .unwrap_or_default(),
        cert.extended_key_usage().unwrap().map(|eku| (
            eku.value.server_auth,
            eku.value.client_auth,
            eku.value.any,
            eku.value.other.len(),
        )),
        extensions,
    );
    let lifetime = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    (text, lifetime)
}

#[tokio::test]
async fn rust_cert_has_the_shape_of_go_plugins() {
    let mut go = GoPeer::spawn("gencert", GoTls::Default, &[]);
    let go_pem = parse_cert_line(&go.line().await);
    let (_, status) = go.finish().await;
    assert!(status.success());

    let go_cert = PinnedCert::from_pem(&go_pem).unwrap();
    let (go_shape, go_lifetime) = shape(go_cert.der());
    let (rust_shape, rust_lifetime) = shape(identity().cert_der());
    assert_eq!(rust_shape, go_shape);
    assert!(
        (rust_lifetime - go_lifetime).abs() <= 1,
        "lifetimes {rust_lifetime} s (Rust) and {go_lifetime} s (Go) differ"
    );
    assert!(
        go_shape.contains("subject O=HashiCorp, CN=localhost"),
        "{go_shape}"
    );
    assert!(
        go_shape.contains("1.3.132.0.35"),
        "Go's key is P-521:\n{go_shape}"
    );
}
