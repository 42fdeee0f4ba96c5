//! Plugin-side stdio forwarding (`plugin.GRPCStdio/StreamStdio`): after the handshake, file
//! descriptors 1 and 2 are pointed at pipes whose contents stream to the host in chunks of at
//! most 1024 bytes. Logs keep going to the original stderr, which [`log_writer`] writes to.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::{Mutex, OnceLock};

use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::bridge::MAX_MESSAGE_SIZE;
use crate::proto::plugin::StdioData;
use crate::proto::plugin::grpc_stdio_server::{GrpcStdio, GrpcStdioServer};
use crate::proto::plugin::stdio_data::Channel;

/// Largest chunk sent in one `StdioData` message (go-plugin's size).
pub const CHUNK: usize = 1024;

/// The process's stderr as it was before capture; logs go there so the host parses them as logs.
static ORIGINAL_STDERR: OnceLock<File> = OnceLock::new();

/// A writer for log lines: the original stderr once stdio is captured, fd 2 before.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

/// Returns a [`LogWriter`].
pub fn log_writer() -> LogWriter {
    LogWriter
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match ORIGINAL_STDERR.get() {
            Some(mut file) => file.write(buf),
            None => io::stderr().write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match ORIGINAL_STDERR.get() {
            Some(mut file) => file.write_all(buf),
            None => io::stderr().write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match ORIGINAL_STDERR.get() {
            Some(mut file) => file.flush(),
            None => io::stderr().flush(),
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}

/// Captured stdout/stderr, waiting for the host to stream them.
#[derive(Debug)]
pub struct Capture {
    chunks: Mutex<Option<mpsc::Receiver<StdioData>>>,
}

impl Capture {
    /// Points fds 1 and 2 at pipes and starts reading them. Call once, after the handshake line
    /// was written and flushed. Writers block once the pipes fill and nobody streams, as in Go.
    pub fn start() -> io::Result<Capture> {
        io::stdout().flush()?;
        let original = rustix::io::dup(io::stderr())?;
        let (tx, rx) = mpsc::channel(64);
        let (out_read, out_write) = rustix::pipe::pipe()?;
        let (err_read, err_write) = rustix::pipe::pipe()?;
        // Keep the original stderr for logs before fd 2 is repointed.
        let _ = ORIGINAL_STDERR.set(File::from(original));
        rustix::stdio::dup2_stdout(&out_write)?;
        rustix::stdio::dup2_stderr(&err_write)?;
        drop((out_write, err_write));
        pump(out_read, Channel::Stdout, tx.clone())?;
        pump(err_read, Channel::Stderr, tx)?;
        Ok(Capture {
            chunks: Mutex::new(Some(rx)),
        })
    }

    /// A capture that forwards nothing (stdio left alone); `StreamStdio` ends at once.
    pub fn disabled() -> Capture {
        Capture {
            chunks: Mutex::new(None),
        }
    }
}

/// Copies a pipe into `tx` in chunks of at most [`CHUNK`] bytes, on its own thread so that a
/// blocked read never holds up the runtime or process exit.
fn pump(read: OwnedFd, channel: Channel, tx: mpsc::Sender<StdioData>) -> io::Result<()> {
    std::thread::Builder::new()
        .name(format!("plugin-{}", channel.as_str_name()))
        .spawn(move || {
            let mut pipe = File::from(read);
            let mut buf = [0u8; CHUNK];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        let data = StdioData {
                            channel: channel as i32,
                            data: buf[..n].to_vec(),
                        };
                        if tx.blocking_send(data).is_err() {
                            return;
                        }
                    }
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return,
                }
            }
        })?;
    Ok(())
}

/// Serves `plugin.GRPCStdio` from a [`Capture`].
#[derive(Debug)]
pub struct StdioService {
    capture: Capture,
}

impl StdioService {
    /// The tonic service for `capture`.
    pub fn server(capture: Capture) -> GrpcStdioServer<StdioService> {
        GrpcStdioServer::new(StdioService { capture })
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }
}

type StdioStream = Pin<Box<dyn Stream<Item = Result<StdioData, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl GrpcStdio for StdioService {
    type StreamStdioStream = StdioStream;

    async fn stream_stdio(
        &self,
        _request: Request<()>,
    ) -> Result<Response<Self::StreamStdioStream>, Status> {
        let chunks = self.capture.chunks.lock().expect("stdio lock").take();
        Ok(Response::new(match chunks {
            Some(rx) => Box::pin(ReceiverStream::new(rx).map(Ok)),
            None => Box::pin(futures_util::stream::empty()),
        }))
    }
}
