//! Reading raw tweets from NDJSON, CSV or Parquet with per-record validation.
//!
//! Every record is checked against [`schema::RAW`]: good ones become rows of
//! the raw schema, bad ones become [`Reject`]s naming the file, the line and
//! the reason. Nothing is dropped without a trace, and nothing panics.

use std::collections::BTreeSet;
use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, NaiveDateTime};
use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondBuilder,
};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

use crate::schema::{self, Table};
use crate::{Error, Result};

/// Largest text accepted by default; longer posts are rejected, not scored.
pub const DEFAULT_MAX_TEXT_BYTES: usize = 64 * 1024;
/// How much of a rejected record is kept in `_rejected/`.
pub const REJECT_EXCERPT_BYTES: usize = 4096;
const BATCH_ROWS: usize = 8192;

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

    /// Adds one record; `arrival_micros` fills `ingested_at` when the record has none.
    pub fn push(&mut self, shard_id: &str, sequence_number: &str, data: &[u8], arrival_micros: Option<i64>) {
        let before_rows = self.b.total;
        let before_rejects = self.out.rejects.len();
        self.b.default_ingested_at = arrival_micros;
        if data.iter().all(u8::is_ascii_whitespace) {
            self.out.rejects.push(Reject::new(&self.origin, None, "empty record; producers must put one JSON object per record".into(), data));
        } else {
            parse_ndjson(&self.origin, data, &mut self.b, &mut self.out);
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
    if format == Format::Parquet {
        parse_parquet(file, bytes, opts, &mut out);
        return out;
    }
    let data: Vec<u8> = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut d = Vec::new();
        match flate2::read::MultiGzDecoder::new(&bytes[..]).read_to_end(&mut d) {
            Ok(_) => d,
            Err(e) => {
                out.rejects.push(Reject::new(
                    file,
                    None,
                    format!("gzip data is corrupt ({e}); re-deliver or delete the file"),
                    &[],
                ));
                return out;
            }
        }
    } else {
        bytes.to_vec()
    };
    let mut b = RawBuilder::new(opts.max_text_bytes);
    match format {
        Format::Ndjson => parse_ndjson(file, &data, &mut b, &mut out),
        Format::Csv => parse_csv(file, &data, &mut b, &mut out),
        Format::Parquet => unreachable!("handled above"),
    }
    out.empty = b.total == 0 && out.rejects.is_empty();
    b.finish_into(&mut out);
    out
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn parse_ndjson(file: &str, data: &[u8], b: &mut RawBuilder, out: &mut ParsedFile) {
    for (i, raw_line) in data.split(|c| *c == b'\n').enumerate() {
        let line_no = (i + 1) as i64;
        let line = raw_line.strip_suffix(b"\r").unwrap_or(raw_line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let text = match std::str::from_utf8(line) {
            Ok(t) => t,
            Err(e) => {
                out.rejects.push(Reject::new(
                    file,
                    Some(line_no),
                    format!("invalid UTF-8 at byte {} of the line; records must be UTF-8 JSON", e.valid_up_to()),
                    line,
                ));
                continue;
            }
        };
        // Firehose concatenates records without a separator: read every JSON
        // value on the line.
        let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
        loop {
            let start = stream.byte_offset();
            match stream.next() {
                None => break,
                Some(Ok(Value::Object(map))) => {
                    let rec = &text.as_bytes()[start..stream.byte_offset()];
                    match b.push_json(&map, &mut out.extra_fields) {
                        Ok(()) => {}
                        Err(reason) => out.rejects.push(Reject::new(file, Some(line_no), reason, rec)),
                    }
                }
                Some(Ok(v)) => {
                    let rec = &text.as_bytes()[start..stream.byte_offset()];
                    out.rejects.push(Reject::new(
                        file,
                        Some(line_no),
                        format!("expected a JSON object per record, got {}", json_kind(&v)),
                        rec,
                    ));
                }
                Some(Err(e)) => {
                    out.rejects.push(Reject::new(
                        file,
                        Some(line_no),
                        format!("malformed JSON: {e}"),
                        &text.as_bytes()[start..],
                    ));
                    break;
                }
            }
        }
        b.maybe_flush(out);
    }
}

fn parse_csv(file: &str, data: &[u8], b: &mut RawBuilder, out: &mut ParsedFile) {
    let delim = if file.to_ascii_lowercase().trim_end_matches(".gz").ends_with(".tsv") { b'\t' } else { b',' };
    let mut rdr = csv::ReaderBuilder::new().delimiter(delim).flexible(true).from_reader(data);
    let headers: Vec<String> = match rdr.byte_headers() {
        Ok(h) => h.iter().map(|f| String::from_utf8_lossy(f).trim().to_string()).collect(),
        Err(e) => {
            out.rejects.push(Reject::new(file, Some(1), format!("unreadable CSV header: {e}"), &[]));
            return;
        }
    };
    if headers.iter().all(|h| h.is_empty()) {
        return; // empty file
    }
    let missing: Vec<&str> = schema::RAW
        .iter()
        .filter(|c| !c.nullable && !headers.iter().any(|h| h == c.name))
        .map(|c| c.name)
        .collect();
    if !missing.is_empty() {
        out.rejects.push(Reject::new(
            file,
            Some(1),
            format!("CSV header lacks required column(s) {}; the header must name {}", missing.join(", "),
                schema::RAW.iter().filter(|c| !c.nullable).map(|c| c.name).collect::<Vec<_>>().join(", ")),
            headers.join(",").as_bytes(),
        ));
        return;
    }
    for h in &headers {
        if !schema::RAW.iter().any(|c| c.name == h) {
            out.extra_fields.insert(h.clone());
        }
    }
    let mut rec = csv::ByteRecord::new();
    loop {
        let line_no = rdr.position().line() as i64;
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {
                let line_no = rec.position().map(|p| p.line() as i64).unwrap_or(line_no);
                let raw = rec.as_slice().to_vec();
                if rec.len() != headers.len() {
                    out.rejects.push(Reject::new(
                        file,
                        Some(line_no),
                        format!("expected {} fields as in the header, got {}", headers.len(), rec.len()),
                        &raw,
                    ));
                    continue;
                }
                let mut map = serde_json::Map::new();
                let mut bad_utf8 = None;
                for (h, f) in headers.iter().zip(rec.iter()) {
                    match std::str::from_utf8(f) {
                        Ok(s) if s.is_empty() => {}
                        Ok(s) => {
                            map.insert(h.clone(), Value::String(s.to_string()));
                        }
                        Err(_) => bad_utf8 = Some(h.clone()),
                    }
                }
                if let Some(h) = bad_utf8 {
                    out.rejects.push(Reject::new(
                        file,
                        Some(line_no),
                        format!("field {h}: invalid UTF-8; records must be UTF-8"),
                        &raw,
                    ));
                    continue;
                }
                let mut ignore = BTreeSet::new();
                if let Err(reason) = b.push_json(&map, &mut ignore) {
                    out.rejects.push(Reject::new(file, Some(line_no), reason, &raw));
                }
            }
            Err(e) => {
                out.rejects.push(Reject::new(file, Some(line_no), format!("malformed CSV: {e}"), &[]));
                if !matches!(e.kind(), csv::ErrorKind::Utf8 { .. }) {
                    break;
                }
            }
        }
        b.maybe_flush(out);
    }
}

fn parse_parquet(file: &str, bytes: Bytes, opts: ReadOptions, out: &mut ParsedFile) {
    let file_reject = |reason: String| Reject::new(file, None, reason, &[]);
    if bytes.is_empty() {
        out.empty = true;
        return;
    }
    let reader = match ParquetRecordBatchReaderBuilder::try_new(bytes).and_then(|b| b.with_batch_size(BATCH_ROWS).build()) {
        Ok(r) => r,
        Err(e) => {
            out.rejects.push(file_reject(format!("not a readable Parquet file: {e}")));
            return;
        }
    };
    let target = Table::Raw.schema();
    let mut row_base = 0i64;
    for batch in reader {
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                out.rejects.push(file_reject(format!("Parquet data is corrupt after row {row_base}: {e}")));
                return;
            }
        };
        let n = batch.num_rows();
        let mut reasons: Vec<Option<String>> = vec![None; n];
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(target.fields().len());
        for field in target.fields() {
            let Some(src) = batch.column_by_name(field.name()) else {
                if !field.is_nullable() {
                    out.rejects.push(file_reject(format!(
                        "Parquet file lacks required column {}; it has {}",
                        field.name(),
                        batch.schema().fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
                    )));
                    return;
                }
                cols.push(datafusion::arrow::array::new_null_array(field.data_type(), n));
                continue;
            };
            let converted = match cast(src, field.data_type()) {
                Ok(c) => c,
                Err(e) => {
                    out.rejects.push(file_reject(format!(
                        "column {} has type {} which cannot become {}: {e}",
                        field.name(),
                        src.data_type(),
                        field.data_type()
                    )));
                    return;
                }
            };
            for i in 0..n {
                if reasons[i].is_some() {
                    continue;
                }
                if converted.is_null(i) && !src.is_null(i) {
                    reasons[i] = Some(format!("field {}: value cannot be read as {}", field.name(), field.data_type()));
                } else if converted.is_null(i) && !field.is_nullable() {
                    reasons[i] = Some(format!("missing required field {}", field.name()));
                }
            }
            if field.name() == "text" {
                if let Some(t) = converted.as_any().downcast_ref::<StringArray>() {
                    for (i, v) in t.iter().enumerate() {
                        if let Some(v) = v {
                            if v.len() > opts.max_text_bytes && reasons[i].is_none() {
                                reasons[i] = Some(text_too_long(v.len(), opts.max_text_bytes));
                            }
                        }
                    }
                }
            }
            cols.push(converted);
        }
        for f in batch.schema().fields() {
            if target.field_with_name(f.name()).is_err() {
                out.extra_fields.insert(f.name().clone());
            }
        }
        let keep: BooleanArray = reasons.iter().map(|r| Some(r.is_none())).collect();
        for (i, r) in reasons.into_iter().enumerate() {
            if let Some(reason) = r {
                out.rejects.push(Reject::new(file, Some(row_base + i as i64 + 1), reason, &[]));
            }
        }
        let good = RecordBatch::try_new(target.clone(), cols)
            .and_then(|b| filter_record_batch(&b, &keep));
        match good {
            Ok(b) => {
                out.rows += b.num_rows();
                out.batches.push(b);
            }
            Err(e) => out.rejects.push(file_reject(format!("rows {row_base}..: {e}"))),
        }
        row_base += n as i64;
    }
    out.empty = row_base == 0;
}

fn text_too_long(len: usize, max: usize) -> String {
    format!("text is {len} bytes, over the limit of {max} (raise it with --max-text-bytes)")
}

/// Parses the timestamp formats seen in tweet data, as UTC microseconds:
/// RFC 3339 (`2025-02-10T13:45:00Z`, with offset or fraction), naive
/// `2025-02-10 13:45:00[.ffffff]` / `2025-02-10T13:45:00` (taken as UTC) and
/// Twitter's classic `Mon Feb 10 13:45:00 +0000 2025`.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_micros());
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    DateTime::parse_from_str(s, "%a %b %d %H:%M:%S %z %Y").ok().map(|t| t.timestamp_micros())
}

/// Builds raw-schema batches from validated records.
struct RawBuilder {
    max_text_bytes: usize,
    strings: [StringBuilder; 6],
    created_at: TimestampMicrosecondBuilder,
    ingested_at: TimestampMicrosecondBuilder,
    pending: usize,
    total: usize,
    /// `ingested_at` for records that lack one (stream arrival time).
    default_ingested_at: Option<i64>,
}

// positions of the string columns in `strings`
const S_ID: usize = 0;
const S_TEXT: usize = 1;
const S_SOURCE: usize = 2;
const S_USER: usize = 3;
const S_LANG: usize = 4;
const S_TRUTH: usize = 5;

fn ts_builder() -> TimestampMicrosecondBuilder {
    TimestampMicrosecondBuilder::new().with_timezone("UTC")
}

impl RawBuilder {
    fn new(max_text_bytes: usize) -> Self {
        Self {
            max_text_bytes,
            strings: std::array::from_fn(|_| StringBuilder::new()),
            created_at: ts_builder(),
            ingested_at: ts_builder(),
            pending: 0,
            total: 0,
            default_ingested_at: None,
        }
    }

    /// Validates one JSON record and appends it, or says why it is rejected.
    fn push_json(
        &mut self,
        map: &serde_json::Map<String, Value>,
        extra: &mut BTreeSet<String>,
    ) -> std::result::Result<(), String> {
        fn id(map: &serde_json::Map<String, Value>, k: &str, required: bool) -> std::result::Result<Option<String>, String> {
            match map.get(k) {
                None | Some(Value::Null) if required => Err(format!("missing required field {k}")),
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.trim().is_empty() && required => Err(format!("field {k} is empty")),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
                Some(v) => Err(format!("field {k}: expected a string, got {}", json_kind(v))),
            }
        }
        fn string(map: &serde_json::Map<String, Value>, k: &str, required: bool) -> std::result::Result<Option<String>, String> {
            match map.get(k) {
                None | Some(Value::Null) if required => Err(format!("missing required field {k}")),
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(v) => Err(format!("field {k}: expected a string, got {}", json_kind(v))),
            }
        }
        fn ts(map: &serde_json::Map<String, Value>, k: &str, required: bool) -> std::result::Result<Option<i64>, String> {
            match string(map, k, required)? {
                None => Ok(None),
                Some(s) => parse_timestamp(&s).map(Some).ok_or_else(|| {
                    format!("field {k}: {s:?} is not a timestamp (use RFC 3339, e.g. 2025-02-10T13:45:00Z)")
                }),
            }
        }
        let tweet_id = id(map, "tweet_id", true)?;
        let created_at = ts(map, "created_at", true)?;
        let text = string(map, "text", true)?;
        let source = string(map, "source", true)?;
        if source.as_deref().is_some_and(|s| s.trim().is_empty()) {
            return Err("field source is empty".into());
        }
        let user_id = id(map, "user_id", false)?;
        let lang = string(map, "lang", false)?;
        let ingested_at = ts(map, "ingested_at", false)?;
        let truth = string(map, "truth_label", false)?;
        if let Some(t) = &truth {
            if !matches!(t.as_str(), "negative" | "neutral" | "positive") {
                return Err(format!("field truth_label: {t:?} is not negative, neutral or positive"));
            }
        }
        if let Some(t) = &text {
            if t.len() > self.max_text_bytes {
                return Err(text_too_long(t.len(), self.max_text_bytes));
            }
        }
        for k in map.keys() {
            if !schema::RAW.iter().any(|c| c.name == k) {
                extra.insert(k.clone());
            }
        }
        let vals = [tweet_id, text, source, user_id, lang, truth];
        for (b, v) in self.strings.iter_mut().zip(vals) {
            b.append_option(v);
        }
        self.created_at.append_option(created_at);
        self.ingested_at.append_option(ingested_at.or(self.default_ingested_at));
        self.pending += 1;
        self.total += 1;
        Ok(())
    }

    fn maybe_flush(&mut self, out: &mut ParsedFile) {
        if self.pending >= BATCH_ROWS {
            self.flush(out);
        }
    }

    fn flush(&mut self, out: &mut ParsedFile) {
        if self.pending == 0 {
            return;
        }
        let mut s: Vec<ArrayRef> = self.strings.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef).collect();
        let cols: Vec<ArrayRef> = vec![
            s[S_ID].clone(),
            Arc::new(self.created_at.finish()),
            s[S_TEXT].clone(),
            s[S_SOURCE].clone(),
            s[S_USER].clone(),
            s[S_LANG].clone(),
            Arc::new(self.ingested_at.finish()),
            std::mem::replace(&mut s[S_TRUTH], Arc::new(StringArray::from(Vec::<Option<&str>>::new()))),
        ];
        match RecordBatch::try_new(Table::Raw.schema(), cols) {
            Ok(b) => {
                out.rows += b.num_rows();
                out.batches.push(b);
            }
            // the builders are driven by the schema module, so this is a bug, not bad input
            Err(e) => out.rejects.push(Reject::new("<internal>", None, format!("internal error building rows: {e}"), &[])),
        }
        self.pending = 0;
    }

    fn finish_into(mut self, out: &mut ParsedFile) {
        self.flush(out);
    }
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
        let mut data = b"{\"tweet_id\":\"1\",\"created_at\":\"2025-02-10T00:00:01Z\",\"text\":\"\xff\xfe\",\"source\":\"x\"}\n".to_vec();
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

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:01Z"), Some(1_000_000));
        assert_eq!(parse_timestamp("1970-01-01T01:00:01+01:00"), Some(1_000_000));
        assert_eq!(parse_timestamp("1970-01-01 00:00:01.5"), Some(1_500_000));
        assert_eq!(parse_timestamp("Thu Jan 01 00:00:02 +0000 1970"), Some(2_000_000));
        assert_eq!(parse_timestamp("yesterday"), None);
    }
}
