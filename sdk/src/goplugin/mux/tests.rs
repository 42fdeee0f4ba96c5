//! Unit tests for multiplexing, Rust to Rust over an in-memory pipe: yamux streams in both
//! directions past the flow-control window, go-plugin's positional knock routing, and two
//! multiplexed brokers (a host and a plugin) accepting and dialling each other. Interop with
//! go-plugin's hashicorp/yamux lives in `tests/it/goplugin_matrix.rs`.

use std::io;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::service::RoutesBuilder;
use tonic::transport::{Channel, Endpoint, Server, Uri};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::*;
use crate::goplugin::broker::{Broker, BrokerError};
use crate::goplugin::transport::{ListenSpec, SocketOptions};

/// A client and a server session joined by an in-memory pipe.
fn sessions() -> (MuxSession, MuxSession) {
    let (host, plugin) = tokio::io::duplex(64 * 1024);
    (MuxSession::client(host), MuxSession::server(plugin))
}

/// 1 MiB, four times a stream's initial window.
fn payload(seed: u8) -> Vec<u8> {
    (0..1024 * 1024).map(|i| (i % 251) as u8 ^ seed).collect()
}

async fn echo_back(mut stream: MuxStream, len: usize) {
    let mut buf = vec![0; len];
    stream.read_exact(&mut buf).await.expect("reading");
    stream.write_all(&buf).await.expect("writing back");
    stream.flush().await.expect("flushing");
}

async fn round_trip(stream: &mut MuxStream, data: &[u8]) -> Vec<u8> {
    stream.write_all(data).await.expect("writing");
    stream.flush().await.expect("flushing");
    let mut back = vec![0; data.len()];
    stream.read_exact(&mut back).await.expect("reading back");
    back
}

#[tokio::test]
async fn streams_carry_data_past_the_window_both_ways() {
    let (client, server) = sessions();
    let data = payload(1);

    // Opened by the client (odd IDs), echoed by the server.
    let echo = tokio::spawn({
        let server = server.clone();
        let len = data.len();
        async move { echo_back(server.accept_stream().await.expect("a stream"), len).await }
    });
    let mut stream = client.open_stream().await.expect("opening");
    assert_eq!(stream.id() % 2, 1);
    assert_eq!(round_trip(&mut stream, &data).await, data);
    echo.await.expect("echo task");

    // Opened by the server (even IDs), echoed by the client.
    let echo = tokio::spawn({
        let client = client.clone();
        let len = data.len();
        async move { echo_back(client.accept_stream().await.expect("a stream"), len).await }
    });
    let mut stream = server.open_stream().await.expect("opening");
    assert_eq!(stream.id() % 2, 0);
    assert_eq!(round_trip(&mut stream, &data).await, data);
    echo.await.expect("echo task");

    client.close();
    assert!(client.closed().await.is_ok());
    assert!(server.closed().await.is_ok());
    assert!(server.accept_stream().await.is_none());
    assert!(matches!(server.open_stream().await, Err(MuxError::Closed)));
}

/// Opens a stream and sends `tag`, so the receiving side can tell streams apart.
async fn open_tagged(session: &MuxSession, tag: u8) -> MuxStream {
    let mut stream = session.open_stream().await.expect("opening");
    stream.write_all(&[tag]).await.expect("tagging");
    stream.flush().await.expect("flushing");
    stream
}

async fn tag_of(stream: Option<MuxStream>) -> u8 {
    let mut stream = stream.expect("a routed stream");
    let mut tag = [0];
    stream.read_exact(&mut tag).await.expect("reading the tag");
    tag[0]
}

#[tokio::test]
async fn knocks_claim_the_next_stream_in_order() {
    let (client, server) = sessions();
    let muxer = Muxer::new();
    let (default_tx, mut default) = mpsc::unbounded_channel();
    muxer.attach(server, Some(default_tx));
    let mut seven = muxer.listen(7);
    let mut eight = muxer.listen(8);

    assert_eq!(
        muxer.accept_knock(9),
        Err("no listener for id 9".to_owned())
    );

    let _a = open_tagged(&client, b'a').await;
    assert_eq!(tag_of(default.recv().await).await, b'a');

    // Two knocks pending: the next two streams go to 8, then 7; the one after to the default.
    muxer.accept_knock(8).expect("8 listens");
    muxer.accept_knock(7).expect("7 listens");
    let _b = open_tagged(&client, b'b').await;
    let _c = open_tagged(&client, b'c').await;
    let _d = open_tagged(&client, b'd').await;
    assert_eq!(tag_of(eight.accept().await).await, b'b');
    assert_eq!(tag_of(seven.accept().await).await, b'c');
    assert_eq!(tag_of(default.recv().await).await, b'd');

    assert_eq!(seven.id(), 7);
    drop(seven);
    assert_eq!(
        muxer.accept_knock(7),
        Err("no listener for id 7".to_owned())
    );
    // A newer registration of an ID survives the drop of an older one.
    let old = muxer.listen(8);
    drop(eight);
    assert!(muxer.accept_knock(8).is_ok());
    drop(old);
}

/// A health service (`""` reports SERVING) as a bridged server.
fn health() -> crate::bridge::BridgedServer {
    let info = crate::bridge::ServiceInfo {
        full_name: "grpc.health.v1.Health",
        role: crate::bridge::Role::Service,
        plugin_type: None,
        side: None,
        proto_file: "grpc/health/v1/health.proto",
    };
    crate::bridge::BridgedServer::new(info, |routes| {
        let (_reporter, service) = tonic_health::server::health_reporter();
        routes.add_service(service);
    })
}

async fn healthy(channel: Channel) -> bool {
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health check");
    response.into_inner().status == ServingStatus::Serving as i32
}

/// A host (yamux client) and a plugin (yamux server) with multiplexed brokers, the plugin's
/// main gRPC server carrying the broker stream, as go-plugin sets them up.
async fn brokers() -> (Broker, Broker) {
    let (host_session, plugin_session) = sessions();

    let plugin_muxer = Muxer::new();
    let (main_tx, main_rx) = mpsc::unbounded_channel();
    plugin_muxer.attach(plugin_session, Some(main_tx));
    let plugin = Broker::multiplexed(
        ListenSpec::Unix,
        SocketOptions::default(),
        None,
        plugin_muxer,
    );
    let mut routes = RoutesBuilder::default();
    routes.add_service(plugin.service());
    let main = serve_streams(main_rx, (), None);
    tokio::spawn(Server::builder().serve_with_incoming(routes.routes().prepare(), main));

    let host_muxer = Muxer::new();
    host_muxer.attach(host_session, None);
    let host = Broker::multiplexed(
        ListenSpec::Unix,
        SocketOptions::default(),
        None,
        host_muxer.clone(),
    );
    let connector = tower::service_fn(move |_: Uri| {
        let muxer = host_muxer.clone();
        async move {
            let stream = muxer.open_stream().await.map_err(io::Error::other)?;
            Ok::<_, io::Error>(TokioIo::new(stream))
        }
    });
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(connector)
        .await
        .expect("the main connection");
    host.run_client(channel).expect("the broker stream");
    (host, plugin)
}

#[tokio::test]
async fn multiplexed_brokers_accept_and_dial_both_ways() {
    let (host, plugin) = brokers().await;

    // The plugin accepts, the host dials (twice: each dial knocks anew).
    let _one = plugin
        .accept_and_serve(1, [health()])
        .expect("plugin accepts 1");
    assert!(healthy(host.dial(1).await.expect("host dials 1")).await);
    assert!(healthy(host.dial(1).await.expect("host dials 1 again")).await);

    // The host accepts, the plugin dials.
    let _two = host
        .accept_and_serve(2, [health()])
        .expect("host accepts 2");
    assert!(healthy(plugin.dial(2).await.expect("plugin dials 2")).await);

    // Nobody listens on 5: the ack carries go-plugin's error.
    let err = host.dial(5).await.expect_err("nobody accepts 5");
    assert!(matches!(err, BrokerError::Knock(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "failed to knock before dialling client: failed to knock for id 5: no listener for id 5"
    );

    // Brokered connections keep working after a refused knock.
    assert!(healthy(plugin.dial(2).await.expect("plugin dials 2 again")).await);
}

#[tokio::test]
async fn stopped_or_dropped_multiplexed_servers_refuse_knocks() {
    let (host, plugin) = brokers().await;
    for id in 1..=20 {
        let server = plugin.accept_and_serve(id, [health()]).expect("accept");
        let channel = host.dial(id).await.expect("dial");
        assert!(healthy(channel.clone()).await);
        if id % 2 == 0 {
            server.stop().await;
        } else {
            drop(server);
            // Dropping returns at once; the ID is unregistered as the server task ends.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let err = host.dial(id).await.expect_err("the ID is no longer served");
        assert!(matches!(err, BrokerError::Knock(_)), "{err:?}");
        let call = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await;
        assert!(call.is_err(), "the old channel after stop: {call:?}");
    }
    // Listeners registered for the stopped IDs are gone, so none claims a stream.
    assert!(plugin.muxer().expect("muxer").accept_knock(3).is_err());
}
