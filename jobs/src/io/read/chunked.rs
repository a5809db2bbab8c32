//! Reading a file piece by piece, so memory is bounded by the piece, not the
//! file (issue 24 #6: a 2.6 GB NDJSON file peaked at 6.6 GB read whole).
//!
//! A blocking task reads the object's byte stream (gzip decompressed as it
//! comes), cuts it after the last record that ends within about
//! `chunk_bytes` of text (a line break; for CSV one outside quotes), parses
//! that piece with the same code as a whole file and sends the rows and
//! rejects through a channel that holds one chunk: reading the next piece
//! overlaps scoring the last, and at most a few pieces are in memory.
//! Rejects keep the file's own line numbers; a CSV piece is read with the
//! file's header. Parquet needs the file's footer first, so its (compressed)
//! bytes are fetched whole and its rows are sent once they fill a chunk.

use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use super::record::RawBuilder;
use super::{Format, GZIP_MAGIC, ParsedFile, ReadOptions, Reject, Undecodable, csv, ndjson, parquet, text_start};
use crate::io::store::{Location, fetch};
use crate::{Error, Result};

/// Text per chunk by default: a chunk's rows, and their scores, are about this large again.
pub const DEFAULT_CHUNK_BYTES: usize = 64 << 20;
/// Bytes asked of the stream (or the gzip decoder) at a time.
const READ_BLOCK: usize = 1 << 20;

/// Starts reading `path` in chunks of about `chunk_bytes` of text; each
/// received item is one chunk's rows and rejects, or the storage error that
/// stopped the read (the chunks before it were whole). Dropping the receiver
/// stops the reader.
pub fn read_chunks(
    store: Arc<dyn ObjectStore>,
    loc: Location,
    path: Path,
    file: String,
    opts: ReadOptions,
    chunk_bytes: usize,
) -> mpsc::Receiver<Result<ParsedFile>> {
    let (tx, rx) = mpsc::channel(1);
    let handle = Handle::current();
    tokio::task::spawn_blocking(move || {
        let send = &mut |item: Result<ParsedFile>| tx.blocking_send(item).is_ok();
        let source = Source { handle: &handle, store: store.as_ref(), loc: &loc, path: &path };
        let chunk_bytes = chunk_bytes.max(1);
        match opts.format.unwrap_or_else(|| Format::from_path(&file)) {
            Format::Parquet => read_parquet(&source, &file, opts, chunk_bytes, send),
            format => read_text(&source, &file, format, opts, chunk_bytes, send),
        }
    });
    rx
}

/// Where the bytes come from.
struct Source<'a> {
    handle: &'a Handle,
    store: &'a dyn ObjectStore,
    loc: &'a Location,
    path: &'a Path,
}

impl Source<'_> {
    fn error(&self, source: object_store::Error) -> Error {
        Error::Store { op: "get", location: self.loc.url_of(self.path), source }
    }
}

/// Parquet: the whole (compressed) file, its rows sent chunk by chunk.
fn read_parquet(
    src: &Source<'_>,
    file: &str,
    opts: ReadOptions,
    chunk_bytes: usize,
    send: &mut dyn FnMut(Result<ParsedFile>) -> bool,
) {
    let bytes = match src.handle.block_on(fetch(src.store, src.loc, src.path)) {
        Ok(b) => b,
        Err(e) => {
            send(Err(e));
            return;
        }
    };
    let mut b = RawBuilder::new(opts.max_text_bytes);
    let mut out = ParsedFile::default();
    if !bytes.is_empty() {
        let mut emit = |b: &mut RawBuilder, out: &mut ParsedFile| {
            let held: usize = out.batches.iter().map(|x| x.get_array_memory_size()).sum();
            held < chunk_bytes || send(Ok(b.take_chunk(out)))
        };
        parquet::parse_parquet(file, bytes, &mut b, &mut out, &mut emit);
    }
    send(Ok(b.take_chunk(&mut out)));
}

/// The object's bytes as a blocking reader; a storage error comes back as an
/// `io::Error` wrapping the `object_store::Error`.
struct StreamRead<'a> {
    handle: &'a Handle,
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    current: Bytes,
}

impl Read for StreamRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.handle.block_on(self.stream.next()) {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// NDJSON and CSV/TSV: pieces cut after the last whole record.
fn read_text(
    src: &Source<'_>,
    file: &str,
    format: Format,
    opts: ReadOptions,
    chunk_bytes: usize,
    send: &mut dyn FnMut(Result<ParsedFile>) -> bool,
) {
    let stream = match src.handle.block_on(src.store.get(src.path)) {
        Ok(r) => r.into_stream(),
        Err(e) => {
            send(Err(src.error(e)));
            return;
        }
    };
    let mut raw =
        BufReader::with_capacity(READ_BLOCK, StreamRead { handle: src.handle, stream, current: Bytes::new() });
    let gzip = match raw.fill_buf() {
        Ok(head) => head.starts_with(&GZIP_MAGIC),
        Err(e) => {
            send(Err(io_error(src, e)));
            return;
        }
    };
    let reader: Box<dyn Read + '_> =
        if gzip { Box::new(flate2::read::MultiGzDecoder::new(raw)) } else { Box::new(raw) };
    let mut pieces = Pieces { reader, gzip, format, delim: csv::delimiter(file), buf: Vec::new(), eof: false };
    let mut text = TextChunks { file, format, opts, b: RawBuilder::new(opts.max_text_bytes), lines: 0, header: None };
    let mut first = true;
    loop {
        let piece = match pieces.next(chunk_bytes) {
            Ok(p) => p,
            Err(Stop::Storage(e)) => {
                send(Err(io_error(src, e)));
                return;
            }
            Err(Stop::Reject(reason)) => {
                let mut out = ParsedFile::default();
                let rows = text.b.total;
                out.rejects.push(Reject::file_level(file, format!("{reason} (rows read before it: {rows})")));
                send(Ok(out));
                return;
            }
        };
        let mut piece = piece.unwrap_or_default();
        if std::mem::take(&mut first) {
            match text_start(&piece) {
                Ok(start) => {
                    piece.drain(..start);
                }
                Err(problem) => {
                    let mut out = ParsedFile::default();
                    out.rejects.push(Reject::file_level(file, problem.reason("file")));
                    send(Ok(out));
                    return;
                }
            }
        }
        let (chunk, go_on) = text.parse(&piece);
        if !send(Ok(chunk)) || !go_on || pieces.done() {
            return;
        }
    }
}

/// Why reading text stopped early.
enum Stop {
    Storage(std::io::Error),
    /// The rest of the file cannot be read (corrupt gzip): the reason.
    Reject(String),
}

/// A storage error out of the reader: the `object_store::Error` inside, named.
fn io_error(src: &Source<'_>, e: std::io::Error) -> Error {
    match e.into_inner().map(|inner| inner.downcast::<object_store::Error>()) {
        Some(Ok(store_error)) => src.error(*store_error),
        Some(Err(other)) => src.error(object_store::Error::Generic { store: "read", source: other }),
        None => src.error(object_store::Error::Generic { store: "read", source: "the read failed".into() }),
    }
}

/// The text cut into pieces that end after a whole record.
struct Pieces<'a> {
    reader: Box<dyn Read + 'a>,
    gzip: bool,
    format: Format,
    delim: u8,
    /// Text read and not handed out yet (a record's beginning).
    buf: Vec<u8>,
    eof: bool,
}

impl Pieces<'_> {
    fn done(&self) -> bool {
        self.eof && self.buf.is_empty()
    }

    /// The next piece: about `chunk_bytes` (more when one record is longer),
    /// all that is left at the end; `None` when nothing is left.
    fn next(&mut self, chunk_bytes: usize) -> std::result::Result<Option<Vec<u8>>, Stop> {
        let mut target = chunk_bytes;
        loop {
            while !self.eof && self.buf.len() < target {
                let want = (target - self.buf.len()).max(READ_BLOCK) as u64;
                match (&mut self.reader).take(want).read_to_end(&mut self.buf) {
                    Ok(n) => self.eof = (n as u64) < want,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(self.stop(e)),
                }
            }
            let cut = match (self.eof, self.format) {
                (true, _) => Some(self.buf.len()),
                (false, Format::Csv) => csv::record_end(&self.buf, self.delim, true),
                (false, _) => self.buf.iter().rposition(|c| *c == b'\n').map(|i| i + 1),
            };
            match cut {
                Some(0) if self.eof => return Ok(None),
                Some(cut) => {
                    let rest = self.buf.split_off(cut);
                    return Ok(Some(std::mem::replace(&mut self.buf, rest)));
                }
                // one record longer than a chunk: read on until it ends
                None => target = self.buf.len() + chunk_bytes,
            }
        }
    }

    fn stop(&self, e: std::io::Error) -> Stop {
        let from_storage = e.get_ref().is_some_and(|inner| inner.is::<object_store::Error>());
        if self.gzip && !from_storage {
            Stop::Reject(Undecodable::Gzip(e.to_string()).reason("file"))
        } else {
            Stop::Storage(e)
        }
    }
}

/// Parses a file's text pieces in order, keeping its line count and, for
/// CSV, its header.
struct TextChunks<'a> {
    file: &'a str,
    format: Format,
    opts: ReadOptions,
    b: RawBuilder,
    /// Lines of the file before the next piece.
    lines: i64,
    /// CSV: the header's bytes, once read from the first piece.
    header: Option<Vec<u8>>,
}

impl TextChunks<'_> {
    /// One piece's rows and rejects; false when the rest of the file is not to be read
    /// (a CSV header that does not name the raw columns rejects the file).
    fn parse(&mut self, piece: &[u8]) -> (ParsedFile, bool) {
        let mut out = ParsedFile::default();
        let mut go_on = true;
        match (self.format, &self.header) {
            (Format::Csv, None) => {
                let max = self.opts.max_text_bytes;
                go_on = csv::parse_csv(self.file, piece, max, 0, &mut self.b, &mut out);
                let end = csv::record_end(piece, csv::delimiter(self.file), false).unwrap_or(piece.len());
                self.header = Some(piece[..end].to_vec());
            }
            (Format::Csv, Some(header)) => {
                let header_lines = header.iter().filter(|c| **c == b'\n').count() as i64;
                let data = [header.as_slice(), piece].concat();
                let max = self.opts.max_text_bytes;
                csv::parse_csv(self.file, &data, max, self.lines - header_lines, &mut self.b, &mut out);
            }
            _ => ndjson::parse_ndjson(self.file, piece, self.lines, &mut self.b, &mut out),
        }
        self.lines += piece.iter().filter(|c| **c == b'\n').count() as i64;
        (self.b.take_chunk(&mut out), go_on)
    }
}
