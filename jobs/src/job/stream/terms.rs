//! The stream's `window_terms`: what drove each emitted window, exactly once.
//!
//! Term counts cannot live in the JSON shard state (a busy window has
//! thousands of terms), so each shard micro-batch writes the term panes of
//! its on-time rows (`sql/term_panes.sql`) as one Parquet file under the
//! stream's checkpoint, named after the batch (`p<last pane µs>_<shard>-<first
//! sequence number>.parquet`): written before the batch commits, only if no
//! file has that name yet. A replay of the batch's intent computes the same
//! rows and name, and so does a worker that lost the shard's lease and does not
//! know it yet: each keeps the file written first, as replacing it could change
//! its bytes (row order) under the emitter while it reads the file, whose
//! ranged reads would then mix two files (a Parquet decode error, seen in the
//! multi-worker test). The
//! emitter sums every file's panes at emission (`sql/window_terms.sql`, the
//! batch job's SQL) for the windows it emits, against a trailing background
//! (a stream knows only the past), and forgets the files no later window or
//! background can reach. Rows of a batch that has not committed yet can only
//! lie in windows the emitter does not emit yet (its fence holds them).

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use object_store::ObjectStore;
use object_store::path::Path;

use crate::context::JobContext;
use crate::io::store::{Location, delete_if_exists, list_files, put_if_absent};
use crate::io::write::parquet_bytes;
use crate::tables::{register_batches, register_parquet_files};
use crate::window::{
    Background, TermSpec, WindowSpec, as_term_panes, far_future, far_past, term_pane_params, term_panes_schema,
    window_terms,
};
use crate::{Error, Result};

pub(super) struct StreamTerms {
    pub spec: TermSpec,
    window: WindowSpec,
    /// `_checkpoints/stream/<stream>/terms`
    dir: Location,
    store: Arc<dyn ObjectStore>,
}

impl StreamTerms {
    pub fn new(spec: TermSpec, window: WindowSpec, dir: Location, store: Arc<dyn ObjectStore>) -> Result<Self> {
        if spec.top_k > 0 && spec.background == Background::Whole {
            return Err(Error::Option {
                option: "--background",
                reason: "a stream knows only the past: give a trailing duration (default 24h) or --top-terms 0".into(),
            });
        }
        spec.check(&window)?;
        Ok(Self { spec, window, dir, store })
    }

    fn enabled(&self) -> bool {
        self.spec.top_k > 0
    }

    /// Writes the term panes of one shard batch's on-time rows (before it
    /// commits), unless an earlier attempt at the batch wrote them.
    pub async fn write_batch(&self, jc: &JobContext, name: &str, on_time: &[RecordBatch]) -> Result<()> {
        let Some(schema) = on_time.first().map(|b| b.schema()) else { return Ok(()) };
        if !self.enabled() || on_time.iter().all(|b| b.num_rows() == 0) {
            return Ok(());
        }
        register_batches(jc, "scored_tweets", schema, vec![on_time.to_vec()])?;
        let panes = jc.collect("term_panes", term_pane_params(&self.window, far_past(), far_future())).await?;
        let (batches, Some(last)) = as_term_panes(&panes.batches)? else { return Ok(()) };
        let batch = datafusion::arrow::compute::concat_batches(&term_panes_schema(), &batches)
            .map_err(|e| Error::arrow("term panes", e))?;
        let path = self.dir.path.clone().join(format!("p{last}_{name}"));
        let bytes = parquet_bytes(&self.dir, &path, &batch)?;
        if !put_if_absent(self.store.as_ref(), &self.dir, &path, bytes).await? {
            tracing::debug!(file = %path, "term panes already written by an earlier attempt at this batch: kept");
        }
        Ok(())
    }

    /// The `window_terms` rows of the windows ending in (`emitted`, `target`].
    pub async fn rows(&self, jc: &JobContext, emitted: Option<i64>, target: i64) -> Result<Vec<RecordBatch>> {
        if !self.enabled() {
            return Ok(Vec::new());
        }
        let window_us = self.window.window.num_microseconds().unwrap_or(0);
        let at = |us: i64| chrono::DateTime::from_timestamp_micros(us).unwrap_or_else(far_past);
        let from = emitted.map_or_else(far_past, |e| at(e - window_us + 1));
        let to = at(target - window_us + 1);
        register_parquet_files(jc, "term_panes", term_panes_schema(), Vec::new(), &self.dir)?;
        let rows = crate::io::diagnose::collect(window_terms(jc, &self.window, &self.spec, from, to).await?).await;
        let _ = jc.ctx.deregister_table("term_panes");
        rows
    }

    /// Deletes the pane files whose last pane is before every pane a window
    /// ending after `emitted` (or its background) can hold; returns how many.
    pub async fn forget_before(&self, emitted: i64) -> Result<usize> {
        let Background::Trailing(bg) = self.spec.background else { return Ok(0) };
        if !self.enabled() {
            return Ok(0);
        }
        let keep_from = emitted - bg.num_microseconds().unwrap_or(i64::MAX);
        let mut n = 0;
        for f in list_files(self.store.as_ref(), &self.dir).await? {
            if last_pane(&f.location).is_some_and(|p| p < keep_from) {
                delete_if_exists(self.store.as_ref(), &self.dir, &f.location).await?;
                n += 1;
            }
        }
        Ok(n)
    }
}

/// The last pane start a term pane file holds, from its name.
fn last_pane(path: &Path) -> Option<i64> {
    path.filename()?.strip_prefix('p')?.split_once('_')?.0.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pane_file_names() {
        assert_eq!(
            last_pane(&Path::from("a/b/p1740000000000000_shardId-0001-495.parquet")),
            Some(1_740_000_000_000_000)
        );
        assert_eq!(last_pane(&Path::from("a/p-100_s-1.parquet")), Some(-100));
        assert_eq!(last_pane(&Path::from("a/x.parquet")), None);
    }
}
