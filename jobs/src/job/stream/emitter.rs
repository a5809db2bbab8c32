//! The emitter: whoever holds its lease emits the windows every live shard
//! has passed, with their alerts and terms, under an intent in `emitter.json`.

use std::collections::{BTreeMap, HashMap, HashSet};

use datafusion::arrow::array::{Array, AsArray, Float64Array, RecordBatch};
use datafusion::arrow::datatypes::{Float64Type, Int64Type, TimestampMicrosecondType};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::partials::{as_partials, merge_rows, partial_schema, state_batch};
use super::shard::ShardWindows;
use super::{Streamer, collect, write_table};
use crate::io::checkpoint::{Version, crash_point};
use crate::io::kinesis::ShardInfo;
use crate::io::kinesis::lease::{Seen, now_ms};
use crate::job::alerts::{Alert, WindowFigures, alerts_batch, evaluate};
use crate::metrics::metrics;
use crate::schema::Table;
use crate::sql::interval_param;
use crate::tables::register_batches;
use crate::{Error, Result};

/// The emitter's document: its lease, what has been emitted, the alert
/// history and the emission being written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(super) struct EmitterDoc {
    pub(super) owner: Option<String>,
    pub(super) lease_until_ms: i64,
    pub(super) emit_id: u64,
    /// Windows ending at or before this are emitted.
    pub(super) emitted_through_us: Option<i64>,
    /// The global watermark: max event time over all shards − `--watermark`.
    pub(super) watermark_us: Option<i64>,
    /// Emitted windows' (start, avg, n), for trailing-statistics rules.
    pub(super) history: Vec<(i64, f64, i64)>,
    pub(super) pending: Option<PendingEmit>,
    pub(super) totals: BTreeMap<String, u64>,
}

/// An emission being written: its id and the point it emits through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct PendingEmit {
    pub(super) emit_id: u64,
    pub(super) through_us: i64,
}

pub(super) const EMITTER_DOC: &str = "emitter";

/// What the emitter step found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum EmitRole {
    /// This worker holds the emitter lease; whether anything was emitted.
    Emitter { emitted: bool },
    /// Another worker holds it and keeps renewing it.
    OtherLive,
    /// Another worker holds it, and has not renewed it since it was first seen.
    OtherUnknown,
}

impl Streamer<'_> {
    pub(super) async fn load_emitter(&mut self) -> Result<()> {
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
    pub(super) fn watermark(&self) -> Option<i64> {
        let own = self.held.values().filter_map(|h| h.win.max_event_us).max().map(|m| m - self.delay_us);
        own.max(self.emitter.0.watermark_us)
    }

    /// Whether a partials row's window ends at or before `through`.
    pub(super) fn emitted(&self, row: &Value, through: Option<i64>) -> bool {
        matches!((row[0].as_i64(), through), (Some(s), Some(t)) if s.saturating_add(self.window_us) <= t)
    }

    /// The emitter step: holds (or takes) the emitter lease, and emits the
    /// windows every live shard has passed.
    pub(super) async fn emit(&mut self) -> Result<EmitRole> {
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
    pub(super) async fn shard_states(&self) -> Result<ShardStates> {
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
    pub(super) async fn write_windows(
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
    pub(super) async fn save_emitter(&self, doc: &EmitterDoc, prev: Option<&Version>) -> Result<Option<Version>> {
        let v = serde_json::to_value(doc).unwrap_or_default();
        match self.states.save_doc(EMITTER_DOC, v, prev).await? {
            Ok(v) => Ok(Some(v)),
            Err(_) => {
                tracing::info!(worker = %self.leases.worker, "another worker holds the emitter lease");
                Ok(None)
            }
        }
    }
}

/// Every listed shard's stream state, pending intent and closed flag, by shard id.
pub(super) type ShardStates = HashMap<String, (ShardWindows, bool, bool)>;

/// The point every live shard has passed: the minimum fence over the open
/// shards whose parents are finished (`None` while one has no fence yet).
/// Closed shards read to their end add nothing more; a child waits for its parents.
pub(super) fn min_fence(shards: &[ShardInfo], states: &ShardStates) -> Option<i64> {
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

/// The figures the alert rules read, from emitted `windows` rows, in time order.
pub(super) fn window_figures(rows: &[RecordBatch]) -> Vec<WindowFigures> {
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
}
