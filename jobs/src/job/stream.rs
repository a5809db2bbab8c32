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

use crate::context::{JobContext, JobScorer};
use crate::io::checkpoint::{StateStore, Version, crash_point};
use crate::io::kinesis::{KinesisReader, Position, ReadError, StreamUrl, sleep_or_stop};
use crate::io::read::RecordParser;
use crate::io::retry::RetryPolicy;
use crate::io::store::Location;
use crate::io::write::{PartitionedWriter, write_raw_and_rejects};
use crate::job::aggregate::{WindowSpec, far_future, far_past};
use crate::job::alerts::{Rules, Webhook, WindowFigures, alerts_batch, evaluate};
use crate::schema::Table;
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
    let stream = match StreamUrl::parse(&args.from) {
        Some(Ok(StreamUrl::Kinesis(s))) => s,
        Some(Err(e)) => return Err(e),
        _ => return Err(Error::Argument(format!("--from {:?}: use kinesis://STREAM", args.from))),
    };
    let window_us = args.spec.window.num_microseconds().unwrap_or(i64::MAX);
    let delay_us = args.watermark.num_microseconds().unwrap_or(0).max(0);
    let root = Location::parse(&args.to)?;
    let store = jc.stores.store(&root.store_url)?;
    let states = StateStore::new(store.clone(), root.child("_checkpoints/stream"));
    let reader = KinesisReader::new(&stream, args.retry).await;
    let webhook = args.webhook.as_deref().map(Webhook::new).transpose()?;
    jc.select_scorer(&scorer);

    let (mut ck, mut version): (Checkpoint, Option<Version>) = match states.load_doc(&stream).await? {
        Some((v, ver)) => (
            Checkpoint::from_value(&v)
                .map_err(|r| Error::Checkpoint { location: root.child("_checkpoints/stream").display, reason: r })?,
            Some(ver),
        ),
        None => (Checkpoint::default(), None),
    };
    let mut report = StreamReport { stream: stream.clone(), ..Default::default() };
    let mut latencies: Vec<u64> = Vec::new();
    let mut iters: HashMap<String, Option<String>> = HashMap::new();
    let batch_name = |id: u64| format!("batch-{id:010}.parquet");

    loop {
        // ---- 1. what to read: a pending batch's exact ranges, or what is new
        let replay = ck.pending.clone();
        let mut records: BTreeMap<String, Vec<aws_sdk_kinesis::types::Record>> = BTreeMap::new();
        let mut closed_now: Vec<String> = Vec::new();
        let mut all_caught_up = true;
        if let Some(PendingBatch { ranges, closed, .. }) = &replay {
            report.replays += 1;
            for (shard, (_, last)) in ranges {
                let pos = match ck.shards.get(shard).and_then(|s| s.committed.clone()) {
                    Some(c) => Position::After(c),
                    None => Position::TrimHorizon,
                };
                let mut it = reader.iterator(shard, &pos).await?;
                let got = records.entry(shard.clone()).or_default();
                'shard: while let Some(i) = it.clone() {
                    let page = match reader.get_records(&i, 10_000).await {
                        Ok(p) => p,
                        Err(ReadError::Expired) => {
                            return Err(Error::Kinesis {
                                op: "GetRecords",
                                stream: stream.clone(),
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
                iters.remove(shard);
            }
            closed_now = closed.clone();
        } else {
            let shards = reader.list_shards().await?;
            let ids: HashSet<&str> = shards.iter().map(|s| s.id.as_str()).collect();
            let finished = |id: &str| ck.shards.get(id).is_some_and(|s| s.closed);
            for s in &shards {
                if finished(&s.id) {
                    continue;
                }
                if !s.readable(&ids, finished) {
                    all_caught_up = false;
                    continue;
                }
                if !iters.contains_key(&s.id) {
                    let pos = match ck.shards.get(&s.id).and_then(|st| st.committed.clone()) {
                        Some(c) => Position::After(c),
                        None => Position::TrimHorizon,
                    };
                    let it = reader.iterator(&s.id, &pos).await?;
                    iters.insert(s.id.clone(), it);
                }
                let mut got = Vec::new();
                loop {
                    let Some(Some(it)) = iters.get(&s.id).cloned() else {
                        closed_now.push(s.id.clone());
                        break;
                    };
                    let limit = 10_000.min(args.max_records_per_shard as i32);
                    let page = match reader.get_records(&it, limit).await {
                        Ok(p) => p,
                        Err(ReadError::Expired) => {
                            let pos = match got
                                .last()
                                .map(|r: &aws_sdk_kinesis::types::Record| r.sequence_number().to_string())
                                .or_else(|| ck.shards.get(&s.id).and_then(|st| st.committed.clone()))
                            {
                                Some(c) => Position::After(c),
                                None => Position::TrimHorizon,
                            };
                            let it = reader.iterator(&s.id, &pos).await?;
                            iters.insert(s.id.clone(), it);
                            continue;
                        }
                        Err(ReadError::Fatal(e)) => return Err(e),
                    };
                    // a micro-batch takes what is there now; it does not chase a busy shard's tip
                    let full = page.records.len() >= limit as usize;
                    let behind = page.millis_behind.unwrap_or(0) > 0;
                    got.extend(page.records);
                    iters.insert(s.id.clone(), page.next.clone());
                    if page.next.is_none() {
                        continue; // closed: recorded at the top of the loop
                    }
                    if !full || !behind {
                        all_caught_up &= !full && !behind;
                        break;
                    }
                    if got.len() >= args.max_records_per_shard {
                        all_caught_up = false;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                if !got.is_empty() {
                    records.insert(s.id.clone(), got);
                }
            }
        }
        let n_records: usize = records.values().map(Vec::len).sum();

        if n_records == 0 && closed_now.is_empty() && replay.is_none() {
            if args.until_caught_up && all_caught_up {
                break;
            }
            if *stop.borrow() {
                break;
            }
            sleep_or_stop(args.trigger, &stop).await;
            continue;
        }

        // ---- 2. intent
        let batch_id = replay.as_ref().map(|p| p.batch_id).unwrap_or(ck.batch_id + 1);
        if replay.is_none() {
            let ranges: BTreeMap<String, (String, String)> = records
                .iter()
                .filter_map(|(k, v)| {
                    Some((
                        k.clone(),
                        (v.first()?.sequence_number().to_string(), v.last()?.sequence_number().to_string()),
                    ))
                })
                .collect();
            let mut next = ck.clone();
            next.pending = Some(PendingBatch { batch_id, ranges, closed: closed_now.clone() });
            version = Some(save(&states, &stream, &next, version.as_ref()).await?);
            ck = next;
        }

        // ---- 3. raw rows, rejects
        let mut raw_batches = Vec::new();
        let mut rejects = Vec::new();
        for (shard, recs) in &records {
            let mut p = RecordParser::new(format!("kinesis://{stream}/{shard}"), args.max_text_bytes);
            for r in recs {
                crate::io::kinesis::parse_record(&mut p, shard, r);
            }
            let parsed = p.finish();
            raw_batches.extend(parsed.batches);
            rejects.extend(parsed.rejects);
        }
        let name = batch_name(batch_id);
        let rejected = root.child(&format!("{}/job=stream", Table::Rejected.dir()));
        write_raw_and_rejects(&store, &root.child(Table::Raw.dir()), &rejected, &name, &raw_batches, &rejects).await?;

        // ---- 4. score, split late rows off
        let scored_at = chrono::Utc::now().timestamp_micros();
        let prev_watermark = ck.max_event_us.map(|m| m - delay_us);
        let mut scored = Vec::new();
        if !raw_batches.is_empty() {
            register_batches(jc, "raw_tweets", Table::Raw.schema(), vec![raw_batches])?;
            let df = sql::query(
                &jc.ctx,
                "score",
                vec![
                    ("scorer", ScalarValue::Utf8(Some(scorer.id()))),
                    ("scored_at", ScalarValue::TimestampMicrosecond(Some(scored_at), Some("UTC".into()))),
                ],
            )
            .await?;
            scored = df.collect().await.map_err(Error::query)?;
        }
        let (mut on_time, mut late) = (Vec::new(), Vec::new());
        let mut max_event = ck.max_event_us;
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
        let late_rows: usize = late.iter().map(RecordBatch::num_rows).sum();
        let mut scored_writer =
            PartitionedWriter::new(store.clone(), root.child(Table::Scored.dir()), Table::Scored, name.clone());
        for b in &scored {
            scored_writer.write(b).await?;
        }
        scored_writer.finish().await?;
        if late_rows > 0 {
            let mut w = PartitionedWriter::new(store.clone(), root.child("late"), Table::Scored, name.clone());
            for b in &late {
                w.write(b).await?;
            }
            w.finish().await?;
        }

        // ---- 5. windows: merge the batch into the state, emit what the watermark passed
        let scored_schema = scored.first().map(|b| b.schema());
        let batch_partials = match scored_schema {
            Some(schema) if on_time.iter().any(|b| b.num_rows() > 0) => {
                register_batches(jc, "scored_tweets", schema, vec![on_time])?;
                let params = vec![
                    ("slide", interval_param(args.spec.slide)),
                    ("lookback", interval_param(args.spec.window - args.spec.slide)),
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
        register_batches(jc, "state_aggs", partial_schema(), vec![vec![state_batch(&ck.state)?]])?;
        let (_, merged) = collect(jc, "stream_merge", vec![]).await?;
        let watermark = max_event.map(|m| m - delay_us);
        let (mut emit, mut keep) = (Vec::new(), Vec::new());
        for b in &merged {
            let ws = b.column(0).as_primitive::<TimestampMicrosecondType>();
            let due: BooleanArray =
                ws.iter().map(|s| Some(matches!((s, watermark), (Some(s), Some(w)) if s + window_us <= w))).collect();
            let not_due = datafusion::arrow::compute::not(&due).map_err(|e| Error::arrow("window mask", e))?;
            emit.push(filter_record_batch(b, &due).map_err(|e| Error::arrow("due windows", e))?);
            keep.push(filter_record_batch(b, &not_due).map_err(|e| Error::arrow("open windows", e))?);
        }
        let emitted_partials: usize = emit.iter().map(RecordBatch::num_rows).sum();
        let (mut n_windows, mut n_by_source, mut fired) = (0u64, 0u64, Vec::new());
        let mut history = ck.history.clone();
        if emitted_partials > 0 {
            register_batches(jc, "window_source_aggs", partial_schema(), vec![as_partials(emit)?])?;
            for (table, sql_name) in [(Table::WindowsBySource, "windows_by_source"), (Table::Windows, "windows")] {
                let (_, out) = collect(jc, sql_name, vec![("window", interval_param(args.spec.window))]).await?;
                let mut w = PartitionedWriter::new(store.clone(), root.child(table.dir()), table, name.clone());
                for b in &out {
                    w.write(b).await?;
                }
                let n: u64 = w.finish().await?.iter().map(|f| f.rows as u64).sum();
                if table == Table::Windows {
                    n_windows = n;
                    if let Some(rules) = &args.rules {
                        let mut figs = Vec::new();
                        for b in &out {
                            let s = b
                                .column_by_name("window_start")
                                .map(|c| c.as_primitive::<TimestampMicrosecondType>().clone());
                            let e = b
                                .column_by_name("window_end")
                                .map(|c| c.as_primitive::<TimestampMicrosecondType>().clone());
                            let (Some(s), Some(e)) = (s, e) else { continue };
                            let n = b.column_by_name("n").map(|c| c.as_primitive::<Int64Type>().clone());
                            let avg = b.column_by_name("avg_score").map(|c| c.as_primitive::<Float64Type>().clone());
                            let neg =
                                b.column_by_name("share_negative").map(|c| c.as_primitive::<Float64Type>().clone());
                            for r in 0..b.num_rows() {
                                let f = |a: &Option<datafusion::arrow::array::Float64Array>| {
                                    a.as_ref().and_then(|a| (!a.is_null(r)).then(|| a.value(r)))
                                };
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
                        fired = evaluate(rules, &figs, &mut history);
                    }
                } else {
                    n_by_source = n;
                }
            }
        }
        if !fired.is_empty() {
            let batch = alerts_batch(&fired, scored_at)?;
            let mut w =
                PartitionedWriter::new(store.clone(), root.child(Table::Alerts.dir()), Table::Alerts, name.clone());
            w.write(&batch).await?;
            w.finish().await?;
        }
        crash_point("stream_outputs");

        // ---- 6. commit: cursors, state, batch id together
        let mut next = ck.clone();
        next.batch_id = batch_id;
        for (shard, recs) in &records {
            if let Some(last) = recs.last() {
                next.shards.entry(shard.clone()).or_default().committed = Some(last.sequence_number().to_string());
            }
        }
        for shard in &closed_now {
            next.shards.entry(shard.clone()).or_default().closed = true;
        }
        next.max_event_us = max_event;
        next.state = keep.iter().flat_map(state_rows).collect();
        next.history = history;
        next.pending = None;
        for (k, n) in [
            ("records", n_records as u64),
            ("rows", rows),
            ("rejected", rejects.len() as u64),
            ("late_rows", late_rows as u64),
            ("windows", n_windows),
            ("alerts", fired.len() as u64),
        ] {
            *next.totals.entry(k.into()).or_default() += n;
        }
        version = Some(save(&states, &stream, &next, version.as_ref()).await?);
        ck = next;
        let durable_ms = chrono::Utc::now().timestamp_millis();
        for recs in records.values() {
            for r in recs {
                if let Some(ms) = crate::io::kinesis::arrival_ms(r)
                    && latencies.len() < 2_000_000
                {
                    latencies.push((durable_ms - ms).max(0) as u64);
                }
            }
        }
        report.batches += 1;
        report.records += n_records as u64;
        report.rows += rows;
        report.rejected += rejects.len() as u64;
        report.late_rows += late_rows as u64;
        report.windows += n_windows;
        report.windows_by_source += n_by_source;
        report.alerts += fired.len() as u64;
        tracing::info!(
            batch = batch_id,
            records = n_records,
            late = late_rows,
            windows = n_windows,
            alerts = fired.len(),
            open = ck.state.len(),
            "micro-batch committed"
        );
        if let (Some(hook), false) = (&webhook, fired.is_empty()) {
            report.webhook_delivered += hook.post(&fired).await as u64;
        }
        if *stop.borrow() {
            break;
        }
        if replay.is_none() && n_records > 0 && !all_caught_up {
            continue; // more to read right away
        }
        if !(args.until_caught_up && all_caught_up) {
            sleep_or_stop(args.trigger, &stop).await;
        }
        if stop.has_changed().unwrap_or(false) && *stop.borrow_and_update() {
            break;
        }
    }
    let _ = jc.ctx.deregister_table("raw_tweets");
    report.open_windows = ck.state.len();
    report.watermark_us = ck.max_event_us.map(|m| m - delay_us);
    report.latency_ms = percentiles(latencies);
    report.elapsed = started.elapsed();
    Ok(report)
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
