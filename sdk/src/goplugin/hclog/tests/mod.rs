//! Tests for the hclog module, one file per part, plus helpers they share: a runtime, an
//! in-memory writer, a chunking reader and a layer that captures `tracing` events.

mod layer;
mod level;
mod parse;
mod props;
mod reader;
mod roundtrip;
mod sink;
mod timestamp;

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};
use tracing::field::{Field, Visit};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context as LayerContext;

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

/// Whether `s` matches `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)$`.
fn is_json_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    let shape = b"dddd-dd-ddTdd:dd:dd.dddddd";
    if b.len() < shape.len() {
        return false;
    }
    let head_ok = shape.iter().zip(b).all(|(&want, &got)| match want {
        b'd' => got.is_ascii_digit(),
        lit => got == lit,
    });
    let tail = &b[shape.len()..];
    let tail_ok = tail == b"Z"
        || (tail.len() == 6
            && (tail[0] == b'+' || tail[0] == b'-')
            && tail[1].is_ascii_digit()
            && tail[2].is_ascii_digit()
            && tail[3] == b':'
            && tail[4].is_ascii_digit()
            && tail[5].is_ascii_digit());
    head_ok && tail_ok
}

#[test]
fn timestamp_shape_checker() {
    assert!(is_json_timestamp("2026-08-23T10:11:12.123456Z"));
    assert!(is_json_timestamp("2026-08-23T10:11:12.123456-07:30"));
    assert!(!is_json_timestamp("2026-08-23T10:11:12.12345Z"));
    assert!(!is_json_timestamp("2026-08-23T10:11:12.1234567Z"));
    assert!(!is_json_timestamp("2026-08-23T10:11:12.123456+0730"));
    assert!(!is_json_timestamp("2026-08-23 10:11:12.123456Z"));
}

/// A shared in-memory byte buffer, usable as a `MakeWriter` and as an `io::Write`.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Buffer {
    fn contents(&self) -> Vec<u8> {
        self.0.lock().unwrap().clone()
    }

    fn text(&self) -> String {
        String::from_utf8(self.contents()).unwrap()
    }
}

impl io::Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buffer {
    type Writer = Buffer;

    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}

/// Hands out `data` at most `chunk` bytes per read, then fails with `error` if set, else ends.
struct Chunked {
    data: Vec<u8>,
    pos: usize,
    chunk: usize,
    error: Option<io::ErrorKind>,
}

impl Chunked {
    fn new(data: &[u8], chunk: usize) -> Self {
        Self {
            data: data.to_vec(),
            pos: 0,
            chunk: chunk.max(1),
            error: None,
        }
    }

    fn failing(data: &[u8], chunk: usize, error: io::ErrorKind) -> Self {
        Self {
            error: Some(error),
            ..Self::new(data, chunk)
        }
    }
}

impl AsyncRead for Chunked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self
            .chunk
            .min(self.data.len() - self.pos)
            .min(buf.remaining());
        if n == 0
            && self.pos == self.data.len()
            && let Some(kind) = self.error
        {
            return Poll::Ready(Err(io::Error::new(kind, "broken pipe for test")));
        }
        let start = self.pos;
        buf.put_slice(&self.data[start..start + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// One `tracing` event as the capture layer saw it: fields rendered as strings.
#[derive(Debug, Clone, PartialEq)]
struct Captured {
    level: tracing::Level,
    target: String,
    fields: BTreeMap<String, String>,
}

#[derive(Clone, Default)]
struct CaptureLayer(Arc<Mutex<Vec<Captured>>>);

impl CaptureLayer {
    fn events(&self) -> Vec<Captured> {
        self.0.lock().unwrap().clone()
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CaptureLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: LayerContext<'_, S>) {
        struct Fields<'a>(&'a mut BTreeMap<String, String>);
        impl Visit for Fields<'_> {
            fn record_str(&mut self, field: &Field, value: &str) {
                self.0.insert(field.name().to_owned(), value.to_owned());
            }
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                self.0.insert(field.name().to_owned(), format!("{value:?}"));
            }
        }
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(Captured {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            fields,
        });
    }
}

/// Runs `f` with a capture layer as the thread's subscriber and returns what it saw.
fn capture(f: impl FnOnce()) -> Vec<Captured> {
    use tracing_subscriber::layer::SubscriberExt as _;
    let layer = CaptureLayer::default();
    let subscriber = tracing_subscriber::registry().with(layer.clone());
    tracing::subscriber::with_default(subscriber, f);
    layer.events()
}
