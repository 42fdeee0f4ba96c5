//! Tests for `LineReader`: whole lines, pieces at and around the buffer boundary, `\r\n`
//! across the boundary, end of file, read errors and chunked input.

use std::io;

use super::super::{DEFAULT_BUFFER_SIZE, Line, LineKind, LineReader, MIN_BUFFER_SIZE};
use super::{Chunked, block_on};

const WHOLE: LineKind = LineKind::Whole;
const MORE: LineKind = LineKind::Piece { last: false };
const LAST: LineKind = LineKind::Piece { last: true };

/// Every line of `input` read with buffer `size`, `chunk` bytes per read.
fn read_all(input: &[u8], size: usize, chunk: usize) -> Vec<(String, LineKind)> {
    block_on(async {
        let mut reader = LineReader::with_buffer_size(Chunked::new(input, chunk), size);
        let mut out = Vec::new();
        while let Some(Line { bytes, kind }) = reader.next_line().await.unwrap() {
            out.push((String::from_utf8(bytes).unwrap(), kind));
        }
        out
    })
}

fn lines(expected: &[(&str, LineKind)]) -> Vec<(String, LineKind)> {
    expected
        .iter()
        .map(|(s, k)| ((*s).to_owned(), *k))
        .collect()
}

#[test]
fn buffer_sizes() {
    let reader = |size| LineReader::with_buffer_size(&b""[..], size).buffer_size();
    assert_eq!(LineReader::new(&b""[..]).buffer_size(), DEFAULT_BUFFER_SIZE);
    assert_eq!(DEFAULT_BUFFER_SIZE, 65536);
    assert_eq!(reader(0), MIN_BUFFER_SIZE);
    assert_eq!(reader(15), 16);
    assert_eq!(reader(16), 16);
    assert_eq!(reader(100), 100);
}

#[test]
fn whole_lines_and_endings() {
    // The unterminated last line is 20 bytes: one full piece, then the rest as the last piece.
    assert_eq!(
        read_all(b"one\ntwo\r\n\nlast without newline", 16, 64),
        lines(&[
            ("one", WHOLE),
            ("two", WHOLE),
            ("", WHOLE),
            ("last without new", MORE),
            ("line", LAST),
        ])
    );
    assert_eq!(read_all(b"", 16, 64), lines(&[]));
    assert_eq!(read_all(b"\n", 16, 64), lines(&[("", WHOLE)]));
    assert_eq!(read_all(b"abc", 16, 64), lines(&[("abc", WHOLE)]));
    // A lone '\r' is kept; only "\r\n" is a line ending.
    assert_eq!(
        read_all(b"a\rb\r\nc\r", 16, 64),
        lines(&[("a\rb", WHOLE), ("c\r", WHOLE)])
    );
}

#[test]
fn splits_at_the_buffer_boundary() {
    let line = |n: usize| "x".repeat(n);
    // 15 bytes and its '\n' fill the 16-byte buffer exactly: whole.
    assert_eq!(
        read_all(format!("{}\n", line(15)).as_bytes(), 16, 64),
        lines(&[(&line(15), WHOLE)])
    );
    // 16 bytes: one full piece, then an empty last piece (the '\n'), as in Go.
    assert_eq!(
        read_all(format!("{}\nok\n", line(16)).as_bytes(), 16, 64),
        lines(&[(&line(16), MORE), ("", LAST), ("ok", WHOLE)])
    );
    // 17 bytes: a full piece and a one-byte last piece.
    assert_eq!(
        read_all(format!("{}\n", line(17)).as_bytes(), 16, 64),
        lines(&[(&line(16), MORE), ("x", LAST)])
    );
    // 40 bytes: two full pieces and the rest.
    assert_eq!(
        read_all(format!("{}\n", line(40)).as_bytes(), 16, 64),
        lines(&[(&line(16), MORE), (&line(16), MORE), (&line(8), LAST)])
    );
    // Exactly 32 bytes at end of file with no '\n': two pieces, neither marked last.
    assert_eq!(
        read_all(line(32).as_bytes(), 16, 64),
        lines(&[(&line(16), MORE), (&line(16), MORE)])
    );
}

#[test]
fn carriage_return_across_the_boundary_is_held_back() {
    let x = "x".repeat(15);
    // 15 bytes + "\r\n": the '\r' would be the 16th byte, so it waits for the next read.
    assert_eq!(
        read_all(format!("{x}\r\nnext\n").as_bytes(), 16, 64),
        lines(&[(&x, MORE), ("", LAST), ("next", WHOLE)])
    );
    // 14 bytes + "\r\n" fits.
    let y = "y".repeat(14);
    assert_eq!(
        read_all(format!("{y}\r\n").as_bytes(), 16, 64),
        lines(&[(&y, WHOLE)])
    );
    // A '\r' at the boundary that is not followed by '\n' comes back in the next piece.
    assert_eq!(
        read_all(format!("{x}\rzz\n").as_bytes(), 16, 64),
        lines(&[(&x, MORE), ("\rzz", LAST)])
    );
}

/// go-plugin's `TestClient_logStderr` input with its 32-byte buffer.
#[test]
fn go_plugin_long_line_test_input() {
    let msg = "\nthis line is more than 32 bytes long\nand this line is more than 32 bytes long\n{\"a\": \"b\", \"@level\": \"debug\"}\nthis line is short\n";
    assert_eq!(
        read_all(msg.as_bytes(), 32, 7),
        lines(&[
            ("", WHOLE),
            ("this line is more than 32 bytes ", MORE),
            ("long", LAST),
            ("and this line is more than 32 by", MORE),
            ("tes long", LAST),
            ("{\"a\": \"b\", \"@level\": \"debug\"}", WHOLE),
            ("this line is short", WHOLE),
        ])
    );
}

#[test]
fn chunking_does_not_matter() {
    let input =
        b"alpha\r\nbeta gamma delta epsilon\n\n\rzeta\r\r\neta theta iota kappa lambda mu\r\n";
    let expected = read_all(input, 16, 1000);
    for chunk in 1..=input.len() {
        assert_eq!(read_all(input, 16, chunk), expected, "chunk {chunk}");
    }
}

#[test]
fn read_error_comes_after_the_buffered_bytes() {
    block_on(async {
        let source = Chunked::failing(b"done\npartial", 100, io::ErrorKind::BrokenPipe);
        let mut reader = LineReader::with_buffer_size(source, 16);
        let next = reader.next_line().await.unwrap().unwrap();
        assert_eq!((next.bytes.as_slice(), next.kind), (&b"done"[..], WHOLE));
        let next = reader.next_line().await.unwrap().unwrap();
        assert_eq!((next.bytes.as_slice(), next.kind), (&b"partial"[..], WHOLE));
        let error = reader.next_line().await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::BrokenPipe);
    });
}

#[test]
fn ends_line() {
    let line = |kind| Line {
        bytes: Vec::new(),
        kind,
    };
    assert!(line(WHOLE).ends_line());
    assert!(line(LAST).ends_line());
    assert!(!line(MORE).ends_line());
}
