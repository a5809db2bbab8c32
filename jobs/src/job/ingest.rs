//! `sentiflow ingest`: Kinesis Data Streams → raw Parquet (`dt=/hour=`),
//! exactly once across crashes, scaled out over shards.
//!
//! A coordinator lists the shards (ListShards, re-listed so splits and
//! merges are followed; a child is read only after its parents are read to
//! their end), takes a lease on each free shard in the object store (see
//! [`crate::io::checkpoint`]) and runs one reader task per leased shard. A task
//! buffers records into a file of at most `--max-rows` records or
//! `--max-seconds` age, then commits: intent → files named
//! `<shard>-<first sequence number>.parquet` → checkpoint. Bad records go to
//! `_rejected/job=ingest/` with their shard, sequence number and reason.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::types::Record;
use object_store::ObjectStore;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::io::checkpoint::{Pending, ShardState, StateStore, Version, crash_point};
use crate::io::kinesis::lease::{ForeignLeases, ShardLeases, Taken};
use crate::io::kinesis::seq_cmp;
use crate::io::kinesis::{KinesisReader, Position, ReadError, ShardInfo, StartPosition, StreamUrl, sleep_or_stop};
use crate::io::read::RecordParser;
use crate::io::retry::RetryPolicy;
use crate::io::store::{Location, StoreRegistry};
use crate::io::write::write_raw_and_rejects;
use crate::metrics::{ShardLabel, metrics};
use crate::schema::Table;
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct IngestArgs {
    /// `kinesis://STREAM`.
    pub from: String,
    /// The raw table's directory (local or s3://); `_checkpoints/` and
    /// `_rejected/` go below it (hidden from readers).
    pub to: String,
    /// Where shards without a checkpoint start.
    pub start: StartPosition,
    /// Records per file (per shard) at most.
    pub max_rows: usize,
    /// A file is cut once its first record was read this long ago.
    pub max_seconds: f64,
    /// Exit once every shard this worker could take is read to its tip.
    pub until_caught_up: bool,
    /// Unique among concurrently running workers; a restarted worker with the
    /// same id takes its shards back at once instead of waiting for the lease.
    pub worker_id: Option<String>,
    pub lease: Duration,
    /// Wait between GetRecords calls on a shard that is at its tip.
    pub idle_poll: Duration,
    /// How often the shard list is refreshed.
    pub list_every: Duration,
    pub get_limit: i32,
    pub max_text_bytes: usize,
    pub retry: RetryPolicy,
    /// `/healthz` answers 503 once no shard task or lease round completed for this long.
    pub stall_after: Duration,
}

impl Default for IngestArgs {
    fn default() -> Self {
        Self {
            from: String::new(),
            to: String::new(),
            start: StartPosition::TrimHorizon,
            max_rows: 100_000,
            max_seconds: 60.0,
            until_caught_up: false,
            worker_id: None,
            lease: Duration::from_secs(30),
            idle_poll: Duration::from_secs(1),
            list_every: Duration::from_secs(10),
            get_limit: 10_000,
            max_text_bytes: crate::io::read::DEFAULT_MAX_TEXT_BYTES,
            retry: RetryPolicy::default(),
            stall_after: Duration::from_secs(60),
        }
    }
}

/// What an ingest run did.
#[derive(Debug, Clone, Default)]
pub struct IngestReport {
    pub stream: String,
    pub to: String,
    pub worker_id: String,
    /// Records read and committed (rows + rejected).
    pub records: u64,
    pub rows: u64,
    pub rejected: u64,
    /// Bytes of record data committed.
    pub bytes: u64,
    pub files: u64,
    pub commits: u64,
    /// Shards this worker read (took a lease on).
    pub shards_read: usize,
    /// Shards found closed and finished by this run.
    pub shards_closed: usize,
    /// Shards skipped because another worker holds their lease.
    pub shards_leased_elsewhere: usize,
    /// `--until-caught-up`: shards left to other workers that kept renewing
    /// their leases; the run is not caught up for these.
    pub left_to_live_workers: Vec<String>,
    /// Pending ranges re-written after a crash.
    pub replays: u64,
    pub leases_lost: u64,
    pub requests: u64,
    pub retries: u64,
    pub throttled: u64,
    pub elapsed: Duration,
}

/// Largest amount of record data buffered per shard before a file is cut.
const MAX_BUFFER_BYTES: usize = 128 * 1024 * 1024;
/// Kinesis allows 5 GetRecords calls per second per shard.
const MIN_GET_INTERVAL: Duration = Duration::from_millis(200);

/// Everything the shard tasks share.
struct Shared {
    reader: KinesisReader,
    leases: ShardLeases,
    store: Arc<dyn ObjectStore>,
    out: Location,
    args: IngestArgs,
    stream: String,
    totals: Totals,
}

#[derive(Default)]
struct Totals {
    records: std::sync::atomic::AtomicU64,
    rows: std::sync::atomic::AtomicU64,
    rejected: std::sync::atomic::AtomicU64,
    bytes: std::sync::atomic::AtomicU64,
    files: std::sync::atomic::AtomicU64,
    commits: std::sync::atomic::AtomicU64,
    replays: std::sync::atomic::AtomicU64,
}

/// How a shard task ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Read to its end: the shard was closed by a reshard.
    Closed,
    /// Stopped (signal, or caught up in --until-caught-up mode); lease released.
    Released,
    /// Another worker took the lease; uncommitted records were dropped (it re-reads them).
    Lost,
}

/// Runs ingest until stopped (`stop` turns true) or, with `until_caught_up`,
/// until every shard is read to its tip: a shard whose lease has expired is
/// taken over, one held by a worker that stopped renewing is waited for until
/// its lease expires, and only shards whose holders keep renewing their
/// leases are left to them (the report lists those: the run is not caught up
/// for them).
pub async fn run(stores: &StoreRegistry, args: IngestArgs, mut stop: watch::Receiver<bool>) -> Result<IngestReport> {
    let started = Instant::now();
    let stream = kinesis_stream(&args.from)?;
    if args.max_rows == 0 || args.max_seconds <= 0.0 {
        return Err(Error::Option { option: "--max-rows/--max-seconds", reason: "must be positive".into() });
    }
    let out = Location::parse(&args.to)?;
    let store = stores.store(&out.store_url)?;
    let states = StateStore::new(store.clone(), out.child(&format!("_checkpoints/ingest/{stream}")));
    let worker = args.worker_id.clone().unwrap_or_else(crate::io::checkpoint::default_worker_id);
    let reader = KinesisReader::new(&stream, args.retry).await;
    let leases = ShardLeases { states, worker: worker.clone(), lease: args.lease, start: args.start };
    let shared = Arc::new(Shared {
        reader,
        leases,
        store,
        out: out.clone(),
        args: args.clone(),
        stream: stream.clone(),
        totals: Totals::default(),
    });
    tracing::info!(stream = %stream, to = %out.display, worker = %worker, "ingest starting");
    metrics().health.start(args.stall_after);
    metrics().watch_checkpoints(shared.leases.states.counters());
    let mut w = Workers::new(IngestReport {
        stream: stream.clone(),
        to: out.display.clone(),
        worker_id: worker.clone(),
        ..Default::default()
    });
    loop {
        let stopping = *stop.borrow() || w.failure.is_some();
        if !stopping {
            w.take_free_shards(&shared).await;
            if w.failure.is_none() {
                metrics().health.round();
            }
        }
        metrics().leases_held.set(w.tasks.len() as i64);
        if w.tasks.is_empty() && (stopping || (args.until_caught_up && w.foreign.only_live_left(args.lease))) {
            break;
        }
        if stopping {
            let _ = w.task_stop_tx.send(true);
        }
        let (poll, has_tasks) = (w.poll_interval(&args), !w.tasks.is_empty());
        tokio::select! {
            done = w.tasks.join_next(), if has_tasks => {
                if let Some(done) = done {
                    w.handle_task_end(done, &shared);
                }
            }
            _ = tokio::time::sleep(poll), if !stopping => {}
            _ = stop.changed(), if !stopping => {}
        }
    }
    w.finish(&shared, started).await
}

/// The Kinesis stream a `--from` names.
fn kinesis_stream(from: &str) -> Result<String> {
    match StreamUrl::parse(from) {
        Some(Ok(StreamUrl::Kinesis(s))) => Ok(s),
        Some(Ok(StreamUrl::Firehose(_))) => Err(Error::Option {
            option: "--from",
            reason: "ingest reads Kinesis data streams; Firehose delivers to S3 by itself: score its S3 prefix instead"
                .into(),
        }),
        Some(Err(e)) => Err(e),
        None => Err(Error::Option { option: "--from", reason: format!("{from:?}: use kinesis://STREAM") }),
    }
}

/// The shard tasks of this worker and what they did.
struct Workers {
    tasks: JoinSet<(String, Result<Outcome>)>,
    task_stop_tx: watch::Sender<bool>,
    task_stop: watch::Receiver<bool>,
    running: HashSet<String>,
    read_ever: HashSet<String>,
    /// Shards this run finished with (caught up, or closed): not taken again.
    done_here: HashSet<String>,
    /// Shards held by other workers.
    foreign: ForeignLeases,
    failure: Option<Error>,
    report: IngestReport,
}

impl Workers {
    fn new(report: IngestReport) -> Self {
        // tasks see this channel; the caller's stop is forwarded to it
        let (task_stop_tx, task_stop) = watch::channel(false);
        Self {
            tasks: JoinSet::new(),
            task_stop_tx,
            task_stop,
            running: HashSet::new(),
            read_ever: HashSet::new(),
            done_here: HashSet::new(),
            foreign: ForeignLeases::default(),
            failure: None,
            report,
        }
    }

    /// Leases what is free (or expired) and starts a reader task per shard taken.
    async fn take_free_shards(&mut self, shared: &Arc<Shared>) {
        let acquired = match shared.reader.list_shards().await {
            Ok(shards) => shared.leases.acquire(&shards, &self.running, &self.done_here, &self.foreign).await,
            Err(e) => Err(e),
        };
        let acq = match acquired {
            Ok(a) => a,
            Err(e) => {
                self.failure = Some(e);
                return;
            }
        };
        self.foreign.note(acq.leased_elsewhere);
        for Taken { shard, state, version, pinned_now } in acq.taken {
            self.running.insert(shard.id.clone());
            self.read_ever.insert(shard.id.clone());
            metrics().leases_taken.inc();
            self.foreign.forget(&shard.id);
            let (sh, st) = (shared.clone(), self.task_stop.clone());
            self.tasks.spawn(async move {
                let id = shard.id.clone();
                let r = read_shard(sh, shard, state, version, pinned_now, st).await;
                (id, r)
            });
        }
    }

    /// How long to wait before listing the shards again.
    fn poll_interval(&self, args: &IngestArgs) -> Duration {
        let waiting_on_leases = args.until_caught_up && self.tasks.is_empty() && !self.foreign.is_empty();
        if waiting_on_leases { args.list_every.min(Duration::from_secs(1)) } else { args.list_every }
    }

    fn handle_task_end(
        &mut self,
        done: std::result::Result<(String, Result<Outcome>), tokio::task::JoinError>,
        shared: &Shared,
    ) {
        match done {
            Ok((id, Ok(outcome))) => {
                self.running.remove(&id);
                if outcome != Outcome::Lost {
                    self.done_here.insert(id.clone());
                }
                match outcome {
                    Outcome::Closed => self.report.shards_closed += 1,
                    Outcome::Lost => {
                        self.report.leases_lost += 1;
                        metrics().leases_lost.inc();
                    }
                    Outcome::Released => {}
                }
                tracing::info!(shard = %id, outcome = ?outcome, "shard task ended");
            }
            Ok((id, Err(e))) => {
                self.running.remove(&id);
                tracing::error!(shard = %id, error = %e, "shard task failed; stopping");
                self.failure.get_or_insert(e);
            }
            Err(join) => {
                self.failure.get_or_insert(Error::Checkpoint {
                    location: shared.out.display.clone(),
                    reason: format!("a shard task panicked: {join}"),
                });
            }
        }
    }

    /// Stops the tasks and sums up.
    async fn finish(mut self, shared: &Shared, started: Instant) -> Result<IngestReport> {
        let _ = self.task_stop_tx.send(true);
        while let Some(done) = self.tasks.join_next().await {
            if let Ok((_, Err(e))) = done {
                self.failure.get_or_insert(e);
            }
        }
        let (t, c, report) = (&shared.totals, &shared.reader.counters, &mut self.report);
        report.records = t.records.load(Relaxed);
        report.rows = t.rows.load(Relaxed);
        report.rejected = t.rejected.load(Relaxed);
        report.bytes = t.bytes.load(Relaxed);
        report.files = t.files.load(Relaxed);
        report.commits = t.commits.load(Relaxed);
        report.replays = t.replays.load(Relaxed);
        report.shards_read = self.read_ever.len();
        report.shards_leased_elsewhere = self.foreign.len();
        report.left_to_live_workers = self.foreign.live();
        report.requests = c.requests.load(Relaxed);
        report.retries = c.retries.load(Relaxed);
        report.throttled = c.throttled.load(Relaxed);
        report.elapsed = started.elapsed();
        if let Some(e) = self.failure {
            return Err(e);
        }
        tracing::info!(
            records = report.records,
            rows = report.rows,
            rejected = report.rejected,
            files = report.files,
            "ingest done"
        );
        Ok(self.report)
    }
}

/// Records read from a shard and not yet committed.
struct Buffer {
    parser: RecordParser,
    first: Option<String>,
    last: Option<String>,
    records: u64,
    bytes: usize,
    since: Option<Instant>,
}

impl Buffer {
    fn new(origin: &str, max_text_bytes: usize) -> Self {
        Self {
            parser: RecordParser::new(origin, max_text_bytes),
            first: None,
            last: None,
            records: 0,
            bytes: 0,
            since: None,
        }
    }

    fn push(&mut self, shard: &str, r: &Record) {
        let seq = r.sequence_number();
        crate::io::kinesis::parse_record(&mut self.parser, shard, r);
        if self.first.is_none() {
            self.first = Some(seq.to_string());
            self.since = Some(Instant::now());
        }
        self.last = Some(seq.to_string());
        self.records += 1;
        self.bytes += r.data().as_ref().len();
    }
}

/// Reads one leased shard until it ends, the lease is lost, or a stop.
async fn read_shard(
    sh: Arc<Shared>,
    shard: ShardInfo,
    mut state: ShardState,
    mut version: Version,
    pinned_now: bool,
    stop: watch::Receiver<bool>,
) -> Result<Outcome> {
    let has_parent = shard.parents().next().is_some();
    let id = shard.id.clone();
    let origin = format!("kinesis://{}/{}", sh.stream, id);
    let mut replay_until: Option<String> = state.pending.as_ref().map(|p| p.last.clone());
    if replay_until.is_some() {
        sh.totals.replays.fetch_add(1, Relaxed);
        tracing::info!(shard = %id, pending = ?state.pending, "re-writing the range a previous run did not commit");
    }
    let mut pos = start_position(&state, sh.args.start, has_parent, pinned_now);
    let mut iter = sh.reader.iterator(&id, &pos).await?;
    let mut buf = Buffer::new(&origin, sh.args.max_text_bytes);
    let mut renew_at = Instant::now() + sh.args.lease / 3;
    let mut last_call: Option<Instant> = None;

    loop {
        let stopping = *stop.borrow();
        if stopping && replay_until.is_none() {
            if !commit(&sh, &mut state, &mut version, &mut buf).await? {
                return Ok(Outcome::Lost);
            }
            return release(&sh, &mut state, &version, false).await;
        }
        if stopping {
            // a replay is cut short: leave the intent for the next run, free the shard
            return release(&sh, &mut state, &version, false).await;
        }
        let Some(it) = iter.clone() else {
            // the shard is closed and every record of it has been read
            if !commit(&sh, &mut state, &mut version, &mut buf).await? {
                return Ok(Outcome::Lost);
            }
            return release(&sh, &mut state, &version, true).await;
        };
        if let Some(t) = last_call {
            let since = t.elapsed();
            if since < MIN_GET_INTERVAL {
                tokio::time::sleep(MIN_GET_INTERVAL - since).await;
            }
        }
        last_call = Some(Instant::now());
        let page = match sh.reader.get_records(&it, sh.args.get_limit).await {
            Ok(p) => p,
            Err(ReadError::Expired) => {
                if let Some(l) = &buf.last {
                    pos = Position::After(l.clone());
                }
                tracing::debug!(shard = %id, "iterator expired; reopening");
                iter = sh.reader.iterator(&id, &pos).await?;
                continue;
            }
            Err(ReadError::Fatal(e)) => return Err(e),
        };
        let empty = page.records.is_empty();
        for r in &page.records {
            let seq = r.sequence_number();
            if let Some(last) = &replay_until
                && seq_cmp(seq, last) == std::cmp::Ordering::Greater
            {
                // the intent's last record is gone (trimmed?): commit what was re-read
                tracing::warn!(shard = %id, expected = %last, found = %seq, "pending range ended early");
                replay_until = None;
                if !commit(&sh, &mut state, &mut version, &mut buf).await? {
                    return Ok(Outcome::Lost);
                }
            }
            buf.push(&id, r);
            let cut = match &replay_until {
                Some(last) if seq == last => {
                    replay_until = None;
                    true
                }
                Some(_) => false,
                None => buf.records >= sh.args.max_rows as u64 || buf.bytes >= MAX_BUFFER_BYTES,
            };
            if cut && !commit(&sh, &mut state, &mut version, &mut buf).await? {
                return Ok(Outcome::Lost);
            }
        }
        if let Some(l) = &buf.last {
            pos = Position::After(l.clone());
        } else if let Some(c) = &state.committed {
            pos = Position::After(c.clone());
        }
        iter = page.next;
        let caught_up = empty && page.millis_behind.unwrap_or(0) == 0 && iter.is_some();
        if let Some(ms) = page.millis_behind {
            metrics().set_shard_lag(&id, ms);
        }
        metrics().health.round();
        let old = buf.since.is_some_and(|t| t.elapsed().as_secs_f64() >= sh.args.max_seconds);
        if replay_until.is_none()
            && (old || (caught_up && sh.args.until_caught_up))
            && !commit(&sh, &mut state, &mut version, &mut buf).await?
        {
            return Ok(Outcome::Lost);
        }
        if caught_up && sh.args.until_caught_up && replay_until.is_none() {
            return release(&sh, &mut state, &version, false).await;
        }
        if Instant::now() >= renew_at {
            if !sh.leases.renew(&mut state, &mut version).await? {
                return Ok(Outcome::Lost);
            }
            renew_at = Instant::now() + sh.args.lease / 3;
        }
        if caught_up {
            sleep_or_stop(sh.args.idle_poll, &stop).await;
        }
    }
}

/// Where a shard's reading starts: after its committed record, at a pending
/// range's first record, or where `--start` says for a shard never read.
fn start_position(state: &ShardState, start: StartPosition, has_parent: bool, pinned_now: bool) -> Position {
    match (&state.pending, &state.committed) {
        (_, Some(c)) => Position::After(c.clone()),
        (Some(p), None) => Position::At(p.first.clone()),
        (None, None) if has_parent => Position::TrimHorizon,
        // the run that pinned "latest" opens LATEST (the pin is a moment earlier, so a
        // restart from the pin re-reads a superset of what this run saw and did not commit)
        (None, None) if pinned_now => Position::Latest,
        (None, None) => match (start, state.start_at_ms) {
            (_, Some(ms)) => Position::AtTimestamp(ms),
            (StartPosition::TrimHorizon, None) => Position::TrimHorizon,
            (StartPosition::Latest, None) => Position::Latest,
            (StartPosition::AtTimestamp(ms), None) => Position::AtTimestamp(ms),
        },
    }
}

/// Commits the buffer: intent, files, checkpoint. Returns false when the
/// lease was lost (nothing more may be written for this shard).
async fn commit(sh: &Shared, state: &mut ShardState, version: &mut Version, buf: &mut Buffer) -> Result<bool> {
    let (Some(first), Some(last)) = (buf.first.clone(), buf.last.clone()) else {
        return Ok(true);
    };
    let id = state.shard_id.clone();
    let taken = std::mem::replace(buf, Buffer::new(&format!("kinesis://{}/{}", sh.stream, id), sh.args.max_text_bytes));
    let records = taken.records;
    let bytes = taken.bytes as u64;
    let range = Pending { first: first.clone(), last: last.clone(), records };
    // 1. intent (a replay finds it already there)
    if state.pending.as_ref().is_none_or(|p| p.first != range.first || p.last != range.last) {
        let mut next = state.clone();
        next.pending = Some(range.clone());
        if !sh.leases.save(state, version, next).await? {
            return Ok(false);
        }
    }
    crash_point("intent");
    // 2. files, named after (shard, first sequence number): a replay overwrites them
    let parsed = taken.parser.finish();
    let name = format!("{id}-{first}.parquet");
    let rejected = sh.out.child(&format!("{}/job=ingest", Table::Rejected.dir()));
    let files = write_raw_and_rejects(&sh.store, &sh.out, &rejected, &name, &parsed.batches, &parsed.rejects).await?;
    crash_point("files");
    // 3. checkpoint
    let mut next = state.clone();
    next.committed = Some(last.clone());
    next.pending = None;
    next.records_committed += records;
    if !sh.leases.save(state, version, next).await? {
        return Ok(false);
    }
    let t = &sh.totals;
    t.records.fetch_add(records, Relaxed);
    t.rows.fetch_add(parsed.rows as u64, Relaxed);
    t.rejected.fetch_add(parsed.rejects.len() as u64, Relaxed);
    t.bytes.fetch_add(bytes, Relaxed);
    t.files.fetch_add(files, Relaxed);
    t.commits.fetch_add(1, Relaxed);
    let m = metrics();
    m.batches.inc();
    m.records_read.inc_by(records);
    m.rows_written.inc_by(parsed.rows as u64);
    m.rows_rejected.inc_by(parsed.rejects.len() as u64);
    m.batch_rows.observe(parsed.rows as f64);
    m.shard_records.get_or_create(&ShardLabel { shard: id.clone() }).inc_by(records);
    tracing::info!(shard = %id, first = %first, last = %last, records, rows = parsed.rows, rejected = parsed.rejects.len(), files, "committed");
    Ok(true)
}

/// Gives the shard up (and marks it finished when `closed`).
async fn release(sh: &Shared, state: &mut ShardState, version: &Version, closed: bool) -> Result<Outcome> {
    Ok(match sh.leases.release(state, version, closed).await? {
        true if closed => Outcome::Closed,
        true => Outcome::Released,
        false => Outcome::Lost,
    })
}
