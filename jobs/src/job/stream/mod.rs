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

//!
//! The code: this file runs the loop and holds a worker's leases
//! (`Streamer`); [`shard`] reads, stages and commits a shard's micro-batches;
//! [`emitter`] holds the emitter lease and emits windows; [`partials`] moves
//! window partials between JSON state, Arrow and SQL; [`legacy`] moves the
//! single-document checkpoint of older versions; [`terms`] keeps term panes.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use tokio::sync::watch;

use crate::context::JobContext;
use crate::io::checkpoint::{ShardState, StateStore, Version};
use crate::io::kinesis::lease::{ForeignLeases, ShardLeases};
use crate::io::kinesis::{KinesisReader, ShardInfo, StartPosition, StreamUrl, sleep_or_stop};
use crate::io::retry::RetryPolicy;
use crate::io::store::Location;
use crate::io::write::PartitionedWriter;
use crate::job::alerts::{Rules, Webhook};
use crate::metrics::metrics;
use crate::schema::Table;
use crate::scorer::{JobScorer, RowsByScorer};
use crate::window::{TermSpec, WindowSpec};
use crate::{Error, Result, sql};

use emitter::{EmitRole, EmitterDoc};
use legacy::migrate_single_document;
use shard::ShardWindows;

mod emitter;
mod legacy;
mod partials;
mod shard;
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

/// A shard this worker holds the lease on.
struct Held {
    state: ShardState,
    version: Version,
    win: ShardWindows,
    /// Open shard iterator: None: not opened yet; Some(None): the shard ended.
    iter: Option<Option<String>>,
    renew_at: Instant,
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

#[cfg(test)]
mod tests {
    use super::emitter::PendingEmit;
    use super::partials::{state_batch, state_rows};
    use super::shard::to_job;
    use super::*;
    use serde_json::json;

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
}
