//! `sentiflow stream`: micro-batches from Kinesis, scored, aggregated over
//! event-time windows with a watermark, appended to S3 exactly once, by one
//! worker or by several sharing the stream's shards.
//!
//! ## Who writes what
//!
//! ```text
//!            Kinesis shards  s0   s1   s2   s3
//!                             │    │    │    │        leases (io::kinesis::lease, shared with ingest)
//!                  worker A ◄─┴────┘    └────┴─► worker B
//!   per shard micro-batch:
//!     _checkpoints/stream/<stream>/shards/<shard>.json   ◄─ its owner only (conditional writes):
//!         lease · cursor · intent · window partials · max event time · fence
//!     raw/ scored/ late/ _rejected/   <shard>-<first sequence number>.parquet
//!   elected emitter (whoever holds the emitter lease, A or B):
//!     reads every shard's state ─► emits windows all shards have passed
//!     _checkpoints/stream/<stream>/emitter.json   ◄─ its holder only:
//!         lease · emitted-through · global watermark · alert history · intent
//!     windows/ windows_by_source/ window_terms/ alerts/   emit-<id>.parquet
//! ```
//!
//! Term counts for `window_terms` are too many for the JSON state: each shard
//! batch writes its on-time rows' term panes as Parquet under
//! `_checkpoints/stream/<stream>/terms/`, named after the batch (see [`terms`]).
//!
//! **Per shard, exactly once.** A worker reads each of its shards (parents
//! before children), saves the batch's range as an intent in the shard's
//! state, writes the rows under names derived from the range, merges the
//! window partials of the shard's on-time rows (`sql/window_source_aggs.sql`,
//! then `sql/stream_merge.sql`) into the partials kept in the shard's state, and
//! commits cursor + partials + max event time in one conditional write. A
//! worker that lost the lease cannot commit; the next owner finds the intent
//! and rewrites exactly that range under the same names.
//!
//! **Windows once, when every shard has passed them.** Each shard's state
//! carries a *fence*: a promise that every batch from now on treats rows
//! before it as late, so windows ending at or before it get nothing more from
//! the shard. The owner raises it at each commit to the shard's own watermark
//! (its max event time − `--watermark`) and, once an open shard is read to
//! its tip, to the global watermark (max event time over all shards −
//! `--watermark`, published by the emitter). A shard closed by a split or
//! merge keeps its own, and its children start from their parents' fences.
//! Every batch also treats rows of windows already emitted as late. The emitter emits the windows
//! that end after the last emission and at or before the minimum fence over
//! the live shards (closed shards, and children whose parents are still
//! open, do not hold it back), summing the partials of every shard, writes
//! them and the alerts under an intent in `emitter.json`, then commits the
//! new emitted-through point; owners drop partials of emitted windows at
//! their next commit. A dead worker's shards hold the windows back until
//! their leases expire and another worker takes them over; its rows are not
//! made late by the wait.
//!
//! With one worker this is the same machine with every shard and the emitter
//! lease in one process.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::types::Record;
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
use crate::io::checkpoint::{Pending, ShardState, StateStore, Version, crash_point};
use crate::io::kinesis::lease::{ForeignLeases, Seen, ShardLeases, now_ms};
use crate::io::kinesis::seq_cmp;
use crate::io::kinesis::{KinesisReader, Position, ReadError, ShardInfo, StartPosition, StreamUrl, sleep_or_stop};
use crate::io::read::RecordParser;
use crate::io::retry::RetryPolicy;
use crate::io::store::Location;
use crate::io::write::{PartitionedWriter, write_raw_and_rejects};
use crate::job::alerts::{Alert, Rules, Webhook, WindowFigures, alerts_batch, evaluate};
use crate::metrics::{ReasonLabel, ScorerLabel, ShardLabel, metrics};
use crate::schema::Table;
use crate::scorer::{JobScorer, RowsByScorer};
use crate::sql::{interval_param, timestamp_param};
use crate::tables::register_batches;
use crate::window::{TermSpec, WindowSpec, far_future, far_past};
use crate::{Error, Result, sql};

mod terms;

#[derive(Debug, Clone)]
pub struct StreamArgs {
    pub from: String,
    /// Data root: raw/, scored/, late/, windows/, windows_by_source/, alerts/, _rejected/, _checkpoints/.
    pub to: String,
    pub spec: WindowSpec,
    /// What `window_terms` keeps; its background must be trailing.
    pub terms: TermSpec,
    pub watermark: chrono::Duration,
    pub trigger: Duration,
    pub until_caught_up: bool,
    /// Records read per shard per micro-batch at most.
    pub max_records_per_shard: usize,
    pub rules: Option<Rules>,
    pub webhook: Option<String>,
    pub max_text_bytes: usize,
    /// A record whose event time is more than this after its arrival on the
    /// stream is rejected: it would move the watermark past every later record.
    pub max_event_ahead: Duration,
    pub retry: RetryPolicy,
    /// Unique among concurrently running workers (default: host, pid and a
    /// random suffix); a restarted worker with the same id takes its shards back at once.
    pub worker_id: Option<String>,
    pub lease: Duration,
    /// `/healthz` answers 503 once no round of the loop completed for this long.
    pub stall_after: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct StreamReport {
    pub stream: String,
    pub worker_id: String,
    /// Shard micro-batches committed by this worker.
    pub batches: u64,
    pub replays: u64,
    pub records: u64,
    pub rows: u64,
    pub rejected: u64,
    pub late_rows: u64,
    /// Window emissions this worker committed as the emitter.
    pub emits: u64,
    pub windows: u64,
    pub windows_by_source: u64,
    pub window_terms: u64,
    pub alerts: u64,
    pub webhook_delivered: u64,
    /// Windows still open (partials kept, not emitted) at the end, over all shards.
    pub open_windows: usize,
    /// Windows ending at or before this are emitted (all workers together).
    pub watermark_us: Option<i64>,
    /// Record arrival on the stream → its micro-batch durable, milliseconds: p50, p95, p99, max.
    pub latency_ms: Option<[u64; 4]>,
    /// Shards this worker held at some point, and those it read to their end.
    pub shards_held: BTreeSet<String>,
    pub shards_closed: usize,
    pub leases_lost: u64,
    /// `--until-caught-up`: shards left to other workers that kept renewing their leases.
    pub left_to_live_workers: Vec<String>,
    /// Rows this worker committed, per scorer; the fallback's rows and failures.
    pub by_scorer: RowsByScorer,
    /// The LLM's requests, cache hits, failures and cost (LLM scorer or fallback).
    pub llm: Option<crate::llm::LlmSummary>,
    /// Checkpoint requests (GET, conditional PUT, LIST): the coordination cost.
    pub state_requests: (u64, u64, u64),
    pub elapsed: Duration,
}

/// What the stream job keeps in a shard's state (`ShardState::job`),
/// committed with its cursor.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
struct ShardWindows {
    /// Largest event time committed from this shard.
    max_event_us: Option<i64>,
    /// Every batch whose intent is saved from now on treats rows before this
    /// as late: windows ending at or before it get nothing more from the shard.
    fence_us: Option<i64>,
    /// The late threshold of the batch in the intent (a replay uses it again).
    pending_late_before_us: Option<i64>,
    /// Open windows' partials of this shard's on-time rows (window_source_aggs rows).
    state: Vec<Value>,
    totals: BTreeMap<String, u64>,
}

impl ShardWindows {
    fn of(state: &ShardState, states: &StateStore) -> Result<Self> {
        if state.job.is_null() {
            return Ok(Self::default());
        }
        serde_json::from_value(state.job.clone()).map_err(|e| Error::Checkpoint {
            location: format!("{}/{}.json", states.display(), state.shard_id),
            reason: format!("its stream state is not readable: {e}"),
        })
    }

    /// The fence the emitter may rely on: a pending batch's threshold counts.
    fn effective_fence(&self, pending: bool) -> Option<i64> {
        match (pending, self.pending_late_before_us) {
            (true, p) => p.min(self.fence_us),
            (false, _) => self.fence_us,
        }
    }
}

/// The emitter's document: its lease, what has been emitted, the alert
/// history and the emission being written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
struct EmitterDoc {
    owner: Option<String>,
    lease_until_ms: i64,
    emit_id: u64,
    /// Windows ending at or before this are emitted.
    emitted_through_us: Option<i64>,
    /// The global watermark: max event time over all shards − `--watermark`.
    watermark_us: Option<i64>,
    /// Emitted windows' (start, avg, n), for trailing-statistics rules.
    history: Vec<(i64, f64, i64)>,
    pending: Option<PendingEmit>,
    totals: BTreeMap<String, u64>,
}

/// An emission being written: its id and the point it emits through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PendingEmit {
    emit_id: u64,
    through_us: i64,
}

const EMITTER_DOC: &str = "emitter";

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
        Field::new("n_fallback", DataType::Int64, true),
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
        // state saved before n_fallback existed has 9 values: NULL (none)
        i(9),
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
            json!([ws.value(r), src.value(r), oi(2), oi(3), of(4), of(5), of(6), oi(7), oi(8), oi(9)])
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
    Ok((schema, crate::io::diagnose::collect(df).await?))
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
    let result = s.run_loop(&mut stop).await;
    let finished = s.finish().await;
    result?;
    let mut report = finished?;
    report.elapsed = started.elapsed();
    report.llm = scorer.llm_summary();
    Ok(report)
}

/// A committed shard micro-batch, into the metrics (the summary's figures, as they grow).
fn count_batch(shard: &str, records: u64, rows: &BatchRows) {
    let m = metrics();
    m.batches.inc();
    m.records_read.inc_by(records);
    m.rows_written.inc_by(rows.rows);
    m.rows_rejected.inc_by(rows.rejected);
    m.rows_late.inc_by(rows.late_rows);
    m.batch_rows.observe(rows.rows as f64);
    m.shard_records.get_or_create(&ShardLabel { shard: shard.to_string() }).inc_by(records);
    for (scorer, n) in &rows.by_scorer.scored {
        m.rows_scored.get_or_create(&ScorerLabel { scorer: scorer.clone() }).inc_by(*n as u64);
    }
    for (reason, n) in &rows.by_scorer.unscorable {
        m.rows_unscorable.get_or_create(&ReasonLabel { reason }).inc_by(*n as u64);
    }
}

/// What one shard gave in one micro-batch.
struct ShardRead {
    records: Vec<Record>,
    /// The shard is at its tip (nothing more to read now).
    caught_up: bool,
    /// The shard is closed (split or merged) and read to its end.
    ended: bool,
    /// The records re-read for an intent a previous owner did not commit.
    replay: bool,
}

/// A shard micro-batch whose intent is saved and raw rows written.
struct Staged {
    id: String,
    read: ShardRead,
    last: String,
    /// Its files' name.
    name: String,
    late_before: Option<i64>,
    raw: Vec<RecordBatch>,
    rows: BatchRows,
}

/// The rows of one shard micro-batch, once written.
#[derive(Default)]
struct BatchRows {
    on_time: Vec<RecordBatch>,
    max_event: Option<i64>,
    rows: u64,
    rejected: u64,
    late_rows: u64,
    by_scorer: RowsByScorer,
}

/// A shard this worker holds the lease on.
struct Held {
    state: ShardState,
    version: Version,
    win: ShardWindows,
    /// Open shard iterator: None: not opened yet; Some(None): the shard ended.
    iter: Option<Option<String>>,
    renew_at: Instant,
}

/// What the emitter step found.
#[derive(Debug, PartialEq, Eq)]
enum EmitRole {
    /// This worker holds the emitter lease; whether anything was emitted.
    Emitter { emitted: bool },
    /// Another worker holds it and keeps renewing it.
    OtherLive,
    /// Another worker holds it, and has not renewed it since it was first seen.
    OtherUnknown,
}

/// One `stream` worker: its context, leases, shards and what it has done so far.
struct Streamer<'a> {
    jc: &'a JobContext,
    args: &'a StreamArgs,
    scorer_id: String,
    stream: String,
    root: Location,
    store: Arc<dyn object_store::ObjectStore>,
    /// `_checkpoints/stream/<stream>`: emitter.json; shards/ below it holds the shard states.
    states: StateStore,
    /// Term panes per batch (`_checkpoints/stream/<stream>/terms`) and window_terms at emission.
    terms: terms::StreamTerms,
    leases: ShardLeases,
    reader: KinesisReader,
    webhook: Option<Webhook>,
    window_us: i64,
    delay_us: i64,
    shards: Vec<ShardInfo>,
    held: BTreeMap<String, Held>,
    foreign: ForeignLeases,
    /// The emitter document as last read, and its version.
    emitter: (EmitterDoc, Option<Version>),
    /// Another worker's emitter lease, as seen across rounds (live: its end moves on).
    other_emitter: ForeignLeases,
    taken_now: usize,
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
        let states = StateStore::new(store.clone(), root.child(&format!("_checkpoints/stream/{stream}")));
        let terms_dir = root.child(&format!("_checkpoints/stream/{stream}/terms"));
        let terms = terms::StreamTerms::new(args.terms, args.spec, terms_dir, store.clone())?;
        let worker = args.worker_id.clone().unwrap_or_else(crate::io::checkpoint::default_worker_id);
        let leases = ShardLeases {
            states: states.child("shards"),
            worker: worker.clone(),
            lease: args.lease,
            start: StartPosition::TrimHorizon,
        };
        let reader = KinesisReader::new(&stream, args.retry).await;
        let webhook = args.webhook.as_deref().map(Webhook::new).transpose()?;
        jc.select_scorer(scorer);
        let delay_us = args.watermark.num_microseconds().unwrap_or(0).max(0);
        let legacy = StateStore::new(store.clone(), root.child("_checkpoints/stream"));
        migrate_single_document(&legacy, &states, &leases.states, &stream, delay_us).await?;
        tracing::info!(stream = %stream, to = %root.display, worker = %worker, "stream starting");
        Ok(Streamer {
            jc,
            args,
            scorer_id: scorer.id(),
            report: StreamReport { stream: stream.clone(), worker_id: worker, ..Default::default() },
            stream,
            root,
            store,
            states,
            terms,
            leases,
            reader,
            webhook,
            window_us: args.spec.window.num_microseconds().unwrap_or(i64::MAX),
            delay_us,
            shards: Vec::new(),
            held: BTreeMap::new(),
            foreign: ForeignLeases::default(),
            emitter: (EmitterDoc::default(), None),
            other_emitter: ForeignLeases::default(),
            taken_now: 0,
            latencies: Vec::new(),
        })
    }

    async fn run_loop(&mut self, stop: &mut watch::Receiver<bool>) -> Result<()> {
        metrics().health.start(self.args.stall_after);
        metrics().watch_checkpoints(self.states.counters());
        loop {
            let round = Instant::now();
            let stopping = *stop.borrow();
            self.take_leases(stopping).await?;
            self.load_emitter().await?;
            let (mut any_records, mut all_caught_up) = (false, true);
            let ids: Vec<String> = self.held.keys().cloned().collect();
            let mut staged = Vec::new();
            for id in ids {
                let read = self.read(&id).await?;
                all_caught_up &= read.caught_up;
                if read.records.is_empty() {
                    self.handle_idle(&id, &read).await?;
                } else {
                    any_records = true;
                    staged.extend(self.stage_batch(&id, read).await?);
                }
            }
            let committed = !staged.is_empty();
            if committed {
                self.commit_staged(staged).await?;
            }
            let role = self.emit().await?;
            self.round_done(committed.then(|| round.elapsed()));
            if stopping {
                return Ok(());
            }
            let idle = !any_records && all_caught_up && self.taken_now == 0;
            let emitting_done = match role {
                EmitRole::Emitter { emitted } => !emitted,
                EmitRole::OtherLive => true,
                EmitRole::OtherUnknown => false,
            };
            if self.args.until_caught_up && idle && emitting_done && self.foreign.only_live_left(self.args.lease) {
                return Ok(());
            }
            if any_records && !all_caught_up {
                continue; // more to read right away
            }
            let wait = if self.args.until_caught_up && all_caught_up && self.foreign.is_empty() && !idle {
                Duration::ZERO // caught up: one more round checks and exits
            } else if self.args.until_caught_up {
                self.args.trigger.min(Duration::from_secs(1))
            } else {
                self.args.trigger
            };
            if !wait.is_zero() {
                sleep_or_stop(wait, stop).await;
            }
        }
    }

    /// A round of the loop completed: `/healthz` hears of it; its duration when it committed.
    fn round_done(&self, took: Option<Duration>) {
        let m = metrics();
        m.health.round();
        if let Some(t) = took {
            m.batch_seconds.observe(t.as_secs_f64());
        }
        m.leases_held.set(self.held.len() as i64);
        if let Some(w) = self.emitter.0.emitted_through_us {
            m.watermark_seconds.set(w as f64 / 1e6);
            m.watermark_delay_seconds.set((chrono::Utc::now().timestamp_micros() - w) as f64 / 1e6);
        }
    }

    /// Lists the shards and leases this worker's share (the lease code `ingest` uses).
    async fn take_leases(&mut self, stopping: bool) -> Result<()> {
        self.shards = self.reader.list_shards().await?;
        self.taken_now = 0;
        if stopping {
            return Ok(());
        }
        let running: HashSet<String> = self.held.keys().cloned().collect();
        let acq = self.leases.acquire(&self.shards, &running, &HashSet::new(), &self.foreign).await?;
        self.foreign.note(acq.leased_elsewhere);
        for t in acq.taken {
            let id = t.shard.id.clone();
            self.foreign.forget(&id);
            let mut win = ShardWindows::of(&t.state, &self.leases.states)?;
            if win.fence_us.is_none() {
                // a child of a split or merge starts at its parents' fences: the emitter may
                // have emitted up to them while the child was not readable yet
                for p in t.shard.parents() {
                    if let Some((ps, _)) = self.leases.states.load(p).await? {
                        win.fence_us = win.fence_us.max(ShardWindows::of(&ps, &self.leases.states)?.fence_us);
                    }
                }
            }
            if t.state.pending.is_some() {
                tracing::info!(shard = %id, pending = ?t.state.pending, "re-writing the range a previous owner did not commit");
            }
            self.report.shards_held.insert(id.clone());
            metrics().leases_taken.inc();
            self.taken_now += 1;
            let renew_at = Instant::now() + self.args.lease / 3;
            self.held.insert(id, Held { state: t.state, version: t.version, win, iter: None, renew_at });
        }
        Ok(())
    }

    async fn load_emitter(&mut self) -> Result<()> {
        self.emitter = match self.states.load_doc(EMITTER_DOC).await? {
            Some((v, ver)) => (
                serde_json::from_value(v).map_err(|e| Error::Checkpoint {
                    location: format!("{}/{EMITTER_DOC}.json", self.states.display()),
                    reason: format!("not an emitter state: {e}"),
                })?,
                Some(ver),
            ),
            None => (EmitterDoc::default(), None),
        };
        Ok(())
    }

    /// The global watermark as this worker knows it: the emitter's, or its own shards' if ahead.
    fn watermark(&self) -> Option<i64> {
        let own = self.held.values().filter_map(|h| h.win.max_event_us).max().map(|m| m - self.delay_us);
        own.max(self.emitter.0.watermark_us)
    }

    /// Whether the shard is open (not closed by a split or merge) in the last listing.
    fn is_open(&self, id: &str) -> bool {
        self.shards.iter().any(|s| s.id == id && !s.closed)
    }

    fn lost(&mut self, id: &str) {
        self.held.remove(id);
        self.report.leases_lost += 1;
        metrics().leases_lost.inc();
        metrics().leases_held.set(self.held.len() as i64);
    }

    /// Where to start reading a shard: after its committed record, or at its start.
    fn committed_position(state: &ShardState) -> Position {
        match &state.committed {
            Some(c) => Position::After(c.clone()),
            None => Position::TrimHorizon,
        }
    }

    async fn read(&mut self, id: &str) -> Result<ShardRead> {
        match self.held.get(id).and_then(|h| h.state.pending.clone()) {
            Some(p) => self.read_replay(id, &p).await,
            None => self.read_new(id).await,
        }
    }

    /// Re-reads exactly the range of an intent that was saved but not committed.
    async fn read_replay(&mut self, id: &str, pending: &Pending) -> Result<ShardRead> {
        self.report.replays += 1;
        let Some(h) = self.held.get_mut(id) else { return Ok(empty_read()) };
        h.iter = None;
        let mut it = self.reader.iterator(id, &Self::committed_position(&h.state)).await?;
        let mut records = Vec::new();
        while let Some(i) = it.clone() {
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
            let at_tip = page.records.is_empty() && page.millis_behind.unwrap_or(0) == 0;
            for r in page.records {
                if seq_cmp(r.sequence_number(), &pending.last) == std::cmp::Ordering::Greater {
                    tracing::warn!(shard = %id, expected = %pending.last, "pending range ended early");
                    return Ok(ShardRead { records, caught_up: false, ended: false, replay: true });
                }
                let done = r.sequence_number() == pending.last;
                records.push(r);
                if done {
                    return Ok(ShardRead { records, caught_up: false, ended: false, replay: true });
                }
            }
            if at_tip {
                // the range's last record is gone (trimmed): what was re-read is the range
                tracing::warn!(shard = %id, expected = %pending.last, "pending range ended early");
                break;
            }
            it = page.next;
        }
        Ok(ShardRead { records, caught_up: false, ended: false, replay: true })
    }

    /// Takes what one shard holds now (up to --max-records-per-shard); a
    /// micro-batch does not chase a busy shard's tip.
    async fn read_new(&mut self, id: &str) -> Result<ShardRead> {
        let Some(h) = self.held.get_mut(id) else { return Ok(empty_read()) };
        if h.iter.is_none() {
            h.iter = Some(self.reader.iterator(id, &Self::committed_position(&h.state)).await?);
        }
        let mut read = ShardRead { records: Vec::new(), caught_up: true, ended: false, replay: false };
        loop {
            let Some(Some(it)) = h.iter.clone() else {
                read.ended = true;
                break;
            };
            let limit = 10_000.min(self.args.max_records_per_shard as i32);
            let page = match self.reader.get_records(&it, limit).await {
                Ok(p) => p,
                Err(ReadError::Expired) => {
                    let pos = match read.records.last() {
                        Some(r) => Position::After(r.sequence_number().to_string()),
                        None => Self::committed_position(&h.state),
                    };
                    h.iter = Some(self.reader.iterator(id, &pos).await?);
                    continue;
                }
                Err(ReadError::Fatal(e)) => return Err(e),
            };
            let full = page.records.len() >= limit as usize;
            let behind = page.millis_behind.unwrap_or(0) > 0;
            if let Some(ms) = page.millis_behind {
                metrics().set_shard_lag(id, ms);
            }
            read.records.extend(page.records);
            h.iter = Some(page.next.clone());
            if page.next.is_none() {
                continue; // closed: recorded at the top of the loop
            }
            if !full || !behind {
                read.caught_up = !full && !behind;
                break;
            }
            if read.records.len() >= self.args.max_records_per_shard {
                read.caught_up = false;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(read)
    }

    /// A shard with nothing new: one read to its end is finished and given
    /// up; an open one at its tip follows the global watermark (its fence rises
    /// to it); the lease is renewed when due.
    async fn handle_idle(&mut self, id: &str, read: &ShardRead) -> Result<()> {
        let (watermark, open) = (self.watermark(), self.is_open(id));
        let Some(h) = self.held.get_mut(id) else { return Ok(()) };
        if read.ended {
            if self.leases.release(&mut h.state, &h.version, true).await? {
                tracing::info!(shard = %id, worker = %self.leases.worker, "shard closed and read to its end");
                self.report.shards_closed += 1;
                self.held.remove(id);
            } else {
                self.lost(id);
            }
            return Ok(());
        }
        let fence = next_fence(h.win.fence_us, None, watermark, read.caught_up && open);
        if fence == h.win.fence_us && Instant::now() < h.renew_at {
            return Ok(());
        }
        let mut next = h.state.clone();
        h.win.fence_us = fence;
        next.job = to_job(&h.win);
        if self.leases.save(&mut h.state, &mut h.version, next).await? {
            h.renew_at = Instant::now() + self.args.lease / 3;
        } else {
            self.lost(id);
        }
        Ok(())
    }

    /// Step 1 of a shard's micro-batch: the intent (the range and its late
    /// threshold; a replay finds both saved) and the raw rows and rejects.
    async fn stage_batch(&mut self, id: &str, read: ShardRead) -> Result<Option<Staged>> {
        let (Some(first), Some(last)) = (
            read.records.first().map(|r| r.sequence_number().to_string()),
            read.records.last().map(|r| r.sequence_number().to_string()),
        ) else {
            return Ok(None);
        };
        let n_records = read.records.len() as u64;
        let Some(h) = self.held.get_mut(id) else { return Ok(None) };
        // rows of windows already emitted are late whatever the shard's own fence says
        let emitted = self.emitter.0.emitted_through_us;
        let late_before = if read.replay { h.win.pending_late_before_us } else { h.win.fence_us.max(emitted) };
        if !read.replay {
            let mut next = h.state.clone();
            next.pending = Some(Pending { first: first.clone(), last: last.clone(), records: n_records });
            let mut win = h.win.clone();
            win.pending_late_before_us = late_before;
            win.fence_us = late_before;
            next.job = to_job(&win);
            if !self.leases.save(&mut h.state, &mut h.version, next).await? {
                self.lost(id);
                return Ok(None);
            }
            h.win = win;
        }
        // files named after (shard, first sequence number): a replay overwrites them
        let name = format!("{id}-{first}.parquet");
        let mut p = RecordParser::new(format!("kinesis://{}/{id}", self.stream), self.args.max_text_bytes)
            .with_max_event_ahead(self.args.max_event_ahead);
        for r in &read.records {
            crate::io::kinesis::parse_record(&mut p, id, r);
        }
        let parsed = p.finish();
        let (root, store) = (&self.root, &self.store);
        let rejected = root.child(&format!("{}/job=stream", Table::Rejected.dir()));
        write_raw_and_rejects(store, &root.child(Table::Raw.dir()), &rejected, &name, &parsed.batches, &parsed.rejects)
            .await?;
        Ok(Some(Staged {
            id: id.to_string(),
            read,
            last,
            name,
            late_before,
            raw: parsed.batches,
            rows: BatchRows { rejected: parsed.rejects.len() as u64, ..Default::default() },
        }))
    }

    /// Steps 2-4 for every staged shard batch of this round: scored rows (one
    /// query for all of them), late rows split off, all written; the window
    /// partials (one pass of the window SQL for all of them); then each shard's
    /// commit of cursor, partials, max event time and fence in one conditional write.
    async fn commit_staged(&mut self, mut staged: Vec<Staged>) -> Result<()> {
        let scored_at = chrono::Utc::now().timestamp_micros();
        let raw: Vec<Vec<RecordBatch>> = staged.iter_mut().map(|s| std::mem::take(&mut s.raw)).collect();
        let scored = self.score_tagged(raw, scored_at).await?;
        for (s, scored) in staged.iter_mut().zip(scored) {
            self.write_scored(s, scored).await?;
            self.terms.write_batch(self.jc, &s.name, &s.rows.on_time).await?;
        }
        let emitted = self.emitter.0.emitted_through_us;
        let priors: Vec<Vec<Value>> =
            staged.iter().map(|s| self.held.get(&s.id).map(|h| h.win.state.clone()).unwrap_or_default()).collect();
        let on_time: Vec<Vec<RecordBatch>> = staged.iter_mut().map(|s| std::mem::take(&mut s.rows.on_time)).collect();
        let partials = self.merge_partials(on_time, &priors, emitted).await?;
        crash_point("stream_outputs");
        for (s, partials) in staged.into_iter().zip(partials) {
            self.commit_shard(s, partials).await?;
        }
        Ok(())
    }

    /// Scores every shard's raw rows in one query: `source` carries the
    /// shard's index through it (see [`tag_source`]).
    async fn score_tagged(&self, raw: Vec<Vec<RecordBatch>>, scored_at: i64) -> Result<Vec<Vec<RecordBatch>>> {
        let n = raw.len();
        let tagged = tag_all(&raw)?;
        if tagged.iter().all(|b| b.num_rows() == 0) {
            return Ok(vec![Vec::new(); n]);
        }
        register_batches(self.jc, "raw_tweets", Table::Raw.schema(), vec![tagged])?;
        let params = vec![
            ("scorer", ScalarValue::Utf8(Some(self.scorer_id.clone()))),
            ("scored_at", ScalarValue::TimestampMicrosecond(Some(scored_at), Some("UTC".into()))),
        ];
        let out = crate::io::diagnose::collect(sql::query(&self.jc.ctx, "score", params).await?).await?;
        untag_batches(&out, n)
    }

    /// Splits a shard's scored rows into on-time and late (before its threshold) and writes them.
    async fn write_scored(&self, s: &mut Staged, scored: Vec<RecordBatch>) -> Result<()> {
        let (mut on_time, mut late) = (Vec::new(), Vec::new());
        for b in &scored {
            s.rows.rows += b.num_rows() as u64;
            s.rows.by_scorer.add(b);
            let t = b.column_by_name("created_at").map(|c| c.as_primitive::<TimestampMicrosecondType>().clone());
            let Some(t) = t else { continue };
            let is_late: BooleanArray =
                t.iter().map(|v| Some(matches!((v, s.late_before), (Some(v), Some(w)) if v < w))).collect();
            let not_late = datafusion::arrow::compute::not(&is_late).map_err(|e| Error::arrow("late mask", e))?;
            late.push(filter_record_batch(b, &is_late).map_err(|e| Error::arrow("late rows", e))?);
            on_time.push(filter_record_batch(b, &not_late).map_err(|e| Error::arrow("on-time rows", e))?);
            for v in t.iter().flatten() {
                s.rows.max_event = Some(s.rows.max_event.map_or(v, |m| m.max(v)));
            }
        }
        s.rows.late_rows = late.iter().map(RecordBatch::num_rows).sum::<usize>() as u64;
        write_table(&self.store, self.root.child(Table::Scored.dir()), Table::Scored, &s.name, &scored).await?;
        if s.rows.late_rows > 0 {
            write_table(&self.store, self.root.child("late"), Table::Scored, &s.name, &late).await?;
        }
        s.rows.on_time = on_time;
        Ok(())
    }

    /// Each shard's partials after this round: its on-time rows' window
    /// partials merged into its `priors`, less the windows emitted through
    /// `emitted`; one pass of the window SQL for every shard (tagged sources).
    async fn merge_partials(
        &self,
        on_time: Vec<Vec<RecordBatch>>,
        priors: &[Vec<Value>],
        emitted: Option<i64>,
    ) -> Result<Vec<Vec<Value>>> {
        let jc = self.jc;
        let spec = self.args.spec;
        let n = on_time.len();
        let rows = tag_all(&on_time)?;
        let batch_partials = match rows.first().map(|b| b.schema()) {
            Some(schema) if rows.iter().any(|b| b.num_rows() > 0) => {
                register_batches(jc, "scored_tweets", schema, vec![rows])?;
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
        let prior: Vec<Value> =
            priors.iter().enumerate().flat_map(|(i, rows)| rows.iter().map(move |r| tag_row(r, i))).collect();
        let merged = merge_rows(jc, as_partials(batch_partials)?, state_batch(&prior)?).await?;
        let mut out = vec![Vec::new(); n];
        for row in merged.iter().flat_map(state_rows) {
            if let Some((i, row)) = untag_row(row)
                && i < n
                && !self.emitted(&row, emitted)
            {
                out[i].push(row);
            }
        }
        Ok(out)
    }

    /// Step 5: the shard's commit: cursor, partials, max event time and fence in one conditional write.
    async fn commit_shard(&mut self, s: Staged, partials: Vec<Value>) -> Result<()> {
        let (delay_us, watermark, open) = (self.delay_us, self.watermark(), self.is_open(&s.id));
        let (id, read, rows) = (s.id.as_str(), &s.read, &s.rows);
        let n_records = read.records.len() as u64;
        let Some(h) = self.held.get_mut(id) else { return Ok(()) };
        let mut win = h.win.clone();
        win.max_event_us = win.max_event_us.max(rows.max_event);
        let own = win.max_event_us.map(|m| m - delay_us);
        win.fence_us = next_fence(win.fence_us, own, watermark, read.caught_up && open && !read.ended);
        win.pending_late_before_us = None;
        win.state = partials;
        for (k, n) in
            [("records", n_records), ("rows", rows.rows), ("rejected", rows.rejected), ("late_rows", rows.late_rows)]
        {
            *win.totals.entry(k.into()).or_default() += n;
        }
        let mut next = h.state.clone();
        next.committed = Some(s.last.clone());
        next.pending = None;
        next.records_committed += n_records;
        next.job = to_job(&win);
        if !self.leases.save(&mut h.state, &mut h.version, next).await? {
            self.lost(id);
            return Ok(());
        }
        h.win = win;
        h.renew_at = Instant::now() + self.args.lease / 3;
        let durable_ms = chrono::Utc::now().timestamp_millis();
        for r in &read.records {
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
        rep.by_scorer.merge(&rows.by_scorer);
        count_batch(id, n_records, rows);
        tracing::info!(
            worker = %self.leases.worker,
            shard = %id,
            last = %s.last,
            records = n_records,
            late = rows.late_rows,
            fence_us = ?h.win.fence_us,
            open = h.win.state.len(),
            "micro-batch committed"
        );
        Ok(())
    }

    /// Whether a partials row's window ends at or before `through`.
    fn emitted(&self, row: &Value, through: Option<i64>) -> bool {
        matches!((row[0].as_i64(), through), (Some(s), Some(t)) if s.saturating_add(self.window_us) <= t)
    }

    /// The emitter step: holds (or takes) the emitter lease, and emits the
    /// windows every live shard has passed.
    async fn emit(&mut self) -> Result<EmitRole> {
        let now = now_ms();
        let (doc, version) = self.emitter.clone();
        let me = self.leases.worker.clone();
        let rev = version.as_ref().map_or(0, crate::io::checkpoint::Version::rev);
        // another worker's live emitter lease: the same live-or-dead test as other workers' shard
        // leases (renewed within a lease length, as this worker's clock saw it)
        let holder = self.other_emitter.live_holder(
            EMITTER_DOC,
            doc.owner.as_ref(),
            doc.lease_until_ms,
            rev,
            &me,
            self.leases.lease,
        );
        let held_elsewhere = match holder {
            Some(o) => HashMap::from([(EMITTER_DOC.to_string(), Seen { owner: o.clone(), rev })]),
            None => HashMap::new(),
        };
        let other = !held_elsewhere.is_empty();
        self.other_emitter.note(held_elsewhere);
        if other {
            let live = !self.other_emitter.live().is_empty();
            return Ok(if live { EmitRole::OtherLive } else { EmitRole::OtherUnknown });
        }
        let shard_states = self.shard_states().await?;
        let through = min_fence(&self.shards, &shard_states);
        let max_event = shard_states.values().filter_map(|s| s.0.max_event_us).max();
        let mut next = doc.clone();
        next.owner = Some(me.clone());
        next.watermark_us = next.watermark_us.max(max_event.map(|m| m - self.delay_us));
        // the partials of windows ending in (emitted, through]
        let due = |through: i64| -> Vec<Value> {
            let in_range = |r: &&Value| self.emitted(r, Some(through)) && !self.emitted(r, doc.emitted_through_us);
            shard_states.values().flat_map(|s| s.0.state.iter()).filter(in_range).cloned().collect()
        };
        let target = match &doc.pending {
            Some(p) => Some(p.through_us), // an emission a previous emitter did not commit
            // nothing is emitted (and the emitted-through point stays) until a window with rows is due
            None => through.filter(|t| doc.emitted_through_us.is_none_or(|e| *t > e) && !due(*t).is_empty()),
        };
        let Some(target) = target else {
            let renew_due = doc.lease_until_ms - now < self.args.lease.as_millis() as i64 * 2 / 3;
            if next.owner != doc.owner || next.watermark_us != doc.watermark_us || renew_due {
                next.lease_until_ms = now + self.args.lease.as_millis() as i64;
                if let Some(v) = self.save_emitter(&next, version.as_ref()).await? {
                    self.emitter = (next, Some(v));
                }
            }
            return Ok(EmitRole::Emitter { emitted: false });
        };
        // 1. intent
        let emit_id = doc.pending.as_ref().map(|p| p.emit_id).unwrap_or(doc.emit_id + 1);
        next.pending = Some(PendingEmit { emit_id, through_us: target });
        next.lease_until_ms = now + self.args.lease.as_millis() as i64;
        let Some(v) = self.save_emitter(&next, version.as_ref()).await? else {
            return Ok(EmitRole::OtherUnknown);
        };
        // 2. the windows in (emitted, target], summed over every shard, and their alerts
        let rows = due(target);
        let name = format!("emit-{emit_id:010}.parquet");
        let mut history = doc.history.clone();
        let (windows, by_source, fired) =
            self.write_windows(&rows, &name, &mut history, doc.emitted_through_us, target).await?;
        crash_point("stream_emit");
        // 3. commit
        next.pending = None;
        next.emit_id = emit_id;
        next.emitted_through_us = Some(target);
        next.history = history;
        for (k, n) in [("windows", windows), ("windows_by_source", by_source.0), ("alerts", fired.len() as u64)] {
            *next.totals.entry(k.into()).or_default() += n;
        }
        *next.totals.entry("window_terms".into()).or_default() += by_source.1;
        let Some(v) = self.save_emitter(&next, Some(&v)).await? else {
            return Ok(EmitRole::OtherUnknown);
        };
        self.emitter = (next, Some(v));
        let forgotten = self.terms.forget_before(target).await?;
        let rep = &mut self.report;
        rep.emits += 1;
        rep.windows += windows;
        rep.windows_by_source += by_source.0;
        rep.window_terms += by_source.1;
        rep.alerts += fired.len() as u64;
        let m = metrics();
        m.windows_emitted.inc_by(windows);
        m.alerts_fired.inc_by(fired.len() as u64);
        m.watermark_seconds.set(target as f64 / 1e6);
        tracing::info!(worker = %me, emit = emit_id, through_us = target, windows, alerts = fired.len(), term_files_removed = forgotten, "windows emitted");
        if let (Some(hook), false) = (&self.webhook, fired.is_empty()) {
            let delivered = hook.post(&fired).await as u64;
            self.report.webhook_delivered += delivered;
            metrics().webhook_failures.inc_by(fired.len() as u64 - delivered.min(fired.len() as u64));
        }
        Ok(EmitRole::Emitter { emitted: true })
    }

    /// Every listed shard's stream state, pending intent and closed flag:
    /// held shards from memory, the others from the store.
    async fn shard_states(&self) -> Result<ShardStates> {
        let mut out = HashMap::new();
        for s in &self.shards {
            let got = match self.held.get(&s.id) {
                Some(h) => Some((h.win.clone(), h.state.pending.is_some(), h.state.closed)),
                None => match self.leases.states.load(&s.id).await? {
                    Some((st, _)) => {
                        Some((ShardWindows::of(&st, &self.leases.states)?, st.pending.is_some(), st.closed))
                    }
                    None => None,
                },
            };
            if let Some(g) = got {
                out.insert(s.id.clone(), g);
            }
        }
        Ok(out)
    }

    /// Writes windows, windows_by_source and window_terms for the given
    /// partials (of several shards: summed per window and source) of the
    /// windows ending in (`emitted`, `target`], and the alerts they fire (with
    /// their drivers); returns (windows, (by source, window terms), alerts).
    async fn write_windows(
        &self,
        partials: &[Value],
        name: &str,
        history: &mut Vec<(i64, f64, i64)>,
        emitted: Option<i64>,
        target: i64,
    ) -> Result<(u64, (u64, u64), Vec<Alert>)> {
        let jc = self.jc;
        if partials.is_empty() {
            return Ok((0, (0, 0), Vec::new()));
        }
        let merged = merge_rows(jc, vec![state_batch(partials)?], state_batch(&[])?).await?;
        register_batches(jc, "window_source_aggs", partial_schema(), vec![as_partials(merged)?])?;
        let (mut windows, mut by_source, mut fired) = (0, 0, Vec::new());
        let term_rows = self.terms.rows(jc, emitted, target).await?;
        let drivers = crate::window::drivers(&term_rows);
        for (table, sql_name) in [(Table::WindowsBySource, "windows_by_source"), (Table::Windows, "windows")] {
            let (_, rows) = collect(jc, sql_name, vec![("window", interval_param(self.args.spec.window))]).await?;
            let n = write_table(&self.store, self.root.child(table.dir()), table, name, &rows).await?;
            if table == Table::Windows {
                windows = n;
                if let Some(rules) = &self.args.rules {
                    fired = evaluate(rules, &window_figures(&rows), history)
                        .into_iter()
                        .map(|a| {
                            let d = drivers.get(&a.window_start_us).cloned().unwrap_or_default();
                            a.with_drivers(&d)
                        })
                        .collect();
                }
            } else {
                by_source = n;
            }
        }
        let terms =
            write_table(&self.store, self.root.child(Table::WindowTerms.dir()), Table::WindowTerms, name, &term_rows)
                .await?;
        if !fired.is_empty() {
            let batch = alerts_batch(&fired, chrono::Utc::now().timestamp_micros())?;
            write_table(&self.store, self.root.child(Table::Alerts.dir()), Table::Alerts, name, &[batch]).await?;
        }
        Ok((windows, (by_source, terms), fired))
    }

    /// Writes the emitter document if it is still at `prev`; `None` when another worker wrote it.
    async fn save_emitter(&self, doc: &EmitterDoc, prev: Option<&Version>) -> Result<Option<Version>> {
        let v = serde_json::to_value(doc).unwrap_or_default();
        match self.states.save_doc(EMITTER_DOC, v, prev).await? {
            Ok(v) => Ok(Some(v)),
            Err(_) => {
                tracing::info!(worker = %self.leases.worker, "another worker holds the emitter lease");
                Ok(None)
            }
        }
    }

    /// Gives every lease up and sums up.
    async fn finish(&mut self) -> Result<StreamReport> {
        let ids: Vec<String> = self.held.keys().cloned().collect();
        for id in ids {
            if let Some(mut h) = self.held.remove(&id) {
                self.leases.release(&mut h.state, &h.version, false).await?;
            }
        }
        self.load_emitter().await?;
        let (mut doc, version) = self.emitter.clone();
        if doc.owner.as_deref() == Some(self.leases.worker.as_str()) {
            doc.owner = None;
            doc.lease_until_ms = 0;
            self.save_emitter(&doc, version.as_ref()).await?;
        }
        let _ = self.jc.ctx.deregister_table("raw_tweets");
        let mut report = std::mem::take(&mut self.report);
        report.watermark_us = doc.emitted_through_us;
        let mut open = BTreeSet::new();
        for st in self.leases.states.all().await? {
            let win = ShardWindows::of(&st, &self.leases.states)?;
            open.extend(
                win.state.iter().filter(|r| !self.emitted(r, doc.emitted_through_us)).map(|r| r[0].clone().to_string()),
            );
        }
        report.open_windows = open.len();
        report.latency_ms = percentiles(std::mem::take(&mut self.latencies));
        if self.args.until_caught_up {
            report.left_to_live_workers = self.foreign.live();
        }
        report.state_requests = self.states.requests();
        Ok(report)
    }
}

/// Every listed shard's stream state, pending intent and closed flag, by shard id.
type ShardStates = HashMap<String, (ShardWindows, bool, bool)>;

/// The point every live shard has passed: the minimum fence over the open
/// shards whose parents are finished (`None` while one has no fence yet).
/// Closed shards read to their end add nothing more; a child waits for its parents.
fn min_fence(shards: &[ShardInfo], states: &ShardStates) -> Option<i64> {
    let ids: HashSet<&str> = shards.iter().map(|s| s.id.as_str()).collect();
    let closed = |id: &str| states.get(id).is_some_and(|s| s.2);
    let mut through: Option<Option<i64>> = None;
    for s in shards {
        if closed(&s.id) || !s.readable(&ids, closed) {
            continue;
        }
        let fence = states.get(&s.id).and_then(|(w, pending, _)| w.effective_fence(*pending));
        through = Some(through.map_or(fence, |t| t.min(fence)));
    }
    through.flatten()
}

/// A shard's fence after a commit or an idle round: never lower, at least its
/// own watermark, and the global watermark too when `follows_global` (an open
/// shard at its tip; a closed one keeps its own, which its children start from).
fn next_fence(fence: Option<i64>, own: Option<i64>, global: Option<i64>, follows_global: bool) -> Option<i64> {
    let f = fence.max(own);
    if follows_global { f.max(global) } else { f }
}

fn empty_read() -> ShardRead {
    ShardRead { records: Vec::new(), caught_up: true, ended: false, replay: false }
}

/// Separates a shard's index from the source in a tagged `source` value.
const TAG: char = '\u{1}';

/// The batch with `source` values prefixed by `index` and [`TAG`]: several
/// shards' rows go through one query and are told apart afterwards.
fn tag_source(b: &RecordBatch, index: usize) -> Result<RecordBatch> {
    let Some((col, _)) = b.schema().column_with_name("source") else { return Ok(b.clone()) };
    let src = b.column(col).as_string::<i32>();
    let tagged: StringArray = src.iter().map(|v| v.map(|v| format!("{index}{TAG}{v}"))).collect();
    let mut cols = b.columns().to_vec();
    cols[col] = Arc::new(tagged);
    RecordBatch::try_new(b.schema(), cols).map_err(|e| Error::arrow("tagging sources", e))
}

/// Every list's batches in one list, each batch tagged with its list's index.
fn tag_all(lists: &[Vec<RecordBatch>]) -> Result<Vec<RecordBatch>> {
    lists.iter().enumerate().flat_map(|(i, bs)| bs.iter().map(move |b| tag_source(b, i))).collect()
}

/// Splits tagged batches back into `n` lists by index, with the tag removed.
fn untag_batches(batches: &[RecordBatch], n: usize) -> Result<Vec<Vec<RecordBatch>>> {
    let mut out = vec![Vec::new(); n];
    for b in batches {
        let Some((col, _)) = b.schema().column_with_name("source") else { continue };
        let src = b.column(col).as_string::<i32>();
        let split: Vec<Option<(usize, &str)>> = src
            .iter()
            .map(|v| v.and_then(|v| v.split_once(TAG)).and_then(|(i, s)| Some((i.parse().ok()?, s))))
            .collect();
        for (i, list) in out.iter_mut().enumerate() {
            let mask: BooleanArray = split.iter().map(|t| Some(t.is_some_and(|(k, _)| k == i))).collect();
            if mask.true_count() == 0 {
                continue;
            }
            let mut part = filter_record_batch(b, &mask).map_err(|e| Error::arrow("untagging", e))?;
            let plain: StringArray = part
                .column(col)
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(|v| v.split_once(TAG).map_or(v, |(_, s)| s).to_string()))
                .collect();
            let mut cols = part.columns().to_vec();
            cols[col] = Arc::new(plain);
            part = RecordBatch::try_new(part.schema(), cols).map_err(|e| Error::arrow("untagging", e))?;
            list.push(part);
        }
    }
    Ok(out)
}

/// A partials row with its source tagged by `index`.
fn tag_row(row: &Value, index: usize) -> Value {
    let mut r = row.clone();
    if let Some(s) = r[1].as_str() {
        r[1] = json!(format!("{index}{TAG}{s}"));
    }
    r
}

/// A tagged partials row's index and the row with its source as it was.
fn untag_row(mut row: Value) -> Option<(usize, Value)> {
    let (i, s) = row[1].as_str()?.split_once(TAG)?;
    let (i, s) = (i.parse().ok()?, s.to_string());
    row[1] = json!(s);
    Some((i, row))
}

fn to_job(win: &ShardWindows) -> Value {
    serde_json::to_value(win).unwrap_or_default()
}

/// Partials combined per (window, source): `sql/stream_merge.sql` over `batch` and `state`.
async fn merge_rows(jc: &JobContext, batch: Vec<RecordBatch>, state: RecordBatch) -> Result<Vec<RecordBatch>> {
    register_batches(jc, "batch_aggs", partial_schema(), vec![batch])?;
    register_batches(jc, "state_aggs", partial_schema(), vec![vec![state]])?;
    Ok(collect(jc, "stream_merge", vec![]).await?.1)
}

/// The one checkpoint document per stream that sentiflow kept before streams
/// were shared between workers (`_checkpoints/stream/<stream>.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
struct LegacyCheckpoint {
    batch_id: u64,
    shards: BTreeMap<String, LegacyCursor>,
    max_event_us: Option<i64>,
    state: Vec<Value>,
    history: Vec<(i64, f64, i64)>,
    pending: Option<Value>,
    totals: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
struct LegacyCursor {
    committed: Option<String>,
    closed: bool,
}

/// The per-shard states and the emitter document equivalent to a legacy
/// checkpoint: every shard resumes after its cursor with the old watermark as
/// its fence; the open windows' partials go to the first shard (partials of
/// several shards are summed at emission, so where they sit does not matter).
fn split_legacy(old: &LegacyCheckpoint, delay_us: i64) -> (Vec<ShardState>, EmitterDoc) {
    let watermark = old.max_event_us.map(|m| m - delay_us);
    let shards = old
        .shards
        .iter()
        .enumerate()
        .map(|(i, (id, c))| {
            let mut st = ShardState::new(id);
            st.committed = c.committed.clone();
            st.closed = c.closed;
            let first = i == 0;
            let win = ShardWindows {
                max_event_us: old.max_event_us,
                fence_us: watermark,
                state: if first { old.state.clone() } else { Vec::new() },
                totals: if first {
                    let keep = ["records", "rows", "rejected", "late_rows"];
                    old.totals
                        .iter()
                        .filter(|(k, _)| keep.contains(&k.as_str()))
                        .map(|(k, v)| (k.clone(), *v))
                        .collect()
                } else {
                    BTreeMap::new()
                },
                ..Default::default()
            };
            st.job = to_job(&win);
            st
        })
        .collect();
    let emitter = EmitterDoc {
        emit_id: old.batch_id,
        emitted_through_us: watermark,
        watermark_us: watermark,
        history: old.history.clone(),
        totals: old
            .totals
            .iter()
            .filter(|(k, _)| matches!(k.as_str(), "windows" | "alerts"))
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        ..Default::default()
    };
    (shards, emitter)
}

/// Moves a legacy checkpoint (one document per stream) to per-shard states
/// and an emitter document, once: the emitter document marks it done.
async fn migrate_single_document(
    legacy: &StateStore,
    states: &StateStore,
    shard_states: &StateStore,
    stream: &str,
    delay_us: i64,
) -> Result<()> {
    let Some((v, _)) = legacy.load_doc(stream).await? else { return Ok(()) };
    if states.load_doc(EMITTER_DOC).await?.is_some() {
        return Ok(());
    }
    let bad = |reason: String| Error::Checkpoint { location: format!("{}/{stream}.json", legacy.display()), reason };
    let old: LegacyCheckpoint = serde_json::from_value(v).map_err(|e| bad(format!("not a stream checkpoint: {e}")))?;
    if old.pending.is_some() {
        return Err(bad(format!(
            "micro-batch {} of an older sentiflow is written but not committed: finish it with that version \
             (`sentiflow stream --until-caught-up`), then run this one",
            old.batch_id + 1
        )));
    }
    let (shards, emitter) = split_legacy(&old, delay_us);
    for st in &shards {
        let prev = shard_states.load(&st.shard_id).await?.map(|(_, v)| v);
        if shard_states.save(st, prev.as_ref()).await?.is_err() {
            return Err(bad("another stream process is moving this checkpoint to per-shard states".into()));
        }
    }
    let doc = serde_json::to_value(&emitter).unwrap_or_default();
    if states.save_doc(EMITTER_DOC, doc, None).await?.is_err() {
        return Err(bad("another stream process is moving this checkpoint to per-shard states".into()));
    }
    tracing::info!(stream = %stream, shards = shards.len(), "moved the stream checkpoint to per-shard states");
    Ok(())
}

/// Writes batches as one partitioned file per partition named `name`; returns the rows written.
async fn write_table(
    store: &Arc<dyn object_store::ObjectStore>,
    root: Location,
    table: Table,
    name: &str,
    batches: &[RecordBatch],
) -> Result<u64> {
    let w = PartitionedWriter::new(store.clone(), root, table, name.to_string());
    Ok(w.write_grouped(batches).await?.iter().map(|f| f.rows as u64).sum())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_percentiles() {
        let mut win = ShardWindows { max_event_us: Some(5), fence_us: Some(3), ..Default::default() };
        win.state.push(json!([60_000_000, "x", 3, 0, 1.5, 0.1, 0.9, 1, 2, 1]));
        win.totals.insert("rows".into(), 9);
        let mut st = ShardState::new("s0");
        st.job = to_job(&win);
        let store =
            StateStore::new(Arc::new(object_store::memory::InMemory::new()), Location::parse("/tmp/x").unwrap());
        assert_eq!(ShardWindows::of(&st, &store).unwrap(), win);
        assert_eq!(ShardWindows::of(&ShardState::new("s1"), &store).unwrap(), ShardWindows::default());
        // a pending batch holds the emitter back at its own threshold
        assert_eq!(win.effective_fence(false), Some(3));
        let pending = ShardWindows { pending_late_before_us: Some(2), ..win.clone() };
        assert_eq!(pending.effective_fence(true), Some(2));
        let unfenced = ShardWindows { pending_late_before_us: None, ..win.clone() };
        assert_eq!(unfenced.effective_fence(true), None, "a batch with no threshold may add to any window");
        let doc = EmitterDoc {
            emitted_through_us: Some(4),
            pending: Some(PendingEmit { emit_id: 2, through_us: 9 }),
            history: vec![(1, 0.5, 30)],
            ..Default::default()
        };
        let back: EmitterDoc = serde_json::from_value(serde_json::to_value(&doc).unwrap()).unwrap();
        assert_eq!(back, doc);
        let b = state_batch(&win.state).unwrap();
        assert_eq!(state_rows(&b), win.state);
        // state saved before n_fallback existed (9 values) reads with n_fallback NULL: none
        let legacy = vec![json!([60_000_000, "x", 3, 0, 1.5, 0.1, 0.9, 1, 2])];
        let back = state_rows(&state_batch(&legacy).unwrap());
        assert_eq!(back, vec![json!([60_000_000, "x", 3, 0, 1.5, 0.1, 0.9, 1, 2, null])]);
        assert_eq!(percentiles((1..=100).collect()), Some([51, 95, 99, 100]));
    }

    #[test]
    fn a_legacy_checkpoint_splits_into_shard_states() {
        // the JSON the single-document checkpoint wrote
        let old: LegacyCheckpoint = serde_json::from_value(json!({"batch_id": 7,
            "shards": {"s0": {"committed": "12", "closed": true}, "s1": {"committed": "40", "closed": false}},
            "max_event_us": 500, "state": [[60_000_000, "x", 3, 0, 1.5, 0.1, 0.9, 1, 2]], "history": [[1, 0.5, 30]],
            "pending": null, "totals": {"rows": 9, "windows": 4}, "rev": 3, "updated_at": "2026-12-01T00:00:00Z"}))
        .unwrap();
        let (shards, emitter) = split_legacy(&old, 100);
        assert_eq!(shards.len(), 2);
        assert_eq!((shards[0].committed.as_deref(), shards[0].closed), (Some("12"), true));
        assert_eq!((shards[1].committed.as_deref(), shards[1].closed), (Some("40"), false));
        let store =
            StateStore::new(Arc::new(object_store::memory::InMemory::new()), Location::parse("/tmp/x").unwrap());
        let (w0, w1) = (ShardWindows::of(&shards[0], &store).unwrap(), ShardWindows::of(&shards[1], &store).unwrap());
        assert_eq!((w0.fence_us, w1.fence_us, w1.max_event_us), (Some(400), Some(400), Some(500)));
        assert_eq!(w0.state.len() + w1.state.len(), 1, "the open windows are kept once");
        assert_eq!(w0.totals.get("rows"), Some(&9));
        assert_eq!((emitter.emit_id, emitter.emitted_through_us, emitter.history.len()), (7, Some(400), 1));
        assert_eq!(emitter.totals.get("windows"), Some(&4));
    }

    #[tokio::test]
    async fn a_legacy_checkpoint_is_moved_once_and_an_open_batch_refused() {
        let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("sentiflow-legacy-{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        let root = Location::parse(&dir.display().to_string()).unwrap();
        let store: Arc<dyn object_store::ObjectStore> = Arc::new(object_store::local::LocalFileSystem::new());
        let legacy = StateStore::new(store.clone(), root.child("_checkpoints/stream"));
        let states = StateStore::new(store.clone(), root.child("_checkpoints/stream/tweets"));
        let shards = states.child("shards");
        let old = json!({"batch_id": 3, "shards": {"s0": {"committed": "9"}}, "max_event_us": 1000,
            "state": [[0, "x", 1, 0, 0.5, 0.5, 0.5, 0, 1]], "totals": {"records": 5, "windows": 2}});
        legacy.save_doc("tweets", old, None).await.unwrap().unwrap();
        migrate_single_document(&legacy, &states, &shards, "tweets", 100).await.unwrap();
        let all = shards.all().await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].committed.as_deref(), Some("9"));
        assert_eq!(ShardWindows::of(&all[0], &shards).unwrap().fence_us, Some(900));
        let (doc, _) = states.load_doc(EMITTER_DOC).await.unwrap().unwrap();
        assert_eq!(doc["emitted_through_us"], json!(900));
        // a second start finds the emitter document and leaves everything as it is
        migrate_single_document(&legacy, &states, &shards, "tweets", 100).await.unwrap();
        assert_eq!(shards.all().await.unwrap(), all);
        // a batch the older version left uncommitted is refused with the fix named
        let open = json!({"batch_id": 3, "pending": {"batch_id": 4, "ranges": {}}});
        legacy.save_doc("other", open, None).await.unwrap().unwrap();
        let other = StateStore::new(store, root.child("_checkpoints/stream/other"));
        let err = migrate_single_document(&legacy, &other, &other.child("shards"), "other", 100).await;
        let msg = err.unwrap_err().to_string();
        assert!(msg.contains("micro-batch 4") && msg.contains("--until-caught-up"), "{msg}");
        std::fs::remove_dir_all(&dir).ok();
    }

    fn shard(id: &str, parent: Option<&str>) -> ShardInfo {
        ShardInfo { id: id.into(), parent: parent.map(Into::into), adjacent_parent: None, closed: false }
    }

    fn fenced(fence: Option<i64>, pending: Option<Option<i64>>, closed: bool) -> (ShardWindows, bool, bool) {
        let win = ShardWindows { fence_us: fence, pending_late_before_us: pending.flatten(), ..Default::default() };
        (win, pending.is_some(), closed)
    }

    #[test]
    fn windows_wait_for_every_live_shard() {
        let shards = vec![shard("s0", None), shard("s1", None), shard("c0", Some("s0"))];
        let mut st: ShardStates = HashMap::new();
        st.insert("s0".into(), fenced(Some(10), None, false));
        assert_eq!(min_fence(&shards, &st), None, "s1 has no fence yet: nothing is emitted");
        st.insert("s1".into(), fenced(Some(20), None, false));
        assert_eq!(min_fence(&shards, &st), Some(10), "the child waits for its open parent");
        st.insert("s0".into(), fenced(Some(10), Some(Some(5)), false));
        assert_eq!(min_fence(&shards, &st), Some(5), "a pending batch holds at its own threshold");
        st.insert("s0".into(), fenced(Some(10), Some(None), false));
        assert_eq!(min_fence(&shards, &st), None, "a pending batch without threshold may add anywhere");
        // the parent read to its end: its child now counts, and has no fence until its owner sets one
        st.insert("s0".into(), fenced(Some(10), None, true));
        assert_eq!(min_fence(&shards, &st), None);
        st.insert("c0".into(), fenced(Some(12), None, false));
        assert_eq!(min_fence(&shards, &st), Some(12));
    }

    #[test]
    fn only_an_open_shard_at_its_tip_follows_the_global_watermark() {
        assert_eq!(next_fence(Some(5), Some(3), Some(50), false), Some(5), "never lower");
        assert_eq!(next_fence(Some(5), Some(8), Some(50), false), Some(8), "its own watermark");
        assert_eq!(next_fence(Some(5), Some(8), Some(50), true), Some(50), "open, at its tip");
        assert_eq!(next_fence(None, None, None, true), None);
    }

    #[test]
    fn tagged_sources_split_back_by_shard() {
        let b = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("source", DataType::Utf8, false),
                Field::new("n", DataType::Int64, false),
            ])),
            vec![Arc::new(StringArray::from(vec!["x", "y\u{1}z"])), Arc::new(Int64Array::from(vec![1, 2]))],
        )
        .unwrap();
        let tagged = vec![tag_source(&b, 0).unwrap(), tag_source(&b, 2).unwrap()];
        let back = untag_batches(&tagged, 3).unwrap();
        assert_eq!(back[0], vec![b.clone()]);
        assert!(back[1].is_empty());
        assert_eq!(back[2], vec![b]);
        let row = json!([0, "a\u{1}b", 1]);
        assert_eq!(untag_row(tag_row(&row, 7)), Some((7, row)));
    }
}
