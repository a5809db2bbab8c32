//! The single checkpoint document per stream of older versions, moved once
//! to per-shard states and an emitter document.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::emitter::{EMITTER_DOC, EmitterDoc};
use super::shard::{ShardWindows, to_job};
use crate::io::checkpoint::{ShardState, StateStore};
use crate::{Error, Result};

/// The one checkpoint document per stream that sentiflow kept before streams
/// were shared between workers (`_checkpoints/stream/<stream>.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(super) struct LegacyCheckpoint {
    pub(super) batch_id: u64,
    pub(super) shards: BTreeMap<String, LegacyCursor>,
    pub(super) max_event_us: Option<i64>,
    pub(super) state: Vec<Value>,
    pub(super) history: Vec<(i64, f64, i64)>,
    pub(super) pending: Option<Value>,
    pub(super) totals: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(super) struct LegacyCursor {
    pub(super) committed: Option<String>,
    pub(super) closed: bool,
}

/// The per-shard states and the emitter document equivalent to a legacy
/// checkpoint: every shard resumes after its cursor with the old watermark as
/// its fence; the open windows' partials go to the first shard (partials of
/// several shards are summed at emission, so where they sit does not matter).
pub(super) fn split_legacy(old: &LegacyCheckpoint, delay_us: i64) -> (Vec<ShardState>, EmitterDoc) {
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
pub(super) async fn migrate_single_document(
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::io::store::Location;

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
}
