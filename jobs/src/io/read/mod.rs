//! Reading raw tweets from NDJSON, CSV or Parquet with per-record validation.
//!
//! Every record is checked against [`schema::RAW`]: good ones become rows of
//! the raw schema, bad ones become [`Reject`]s naming the file, the line and
//! the reason. Nothing is dropped without a trace, and nothing panics.

mod chunked;
mod csv;
mod ndjson;
mod parquet;
mod record;

use std::collections::BTreeSet;
use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};

pub use chunked::{DEFAULT_CHUNK_BYTES, read_chunks};
use record::RawBuilder;
pub use record::{Cell, parse_timestamp};

use crate::schema::Table;
use crate::{Error, Result};

/// Largest text accepted by default; longer posts are rejected, not scored.
pub const DEFAULT_MAX_TEXT_BYTES: usize = 64 * 1024;
/// How much of a rejected record is kept in `_rejected/`.
pub const REJECT_EXCERPT_BYTES: usize = 4096;
const BATCH_ROWS: usize = 8192;
/// Most text a gzip stream record may decompress to (a Kinesis record is at
/// most 1 MiB, so a larger text is a decompression bomb or a mistake).
const MAX_RECORD_TEXT_BYTES: u64 = 64 << 20;
/// The first bytes of gzip data.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Input file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Ndjson,
    Csv,
    Parquet,
}

impl Format {
    /// Picks the format from the file name; Firehose objects have no
    /// extension (or `.gz`) and are NDJSON.
    pub fn from_path(path: &str) -> Format {
        let p = path.to_ascii_lowercase();
        let p = p.strip_suffix(".gz").unwrap_or(&p);
        if p.ends_with(".parquet") || p.ends_with(".parq") {
            Format::Parquet
        } else if p.ends_with(".csv") || p.ends_with(".tsv") {
            Format::Csv
        } else {
            Format::Ndjson
        }
    }
}

/// A record that could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub file: String,
    pub line: Option<i64>,
    pub reason: String,
    pub record: Option<String>,
    pub record_bytes: i64,
    /// Kinesis records: the shard and sequence number.
    pub shard_id: Option<String>,
    pub sequence_number: Option<String>,
}

impl Reject {
    /// A reject for a whole file (or what is left of it): line NULL.
    pub fn file_level(file: &str, reason: String) -> Self {
        Self::new(file, None, reason, &[])
    }

    fn new(file: &str, line: Option<i64>, reason: String, record: &[u8]) -> Self {
        let cut = record.len().min(REJECT_EXCERPT_BYTES);
        let text = String::from_utf8_lossy(&record[..cut]).into_owned();
        Reject {
            file: file.to_string(),
            line,
            reason,
            record: if record.is_empty() { None } else { Some(text) },
            record_bytes: record.len() as i64,
            shard_id: None,
            sequence_number: None,
        }
    }
}

/// Parses stream records one at a time (a Kinesis record's bytes are one
/// JSON object, or NDJSON). Rejects carry the shard and sequence number.
pub struct RecordParser {
    b: RawBuilder,
    out: ParsedFile,
    origin: String,
}

impl RecordParser {
    /// `origin` names the source in rejects, e.g. `kinesis://tweets/shardId-000000000000`.
    pub fn new(origin: impl Into<String>, max_text_bytes: usize) -> Self {
        Self { b: RawBuilder::new(max_text_bytes), out: ParsedFile::default(), origin: origin.into() }
    }

    /// Rejects a record whose event time is more than `ahead` after its arrival
    /// (`push`'s `arrival_micros`; a record without one is not checked).
    pub fn with_max_event_ahead(mut self, ahead: std::time::Duration) -> Self {
        self.b.max_event_ahead = Some(ahead);
        self
    }

    /// Adds one record; `arrival_micros` fills `ingested_at` when the record has none.
    pub fn push(&mut self, shard_id: &str, sequence_number: &str, data: &[u8], arrival_micros: Option<i64>) {
        let before_rows = self.b.total;
        let before_rejects = self.out.rejects.len();
        self.b.default_ingested_at = arrival_micros;
        if data.iter().all(u8::is_ascii_whitespace) {
            self.out.rejects.push(Reject::new(
                &self.origin,
                None,
                "empty record; producers must put one JSON object per record".into(),
                data,
            ));
        } else {
            // as a file's bytes: gzip (CloudWatch Logs subscriptions send it) and a BOM are read, UTF-16 named
            match text_bytes(data, Some(MAX_RECORD_TEXT_BYTES)) {
                Ok(text) => ndjson::parse_ndjson(&self.origin, &text, 0, &mut self.b, &mut self.out),
                Err(problem) => self.out.rejects.push(Reject::new(&self.origin, None, problem.reason("record"), data)),
            }
        }
        self.b.default_ingested_at = None;
        // one reject per record: a binary blob has many "lines", each unreadable
        let problems = self.out.rejects.len() - before_rejects;
        if problems > 0 {
            self.out.rejects.truncate(before_rejects + 1);
            let mut r = Reject::new(&self.origin, None, self.out.rejects[before_rejects].reason.clone(), data);
            if problems > 1 {
                r.reason.push_str(&format!(" (and {} more problems in this record)", problems - 1));
            }
            r.shard_id = Some(shard_id.to_string());
            r.sequence_number = Some(sequence_number.to_string());
            self.out.rejects[before_rejects] = r;
        }
        debug_assert!(problems > 0 || self.b.total > before_rows);
    }

    /// Good rows so far.
    pub fn rows(&self) -> usize {
        self.b.total
    }

    pub fn rejects(&self) -> usize {
        self.out.rejects.len()
    }

    pub fn finish(mut self) -> ParsedFile {
        self.b.finish_into(&mut self.out);
        self.out
    }
}

/// What one input file yielded.
#[derive(Debug, Default)]
pub struct ParsedFile {
    pub batches: Vec<RecordBatch>,
    pub rows: usize,
    pub rejects: Vec<Reject>,
    /// Fields present in records but not in the raw schema (ignored, reported).
    pub extra_fields: BTreeSet<String>,
    /// The file held no records at all.
    pub empty: bool,
}

/// Options of the reader.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    pub format: Option<Format>,
    pub max_text_bytes: usize,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self { format: None, max_text_bytes: DEFAULT_MAX_TEXT_BYTES }
    }
}

/// Parses one file's bytes. Never fails: an unreadable file becomes one
/// file-level reject (line NULL).
pub fn parse_file(file: &str, bytes: Bytes, opts: ReadOptions) -> ParsedFile {
    let format = opts.format.unwrap_or_else(|| Format::from_path(file));
    let mut out = ParsedFile::default();
    if bytes.is_empty() {
        out.empty = true;
        return out;
    }
    let mut b = RawBuilder::new(opts.max_text_bytes);
    if format == Format::Parquet {
        parquet::parse_parquet(file, bytes, &mut b, &mut out, &mut |_, _| true);
        b.finish_into(&mut out);
        return out;
    }
    let data = match text_bytes(&bytes, None) {
        Ok(data) => data,
        Err(problem) => {
            out.rejects.push(Reject::file_level(file, problem.reason("file")));
            return out;
        }
    };
    let data = &data[..];
    match format {
        Format::Ndjson => ndjson::parse_ndjson(file, data, 0, &mut b, &mut out),
        Format::Csv => {
            csv::parse_csv(file, data, opts.max_text_bytes, 0, &mut b, &mut out);
        }
        Format::Parquet => unreachable!("handled above"),
    }
    out.empty = b.total == 0 && out.rejects.is_empty();
    b.finish_into(&mut out);
    out
}

/// The raw columns named more than once among a file's columns (`text` twice:
/// which one is the text cannot be told, so the file is rejected, not read by
/// the first).
fn doubled_raw_columns<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let names: Vec<&str> = names.into_iter().collect();
    crate::schema::RAW
        .iter()
        .filter_map(|c| match names.iter().filter(|n| **n == c.name).count() {
            n if n > 1 => Some(format!("{} ({n} columns)", c.name)),
            _ => None,
        })
        .collect()
}

/// Why bytes cannot be read as UTF-8 text.
enum Undecodable {
    Gzip(String),
    Encoding(&'static str),
}

impl Undecodable {
    /// The reason for a reject of a `what` (file or record), with the fix.
    fn reason(&self, what: &str) -> String {
        match (self, what) {
            (Undecodable::Gzip(e), "file") => format!("gzip data is corrupt ({e}); re-deliver or delete the file"),
            (Undecodable::Gzip(e), _) => {
                format!("the {what} is gzip data that does not decompress ({e}); producers must put whole gzip members")
            }
            (Undecodable::Encoding(enc), "file") => format!(
                "the file is {enc} text, not UTF-8; convert it (iconv -f {enc} -t UTF-8 IN > OUT) and deliver it again"
            ),
            (Undecodable::Encoding(enc), _) => {
                format!("the {what} is {enc} text, not UTF-8; producers must encode records as UTF-8")
            }
        }
    }
}

/// The UTF-8 text of a file's or a record's bytes, as every reader takes it:
/// gzip decompressed (at most `max_bytes` of it, when given), a UTF-8 byte
/// order mark (Windows editors write one) dropped; UTF-16 and UTF-32 named.
fn text_bytes(bytes: &[u8], max_bytes: Option<u64>) -> std::result::Result<std::borrow::Cow<'_, [u8]>, Undecodable> {
    let data: std::borrow::Cow<'_, [u8]> = if bytes.starts_with(&GZIP_MAGIC) {
        let mut d = Vec::new();
        // one byte past the bound, to tell "exactly the bound" from "more"
        let limit = max_bytes.map_or(u64::MAX, |max| max + 1);
        flate2::read::MultiGzDecoder::new(bytes)
            .take(limit)
            .read_to_end(&mut d)
            .map_err(|e| Undecodable::Gzip(e.to_string()))?;
        if let Some(max) = max_bytes.filter(|&max| d.len() as u64 > max) {
            return Err(Undecodable::Gzip(format!("it decompresses to more than {max} bytes")));
        }
        d.into()
    } else {
        bytes.into()
    };
    let start = text_start(&data)?;
    Ok(match data {
        std::borrow::Cow::Borrowed(d) => d[start..].into(),
        std::borrow::Cow::Owned(mut d) => {
            d.drain(..start); // in place: no second copy of a decompressed file
            d.into()
        }
    })
}

/// Where the text of (decompressed) bytes starts: after a UTF-8 byte order
/// mark (Windows editors write one); UTF-16 and UTF-32 are named.
fn text_start(data: &[u8]) -> std::result::Result<usize, Undecodable> {
    if let Some(enc) = wrong_encoding(data) {
        return Err(Undecodable::Encoding(enc));
    }
    Ok(if data.starts_with(UTF8_BOM) { UTF8_BOM.len() } else { 0 })
}

/// The encoding of text that is UTF-16 or UTF-32 (a byte order mark, or NUL
/// bytes in every other position), not UTF-8.
fn wrong_encoding(data: &[u8]) -> Option<&'static str> {
    let bom = [
        (&b"\xFF\xFE\x00\x00"[..], "UTF-32"),
        (&b"\x00\x00\xFE\xFF"[..], "UTF-32"),
        (&b"\xFF\xFE"[..], "UTF-16"),
        (&b"\xFE\xFF"[..], "UTF-16"),
    ]
    .into_iter()
    .find(|(m, _)| data.starts_with(m))
    .map(|(_, e)| e);
    let head = &data[..data.len().min(512)];
    let nul_pairs = head.chunks(2).filter(|p| p.len() == 2 && (p[0] == 0) != (p[1] == 0)).count();
    let looks_utf16 = head.len() >= 8 && nul_pairs * 10 >= head.len() / 2 * 9;
    bom.or(if looks_utf16 { Some("UTF-16") } else { None })
}

/// Turns rejects into a batch of the `_rejected` table.
pub fn rejects_batch(rejects: &[Reject], rejected_at_micros: i64) -> Result<RecordBatch> {
    let schema = Table::Rejected.schema();
    let file: StringArray = rejects.iter().map(|r| Some(r.file.as_str())).collect();
    let line: datafusion::arrow::array::Int64Array = rejects.iter().map(|r| r.line).collect();
    let reason: StringArray = rejects.iter().map(|r| Some(r.reason.as_str())).collect();
    let record: StringArray = rejects.iter().map(|r| r.record.as_deref()).collect();
    let bytes: datafusion::arrow::array::Int64Array = rejects.iter().map(|r| Some(r.record_bytes)).collect();
    let at = datafusion::arrow::array::TimestampMicrosecondArray::from(vec![rejected_at_micros; rejects.len()])
        .with_timezone("UTC");
    let shard: StringArray = rejects.iter().map(|r| r.shard_id.as_deref()).collect();
    let seq: StringArray = rejects.iter().map(|r| r.sequence_number.as_deref()).collect();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(file),
        Arc::new(line),
        Arc::new(reason),
        Arc::new(record),
        Arc::new(bytes),
        Arc::new(at),
        Arc::new(shard),
        Arc::new(seq),
    ];
    RecordBatch::try_new(schema, cols).map_err(|e| Error::arrow("rejected records", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, s: &[u8]) -> ParsedFile {
        parse_file(name, Bytes::from(s.to_vec()), ReadOptions::default())
    }

    const GOOD: &str = r#"{"tweet_id":"1","created_at":"2025-02-10T00:00:01Z","text":"hi","source":"x"}"#;

    #[test]
    fn good_bad_and_concatenated_records() {
        let data = format!(
            "{GOOD}\n\n{{not json\n[1,2]\n{{\"tweet_id\":2,\"created_at\":\"Mon Feb 10 13:45:00 +0000 2025\",\"text\":\"a\",\"source\":\"y\",\"likes\":3}}{GOOD}\n{{\"tweet_id\":true,\"created_at\":\"x\",\"text\":\"a\",\"source\":\"y\"}}\n{{\"created_at\":\"2025-02-10T00:00:01Z\",\"text\":\"a\",\"source\":\"y\",\"tweet_id\":\"3\",\"truth_label\":\"meh\"}}\n"
        );
        let p = parse("f.json", data.as_bytes());
        assert_eq!(p.rows, 3);
        let lines: Vec<_> = p.rejects.iter().map(|r| (r.line.unwrap(), r.reason.as_str())).collect();
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert_eq!(lines[0].0, 3);
        assert!(lines[0].1.starts_with("malformed JSON"));
        assert_eq!(lines[1], (4, "expected a JSON object per record, got an array"));
        assert_eq!(lines[2], (6, "field tweet_id: expected a string, got a boolean"));
        assert!(lines[3].1.contains("truth_label"));
        assert_eq!(p.extra_fields.iter().collect::<Vec<_>>(), vec!["likes"]);
    }

    #[test]
    fn invalid_utf8_and_long_text_are_rejected() {
        let mut data =
            b"{\"tweet_id\":\"1\",\"created_at\":\"2025-02-10T00:00:01Z\",\"text\":\"\xff\xfe\",\"source\":\"x\"}\n"
                .to_vec();
        let long = format!(
            r#"{{"tweet_id":"2","created_at":"2025-02-10T00:00:01Z","text":"{}","source":"x"}}"#,
            "a".repeat(DEFAULT_MAX_TEXT_BYTES + 1)
        );
        data.extend_from_slice(long.as_bytes());
        let p = parse("f.json", &data);
        assert_eq!(p.rows, 0);
        assert!(p.rejects[0].reason.contains("invalid UTF-8"));
        assert!(p.rejects[1].reason.contains("over the limit"));
        assert_eq!(p.rejects[1].record.as_ref().unwrap().len(), REJECT_EXCERPT_BYTES);
    }

    #[test]
    fn empty_and_gzip_files() {
        assert!(parse("e.json", b"").empty);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, GOOD.as_bytes()).unwrap();
        let p = parse("x.gz", &gz.finish().unwrap());
        assert_eq!(p.rows, 1);
        let p = parse("x.gz", &[0x1f, 0x8b, 1, 2, 3]);
        assert!(p.rejects[0].reason.contains("gzip"));
    }

    #[test]
    fn csv_records() {
        let p = parse(
            "t.csv",
            b"tweet_id,created_at,text,source\n1,2025-02-10 00:00:00,\"hello, world\",x\n2,bad,hi,x\n3,2025-02-10T00:00:00Z,only\n",
        );
        assert_eq!(p.rows, 1);
        assert_eq!(p.rejects.len(), 2);
        assert_eq!(p.rejects[0].line, Some(3));
        assert!(p.rejects[1].reason.contains("expected 4 fields"));
        let p = parse("t.csv", b"id,text\n1,a\n");
        assert!(p.rejects[0].reason.contains("lacks required column"));
    }

    fn parquet_bytes(cols: Vec<(&str, ArrayRef)>) -> Vec<u8> {
        let batch = RecordBatch::try_from_iter(cols).unwrap();
        let mut buf = Vec::new();
        let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        buf
    }

    fn strings(n: usize, f: impl Fn(usize) -> Option<String>) -> ArrayRef {
        Arc::new((0..n).map(f).collect::<StringArray>())
    }

    /// Issue 16 #2 and #13: a bad value in one Parquet row rejects that row only.
    #[test]
    fn parquet_rows_are_validated_one_by_one() {
        use datafusion::arrow::array::{BinaryArray, Int64Array, ListBuilder, StringBuilder, TimestampNanosecondArray};
        let n = 10_000;
        let id = strings(n, |i| Some(i.to_string()));
        let ts = strings(n, |i| Some(if i == 7 { "not a time".into() } else { "2025-02-10T00:00:00Z".into() }));
        let text = strings(n, |i| if i == 4_999 { None } else { Some(format!("t{i}")) });
        let source = strings(n, |i| Some(if i == 8 { String::new() } else { "x".into() }));
        let truth = strings(n, |i| (i == 9).then(|| "bogus".to_string()));
        let p = parse(
            "f.parquet",
            &parquet_bytes(vec![
                ("tweet_id", id.clone()),
                ("created_at", ts),
                ("text", text),
                ("source", source.clone()),
                ("truth_label", truth),
            ]),
        );
        assert_eq!(p.rows, n - 4);
        let got: Vec<(i64, &str)> = p.rejects.iter().map(|r| (r.line.unwrap(), r.reason.as_str())).collect();
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(got[0].0, 8);
        assert!(got[0].1.contains("not a timestamp"));
        assert_eq!(got[1], (9, "field source is empty"));
        assert!(got[2].1.contains("truth_label"), "{got:?}");
        assert_eq!(got[3], (5_000, "missing required field text"));

        // binary text (UTF-8 or not), list text, integer and typed timestamps
        let m = 4;
        let bin: ArrayRef = Arc::new(BinaryArray::from(vec![&b"ok"[..], b"\xff", b"a", b"b"]));
        let mut lb = ListBuilder::new(StringBuilder::new());
        for _ in 0..m {
            lb.values().append_value("a");
            lb.append(true);
        }
        let list: ArrayRef = Arc::new(lb.finish());
        let secs: ArrayRef = Arc::new(Int64Array::from(vec![1_739_195_100; m]));
        let nanos: ArrayRef =
            Arc::new(TimestampNanosecondArray::from(vec![1_739_195_100_000_000_001; m]).with_timezone("UTC"));
        let src = strings(m, |_| Some("x".into()));
        let ids = strings(m, |i| Some(i.to_string()));
        let p = parse(
            "b.parquet",
            &parquet_bytes(vec![
                ("tweet_id", ids.clone()),
                ("created_at", nanos.clone()),
                ("text", bin),
                ("source", src.clone()),
            ]),
        );
        assert_eq!((p.rows, p.rejects.len()), (3, 1));
        assert_eq!(p.rejects[0].line, Some(2));
        assert!(p.rejects[0].reason.contains("not UTF-8"));
        let created = p.batches[0].column_by_name("created_at").unwrap();
        assert_eq!(
            created.as_any().downcast_ref::<datafusion::arrow::array::TimestampMicrosecondArray>().unwrap().value(0),
            1_739_195_100_000_000
        );
        let p = parse(
            "l.parquet",
            &parquet_bytes(vec![
                ("tweet_id", ids.clone()),
                ("created_at", nanos),
                ("text", list),
                ("source", src.clone()),
            ]),
        );
        assert_eq!((p.rows, p.rejects.len()), (0, m));
        assert!(p.rejects[0].reason.contains("expected a string, got a list"));
        let texts = strings(m, |_| Some("hi".into()));
        let p = parse(
            "s.parquet",
            &parquet_bytes(vec![("tweet_id", ids), ("created_at", secs), ("text", texts), ("source", src)]),
        );
        assert_eq!((p.rows, p.rejects.len()), (0, m));
        assert!(p.rejects[0].reason.contains("is a number"), "{}", p.rejects[0].reason);
    }

    /// Issue 16 #1: out-of-range times are rejected per record in every format.
    #[test]
    fn out_of_range_times_are_rejected() {
        use datafusion::arrow::array::TimestampMicrosecondArray;
        let mut data = String::new();
        for t in [
            "9999-12-31T23:59:59Z",
            "0001-01-01T00:00:00Z",
            "1600-01-01T00:00:00Z",
            "2262-04-12T00:00:00Z",
            "2025-02-10T00:00:00Z",
        ] {
            data.push_str(&format!("{{\"tweet_id\":\"1\",\"created_at\":\"{t}\",\"text\":\"a\",\"source\":\"x\"}}\n"));
        }
        let p = parse("t.json", data.as_bytes());
        assert_eq!((p.rows, p.rejects.len()), (1, 4));
        assert!(p.rejects.iter().all(|r| r.reason.contains("outside the supported time range")));
        let ts: ArrayRef =
            Arc::new(TimestampMicrosecondArray::from(vec![253_402_300_799_000_000, 0]).with_timezone("UTC"));
        let p = parse(
            "t.parquet",
            &parquet_bytes(vec![
                ("tweet_id", strings(2, |_| Some("1".into()))),
                ("created_at", ts),
                ("text", strings(2, |_| Some("a".into()))),
                ("source", strings(2, |_| Some("x".into()))),
            ]),
        );
        assert_eq!((p.rows, p.rejects.len()), (1, 1));
        assert_eq!(p.rejects[0].line, Some(1));
    }

    /// Issue 16 #3: an unterminated quote rejects its line, not the rest of the file.
    #[test]
    fn csv_unterminated_quote_does_not_swallow_the_file() {
        let mut data = String::from("tweet_id,created_at,text,source\n1,2025-02-10T00:00:00Z,fine,x\n");
        data.push_str("2,2025-02-10T00:00:00Z,\"oops never closed,x\n");
        for i in 3..=52 {
            data.push_str(&format!("{i},2025-02-10T00:00:00Z,\"hello, {i}\",x\n"));
        }
        let p = parse("q.csv", data.as_bytes());
        assert_eq!(p.rows, 51, "{:?}", p.rejects);
        assert_eq!(p.rejects.len(), 1);
        assert_eq!(p.rejects[0].line, Some(3));
        assert!(p.rejects[0].reason.contains("closing quote is likely missing"), "{}", p.rejects[0].reason);
        assert_eq!(p.rejects[0].record.as_deref(), Some("2,2025-02-10T00:00:00Z,\"oops never closed,x"));
        // the rows after it keep their own line numbers and values
        let ids = p.batches[0].column_by_name("tweet_id").unwrap();
        assert_eq!(ids.as_any().downcast_ref::<StringArray>().unwrap().value(1), "3");
        // a quote that never closes, on the last record
        let p = parse(
            "e.csv",
            b"tweet_id,created_at,text,source\n1,2025-02-10T00:00:00Z,ok,x\n2,2025-02-10T00:00:00Z,\"no end,x\nmore\n",
        );
        assert_eq!((p.rows, p.rejects.len()), (1, 2), "{:?}", p.rejects);
        assert!(p.rejects[0].reason.contains("never closes"), "{}", p.rejects[0].reason);
        assert!(p.rejects[1].reason.contains("expected 4 fields"), "the line after it is read on its own");
        // a quoted field running past the text limit over many lines is a runaway too
        let mut data = String::from("tweet_id,created_at,text,source\n1,2025-02-10T00:00:00Z,\"a,x\n");
        for i in 2..200 {
            data.push_str(&format!("{i},2025-02-10T00:00:00Z,b,x\n"));
        }
        data.push_str("200,2025-02-10T00:00:00Z,b\",x\n");
        let p = parse_file("r.csv", Bytes::from(data.into_bytes()), ReadOptions { format: None, max_text_bytes: 1000 });
        assert_eq!(p.rejects[0].line, Some(2));
        assert!(p.rows >= 198, "{} rows, {:?}", p.rows, p.rejects);
    }

    /// Smaller cases of issue 16: BOM, UTF-16, CSV rejects keep their commas.
    #[test]
    fn encodings_and_replayable_csv_rejects() {
        let p = parse("bom.json", format!("\u{feff}{GOOD}\n").as_bytes());
        assert_eq!((p.rows, p.rejects.len()), (1, 0));
        let utf16: Vec<u8> = GOOD.encode_utf16().flat_map(u16::to_le_bytes).collect();
        for data in [utf16.clone(), [&[0xff, 0xfe][..], &utf16].concat()] {
            let p = parse("w.json", &data);
            assert_eq!((p.rows, p.rejects.len()), (0, 1));
            assert!(
                p.rejects[0].reason.contains("UTF-16") && p.rejects[0].reason.contains("iconv"),
                "{}",
                p.rejects[0].reason
            );
        }
        let p = parse("c.csv", b"tweet_id,created_at,text,source\n1,bad,\"a, b\",x\n");
        assert_eq!(p.rejects[0].record.as_deref(), Some("1,bad,\"a, b\",x"));
    }
}
