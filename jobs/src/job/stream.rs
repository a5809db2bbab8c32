//! `sentiflow stream`: micro-batches from Kinesis, scored, aggregated over
//! event-time windows with a watermark, appended to S3 exactly once.
//!
//! Every trigger: read new records from every readable shard (parents before
//! children, as ingest does), write the raw and scored rows, merge the
//! batch's window partials with the kept open-window state
//! (`sql/window_source_aggs.sql` + `sql/stream_merge.sql`), and emit the
//! windows the watermark (max event time seen − `--watermark`) has passed
//! (`sql/windows.sql`, `sql/windows_by_source.sql`), each exactly once.
//! Rows older than the watermark are late: counted and written to `late/`.
//!
//! Exactly once: the batch's shard ranges are checkpointed first (intent),
//! then every output is written under a name derived from the batch id, then
//! shard cursors + window state + batch id are committed together in one
//! conditional write. A restart that finds an intent re-reads exactly those
//! ranges from the committed state and rewrites the same files.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{
    DataType, Field, Float64Type, Int64Type, Schema, SchemaRef, TimestampMicrosecondType,
};
use datafusion::common::ScalarValue;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::context::JobContext;
use crate::io::checkpoint::{StateStore, Version, crash_point};
use crate::io::kinesis::{KinesisReader, Position, ReadError, StreamUrl, sleep_or_stop};
use crate::io::read::RecordParser;
use crate::io::retry::RetryPolicy;
use crate::io::store::Location;
use crate::io::write::{PartitionedWriter, write_raw_and_rejects};
use crate::job::aggregate::{WindowSpec, far_future, far_past};
use crate::job::alerts::{Rules, Webhook, WindowFigures, alerts_batch, evaluate};
use crate::schema::Table;
use crate::scorer::JobScorer;
use crate::sql::{interval_param, timestamp_param};
use crate::tables::register_batches;
use crate::{Error, Result, sql};

#[derive(Debug, Clone)]
pub struct StreamArgs {
    pub from: String,
    /// Data root: raw/, scored/, late/, windows/, windows_by_source/, alerts/, _rejected/, _checkpoints/.
    pub to: String,
    pub spec: WindowSpec,
    pub watermark: chrono::Duration,
    pub trigger: Duration,
    pub until_caught_up: bool,
    /// Records read per shard per micro-batch at most.
    pub max_records_per_shard: usize,
    pub rules: Option<Rules>,
    pub webhook: Option<String>,
    pub max_text_bytes: usize,
    pub retry: RetryPolicy,
}

#[derive(Debug, Clone, Default)]
pub struct StreamReport {
    pub stream: String,
    pub batches: u64,
    pub replays: u64,
    pub records: u64,
    pub rows: u64,
    pub rejected: u64,
    pub late_rows: u64,
    pub windows: u64,
    pub windows_by_source: u64,
    pub alerts: u64,
    pub webhook_delivered: u64,
    pub open_windows: usize,
    pub watermark_us: Option<i64>,
    /// Record arrival on the stream → its micro-batch durable, milliseconds: p50, p95, p99, max.
    pub latency_ms: Option<[u64; 4]>,
    pub elapsed: Duration,
}

/// The checkpoint, one JSON document per stream (serde; unknown fields such
/// as the store's `rev` and `updated_at` are ignored on reading).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Checkpoint {
    batch_id: u64,
    #[serde(default)]
    shards: BTreeMap<String, ShardCursor>,
    #[serde(default)]
    max_event_us: Option<i64>,
    /// open windows: rows of window_source_aggs
    #[serde(default)]
    state: Vec<Value>,
    /// emitted windows' (start, avg, n), for trailing-statistics rules
    #[serde(default)]
    history: Vec<(i64, f64, i64)>,
    /// the micro-batch being written
    #[serde(default)]
    pending: Option<PendingBatch>,
    #[serde(default)]
    totals: BTreeMap<String, u64>,
}

/// Where a shard stands: its last committed sequence number, and whether it
/// is closed (split or merged) and read to its end.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct ShardCursor {
    committed: Option<String>,
    #[serde(default)]
    closed: bool,
}

/// A micro-batch being written: its id, shard → (first, last) sequence
/// numbers, and the shards found closed in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PendingBatch {
    batch_id: u64,
    #[serde(default)]
    ranges: BTreeMap<String, (String, String)>,
    #[serde(default)]
    closed: Vec<String>,
}

impl Checkpoint {
    fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn from_value(v: &Value) -> std::result::Result<Self, String> {
        serde_json::from_value(v.clone()).map_err(|e| e.to_string())
    }
}

/// Columns of window_source_aggs / the window state.
fn partial_schema() -> SchemaRef {
    let ts = DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("window_start", ts, true),
        Field::new("source", DataType::Utf8, true),
        Field::new("n", DataType::Int64, true),
        Field::new("n_unscored", DataType::Int64, true),
        Field::new("sum_score", DataType::Float64, true),
        Field::new("min_score", DataType::Float64, true),
        Field::new("max_score", DataType::Float64, true),
        Field::new("n_negative", DataType::Int64, true),
        Field::new("n_positive", DataType::Int64, true),
    ]))
}

/// Batches in window_source_aggs' columns, typed as the state (all nullable).
fn as_partials(batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
    batches
        .into_iter()
        .map(|b| b.with_schema(partial_schema()).map_err(|e| Error::arrow("window partials", e)))
        .collect()
}

fn state_batch(rows: &[Value]) -> Result<RecordBatch> {
    let i = |k: usize| -> ArrayRef { Arc::new(rows.iter().map(|r| r[k].as_i64()).collect::<Int64Array>()) };
    let f = |k: usize| -> ArrayRef { Arc::new(rows.iter().map(|r| r[k].as_f64()).collect::<Float64Array>()) };
    let cols: Vec<ArrayRef> = vec![
        Arc::new(rows.iter().map(|r| r[0].as_i64()).collect::<TimestampMicrosecondArray>().with_timezone("UTC")),
        Arc::new(rows.iter().map(|r| r[1].as_str().map(str::to_string)).collect::<StringArray>()),
        i(2),
        i(3),
        f(4),
        f(5),
        f(6),
        i(7),
        i(8),
    ];
    RecordBatch::try_new(partial_schema(), cols).map_err(|e| Error::arrow("window state", e))
}

fn state_rows(b: &RecordBatch) -> Vec<Value> {
    let ws = b.column(0).as_primitive::<TimestampMicrosecondType>();
    let src = datafusion::arrow::compute::cast(b.column(1), &DataType::Utf8).unwrap_or_else(|_| b.column(1).clone());
    let Some(src) = src.as_any().downcast_ref::<StringArray>() else { return Vec::new() };
    let ints = |k: usize| b.column(k).as_primitive::<Int64Type>();
    let flts = |k: usize| b.column(k).as_primitive::<Float64Type>();
    (0..b.num_rows())
        .map(|r| {
            let oi = |k: usize| (!ints(k).is_null(r)).then(|| ints(k).value(r));
            let of = |k: usize| (!flts(k).is_null(r)).then(|| flts(k).value(r));
            json!([ws.value(r), src.value(r), oi(2), oi(3), of(4), of(5), of(6), oi(7), oi(8)])
        })
        .collect()
}

async fn collect(
    jc: &JobContext,
    name: &str,
    params: Vec<(&str, ScalarValue)>,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let df = sql::query(&jc.ctx, name, params).await?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    Ok((schema, df.collect().await.map_err(Error::query)?))
}

fn percentiles(mut v: Vec<u64>) -> Option<[u64; 4]> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Some([p(0.5), p(0.95), p(0.99), v[v.len() - 1]])
}

pub async fn run(
    jc: &JobContext,
    scorer: JobScorer,
    args: StreamArgs,
    mut stop: watch::Receiver<bool>,
) -> Result<StreamReport> {
    let started = Instant::now();
    let mut s = Streamer::open(jc, &scorer, &args).await?;
    loop {
        // ---- 1. what to read: a pending batch's exact ranges, or what is new
        let replay = s.ck.pending.clone();
        let batch = match &replay {
            Some(p) => s.read_replay(p).await?,
            None => s.read_new().await?,
        };
        let n_records = batch.n_records();
        if n_records == 0 && batch.closed_now.is_empty() && replay.is_none() {
            if (args.until_caught_up && batch.all_caught_up) || *stop.borrow() {
                break;
            }
            sleep_or_stop(args.trigger, &stop).await;
            continue;
        }
        // ---- 2. intent, 3-4. rows, 5. windows, 6. commit
        let batch_id = replay.as_ref().map(|p| p.batch_id).unwrap_or(s.ck.batch_id + 1);
        if replay.is_none() {
            s.write_intent(batch_id, &batch).await?;
        }
        let name = format!("batch-{batch_id:010}.parquet");
        let rows = s.handle_rows(&batch, &name).await?;
        let windows = s.handle_windows(rows.on_time.clone(), rows.max_event, &name, rows.scored_at).await?;
        crash_point("stream_outputs");
        s.commit(batch_id, &batch, &rows, &windows).await?;
        if let (Some(hook), false) = (&s.webhook, windows.fired.is_empty()) {
            s.report.webhook_delivered += hook.post(&windows.fired).await as u64;
        }
        if *stop.borrow() {
            break;
        }
        if replay.is_none() && n_records > 0 && !batch.all_caught_up {
            continue; // more to read right away
        }
        if !(args.until_caught_up && batch.all_caught_up) {
            sleep_or_stop(args.trigger, &stop).await;
        }
        if stop.has_changed().unwrap_or(false) && *stop.borrow_and_update() {
            break;
        }
    }
    let _ = jc.ctx.deregister_table("raw_tweets");
    let mut report = std::mem::take(&mut s.report);
    report.open_windows = s.ck.state.len();
    report.watermark_us = s.ck.max_event_us.map(|m| m - s.delay_us);
    report.latency_ms = percentiles(std::mem::take(&mut s.latencies));
    report.elapsed = started.elapsed();
    Ok(report)
}

/// What one micro-batch read.
struct ReadBatch {
    records: BTreeMap<String, Vec<aws_sdk_kinesis::types::Record>>,
    /// Shards read to their end (closed by a split or merge) in this batch.
    closed_now: Vec<String>,
    all_caught_up: bool,
}

impl ReadBatch {
    fn n_records(&self) -> usize {
        self.records.values().map(Vec::len).sum()
    }
}

/// The rows of one micro-batch, once written.
struct BatchRows {
    on_time: Vec<RecordBatch>,
    max_event: Option<i64>,
    rows: u64,
    rejected: u64,
    late_rows: u64,
    scored_at: i64,
}

/// The windows one micro-batch emitted, and what stays open.
struct BatchWindows {
    keep: Vec<RecordBatch>,
    windows: u64,
    by_source: u64,
    fired: Vec<crate::job::alerts::Alert>,
    history: Vec<(i64, f64, i64)>,
}

/// One `stream` run: its context, its checkpoint and what it has done so far.
struct Streamer<'a> {
    jc: &'a JobContext,
    args: &'a StreamArgs,
    scorer_id: String,
    stream: String,
    root: Location,
    store: Arc<dyn object_store::ObjectStore>,
    states: StateStore,
    reader: KinesisReader,
    webhook: Option<Webhook>,
    window_us: i64,
    delay_us: i64,
    /// Open shard iterators (None: the shard ended).
    iters: HashMap<String, Option<String>>,
    ck: Checkpoint,
    version: Option<Version>,
    report: StreamReport,
    latencies: Vec<u64>,
}

impl<'a> Streamer<'a> {
    async fn open(jc: &'a JobContext, scorer: &JobScorer, args: &'a StreamArgs) -> Result<Streamer<'a>> {
        let stream = match StreamUrl::parse(&args.from) {
            Some(Ok(StreamUrl::Kinesis(s))) => s,
            Some(Err(e)) => return Err(e),
            _ => {
                return Err(Error::Option {
                    option: "--from",
                    reason: format!("{:?}: use kinesis://STREAM", args.from),
                });
            }
        };
        let root = Location::parse(&args.to)?;
        let store = jc.stores.store(&root.store_url)?;
        let states = StateStore::new(store.clone(), root.child("_checkpoints/stream"));
        let reader = KinesisReader::new(&stream, args.retry).await;
        let webhook = args.webhook.as_deref().map(Webhook::new).transpose()?;
        jc.select_scorer(scorer);
        let (ck, version) = match states.load_doc(&stream).await? {
            Some((v, ver)) => (
                Checkpoint::from_value(&v).map_err(|r| Error::Checkpoint {
                    location: root.child("_checkpoints/stream").display,
                    reason: r,
                })?,
                Some(ver),
            ),
            None => (Checkpoint::default(), None),
        };
        Ok(Streamer {
            jc,
            args,
            scorer_id: scorer.id(),
            report: StreamReport { stream: stream.clone(), ..Default::default() },
            stream,
            root,
            store,
            states,
            reader,
            webhook,
            window_us: args.spec.window.num_microseconds().unwrap_or(i64::MAX),
            delay_us: args.watermark.num_microseconds().unwrap_or(0).max(0),
            iters: HashMap::new(),
            ck,
            version,
            latencies: Vec::new(),
        })
    }

    /// Where to start reading a shard: after its committed record, or at its start.
    fn committed_position(&self, shard: &str) -> Position {
        match self.ck.shards.get(shard).and_then(|s| s.committed.clone()) {
            Some(c) => Position::After(c),
            None => Position::TrimHorizon,
        }
    }

    /// Re-reads exactly the ranges of a batch whose intent was saved but not committed.
    async fn read_replay(&mut self, pending: &PendingBatch) -> Result<ReadBatch> {
        self.report.replays += 1;
        let mut records = BTreeMap::new();
        for (shard, (_, last)) in &pending.ranges {
            let mut it = self.reader.iterator(shard, &self.committed_position(shard)).await?;
            let got: &mut Vec<aws_sdk_kinesis::types::Record> = records.entry(shard.clone()).or_default();
            'shard: while let Some(i) = it.clone() {
                let page = match self.reader.get_records(&i, 10_000).await {
                    Ok(p) => p,
                    Err(ReadError::Expired) => {
                        return Err(Error::Kinesis {
                            op: "GetRecords",
                            stream: self.stream.clone(),
                            reason: "iterator expired during a replay".into(),
                        });
                    }
                    Err(ReadError::Fatal(e)) => return Err(e),
                };
                for r in page.records {
                    let done = r.sequence_number() == last;
                    got.push(r);
                    if done {
                        break 'shard;
                    }
                }
                it = page.next;
            }
            self.iters.remove(shard);
        }
        Ok(ReadBatch { records, closed_now: pending.closed.clone(), all_caught_up: true })
    }

    /// Reads what is new on every readable shard (parents before children).
    async fn read_new(&mut self) -> Result<ReadBatch> {
        let mut batch = ReadBatch { records: BTreeMap::new(), closed_now: Vec::new(), all_caught_up: true };
        let shards = self.reader.list_shards().await?;
        let ids: HashSet<&str> = shards.iter().map(|s| s.id.as_str()).collect();
        for s in &shards {
            let finished = |id: &str| self.ck.shards.get(id).is_some_and(|s| s.closed);
            if finished(&s.id) {
                continue;
            }
            if !s.readable(&ids, finished) {
                batch.all_caught_up = false;
                continue;
            }
            self.read_shard(&s.id, &mut batch).await?;
        }
        Ok(batch)
    }

    /// Takes what one shard holds now (up to --max-records-per-shard); a
    /// micro-batch does not chase a busy shard's tip.
    async fn read_shard(&mut self, shard: &str, batch: &mut ReadBatch) -> Result<()> {
        if !self.iters.contains_key(shard) {
            let it = self.reader.iterator(shard, &self.committed_position(shard)).await?;
            self.iters.insert(shard.to_string(), it);
        }
        let mut got: Vec<aws_sdk_kinesis::types::Record> = Vec::new();
        loop {
            let Some(Some(it)) = self.iters.get(shard).cloned() else {
                batch.closed_now.push(shard.to_string());
                break;
            };
            let limit = 10_000.min(self.args.max_records_per_shard as i32);
            let page = match self.reader.get_records(&it, limit).await {
                Ok(p) => p,
                Err(ReadError::Expired) => {
                    let pos = match got.last() {
                        Some(r) => Position::After(r.sequence_number().to_string()),
                        None => self.committed_position(shard),
                    };
                    let it = self.reader.iterator(shard, &pos).await?;
                    self.iters.insert(shard.to_string(), it);
                    continue;
                }
                Err(ReadError::Fatal(e)) => return Err(e),
            };
            let full = page.records.len() >= limit as usize;
            let behind = page.millis_behind.unwrap_or(0) > 0;
            got.extend(page.records);
            self.iters.insert(shard.to_string(), page.next.clone());
            if page.next.is_none() {
                continue; // closed: recorded at the top of the loop
            }
            if !full || !behind {
                batch.all_caught_up &= !full && !behind;
                break;
            }
            if got.len() >= self.args.max_records_per_shard {
                batch.all_caught_up = false;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if !got.is_empty() {
            batch.records.insert(shard.to_string(), got);
        }
        Ok(())
    }

    /// Step 2: the batch's shard ranges, saved before any output is written.
    async fn write_intent(&mut self, batch_id: u64, batch: &ReadBatch) -> Result<()> {
        let ranges: BTreeMap<String, (String, String)> = batch
            .records
            .iter()
            .filter_map(|(k, v)| {
                Some((k.clone(), (v.first()?.sequence_number().to_string(), v.last()?.sequence_number().to_string())))
            })
            .collect();
        let mut next = self.ck.clone();
        next.pending = Some(PendingBatch { batch_id, ranges, closed: batch.closed_now.clone() });
        self.version = Some(save(&self.states, &self.stream, &next, self.version.as_ref()).await?);
        self.ck = next;
        Ok(())
    }

    /// Steps 3-4: raw rows and rejects, scored rows, late rows split off; all written.
    async fn handle_rows(&mut self, batch: &ReadBatch, name: &str) -> Result<BatchRows> {
        let (jc, store, root) = (self.jc, &self.store, &self.root);
        let mut raw_batches = Vec::new();
        let mut rejects = Vec::new();
        for (shard, recs) in &batch.records {
            let mut p = RecordParser::new(format!("kinesis://{}/{shard}", self.stream), self.args.max_text_bytes);
            for r in recs {
                crate::io::kinesis::parse_record(&mut p, shard, r);
            }
            let parsed = p.finish();
            raw_batches.extend(parsed.batches);
            rejects.extend(parsed.rejects);
        }
        let rejected = root.child(&format!("{}/job=stream", Table::Rejected.dir()));
        write_raw_and_rejects(store, &root.child(Table::Raw.dir()), &rejected, name, &raw_batches, &rejects).await?;

        let scored_at = chrono::Utc::now().timestamp_micros();
        let mut scored = Vec::new();
        if !raw_batches.is_empty() {
            register_batches(jc, "raw_tweets", Table::Raw.schema(), vec![raw_batches])?;
            let params = vec![
                ("scorer", ScalarValue::Utf8(Some(self.scorer_id.clone()))),
                ("scored_at", ScalarValue::TimestampMicrosecond(Some(scored_at), Some("UTC".into()))),
            ];
            scored = sql::query(&jc.ctx, "score", params).await?.collect().await.map_err(Error::query)?;
        }
        let prev_watermark = self.ck.max_event_us.map(|m| m - self.delay_us);
        let (mut on_time, mut late) = (Vec::new(), Vec::new());
        let mut max_event = self.ck.max_event_us;
        let mut rows = 0u64;
        for b in &scored {
            rows += b.num_rows() as u64;
            let t = b.column_by_name("created_at").map(|c| c.as_primitive::<TimestampMicrosecondType>().clone());
            let Some(t) = t else { continue };
            let is_late: BooleanArray =
                t.iter().map(|v| Some(matches!((v, prev_watermark), (Some(v), Some(w)) if v < w))).collect();
            let not_late = datafusion::arrow::compute::not(&is_late).map_err(|e| Error::arrow("late mask", e))?;
            late.push(filter_record_batch(b, &is_late).map_err(|e| Error::arrow("late rows", e))?);
            on_time.push(filter_record_batch(b, &not_late).map_err(|e| Error::arrow("on-time rows", e))?);
            for v in t.iter().flatten() {
                max_event = Some(max_event.map_or(v, |m| m.max(v)));
            }
        }
        let late_rows = late.iter().map(RecordBatch::num_rows).sum::<usize>() as u64;
        write_table(store, root.child(Table::Scored.dir()), Table::Scored, name, &scored).await?;
        if late_rows > 0 {
            write_table(store, root.child("late"), Table::Scored, name, &late).await?;
        }
        Ok(BatchRows { on_time, max_event, rows, rejected: rejects.len() as u64, late_rows, scored_at })
    }

    /// Step 5: merges the batch's window partials into the open windows and
    /// emits (writes, checks the alert rules of) those the watermark passed.
    async fn handle_windows(
        &mut self,
        on_time: Vec<RecordBatch>,
        max_event: Option<i64>,
        name: &str,
        scored_at: i64,
    ) -> Result<BatchWindows> {
        let jc = self.jc;
        let spec = self.args.spec;
        let batch_partials = match on_time.first().map(|b| b.schema()) {
            Some(schema) if on_time.iter().any(|b| b.num_rows() > 0) => {
                register_batches(jc, "scored_tweets", schema, vec![on_time])?;
                let params = vec![
                    ("slide", interval_param(spec.slide)),
                    ("lookback", interval_param(spec.window - spec.slide)),
                    ("origin", timestamp_param(chrono::DateTime::UNIX_EPOCH)),
                    ("from", timestamp_param(far_past())),
                    ("to", timestamp_param(far_future())),
                    ("rows_to", timestamp_param(far_future())),
                ];
                collect(jc, "window_source_aggs", params).await?.1
            }
            _ => Vec::new(),
        };
        register_batches(jc, "batch_aggs", partial_schema(), vec![as_partials(batch_partials)?])?;
        register_batches(jc, "state_aggs", partial_schema(), vec![vec![state_batch(&self.ck.state)?]])?;
        let (_, merged) = collect(jc, "stream_merge", vec![]).await?;
        let watermark = max_event.map(|m| m - self.delay_us);
        let (mut emit, mut keep) = (Vec::new(), Vec::new());
        for b in &merged {
            let ws = b.column(0).as_primitive::<TimestampMicrosecondType>();
            let due: BooleanArray = ws
                .iter()
                .map(|s| Some(matches!((s, watermark), (Some(s), Some(w)) if s + self.window_us <= w)))
                .collect();
            let not_due = datafusion::arrow::compute::not(&due).map_err(|e| Error::arrow("window mask", e))?;
            emit.push(filter_record_batch(b, &due).map_err(|e| Error::arrow("due windows", e))?);
            keep.push(filter_record_batch(b, &not_due).map_err(|e| Error::arrow("open windows", e))?);
        }
        let mut out =
            BatchWindows { keep, windows: 0, by_source: 0, fired: Vec::new(), history: self.ck.history.clone() };
        if emit.iter().map(RecordBatch::num_rows).sum::<usize>() == 0 {
            return Ok(out);
        }
        register_batches(jc, "window_source_aggs", partial_schema(), vec![as_partials(emit)?])?;
        for (table, sql_name) in [(Table::WindowsBySource, "windows_by_source"), (Table::Windows, "windows")] {
            let (_, rows) = collect(jc, sql_name, vec![("window", interval_param(spec.window))]).await?;
            let n = write_table(&self.store, self.root.child(table.dir()), table, name, &rows).await?;
            if table == Table::Windows {
                out.windows = n;
                if let Some(rules) = &self.args.rules {
                    out.fired = evaluate(rules, &window_figures(&rows), &mut out.history);
                }
            } else {
                out.by_source = n;
            }
        }
        if !out.fired.is_empty() {
            let batch = alerts_batch(&out.fired, scored_at)?;
            write_table(&self.store, self.root.child(Table::Alerts.dir()), Table::Alerts, name, &[batch]).await?;
        }
        Ok(out)
    }

    /// Step 6: shard cursors, window state and batch id in one conditional write.
    async fn commit(&mut self, batch_id: u64, batch: &ReadBatch, rows: &BatchRows, w: &BatchWindows) -> Result<()> {
        let n_records = batch.n_records() as u64;
        let mut next = self.ck.clone();
        next.batch_id = batch_id;
        for (shard, recs) in &batch.records {
            if let Some(last) = recs.last() {
                next.shards.entry(shard.clone()).or_default().committed = Some(last.sequence_number().to_string());
            }
        }
        for shard in &batch.closed_now {
            next.shards.entry(shard.clone()).or_default().closed = true;
        }
        next.max_event_us = rows.max_event;
        next.state = w.keep.iter().flat_map(state_rows).collect();
        next.history = w.history.clone();
        next.pending = None;
        for (k, n) in [
            ("records", n_records),
            ("rows", rows.rows),
            ("rejected", rows.rejected),
            ("late_rows", rows.late_rows),
            ("windows", w.windows),
            ("alerts", w.fired.len() as u64),
        ] {
            *next.totals.entry(k.into()).or_default() += n;
        }
        self.version = Some(save(&self.states, &self.stream, &next, self.version.as_ref()).await?);
        self.ck = next;
        let durable_ms = chrono::Utc::now().timestamp_millis();
        for r in batch.records.values().flatten() {
            if let Some(ms) = crate::io::kinesis::arrival_ms(r)
                && self.latencies.len() < 2_000_000
            {
                self.latencies.push((durable_ms - ms).max(0) as u64);
            }
        }
        let rep = &mut self.report;
        rep.batches += 1;
        rep.records += n_records;
        rep.rows += rows.rows;
        rep.rejected += rows.rejected;
        rep.late_rows += rows.late_rows;
        rep.windows += w.windows;
        rep.windows_by_source += w.by_source;
        rep.alerts += w.fired.len() as u64;
        tracing::info!(
            batch = batch_id,
            records = n_records,
            late = rows.late_rows,
            windows = w.windows,
            alerts = w.fired.len(),
            open = self.ck.state.len(),
            "micro-batch committed"
        );
        Ok(())
    }
}

/// Writes batches as one partitioned file per partition named `name`; returns the rows written.
async fn write_table(
    store: &Arc<dyn object_store::ObjectStore>,
    root: Location,
    table: Table,
    name: &str,
    batches: &[RecordBatch],
) -> Result<u64> {
    let mut w = PartitionedWriter::new(store.clone(), root, table, name.to_string());
    for b in batches {
        w.write(b).await?;
    }
    Ok(w.finish().await?.iter().map(|f| f.rows as u64).sum())
}

/// The figures the alert rules read, from emitted `windows` rows, in time order.
fn window_figures(rows: &[RecordBatch]) -> Vec<WindowFigures> {
    let mut figs = Vec::new();
    for b in rows {
        let ts = |c: &str| b.column_by_name(c).map(|c| c.as_primitive::<TimestampMicrosecondType>().clone());
        let f64s = |c: &str| b.column_by_name(c).map(|c| c.as_primitive::<Float64Type>().clone());
        let (Some(s), Some(e)) = (ts("window_start"), ts("window_end")) else { continue };
        let n = b.column_by_name("n").map(|c| c.as_primitive::<Int64Type>().clone());
        let (avg, neg) = (f64s("avg_score"), f64s("share_negative"));
        for r in 0..b.num_rows() {
            let f = |a: &Option<Float64Array>| a.as_ref().and_then(|a| (!a.is_null(r)).then(|| a.value(r)));
            figs.push(WindowFigures {
                start_us: s.value(r),
                end_us: e.value(r),
                n: n.as_ref().map(|a| a.value(r)).unwrap_or(0),
                avg_score: f(&avg),
                share_negative: f(&neg),
            });
        }
    }
    figs.sort_by_key(|f| f.start_us);
    figs
}

async fn save(states: &StateStore, stream: &str, ck: &Checkpoint, prev: Option<&Version>) -> Result<Version> {
    match states.save_doc(stream, ck.to_value(), prev).await? {
        Ok(v) => Ok(v),
        Err(_) => Err(Error::Checkpoint {
            location: format!("_checkpoints/stream/{stream}.json"),
            reason: "another stream process wrote it: run one `sentiflow stream` per stream and output".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_round_trip_and_percentiles() {
        let mut c = Checkpoint { batch_id: 7, max_event_us: Some(5), ..Default::default() };
        c.shards.insert("s0".into(), ShardCursor { committed: Some("12".into()), closed: false });
        c.state.push(json!([60_000_000, "x", 3, 0, 1.5, 0.1, 0.9, 1, 2]));
        c.history.push((1, 0.5, 30));
        c.pending = Some(PendingBatch {
            batch_id: 8,
            ranges: BTreeMap::from([("s0".to_string(), ("13".to_string(), "20".to_string()))]),
            closed: vec!["s1".into()],
        });
        c.totals.insert("rows".into(), 9);
        let back = Checkpoint::from_value(&c.to_value()).unwrap();
        assert_eq!(back, c);
        // the JSON shape written before serde (and the store's own fields) still reads
        let old = json!({"batch_id": 7, "shards": {"s0": {"committed": "12", "closed": false}}, "max_event_us": 5,
            "state": [[60_000_000, "x", 3, 0, 1.5, 0.1, 0.9, 1, 2]], "history": [[1, 0.5, 30]],
            "pending": {"batch_id": 8, "ranges": {"s0": ["13", "20"]}, "closed": ["s1"]}, "totals": {"rows": 9},
            "rev": 3, "updated_at": "2026-12-01T00:00:00Z"});
        assert_eq!(Checkpoint::from_value(&old).unwrap(), c);
        let b = state_batch(&c.state).unwrap();
        assert_eq!(state_rows(&b), c.state);
        assert_eq!(percentiles((1..=100).collect()), Some([51, 95, 99, 100]));
    }
}
