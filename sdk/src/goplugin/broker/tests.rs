//! Unit tests for the broker, Rust to Rust over unix sockets in a private directory: brokered
//! servers stopped or dropped leave no socket file behind and refuse further dials, a server
//! stopped mid-stream is cut after the grace period, `accept` + `incoming` gets the broker's
//! AutoMTLS settings, and orderly ends are told from faults. Multiplexed brokers are covered in
//! `mux/tests.rs`; the Go peers in `tests/it`.

use std::path::{Path, PathBuf};

use tonic::transport::Server;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::*;
use crate::bridge::{Role, ServiceInfo};
use crate::goplugin::tls::{self, Identity};

/// A private socket directory, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        let dir = std::env::temp_dir().join(format!("broker-test{}", fastrand::u64(..)));
        std::fs::create_dir(&dir).expect("socket dir");
        Dir(dir)
    }

    fn sockets(&self) -> SocketOptions {
        SocketOptions {
            unix_dir: Some(self.0.clone()),
            unix_group: None,
        }
    }

    /// The socket files in the directory.
    fn count(&self) -> usize {
        count_files(&self.0)
    }
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).expect("read socket dir").count()
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The health service (`""` answers SERVING) as a bridged server.
fn health() -> BridgedServer {
    let info = ServiceInfo {
        full_name: "grpc.health.v1.Health",
        role: Role::Service,
        plugin_type: None,
        side: None,
        proto_file: "grpc/health/v1/health.proto",
    };
    BridgedServer::new(info, |routes| {
        let (_reporter, service) = tonic_health::server::health_reporter();
        routes.add_service(service);
    })
}

async fn healthy(channel: Channel) -> Result<(), Status> {
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?;
    assert_eq!(response.into_inner().status, ServingStatus::Serving as i32);
    Ok(())
}

/// AutoMTLS settings for both sides, each pinning the other's certificate.
fn tls_pair() -> (BrokerTls, BrokerTls) {
    let host = Identity::generate().expect("host identity");
    let plugin = Identity::generate().expect("plugin identity");
    let side = |me: &Identity, peer: &Identity| BrokerTls {
        server: tls::server_config(me, &peer.to_pinned()).expect("server config"),
        client: tls::client_config(me, &peer.to_pinned()).expect("client config"),
    };
    (side(&host, &plugin), side(&plugin, &host))
}

/// A host and a plugin broker with their sockets in `dir`, the plugin's main server carrying
/// the broker stream (plain: only brokered connections use `tls`).
async fn brokers(dir: &Dir, tls: Option<(BrokerTls, BrokerTls)>) -> (Broker, Broker) {
    let (host_tls, plugin_tls) = match tls {
        Some((host, plugin)) => (Some(host), Some(plugin)),
        None => (None, None),
    };
    let plugin = Broker::new(ListenSpec::Unix, dir.sockets(), plugin_tls);
    let main = Listener::bind(&ListenSpec::Unix, &dir.sockets()).expect("main listener");
    let address = main.address();
    let mut routes = RoutesBuilder::default();
    routes.add_service(plugin.service());
    tokio::spawn(
        Server::builder().serve_with_incoming(routes.routes().prepare(), main.incoming(None)),
    );
    let host = Broker::new(ListenSpec::Unix, dir.sockets(), host_tls);
    let channel = transport::dial("unix", &address, None)
        .await
        .expect("main connection");
    host.run_client(channel).expect("broker stream");
    (host, plugin)
}

#[tokio::test]
async fn stopped_servers_leave_no_socket_and_refuse_dials() {
    let dir = Dir::new();
    let (host, plugin) = brokers(&dir, None).await;
    let baseline = dir.count();
    for _ in 0..20 {
        let id = host.next_id();
        let server = host.accept_and_serve(id, [health()]).expect("accept");
        assert_eq!(server.id(), id);
        assert_eq!(dir.count(), baseline + 1, "one socket while serving");
        let channel = plugin.dial(id).await.expect("dial");
        healthy(channel.clone()).await.expect("brokered call");
        server.stop().await;
        assert_eq!(dir.count(), baseline, "stop removes the socket");
        assert!(healthy(channel).await.is_err(), "old channel after stop");
        assert!(
            plugin.dial(id).await.is_err(),
            "dialling a stopped ID must fail"
        );
    }
    assert!(host.inner.socket_files.lock().unwrap().is_empty());
}

#[tokio::test]
async fn dropped_servers_stop_too() {
    let dir = Dir::new();
    let (host, plugin) = brokers(&dir, None).await;
    let baseline = dir.count();
    let mut ids = Vec::new();
    for _ in 0..20 {
        let id = host.next_id();
        let server = host.accept_and_serve(id, [health()]).expect("accept");
        healthy(plugin.dial(id).await.expect("dial"))
            .await
            .expect("brokered call");
        drop(server);
        assert_eq!(dir.count(), baseline, "drop removes the socket at once");
        ids.push(id);
    }
    for id in ids {
        assert!(plugin.dial(id).await.is_err(), "dialling dropped ID {id}");
    }
    // A detached server serves until the broker closes.
    let id = host.next_id();
    host.accept_and_serve(id, [health()])
        .expect("accept")
        .detach();
    healthy(plugin.dial(id).await.expect("dial"))
        .await
        .expect("detached server");
    host.close();
    assert_eq!(dir.count(), baseline, "close removes detached sockets");
}

#[tokio::test]
async fn stop_cuts_calls_that_outlive_the_grace_period() {
    let dir = Dir::new();
    let (host, plugin) = brokers(&dir, None).await;
    let id = host.next_id();
    let server = host.accept_and_serve(id, [health()]).expect("accept");
    let channel = plugin.dial(id).await.expect("dial");
    // A watch stream stays open until the server goes away.
    let mut watch = HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watch")
        .into_inner();
    assert!(watch.message().await.expect("first status").is_some());
    let started = tokio::time::Instant::now();
    tokio::time::timeout(STOP_GRACE * 3, server.stop())
        .await
        .expect("stop returns after the grace period");
    assert!(started.elapsed() >= STOP_GRACE);
    assert!(
        !matches!(watch.message().await, Ok(Some(_))),
        "the stream ends with the server"
    );
}

#[tokio::test]
async fn accepted_listeners_use_the_brokers_tls() {
    let dir = Dir::new();
    let (host, plugin) = brokers(&dir, Some(tls_pair())).await;

    // accept + incoming, with the caller's own server.
    let id = host.next_id();
    let listener = host.accept(id).expect("accept");
    assert_eq!(listener.id(), id);
    assert!(!listener.is_multiplexed());
    let mut routes = RoutesBuilder::default();
    health().register(&mut routes);
    let stop = CancellationToken::new();
    let served = tokio::spawn(Server::builder().serve_with_incoming_shutdown(
        routes.routes().prepare(),
        listener.incoming(),
        stop.clone().cancelled_owned(),
    ));
    healthy(plugin.dial(id).await.expect("dial over TLS"))
        .await
        .expect("call over TLS");
    stop.cancel();
    served.await.expect("server task").expect("server");
    assert!(
        plugin.dial(id).await.is_err(),
        "incoming dropped: socket gone"
    );

    // accept_and_serve, both directions.
    let id = plugin.next_id();
    let server = plugin.accept_and_serve(id, [health()]).expect("accept");
    healthy(host.dial(id).await.expect("dial"))
        .await
        .expect("host calls plugin");
    server.stop().await;
    let id = host.next_id();
    let server = host.accept_and_serve(id, [health()]).expect("accept");
    healthy(plugin.dial(id).await.expect("dial"))
        .await
        .expect("plugin calls host");
    server.stop().await;
}

#[test]
fn orderly_ends_are_told_from_faults() {
    let pipe = Status::from_error(Box::new(io::Error::from(io::ErrorKind::BrokenPipe)));
    let body = Status::unknown("h2 protocol error: error reading a body from connection");
    let cancelled = Status::cancelled("operation was canceled");
    let unimplemented = Status::unimplemented("unknown service plugin.GRPCBroker");
    let tls = Status::from_error(Box::new(io::Error::new(
        io::ErrorKind::InvalidData,
        "invalid peer certificate",
    )));
    // After our own close, the connection going away is orderly…
    assert!(is_orderly_end(&pipe, true));
    assert!(is_orderly_end(&body, true));
    assert!(is_orderly_end(&cancelled, true));
    assert!(is_orderly_end(
        &Status::unavailable("connection closed"),
        true
    ));
    // … a status the peer sent, or a TLS failure, is not.
    assert!(!is_orderly_end(&unimplemented, true));
    assert!(!is_orderly_end(&tls, true));
    // Before any close only the peer's cancel is orderly.
    assert!(is_orderly_end(&cancelled, false));
    assert!(!is_orderly_end(&pipe, false));
    assert!(!is_orderly_end(&body, false));
}
