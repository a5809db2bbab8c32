//! `sentiflow score`: raw tweets in, scored Parquet out (`dt=/hour=`).
//!
//! Each input file is read and validated on its own (bad records go to
//! `_rejected/job=score/`), scored by `sql/score.sql` and written to
//! `scored/dt=…/hour=…/part-<hash of the input path>.parquet`. The names make
//! re-runs idempotent: scoring the same file again overwrites its output.

use std::collections::BTreeSet;

use bytes::Bytes;
use datafusion::arrow::array::RecordBatch;
use datafusion::common::ScalarValue;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::context::JobContext;
use crate::progress::Progress;
use crate::read::{Format, ReadOptions, parse_file, rejects_batch};
use crate::schema::Table;
use crate::store::{Location, list_files, stable_hash};
use crate::write::{PartitionedWriter, null_count, write_file};
use crate::{Error, Result, sql};

#[derive(Debug, Clone)]
pub struct ScoreArgs {
    /// A file, a directory or a glob, local or s3://.
    pub input: String,
    /// Root of the scored table (`…/scored`).
    pub output: String,
    /// Root of the dead-letter table (`…/_rejected`).
    pub rejected: String,
    pub format: Option<Format>,
    pub max_text_bytes: usize,
}

#[derive(Debug, Clone, Default)]
pub struct ScoreReport {
    pub scorer: String,
    pub files: usize,
    pub empty_files: Vec<String>,
    pub rows_read: usize,
    pub rows_scored: usize,
    pub rows_unscorable: usize,
    /// Of the unscorable rows: those in a language the scorer does not read.
    pub rows_other_language: usize,
    pub rows_rejected: usize,
    pub extra_fields: BTreeSet<String>,
    pub partitions: BTreeSet<String>,
    pub output_files: usize,
    /// LLM scorer: requests, cache hits, retries, failures, tokens, cost.
    pub llm: Option<crate::llm::LlmSummary>,
}

/// Reads a whole object.
pub async fn fetch(store: &dyn ObjectStore, loc: &Location, path: &Path) -> Result<Bytes> {
    let get = |source| Error::Store { op: "get", location: loc.url_of(path), source };
    store.get(path).await.map_err(get)?.bytes().await.map_err(get)
}

/// Slices a file's rows into up to `n` partitions so the scoring UDF runs on
/// every core (slices are zero-copy; at least 256 rows each).
fn spread(batches: Vec<RecordBatch>, n: usize) -> Vec<Vec<RecordBatch>> {
    let n = n.max(1);
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let chunk = total.div_ceil(n).max(256);
    let mut parts: Vec<Vec<RecordBatch>> = vec![Vec::new(); n];
    let mut k = 0;
    for b in batches {
        let mut off = 0;
        while off < b.num_rows() {
            let len = chunk.min(b.num_rows() - off);
            parts[k % n].push(b.slice(off, len));
            k += 1;
            off += len;
        }
    }
    parts.retain(|p| !p.is_empty());
    parts
}

/// Output file name for an input file: stable across runs.
fn output_name(input_url: &str) -> String {
    format!("part-{:016x}.parquet", stable_hash(input_url))
}

pub async fn run(jc: &JobContext, scorer: crate::JobScorer, args: ScoreArgs) -> Result<ScoreReport> {
    let input = Location::parse(&args.input)?;
    let output = Location::parse(&args.output)?;
    let rejected = Location::parse(&args.rejected)?.child("job=score");
    let in_store = jc.stores.store(&input.store_url)?;
    let out_store = jc.stores.store(&output.store_url)?;
    let rej_store = jc.stores.store(&rejected.store_url)?;

    let files = list_files(in_store.as_ref(), &input).await?;
    if files.is_empty() {
        return Err(Error::NoInput { location: input.display.clone() });
    }
    jc.select_scorer(&scorer);
    let scored_at = chrono::Utc::now().timestamp_micros();
    let mut report = ScoreReport { scorer: scorer.id().to_string(), files: files.len(), ..Default::default() };
    let opts = ReadOptions { format: args.format, max_text_bytes: args.max_text_bytes };
    let progress = Progress::files("score", files.len() as u64);

    for meta in &files {
        let url = input.url_of(&meta.location);
        let bytes = fetch(in_store.as_ref(), &input, &meta.location).await?;
        let parsed = tokio::task::block_in_place(|| parse_file(&url, bytes, opts));
        if parsed.empty {
            tracing::warn!(file = %url, "input file holds no records");
            report.empty_files.push(url.clone());
        }
        report.rows_read += parsed.rows + parsed.rejects.len();
        report.extra_fields.extend(parsed.extra_fields.iter().cloned());

        // dead letters of this input file: written, or removed if a re-run found none
        let rej_path = rejected.path.clone().join(output_name(&url));
        if parsed.rejects.is_empty() {
            match rej_store.delete(&rej_path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => return Err(Error::Store { op: "delete", location: rejected.url_of(&rej_path), source }),
            }
        } else {
            for r in parsed.rejects.iter().take(3) {
                tracing::warn!(file = %r.file, line = ?r.line, reason = %r.reason, "rejected record");
            }
            report.rows_rejected += parsed.rejects.len();
            let batch = rejects_batch(&parsed.rejects, scored_at)?;
            write_file(rej_store.as_ref(), &rejected, &rej_path, &batch).await?;
        }

        if parsed.rows > 0 {
            let parts = spread(parsed.batches, jc.ctx.state().config().target_partitions());
            crate::tables::register_batches(jc, "raw_tweets", Table::Raw.schema(), parts)?;
            let df = sql::query(
                &jc.ctx,
                "score",
                vec![
                    ("scorer", ScalarValue::Utf8(Some(scorer.id().to_string()))),
                    ("scored_at", ScalarValue::TimestampMicrosecond(Some(scored_at), Some("UTC".into()))),
                ],
            )
            .await?;
            let batches = df.collect().await.map_err(Error::query)?;
            let mut writer = PartitionedWriter::new(out_store.clone(), output.clone(), Table::Scored, output_name(&url));
            for b in &batches {
                let unscorable = null_count(b, "sentiment_score");
                report.rows_unscorable += unscorable;
                report.rows_other_language += crate::write::language_refusals(b);
                report.rows_scored += b.num_rows() - unscorable;
                writer.write(b).await?;
            }
            for f in writer.finish().await? {
                report.partitions.insert(f.partition);
                report.output_files += 1;
            }
        }
        progress.inc(1);
    }
    progress.finish(files.len() as u64);
    let _ = jc.ctx.deregister_table("raw_tweets");
    if !report.extra_fields.is_empty() {
        tracing::warn!(fields = ?report.extra_fields, "input records carry fields outside the raw schema; they are not kept");
    }
    tracing::info!(
        files = report.files,
        scored = report.rows_scored,
        unscorable = report.rows_unscorable,
        other_language = report.rows_other_language,
        rejected = report.rows_rejected,
        "scored tweets"
    );
    report.llm = scorer.llm_summary();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use std::sync::Arc;

    #[test]
    fn spread_keeps_every_row_once() {
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(vec![datafusion::arrow::datatypes::Field::new(
            "x",
            datafusion::arrow::datatypes::DataType::Int64,
            false,
        )]));
        let batch = |r: std::ops::Range<i64>| {
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(r.collect::<Vec<_>>()))]).unwrap()
        };
        let parts = spread(vec![batch(0..5000), batch(5000..5100)], 2);
        assert_eq!(parts.len(), 2);
        let mut all: Vec<i64> = parts
            .iter()
            .flatten()
            .flat_map(|b| b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec())
            .collect();
        all.sort();
        assert_eq!(all, (0..5100).collect::<Vec<_>>());
        assert_eq!(spread(vec![batch(0..100)], 4).len(), 1, "small files stay in one partition");
    }
}
