//! Host side: reading plugin stderr into lines exactly as go-plugin's `bufio.Reader.ReadLine`
//! loop does, pieces of over-long lines included ([`LineReader`]). It does not interpret the
//! lines; that is [`parse`](super::parse)'s job.

use std::io;
use std::ops::Range;

use tokio::io::{AsyncRead, AsyncReadExt};

/// go-plugin's default `PluginLogBufferSize`: 64 KiB.
pub const DEFAULT_BUFFER_SIZE: usize = 64 * 1024;

/// The smallest buffer Go's `bufio.NewReaderSize` allows; smaller sizes are raised to this.
pub const MIN_BUFFER_SIZE: usize = 16;

/// One line of stderr, or one piece of a line longer than the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The bytes, without the `\n` or `\r\n` that ended the line.
    pub bytes: Vec<u8>,
    /// Whether this is a whole line or a piece.
    pub kind: LineKind,
}

/// Whether a [`Line`] is whole or a piece of an over-long one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LineKind {
    /// A whole line: it fit in the buffer together with its `\n`.
    Whole,
    /// A piece of a line that did not fit. Every piece but the last fills the buffer (one byte
    /// less when it would end in the `\r` of a `\r\n`).
    Piece {
        /// Whether the line ends with this piece. The last piece may be empty: a line of
        /// exactly the buffer size is one full piece and then an empty last piece, as in Go.
        last: bool,
    },
}

impl Line {
    /// Whether the line ends here, i.e. go-plugin writes a `\n` to `ClientConfig.Stderr`
    /// after these bytes.
    pub fn ends_line(&self) -> bool {
        !matches!(self.kind, LineKind::Piece { last: false })
    }
}

/// Splits an async byte stream into [`Line`]s with go-plugin's buffer rules.
///
/// A line is returned whole when it and its `\n` fit in the buffer, so the longest whole line
/// is one byte shorter than the buffer. A longer line comes back in pieces. The last line is
/// returned even without a final `\n`; a `\r` is dropped only as part of `\r\n`.
///
/// One difference from Go: if a read fails after part of a line was buffered, that part is
/// returned first and the error on the next call, where Go's `ReadLine` drops the error.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use spire_plugin_sdk::goplugin::hclog::{LineKind, LineReader};
///
/// let mut lines = LineReader::with_buffer_size(&b"short\r\nthis line is longer than 16\n"[..], 16);
/// let whole = lines.next_line().await.unwrap().unwrap();
/// assert_eq!((whole.bytes.as_slice(), whole.kind), (&b"short"[..], LineKind::Whole));
/// let first = lines.next_line().await.unwrap().unwrap();
/// assert_eq!((first.bytes.as_slice(), first.kind), (&b"this line is lon"[..], LineKind::Piece { last: false }));
/// let rest = lines.next_line().await.unwrap().unwrap();
/// assert_eq!((rest.bytes.as_slice(), rest.kind), (&b"ger than 16"[..], LineKind::Piece { last: true }));
/// assert!(lines.next_line().await.unwrap().is_none());
/// # });
/// ```
#[derive(Debug)]
pub struct LineReader<R> {
    inner: R,
    buf: Box<[u8]>,
    /// Start of the unread, buffered bytes.
    start: usize,
    /// End of the buffered bytes.
    end: usize,
    /// The reader reported end of file; it is not read again.
    eof: bool,
    /// A read error to report once the buffered bytes are used up.
    error: Option<io::Error>,
    /// The previous line was a piece that did not end its line.
    continuation: bool,
}

/// How a scan for `\n` ended.
enum Stop {
    /// At a `\n`, which is included in the range.
    Newline,
    /// The buffer is full and has no `\n`.
    Full,
    /// End of file.
    Eof,
    /// A read error.
    Failed(io::Error),
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// A reader with go-plugin's default buffer, [`DEFAULT_BUFFER_SIZE`].
    pub fn new(inner: R) -> Self {
        Self::with_buffer_size(inner, DEFAULT_BUFFER_SIZE)
    }

    /// A reader with a buffer of `size` bytes (go-plugin's `PluginLogBufferSize`), raised to
    /// [`MIN_BUFFER_SIZE`] if smaller, as Go does.
    pub fn with_buffer_size(inner: R, size: usize) -> Self {
        Self {
            inner,
            buf: vec![0; size.max(MIN_BUFFER_SIZE)].into_boxed_slice(),
            start: 0,
            end: 0,
            eof: false,
            error: None,
            continuation: false,
        }
    }

    /// The buffer size in use.
    pub fn buffer_size(&self) -> usize {
        self.buf.len()
    }

    /// The next line or piece; `Ok(None)` at end of file.
    ///
    /// # Errors
    ///
    /// The underlying reader's error, once everything read before it has been returned.
    pub async fn next_line(&mut self) -> io::Result<Option<Line>> {
        let (mut range, stop) = self.read_slice().await;
        let is_prefix = match stop {
            Stop::Full => {
                // Keep a final '\r' for the next call, in case its '\n' follows.
                if self.buf[range.clone()].last() == Some(&b'\r') {
                    range.end -= 1;
                    self.start -= 1;
                }
                true
            }
            Stop::Newline | Stop::Eof | Stop::Failed(_) => {
                if range.is_empty() {
                    match stop {
                        Stop::Failed(error) => return Err(error),
                        _ => return Ok(None),
                    }
                }
                if let Stop::Failed(error) = stop {
                    self.error = Some(error);
                }
                let line = &self.buf[range.clone()];
                if line.last() == Some(&b'\n') {
                    range.end -= if line.ends_with(b"\r\n") { 2 } else { 1 };
                }
                false
            }
        };
        let kind = if is_prefix || self.continuation {
            LineKind::Piece { last: !is_prefix }
        } else {
            LineKind::Whole
        };
        self.continuation = is_prefix;
        Ok(Some(Line {
            bytes: self.buf[range].to_vec(),
            kind,
        }))
    }

    /// Consumes buffered bytes up to and including the next `\n`, reading more as needed, like
    /// Go's `ReadSlice('\n')`. Returns their range in `buf` and why it stopped.
    async fn read_slice(&mut self) -> (Range<usize>, Stop) {
        let mut scanned = 0;
        loop {
            let unscanned = &self.buf[self.start + scanned..self.end];
            if let Some(at) = unscanned.iter().position(|&b| b == b'\n') {
                let range = self.start..self.start + scanned + at + 1;
                self.start = range.end;
                return (range, Stop::Newline);
            }
            if let Some(error) = self.error.take() {
                return (self.take_buffered(), Stop::Failed(error));
            }
            if self.eof {
                return (self.take_buffered(), Stop::Eof);
            }
            if self.end - self.start >= self.buf.len() {
                return (self.take_buffered(), Stop::Full);
            }
            scanned = self.end - self.start;
            self.fill().await;
        }
    }

    fn take_buffered(&mut self) -> Range<usize> {
        let range = self.start..self.end;
        self.start = self.end;
        range
    }

    /// Moves the buffered bytes to the front and reads once into the free space, which is never
    /// empty here.
    async fn fill(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        match self.inner.read(&mut self.buf[self.end..]).await {
            Ok(0) => self.eof = true,
            Ok(n) => self.end += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => self.error = Some(error),
        }
    }
}
