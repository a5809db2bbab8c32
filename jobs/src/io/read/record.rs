//! The one validation every input record goes through, whatever its format.
//!
//! Readers (NDJSON, CSV, Parquet, Kinesis records) turn each field into a
//! [`Cell`] and hand the record to [`RawBuilder::push`], which checks it
//! against [`schema::RAW`] and appends it, or returns the reason it is rejected.

use std::borrow::Cow;
use std::sync::Arc;

use chrono::{DateTime, NaiveDateTime};
use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray, StringBuilder, TimestampMicrosecondBuilder};
use serde_json::Value;

use super::{BATCH_ROWS, ParsedFile, Reject};
use crate::schema::{self, EVENT_TIME_MAX_SECS, EVENT_TIME_MIN_SECS, Table, event_time_in_range};

/// One field of an input record, as its reader found it.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    /// Absent or NULL.
    Null,
    Str(Cow<'a, str>),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// A typed timestamp (Parquet TIMESTAMP/DATE), UTC microseconds.
    Time(i64),
    /// A typed timestamp whose value does not fit microseconds.
    TimeOverflow,
    /// Anything else: names what it is ("an array", "binary data", …).
    Other(&'static str),
}

impl<'a> Cell<'a> {
    /// A JSON value as a cell (NDJSON and CSV records are JSON maps).
    pub fn from_json(v: Option<&'a Value>) -> Self {
        match v {
            None | Some(Value::Null) => Cell::Null,
            Some(Value::String(s)) => Cell::Str(Cow::Borrowed(s)),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) => Cell::Int(i),
                None => Cell::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Some(Value::Bool(b)) => Cell::Bool(*b),
            Some(Value::Array(_)) => Cell::Other("an array"),
            Some(Value::Object(_)) => Cell::Other("an object"),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Cell::Null => "null",
            Cell::Str(_) => "a string",
            Cell::Int(_) | Cell::Float(_) => "a number",
            Cell::Bool(_) => "a boolean",
            Cell::Time(_) | Cell::TimeOverflow => "a timestamp",
            Cell::Other(k) => k,
        }
    }
}

type Check<T> = std::result::Result<T, String>;

/// An id column (tweet_id, user_id): a string, or an integer taken as its digits.
fn id(k: &str, c: Cell, required: bool) -> Check<Option<String>> {
    match c {
        Cell::Null if required => Err(format!("missing required field {k}")),
        Cell::Null => Ok(None),
        Cell::Str(s) if s.trim().is_empty() && required => Err(format!("field {k} is empty")),
        Cell::Str(s) => Ok(Some(s.into_owned())),
        Cell::Int(n) => Ok(Some(n.to_string())),
        other => Err(format!("field {k}: expected a string, got {}", other.kind())),
    }
}

fn string(k: &str, c: Cell, required: bool) -> Check<Option<String>> {
    match c {
        Cell::Null if required => Err(format!("missing required field {k}")),
        Cell::Null => Ok(None),
        Cell::Str(s) => Ok(Some(s.into_owned())),
        other => Err(format!("field {k}: expected a string, got {}", other.kind())),
    }
}

fn out_of_range(k: &str, shown: &str) -> String {
    format!(
        "field {k}: {shown} is outside the supported time range {}..{} (UTC); fix the record's timestamp",
        fmt_secs(EVENT_TIME_MIN_SECS),
        fmt_secs(EVENT_TIME_MAX_SECS)
    )
}

fn fmt_secs(s: i64) -> String {
    DateTime::from_timestamp(s, 0).map(|t| t.format("%Y-%m-%d").to_string()).unwrap_or_default()
}

fn ts(k: &str, c: Cell, required: bool) -> Check<Option<i64>> {
    let micros = match c {
        Cell::Null if required => return Err(format!("missing required field {k}")),
        Cell::Null => return Ok(None),
        Cell::Str(s) => match parse_timestamp(&s) {
            Some(t) if event_time_in_range(t) => t,
            Some(_) => return Err(out_of_range(k, &format!("{s:?}"))),
            None => {
                return Err(format!("field {k}: {s:?} is not a timestamp (use RFC 3339, e.g. 2025-02-10T13:45:00Z)"));
            }
        },
        Cell::Time(t) if event_time_in_range(t) => t,
        Cell::Time(t) => {
            let shown = DateTime::from_timestamp_micros(t).map(|d| d.to_rfc3339()).unwrap_or_else(|| format!("{t} µs"));
            return Err(out_of_range(k, &shown));
        }
        Cell::TimeOverflow => return Err(out_of_range(k, "the value")),
        Cell::Int(n) => {
            return Err(format!(
                "field {k}: {n} is a number, and whether it counts seconds, milliseconds or microseconds is not \
                 known; write RFC 3339 text (2025-02-10T13:45:00Z) or a Parquet TIMESTAMP column"
            ));
        }
        other => return Err(format!("field {k}: expected a timestamp, got {}", other.kind())),
    };
    Ok(Some(micros))
}

pub(super) fn text_too_long(len: usize, max: usize) -> String {
    format!("text is {len} bytes, over the limit of {max} (raise it with --max-text-bytes)")
}

/// Parses the timestamp formats seen in tweet data, as UTC microseconds:
/// RFC 3339 (`2025-02-10T13:45:00Z`, with offset or fraction), naive
/// `2025-02-10 13:45:00[.ffffff]` / `2025-02-10T13:45:00` (taken as UTC) and
/// Twitter's classic `Mon Feb 10 13:45:00 +0000 2025`. `None` when the text
/// is none of these or does not fit 64-bit microseconds.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    // every date chrono parses (years up to 262143) fits 64-bit microseconds
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

/// The reason for an event time more than `ahead` after its arrival on the stream.
fn too_far_ahead(at: i64, arrival: i64, ahead: std::time::Duration) -> String {
    let t = |us: i64| {
        DateTime::from_timestamp_micros(us)
            .map_or_else(|| us.to_string(), |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    };
    format!(
        "field created_at: {} is more than {}s ahead of the record's arrival on the stream ({}); a producer's clock is \
         likely wrong, and such a time would move the watermark past every later record (raise --max-event-ahead if \
         producers really stamp times this far ahead)",
        t(at),
        ahead.as_secs(),
        t(arrival)
    )
}

/// Builds raw-schema batches from validated records.
pub(super) struct RawBuilder {
    max_text_bytes: usize,
    strings: [StringBuilder; 6],
    created_at: TimestampMicrosecondBuilder,
    ingested_at: TimestampMicrosecondBuilder,
    pending: usize,
    pub(super) total: usize,
    /// `ingested_at` for records that lack one (stream arrival time).
    pub(super) default_ingested_at: Option<i64>,
    /// How far an event time may be after the record's arrival
    /// (`default_ingested_at`; the stream's `--max-event-ahead`).
    pub(super) max_event_ahead: Option<std::time::Duration>,
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
    pub(super) fn new(max_text_bytes: usize) -> Self {
        Self {
            max_text_bytes,
            strings: std::array::from_fn(|_| StringBuilder::new()),
            created_at: ts_builder(),
            ingested_at: ts_builder(),
            pending: 0,
            total: 0,
            default_ingested_at: None,
            max_event_ahead: None,
        }
    }

    /// Validates one record whose fields `field(name)` gives and appends it,
    /// or says why it is rejected. The same rules hold for every format.
    pub(super) fn push<'a>(&mut self, field: impl Fn(&str) -> Cell<'a>) -> Check<()> {
        let tweet_id = id("tweet_id", field("tweet_id"), true)?;
        let created_at = ts("created_at", field("created_at"), true)?;
        if let (Some(at), Some(arrival), Some(ahead)) = (created_at, self.default_ingested_at, self.max_event_ahead)
            && at > arrival.saturating_add(ahead.as_micros() as i64)
        {
            return Err(too_far_ahead(at, arrival, ahead));
        }
        let text = string("text", field("text"), true)?;
        let source = string("source", field("source"), true)?;
        if source.as_deref().is_some_and(|s| s.trim().is_empty()) {
            return Err("field source is empty".into());
        }
        let user_id = id("user_id", field("user_id"), false)?;
        let lang = string("lang", field("lang"), false)?;
        let ingested_at = ts("ingested_at", field("ingested_at"), false)?;
        let truth = string("truth_label", field("truth_label"), false)?;
        if let Some(t) = &truth
            && !schema::LABELS.contains(&t.as_str())
        {
            return Err(format!("field truth_label: {t:?} is not {}", schema::LABELS.join(", ")));
        }
        if let Some(t) = &text
            && t.len() > self.max_text_bytes
        {
            return Err(text_too_long(t.len(), self.max_text_bytes));
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

    /// Validates a JSON object (NDJSON line, Kinesis record, CSV row).
    pub(super) fn push_json(
        &mut self,
        map: &serde_json::Map<String, Value>,
        extra: &mut std::collections::BTreeSet<String>,
    ) -> Check<()> {
        self.push(|k| Cell::from_json(map.get(k)))?;
        for k in map.keys() {
            if !schema::RAW.iter().any(|c| c.name == k) {
                extra.insert(k.clone());
            }
        }
        Ok(())
    }

    pub(super) fn maybe_flush(&mut self, out: &mut ParsedFile) {
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
            Err(e) => {
                out.rejects.push(Reject::new("<internal>", None, format!("internal error building rows: {e}"), &[]))
            }
        }
        self.pending = 0;
    }

    pub(super) fn finish_into(mut self, out: &mut ParsedFile) {
        self.flush(out);
    }

    /// The rows and rejects since the last chunk, as one [`ParsedFile`]
    /// (`total` keeps counting across chunks).
    pub(super) fn take_chunk(&mut self, out: &mut ParsedFile) -> ParsedFile {
        self.flush(out);
        std::mem::take(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec<'a>(over: &'a [(&'a str, Cell<'a>)]) -> impl Fn(&str) -> Cell<'a> + 'a {
        move |k| {
            if let Some((_, c)) = over.iter().find(|(n, _)| *n == k) {
                return c.clone();
            }
            match k {
                "tweet_id" => Cell::Str("1".into()),
                "created_at" => Cell::Str("2025-02-10T00:00:00Z".into()),
                "text" => Cell::Str("hi".into()),
                "source" => Cell::Str("x".into()),
                _ => Cell::Null,
            }
        }
    }

    fn check(over: &[(&str, Cell)]) -> Check<()> {
        RawBuilder::new(100).push(rec(over))
    }

    #[test]
    fn one_rule_per_field() {
        assert!(check(&[]).is_ok());
        assert!(check(&[("tweet_id", Cell::Int(7))]).is_ok());
        assert!(check(&[("created_at", Cell::Time(0))]).is_ok());
        let cases: &[(&str, Cell, &str)] = &[
            ("tweet_id", Cell::Str(" ".into()), "field tweet_id is empty"),
            ("source", Cell::Str("".into()), "field source is empty"),
            ("text", Cell::Other("a list"), "field text: expected a string, got a list"),
            ("text", Cell::Null, "missing required field text"),
            ("truth_label", Cell::Str("bogus".into()), "is not negative, neutral, positive"),
            ("created_at", Cell::Int(1_739_195_100), "is a number"),
            (
                "created_at",
                Cell::Str("9999-12-31T23:59:59Z".into()),
                "outside the supported time range 1900-01-01..2200-01-01",
            ),
            ("created_at", Cell::Str("1600-01-01T00:00:00Z".into()), "outside the supported time range"),
            ("created_at", Cell::Str("2262-04-12T00:00:00Z".into()), "outside the supported time range"),
            ("created_at", Cell::Time(i64::MIN), "outside the supported time range"),
            ("created_at", Cell::TimeOverflow, "outside the supported time range"),
            ("ingested_at", Cell::Str("0001-01-01T00:00:00Z".into()), "field ingested_at"),
            ("text", Cell::Str("x".repeat(101).into()), "over the limit of 100"),
        ];
        for (k, c, want) in cases {
            let e = check(&[(k, c.clone())]).unwrap_err();
            assert!(e.contains(want), "{k}={c:?}: {e}");
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:01Z"), Some(1_000_000));
        assert_eq!(parse_timestamp("1970-01-01T01:00:01+01:00"), Some(1_000_000));
        assert_eq!(parse_timestamp("1970-01-01 00:00:01.5"), Some(1_500_000));
        assert_eq!(parse_timestamp("Thu Jan 01 00:00:02 +0000 1970"), Some(2_000_000));
        assert_eq!(parse_timestamp("yesterday"), None);
        assert!(parse_timestamp("9999-12-31T23:59:59Z").is_some());
    }
}
