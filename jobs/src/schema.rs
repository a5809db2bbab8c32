//! The single source of truth for every table sentiflow reads or writes.
//!
//! Arrow schemas, the input validation of raw records, the output layout
//! (directory and Hive partition keys) and the Athena/Glue column types are
//! all derived from the column lists below.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Column types used by sentiflow tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    String,
    /// Timestamp, microseconds, UTC.
    Timestamp,
    Float64,
    Int64,
}

impl ColType {
    pub fn arrow(self) -> DataType {
        match self {
            ColType::String => DataType::Utf8,
            ColType::Timestamp => timestamp_type(),
            ColType::Float64 => DataType::Float64,
            ColType::Int64 => DataType::Int64,
        }
    }

    /// The type Athena (Glue/Hive DDL) uses for this column in Parquet.
    pub fn athena(self) -> &'static str {
        match self {
            ColType::String => "string",
            ColType::Timestamp => "timestamp",
            ColType::Float64 => "double",
            ColType::Int64 => "bigint",
        }
    }
}

/// Earliest event time sentiflow accepts: 1900-01-01T00:00:00Z (epoch seconds).
///
/// Time columns are microseconds, but DataFusion's date functions
/// (`date_bin`, `to_char` for the `dt=`/`hour=` keys) work in nanoseconds,
/// which end in 1677 and 2262. Records outside [1900, 2200) are rejected with
/// this range in the reason instead of failing a whole query.
pub const EVENT_TIME_MIN_SECS: i64 = -2_208_988_800;
/// End (exclusive) of the accepted event times: 2200-01-01T00:00:00Z.
pub const EVENT_TIME_MAX_SECS: i64 = 7_258_118_400;

/// Whether a UTC microsecond timestamp lies in the accepted range.
pub fn event_time_in_range(micros: i64) -> bool {
    (EVENT_TIME_MIN_SECS * 1_000_000..EVENT_TIME_MAX_SECS * 1_000_000).contains(&micros)
}

/// `Timestamp(Microsecond, "UTC")`, the type of every time column.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColType,
    pub nullable: bool,
    pub doc: &'static str,
}

const fn col(name: &'static str, ty: ColType, nullable: bool, doc: &'static str) -> Column {
    Column { name, ty, nullable, doc }
}

use ColType::*;

/// A raw tweet, as produced by the generators and ingested from files or streams.
/// Non-nullable columns are required in every input record.
pub const RAW: &[Column] = &[
    col("tweet_id", String, false, "tweet id (string; integer ids in input are accepted)"),
    col("created_at", Timestamp, false, "event time: when the post was written (UTC)"),
    col("text", String, false, "post text"),
    col("source", String, false, "platform or feed the post came from"),
    col("user_id", String, true, "author id"),
    col("lang", String, true, "language code (BCP 47, e.g. en, es)"),
    col("ingested_at", Timestamp, true, "when the record entered the pipeline (UTC)"),
    col(
        "truth_label",
        String,
        true,
        "ground-truth polarity of synthetic posts (negative/neutral/positive); NULL for real data",
    ),
];

/// The values of `truth_label` and `sentiment_label`.
pub const LABELS: &[&str] = &["negative", "neutral", "positive"];

/// Columns the score job adds to a raw tweet.
pub const SCORE_COLUMNS: &[Column] = &[
    col("sentiment_score", Float64, true, "score in [-1, 1]; NULL when unscorable"),
    col("sentiment_label", String, true, "negative, neutral or positive; NULL when unscorable"),
    col(
        "scorer",
        String,
        false,
        "model and version that scored the row (with --fallback: the one that answered for it)",
    ),
    col("scored_at", Timestamp, false, "when the row was scored (UTC)"),
    col("score_error", String, true, "why the row could not be scored; NULL when scored"),
    col(
        "fallback_reason",
        String,
        true,
        "why the run's model handed the row to the fallback scorer (--fallback); NULL when it scored the row itself",
    ),
];

/// Aggregate columns shared by `windows` and `windows_by_source`.
pub const WINDOW_METRICS: &[Column] = &[
    col("n", Int64, false, "rows with a score in the window"),
    col("n_unscored", Int64, false, "rows in the window whose score is NULL"),
    col("avg_score", Float64, true, "mean score"),
    col("min_score", Float64, true, "lowest score"),
    col("max_score", Float64, true, "highest score"),
    col("n_negative", Int64, false, "rows labelled negative"),
    col("n_positive", Int64, false, "rows labelled positive"),
    col("share_negative", Float64, true, "n_negative / n"),
    col(
        "n_fallback",
        Int64,
        false,
        "of n, rows scored by the fallback scorer (--fallback: languages the model does not read)",
    ),
];

pub const WINDOW_BOUNDS: &[Column] = &[
    col("window_start", Timestamp, false, "window start, inclusive (UTC)"),
    col("window_end", Timestamp, false, "window end, exclusive (UTC)"),
];

/// What drove each window: its top terms by lift (`sql/window_terms.sql`).
pub const WINDOW_TERMS: &[Column] = &[
    col("window_start", Timestamp, false, "window start, inclusive (UTC)"),
    col("window_end", Timestamp, false, "window end, exclusive (UTC)"),
    col("term", String, false, "hashtag (#x), cashtag ($x), word or word bigram, case-folded"),
    col("kind", String, false, "hashtag, cashtag, word or bigram"),
    col("n", Int64, false, "tweets in the window containing the term"),
    col("avg_score", Float64, true, "mean score of those tweets; NULL when none has a score"),
    col("share_negative", Float64, true, "share of those scored tweets labelled negative"),
    col("lift", Float64, true, "z-score of the term's log-odds in the window against the background (Fightin' Words)"),
    col("neg_lift", Float64, true, "the same statistic in the window's negative tweets against its other tweets"),
];

/// Fired alerts (written by streaming mode; read by the report).
pub const ALERTS: &[Column] = &[
    col("window_start", Timestamp, false, "start of the window the alert is about (UTC)"),
    col("window_end", Timestamp, false, "end of that window (UTC)"),
    col("rule", String, false, "name of the rule that fired"),
    col("source", String, true, "source the alert is about; NULL for all sources"),
    col("metric", String, false, "metric the rule checks, e.g. share_negative"),
    col("value", Float64, false, "the metric's value in the window"),
    col("threshold", Float64, false, "the rule's threshold"),
    col("message", String, false, "human-readable description"),
    col("fired_at", Timestamp, false, "when the alert fired (UTC)"),
    col(
        "drivers",
        String,
        true,
        "the window's top terms by neg_lift, comma-separated: what its negative tweets were about",
    ),
];

pub const REJECTED: &[Column] = &[
    col("job", String, false, "job that rejected the record"),
    col("file", String, false, "input file (URL or path)"),
    col("line", Int64, true, "1-based line (NDJSON/CSV) or row (Parquet); NULL when the whole file was rejected"),
    col("reason", String, false, "why the record was rejected"),
    col("record", String, true, "the record's text, lossily decoded, at most 4 KiB"),
    col("record_bytes", Int64, false, "the record's full size in bytes"),
    col("rejected_at", Timestamp, false, "when it was rejected (UTC)"),
    col("shard_id", String, true, "Kinesis shard the record came from; NULL for files"),
    col("sequence_number", String, true, "the record's Kinesis sequence number; NULL for files"),
];

/// A table sentiflow writes, with its directory under the data root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Raw,
    Scored,
    Windows,
    WindowsBySource,
    Rejected,
    Alerts,
    WindowTerms,
}

impl Table {
    pub const ALL: [Table; 7] = [
        Table::Raw,
        Table::Scored,
        Table::Windows,
        Table::WindowsBySource,
        Table::WindowTerms,
        Table::Rejected,
        Table::Alerts,
    ];

    /// Name of the table in `sentiflow sql` and in Athena.
    pub fn sql_name(self) -> &'static str {
        match self {
            Table::Raw => "raw_tweets",
            Table::Scored => "scored_tweets",
            Table::Windows => "windows",
            Table::WindowsBySource => "windows_by_source",
            Table::Rejected => "rejected",
            Table::Alerts => "alerts",
            Table::WindowTerms => "window_terms",
        }
    }

    /// Directory under the data root.
    pub fn dir(self) -> &'static str {
        match self {
            Table::Raw => "raw",
            Table::Scored => "scored",
            Table::Windows => "windows",
            Table::WindowsBySource => "windows_by_source",
            Table::Rejected => "_rejected",
            Table::Alerts => "alerts",
            Table::WindowTerms => "window_terms",
        }
    }

    /// Hive partition keys (string columns, not stored in the files).
    pub fn partition_keys(self) -> &'static [&'static str] {
        match self {
            Table::Raw | Table::Scored => &["dt", "hour"],
            Table::Windows | Table::WindowsBySource | Table::WindowTerms | Table::Alerts => &["dt"],
            Table::Rejected => &["job"],
        }
    }

    /// Columns stored in the Parquet files, in order.
    pub fn columns(self) -> Vec<Column> {
        match self {
            Table::Raw => RAW.to_vec(),
            Table::Scored => RAW.iter().chain(SCORE_COLUMNS).copied().collect(),
            Table::Windows => WINDOW_BOUNDS.iter().chain(WINDOW_METRICS).copied().collect(),
            Table::WindowsBySource => WINDOW_BOUNDS
                .iter()
                .copied()
                .chain([col("source", String, false, "platform or feed")])
                .chain(WINDOW_METRICS.iter().copied())
                .collect(),
            Table::Rejected => REJECTED.iter().filter(|c| c.name != "job").copied().collect(),
            Table::Alerts => ALERTS.to_vec(),
            Table::WindowTerms => WINDOW_TERMS.to_vec(),
        }
    }

    /// Arrow schema of the files (partition keys excluded).
    pub fn schema(self) -> SchemaRef {
        static CACHE: LazyLock<Vec<SchemaRef>> =
            LazyLock::new(|| Table::ALL.iter().map(|t| Arc::new(to_schema(&t.columns()))).collect());
        let idx = Table::ALL.iter().position(|t| *t == self).unwrap_or_default();
        CACHE[idx].clone()
    }
}

pub fn to_schema(cols: &[Column]) -> Schema {
    Schema::new(cols.iter().map(|c| Field::new(c.name, c.ty.arrow(), c.nullable)).collect::<Vec<_>>())
}

/// How Athena computes a partition key's values (partition projection), so no
/// crawler or `MSCK REPAIR TABLE` is needed.
pub fn projection(key: &str) -> Vec<(&'static str, &'static str)> {
    match key {
        "dt" => vec![
            ("type", "date"),
            ("format", "yyyy-MM-dd"),
            ("range", "2020-01-01,NOW"),
            ("interval", "1"),
            ("interval.unit", "DAYS"),
        ],
        "hour" => vec![("type", "integer"), ("range", "0,23"), ("digits", "2")],
        "job" => vec![("type", "enum"), ("values", "score,ingest,stream")],
        _ => vec![],
    }
}

impl Table {
    /// One-line description, used as the Glue table comment.
    pub fn description(self) -> &'static str {
        match self {
            Table::Raw => "raw tweets as generated or ingested (Hive-partitioned by event time)",
            Table::Scored => "tweets with their sentiment score, label, scorer and error reason",
            Table::Windows => "sentiment aggregates per event-time window, all sources",
            Table::WindowsBySource => "sentiment aggregates per event-time window and source",
            Table::Rejected => "input records that failed validation, with file, line and reason",
            Table::Alerts => "alerts fired by streaming mode, one per window and rule",
            Table::WindowTerms => "what drove each window: its top terms (hashtags, cashtags, words, bigrams) by lift",
        }
    }
}

/// The Glue/Athena view of every table: what `infra/terraform/glue_schema.json`
/// holds (Terraform builds the Glue tables from it) and a test keeps equal.
pub fn glue_json() -> serde_json::Value {
    let tables: serde_json::Map<std::string::String, serde_json::Value> = Table::ALL
        .iter()
        .map(|t| {
            let cols: Vec<serde_json::Value> = t
                .columns()
                .iter()
                .map(|c| serde_json::json!({"name": c.name, "type": c.ty.athena(), "comment": c.doc}))
                .collect();
            let keys: Vec<serde_json::Value> = t
                .partition_keys()
                .iter()
                .map(|k| {
                    let proj: serde_json::Map<std::string::String, serde_json::Value> =
                        projection(k).into_iter().map(|(a, b)| (a.to_string(), b.into())).collect();
                    serde_json::json!({"name": k, "type": "string", "projection": proj})
                })
                .collect();
            let template = t.partition_keys().iter().map(|k| format!("{k}=${{{k}}}")).collect::<Vec<_>>().join("/");
            (
                t.sql_name().to_string(),
                serde_json::json!({
                    "dir": t.dir(),
                    "description": t.description(),
                    "columns": cols,
                    "partition_keys": keys,
                    "location_template_suffix": template,
                }),
            )
        })
        .collect();
    serde_json::json!({
        "generated_by": "sentiflow schema --glue-json (jobs/src/schema.rs); do not edit",
        "tables": tables,
    })
}

/// Athena DDL (`CREATE EXTERNAL TABLE` with partition projection) for every
/// table, below `${DATA_ROOT}` (an s3:// URL without a trailing slash):
/// what `sql/athena/ddl.sql` holds, for users who do not run the Terraform.
pub fn athena_ddl() -> std::string::String {
    let mut out = std::string::String::from(
        "-- sql/athena/ddl.sql: the Athena tables of a sentiflow data root, with partition projection\n\
         -- (no crawler, no MSCK REPAIR). Generated by `sentiflow schema --athena-ddl` from\n\
         -- jobs/src/schema.rs; do not edit. Replace ${DATA_ROOT} (s3://bucket/prefix) and\n\
         -- ${DATABASE} before running, or let infra/terraform create the same tables in Glue.\n",
    );
    for t in Table::ALL {
        let cols: Vec<std::string::String> = t
            .columns()
            .iter()
            .map(|c| format!("  `{}` {} COMMENT '{}'", c.name, c.ty.athena(), c.doc.replace('\'', "''")))
            .collect();
        let keys: Vec<std::string::String> = t.partition_keys().iter().map(|k| format!("`{k}` string")).collect();
        let mut props = vec![("projection.enabled".to_string(), "true".to_string())];
        for k in t.partition_keys() {
            for (a, b) in projection(k) {
                props.push((format!("projection.{k}.{a}"), b.to_string()));
            }
        }
        let template = t.partition_keys().iter().map(|k| format!("{k}=${{{k}}}")).collect::<Vec<_>>().join("/");
        props.push(("storage.location.template".into(), format!("${{DATA_ROOT}}/{}/{template}/", t.dir())));
        props.push(("parquet.compression".into(), "ZSTD".into()));
        let props: Vec<std::string::String> = props.iter().map(|(a, b)| format!("  '{a}' = '{b}'")).collect();
        out += &format!(
            "\nCREATE EXTERNAL TABLE IF NOT EXISTS ${{DATABASE}}.{} (\n{}\n)\nCOMMENT '{}'\nPARTITIONED BY ({})\nSTORED AS PARQUET\nLOCATION '${{DATA_ROOT}}/{}/'\nTBLPROPERTIES (\n{}\n);\n",
            t.sql_name(),
            cols.join(",\n"),
            t.description(),
            keys.join(", "),
            t.dir(),
            props.join(",\n"),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scored_extends_raw() {
        let scored = Table::Scored.schema();
        for (i, f) in Table::Raw.schema().fields().iter().enumerate() {
            assert_eq!(scored.field(i), f.as_ref());
        }
        assert!(scored.field_with_name("sentiment_score").unwrap().is_nullable());
    }

    #[test]
    fn partition_keys_are_not_file_columns() {
        for t in Table::ALL {
            for k in t.partition_keys() {
                assert!(t.schema().field_with_name(k).is_err(), "{t:?}.{k}");
            }
        }
    }
}
