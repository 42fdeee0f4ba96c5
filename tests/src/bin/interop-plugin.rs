//! A Rust go-plugin plugin serving `interop.v1.Echo`, launched by the Go host in the interop
//! matrix (`tests/go/cmd/gohost`) and by the plugin-side error tests. Each `Serve` brokers a
//! fresh server and stops the one the previous `Serve` brokered. Flags: `--versions 1,2`
//! (app protocol versions served), `--tcp` (listen on loopback TCP instead of a unix socket) and
//! `--reflection` (serve gRPC reflection for the interop tree) and `--debug` (debug mode: print
//! reattach details instead of a handshake).

use std::sync::Mutex;

use spire_plugin_sdk::bridge::ClientBridge;
use spire_plugin_sdk::goplugin::hclog;
use spire_plugin_sdk::goplugin::{Broker, BrokeredServer, PluginServer};
use spire_plugin_tests::Responder;
use spire_plugin_tests::interop::interop::v1::{EchoBridge, echo_server::Echo};
use tonic::{Request, Response, Status};

/// The main service: each RPC exercises one part of the protocol.
struct Plugin {
    broker: Broker,
    /// The brokered server the last `Serve` started; the next `Serve` stops it.
    served: Mutex<Option<BrokeredServer>>,
}

#[tonic::async_trait]
impl Echo for Plugin {
    async fn say(&self, request: Request<String>) -> Result<Response<String>, Status> {
        Ok(Response::new(format!("echo: {}", request.into_inner())))
    }

    #[allow(
        clippy::print_stdout,
        clippy::print_stderr,
        reason = "stdio forwarding under test"
    )]
    async fn print(&self, request: Request<String>) -> Result<Response<()>, Status> {
        let text = request.into_inner();
        println!("stdout:{text}");
        eprintln!("stderr:{text}");
        Ok(Response::new(()))
    }

    async fn log(&self, request: Request<String>) -> Result<Response<()>, Status> {
        let text = request.into_inner();
        tracing::trace!(answer = 42, plugin_side = "rust", "{text}");
        tracing::debug!(answer = 42, plugin_side = "rust", "{text}");
        tracing::info!(answer = 42, plugin_side = "rust", "{text}");
        tracing::warn!(answer = 42, plugin_side = "rust", "{text}");
        tracing::error!(answer = 42, plugin_side = "rust", "{text}");
        Ok(Response::new(()))
    }

    async fn call_back(&self, request: Request<u32>) -> Result<Response<String>, Status> {
        let id = request.into_inner();
        let channel = self
            .broker
            .dial(id)
            .await
            .map_err(|err| Status::unavailable(format!("dialing broker id {id}: {err}")))?;
        let answer = EchoBridge::client(channel)
            .say("callback".to_owned())
            .await?;
        Ok(answer)
    }

    async fn serve(&self, _request: Request<()>) -> Result<Response<u32>, Status> {
        let id = self.broker.next_id();
        let server = self
            .broker
            .accept_and_serve(id, [EchoBridge::bridged(Responder { prefix: "plugin-" })])
            .map_err(|err| Status::internal(format!("accepting broker id {id}: {err}")))?;
        let previous = self.served.lock().expect("served lock").replace(server);
        if let Some(previous) = previous {
            previous.stop().await;
        }
        Ok(Response::new(id))
    }

    async fn crash(&self, _request: Request<()>) -> Result<Response<()>, Status> {
        std::process::exit(3)
    }
}

#[tokio::main]
async fn main() {
    let _ = hclog::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut versions = vec![1];
    let mut tcp = false;
    let mut reflection = false;
    let mut debug = false;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--tcp" => tcp = true,
            "--reflection" => reflection = true,
            "--debug" => debug = true,
            "--versions" => {
                let list = iter.next().map(String::as_str).unwrap_or("");
                versions = list
                    .split(',')
                    .filter_map(|v| v.trim().parse().ok())
                    .collect();
            }
            other => tracing::warn!(argument = other, "unknown argument ignored"),
        }
    }
    let mut server = PluginServer::new(spire_plugin_tests::interop_handshake())
        .tcp(tcp)
        .debug(debug);
    if reflection {
        server = server.reflection(spire_plugin_tests::interop::FILE_DESCRIPTOR_SET);
    }
    for version in versions {
        server = server.version(version, |ctx| {
            vec![EchoBridge::bridged(Plugin {
                broker: ctx.broker.clone(),
                served: Mutex::new(None),
            })]
        });
    }
    server.serve_or_exit().await
}
