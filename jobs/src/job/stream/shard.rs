//! A shard's micro-batch: read (or re-read for an intent), staged (intent,
//! raw rows), scored with the round's other shards, committed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::types::Record;
use datafusion::arrow::array::{AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::TimestampMicrosecondType;
use datafusion::common::ScalarValue;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::partials::{as_partials, merge_rows, state_batch, state_rows, tag_all, tag_row, untag_batches, untag_row};
use super::{Streamer, collect, write_table};
use crate::io::checkpoint::{Pending, ShardState, StateStore, crash_point};
use crate::io::kinesis::seq_cmp;
use crate::io::kinesis::{Position, ReadError};
use crate::io::read::RecordParser;
use crate::io::write::write_raw_and_rejects;
use crate::metrics::{ReasonLabel, ScorerLabel, ShardLabel, metrics};
use crate::schema::Table;
use crate::scorer::RowsByScorer;
use crate::sql::{interval_param, timestamp_param};
use crate::tables::register_batches;
use crate::window::{far_future, far_past};
use crate::{Error, Result, sql};

/// What the stream job keeps in a shard's state (`ShardState::job`),
/// committed with its cursor.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(super) struct ShardWindows {
    /// Largest event time committed from this shard.
    pub(super) max_event_us: Option<i64>,
    /// Every batch whose intent is saved from now on treats rows before this
    /// as late: windows ending at or before it get nothing more from the shard.
    pub(super) fence_us: Option<i64>,
    /// The late threshold of the batch in the intent (a replay uses it again).
    pub(super) pending_late_before_us: Option<i64>,
    /// Open windows' partials of this shard's on-time rows (window_source_aggs rows).
    pub(super) state: Vec<Value>,
    pub(super) totals: BTreeMap<String, u64>,
}

impl ShardWindows {
    pub(super) fn of(state: &ShardState, states: &StateStore) -> Result<Self> {
        if state.job.is_null() {
            return Ok(Self::default());
        }
        serde_json::from_value(state.job.clone()).map_err(|e| Error::Checkpoint {
            location: format!("{}/{}.json", states.display(), state.shard_id),
            reason: format!("its stream state is not readable: {e}"),
        })
    }

    /// The fence the emitter may rely on: a pending batch's threshold counts.
    pub(super) fn effective_fence(&self, pending: bool) -> Option<i64> {
        match (pending, self.pending_late_before_us) {
            (true, p) => p.min(self.fence_us),
            (false, _) => self.fence_us,
        }
    }
}

/// A committed shard micro-batch, into the metrics (the summary's figures, as they grow).
pub(super) fn count_batch(shard: &str, records: u64, rows: &BatchRows) {
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
pub(super) struct ShardRead {
    pub(super) records: Vec<Record>,
    /// The shard is at its tip (nothing more to read now).
    pub(super) caught_up: bool,
    /// The shard is closed (split or merged) and read to its end.
    pub(super) ended: bool,
    /// The records re-read for an intent a previous owner did not commit.
    pub(super) replay: bool,
}

/// A shard micro-batch whose intent is saved and raw rows written.
pub(super) struct Staged {
    pub(super) id: String,
    pub(super) read: ShardRead,
    pub(super) last: String,
    /// Its files' name.
    pub(super) name: String,
    pub(super) late_before: Option<i64>,
    pub(super) raw: Vec<RecordBatch>,
    pub(super) rows: BatchRows,
}

/// The rows of one shard micro-batch, once written.
#[derive(Default)]
pub(super) struct BatchRows {
    pub(super) on_time: Vec<RecordBatch>,
    pub(super) max_event: Option<i64>,
    pub(super) rows: u64,
    pub(super) rejected: u64,
    pub(super) late_rows: u64,
    pub(super) by_scorer: RowsByScorer,
}

impl Streamer<'_> {
    /// Where to start reading a shard: after its committed record, or at its start.
    pub(super) fn committed_position(state: &ShardState) -> Position {
        match &state.committed {
            Some(c) => Position::After(c.clone()),
            None => Position::TrimHorizon,
        }
    }

    pub(super) async fn read(&mut self, id: &str) -> Result<ShardRead> {
        match self.held.get(id).and_then(|h| h.state.pending.clone()) {
            Some(p) => self.read_replay(id, &p).await,
            None => self.read_new(id).await,
        }
    }

    /// Re-reads exactly the range of an intent that was saved but not committed.
    pub(super) async fn read_replay(&mut self, id: &str, pending: &Pending) -> Result<ShardRead> {
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
    pub(super) async fn read_new(&mut self, id: &str) -> Result<ShardRead> {
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
    pub(super) async fn handle_idle(&mut self, id: &str, read: &ShardRead) -> Result<()> {
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
    pub(super) async fn stage_batch(&mut self, id: &str, read: ShardRead) -> Result<Option<Staged>> {
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
    pub(super) async fn commit_staged(&mut self, mut staged: Vec<Staged>) -> Result<()> {
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
    /// shard's index through it (see [`super::partials::tag_source`]).
    pub(super) async fn score_tagged(
        &self,
        raw: Vec<Vec<RecordBatch>>,
        scored_at: i64,
    ) -> Result<Vec<Vec<RecordBatch>>> {
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
    pub(super) async fn write_scored(&self, s: &mut Staged, scored: Vec<RecordBatch>) -> Result<()> {
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
    pub(super) async fn merge_partials(
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
    pub(super) async fn commit_shard(&mut self, s: Staged, partials: Vec<Value>) -> Result<()> {
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
}

/// A shard's fence after a commit or an idle round: never lower, at least its
/// own watermark, and the global watermark too when `follows_global` (an open
/// shard at its tip; a closed one keeps its own, which its children start from).
pub(super) fn next_fence(
    fence: Option<i64>,
    own: Option<i64>,
    global: Option<i64>,
    follows_global: bool,
) -> Option<i64> {
    let f = fence.max(own);
    if follows_global { f.max(global) } else { f }
}

pub(super) fn empty_read() -> ShardRead {
    ShardRead { records: Vec::new(), caught_up: true, ended: false, replay: false }
}

pub(super) fn to_job(win: &ShardWindows) -> Value {
    serde_json::to_value(win).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_open_shard_at_its_tip_follows_the_global_watermark() {
        assert_eq!(next_fence(Some(5), Some(3), Some(50), false), Some(5), "never lower");
        assert_eq!(next_fence(Some(5), Some(8), Some(50), false), Some(8), "its own watermark");
        assert_eq!(next_fence(Some(5), Some(8), Some(50), true), Some(50), "open, at its tip");
        assert_eq!(next_fence(None, None, None, true), None);
    }
}
