//! `sentiflow score`: raw tweets in, scored Parquet out (`dt=/hour=`).
//!
//! Each input file is read and validated on its own (bad records go to
//! `_rejected/job=score/`), scored by `sql/score.sql` and written to
//! `scored/dt=…/hour=…/part-<hash of the input path>.parquet`. The names make
//! re-runs idempotent: scoring the same file again overwrites its output.

use std::collections::BTreeSet;

use datafusion::arrow::array::RecordBatch;
use datafusion::common::ScalarValue;
use object_store::ObjectStore;
use object_store::path::Path;

use crate::context::JobContext;
use crate::io::read::{Format, ParsedFile, ReadOptions, Reject, read_chunks, rejects_batch};
use crate::io::store::{Location, delete_if_exists, list_inputs, stable_hash};
use crate::io::write::{PartitionedWriter, null_count, write_file};
use crate::progress::Progress;
use crate::schema::Table;
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct ScoreArgs {
    /// A file, a directory or a glob, local or s3://.
    pub input: String,
    /// The data root: the scored table goes to its `scored/`, dead letters to its `_rejected/`.
    pub out: String,
    pub format: Option<Format>,
    pub max_text_bytes: usize,
    /// A file is read, scored and written in chunks of about this much text
    /// (memory is bounded by the chunk); each chunk writes its own files.
    pub chunk_bytes: usize,
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
    /// Files (or other entries) rejected as a whole, or from a point on: unreadable,
    /// not a regular file, corrupt, lacking a required column. One `_rejected/` row each.
    pub files_rejected: usize,
    /// Files under the output's own tables that the input location also named; not read.
    pub output_files_skipped: usize,
    /// Hidden entries under the input (names starting with `_` or `.`): not read.
    pub hidden_entries: Vec<String>,
    /// Files of earlier runs removed because their input no longer yields rows there.
    pub stale_files_removed: usize,
    pub extra_fields: BTreeSet<String>,
    pub partitions: BTreeSet<String>,
    pub output_files: usize,
    /// LLM scorer: requests, cache hits, retries, failures, tokens, cost.
    pub llm: Option<crate::llm::LlmSummary>,
    /// Scored rows per scorer; the fallback's rows and failures.
    pub by_scorer: crate::scorer::RowsByScorer,
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

/// The names of an input file's outputs start with this key: stable across runs.
fn output_key(input_url: &str) -> String {
    format!("{KEY_PREFIX}{:016x}", stable_hash(input_url))
}

/// An output key ([`output_key`]): this prefix and 16 hex digits.
const KEY_PREFIX: &str = "part-";
const KEY_LEN: usize = KEY_PREFIX.len() + 16;

/// Output file name for chunk `k` of an input file (the first chunk's is the
/// key alone, as before files were read in chunks).
fn chunk_name(key: &str, k: usize) -> String {
    match k {
        0 => format!("{key}.parquet"),
        k => format!("{key}-{k:05}.parquet"),
    }
}

/// The input key of an output file's name ([`output_key`]), or the name itself.
fn key_of(file_name: &str) -> &str {
    match file_name.get(..KEY_LEN) {
        Some(key) if key.starts_with(KEY_PREFIX) && key[KEY_PREFIX.len()..].bytes().all(|c| c.is_ascii_hexdigit()) => {
            key
        }
        _ => file_name,
    }
}

pub async fn run(jc: &JobContext, scorer: crate::JobScorer, args: ScoreArgs) -> Result<ScoreReport> {
    let input = Location::parse(&args.input)?;
    let root = Location::parse(&args.out)?;
    let output = root.child(Table::Scored.dir());
    let rejected = root.child(Table::Rejected.dir()).child("job=score");
    let in_store = jc.stores.store(&input.store_url)?;
    let out_store = jc.stores.store(&output.store_url)?;
    let rej_store = jc.stores.store(&rejected.store_url)?;
    check_output_is_a_directory(&root, &output)?;

    let (crate::io::store::Inputs { files, skipped, hidden }, own_files) =
        list_files(in_store.as_ref(), &input, &root).await?;
    jc.select_scorer(&scorer);
    let scored_at = chrono::Utc::now().timestamp_micros();
    let mut report =
        ScoreReport { scorer: scorer.id().to_string(), files: files.len() + skipped.len(), ..Default::default() };
    report.output_files_skipped = own_files;
    report.hidden_entries = hidden;
    if report.output_files_skipped > 0 {
        tracing::warn!(files = report.output_files_skipped, out = %root.display, "the input contains the output's own tables; their files are not read");
    }
    if let Ok(n) = crate::io::store::clean_staging(out_store.as_ref(), &output).await
        && n > 0
    {
        tracing::info!(files = n, "removed staged files of crashed runs");
    }
    let mut previous = PreviousOutputs::list(out_store.as_ref(), &output).await?;
    // on a cluster, each file's validated rows are staged as Parquet for the executors to read
    let staging = root.child(CLUSTER_STAGING).child(&format!("score-{scored_at}-{}", std::process::id()));
    if jc.is_distributed() {
        clean_cluster_staging(jc, &root).await;
    }
    let opts = ReadOptions { format: args.format, max_text_bytes: args.max_text_bytes };
    let progress = Progress::files("score", report.files as u64);
    let mut dead = DeadLetters {
        store: rej_store.as_ref(),
        loc: &rejected,
        at: scored_at,
        previous: PreviousOutputs::list(rej_store.as_ref(), &rejected).await?,
    };

    for s in &skipped {
        tracing::warn!(file = %s.path, reason = %s.reason, "input entry not read");
        let key = output_key(&s.path);
        let written = dead.write(&chunk_name(&key, 0), &[Reject::file_level(&s.path, s.reason.clone())]).await?;
        dead.remove_stale(&key, written.as_slice()).await?;
        report.files_rejected += 1;
        progress.inc(1);
    }
    // where the time goes: reading and validating, staging (cluster), the scoring query, writing
    let mut phases = Phases::default();
    let chunk = Chunk { jc, scorer: &scorer, scored_at, store: &out_store, output: &output, staging: &staging };
    for meta in &files {
        let url = input.url_of(&meta.location);
        let key = output_key(&url);
        let mut chunks =
            read_chunks(in_store.clone(), input.clone(), meta.location.clone(), url.clone(), opts, args.chunk_bytes);
        let (mut written, mut dead_written, mut records) = (Vec::new(), Vec::new(), 0);
        for k in 0.. {
            let t0 = std::time::Instant::now();
            let parsed = match chunks.recv().await {
                None => break,
                Some(Ok(parsed)) => parsed,
                Some(Err(e)) if is_bad_input(&input, &e) => {
                    let mut p = ParsedFile::default();
                    let reason = format!("{}; fix it or remove the file", crate::error::chain(&e));
                    p.rejects.push(Reject::file_level(&url, reason));
                    p
                }
                Some(Err(e)) => return Err(e),
            };
            let name = chunk_name(&key, k);
            records += parsed.rows + parsed.rejects.len();
            report.count_read(&parsed);
            dead_written.extend(dead.write(&name, &parsed.rejects).await?);
            phases.read += t0.elapsed();
            if parsed.rows > 0 {
                written.extend(chunk.score(parsed.batches, &name, &mut report, &mut phases).await?);
            }
        }
        if records == 0 {
            tracing::warn!(file = %url, "input file holds no records");
            report.empty_files.push(url.clone());
        }
        // this input's files of earlier runs in partitions (or chunks) it no longer reaches
        report.stale_files_removed += previous.remove_stale(out_store.as_ref(), &output, &key, &written).await?;
        dead.remove_stale(&key, &dead_written).await?;
        progress.inc(1);
    }
    progress.finish(report.files as u64);
    if jc.is_distributed() {
        remove_staged(jc, &staging).await;
    }
    report.stale_files_removed += previous.remove_orphans(out_store.as_ref(), &output).await?;
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
        files_rejected = report.files_rejected,
        read_s = phases.read.as_secs_f64(),
        stage_s = phases.stage.as_secs_f64(),
        query_s = phases.query.as_secs_f64(),
        write_s = phases.write.as_secs_f64(),
        "scored tweets"
    );
    report.llm = scorer.llm_summary();
    Ok(report)
}

impl ScoreReport {
    /// A chunk's records, rejects and fields read.
    fn count_read(&mut self, parsed: &ParsedFile) {
        let file_level = parsed.rejects.iter().filter(|r| r.line.is_none()).count();
        self.files_rejected += file_level;
        self.rows_rejected += parsed.rejects.len() - file_level;
        self.rows_read += parsed.rows + parsed.rejects.len() - file_level;
        self.extra_fields.extend(parsed.extra_fields.iter().cloned());
        for r in parsed.rejects.iter().take(3) {
            tracing::warn!(file = %r.file, line = ?r.line, reason = %r.reason, "rejected record");
        }
    }

    /// A chunk's scored rows.
    fn count_scored(&mut self, batches: &[RecordBatch]) {
        for b in batches {
            let unscorable = null_count(b, "sentiment_score");
            self.rows_unscorable += unscorable;
            self.rows_other_language += crate::io::write::language_refusals(b);
            self.by_scorer.add(b);
            self.rows_scored += b.num_rows() - unscorable;
        }
    }
}

/// What scoring one chunk of a file needs.
struct Chunk<'a> {
    jc: &'a JobContext,
    scorer: &'a crate::JobScorer,
    scored_at: i64,
    store: &'a std::sync::Arc<dyn ObjectStore>,
    output: &'a Location,
    /// On a cluster: where chunks are staged for the executors.
    staging: &'a Location,
}

impl Chunk<'_> {
    /// Scores a chunk's rows (`sql/score.sql`) and writes them as `name` in each
    /// partition they reach; returns the files written.
    async fn score(
        &self,
        rows: Vec<RecordBatch>,
        name: &str,
        report: &mut ScoreReport,
        phases: &mut Phases,
    ) -> Result<Vec<Path>> {
        let jc = self.jc;
        let t0 = std::time::Instant::now();
        let parts = spread(rows, jc.ctx.state().config().target_partitions());
        let staged = match jc.is_distributed() {
            true => Some(stage(jc, &self.staging.child(name.trim_end_matches(".parquet")), parts).await?),
            false => {
                crate::tables::register_batches(jc, "raw_tweets", Table::Raw.schema(), parts)?;
                None
            }
        };
        let params = vec![
            ("scorer", ScalarValue::Utf8(Some(self.scorer.id().to_string()))),
            ("scored_at", ScalarValue::TimestampMicrosecond(Some(self.scored_at), Some("UTC".into()))),
        ];
        phases.stage += t0.elapsed();
        let t0 = std::time::Instant::now();
        let scored = jc.collect("score", params).await;
        phases.query += t0.elapsed();
        let t0 = std::time::Instant::now();
        if let Some(dir) = &staged {
            remove_staged(jc, dir).await;
        }
        let batches = scored?.batches;
        report.count_scored(&batches);
        // one partition's file open at a time: a file spanning 20,000 hours is 20,000 files
        let writer = PartitionedWriter::new(self.store.clone(), self.output.clone(), Table::Scored, name.to_string());
        let mut written = Vec::new();
        for f in writer.write_grouped(&batches).await? {
            report.partitions.insert(f.partition);
            report.output_files += 1;
            written.push(f.path);
        }
        phases.write += t0.elapsed();
        Ok(written)
    }
}

/// The input's files, less those of the output's own tables (`--input .` above
/// `--out`), and how many those were; an input with nothing to read is an error.
async fn list_files(
    store: &dyn ObjectStore,
    input: &Location,
    root: &Location,
) -> Result<(crate::io::store::Inputs, usize)> {
    let crate::io::store::Inputs { files: listed, skipped, hidden } = list_inputs(store, input).await?;
    if let Some(first) = hidden.first() {
        tracing::warn!(entries = hidden.len(), first = %first, "hidden input entries (names starting with _ or .) are not read");
    }
    let own = own_tables(root, input);
    let n_listed = listed.len();
    let files: Vec<_> = listed.into_iter().filter(|m| !own.iter().any(|t| t.contains(&m.location))).collect();
    if files.is_empty() && skipped.is_empty() {
        let location = match hidden.first() {
            Some(first) => format!("{} ({} hidden entries there, e.g. {first})", input.display, hidden.len()),
            None => input.display.clone(),
        };
        return Err(Error::NoInput { location });
    }
    let own_files = n_listed - files.len();
    Ok((crate::io::store::Inputs { files, skipped, hidden }, own_files))
}

/// Time spent per phase of `score`, over all files (logged at the end).
#[derive(Default)]
struct Phases {
    /// Fetching, parsing and validating, dead letters.
    read: std::time::Duration,
    /// Slicing, and on a cluster writing the staged Parquet.
    stage: std::time::Duration,
    /// The scoring query to its last row (on a cluster: submission, tasks, fetching results).
    query: std::time::Duration,
    /// Writing the scored Parquet, removing staged files.
    write: std::time::Duration,
}

/// Hidden directory below the data root where `score --cluster` stages each
/// input file's validated rows (removed once the file is scored).
pub const CLUSTER_STAGING: &str = "_cluster_staging";

/// Writes a file's validated rows below `dir`, one Parquet file per slice
/// (so the cluster reads them as that many tasks), and registers them as
/// table `raw_tweets`; returns `dir`.
async fn stage(jc: &JobContext, dir: &Location, parts: Vec<Vec<RecordBatch>>) -> Result<Location> {
    let store = jc.stores.store(&dir.store_url)?;
    let schema = Table::Raw.schema();
    for (k, part) in parts.iter().enumerate() {
        let batch = datafusion::arrow::compute::concat_batches(&schema, part)
            .map_err(|e| Error::arrow("staging rows for the cluster", e))?;
        write_file(store.as_ref(), dir, &dir.path.clone().join(format!("part-{k:05}.parquet")), &batch).await?;
    }
    crate::tables::register_parquet_files(jc, "raw_tweets", schema, Vec::new(), dir)?;
    Ok(dir.clone())
}

/// Removes a staged directory (a leftover is hidden from every table, and
/// removed by a later run once an hour old).
async fn remove_staged(jc: &JobContext, dir: &Location) {
    if !dir.is_s3() {
        let _ = std::fs::remove_dir_all(format!("/{}", dir.path));
        return;
    }
    let Ok(store) = jc.stores.store(&dir.store_url) else { return };
    if let Ok(files) = crate::io::store::list_below(store.as_ref(), dir, &dir.path).await {
        for f in files {
            let _ = delete_if_exists(store.as_ref(), dir, &f.location).await;
        }
    }
}

/// Staged files of runs that died (over an hour old).
async fn clean_cluster_staging(jc: &JobContext, root: &Location) {
    let dir = root.child(CLUSTER_STAGING);
    let Ok(store) = jc.stores.store(&dir.store_url) else { return };
    let _ = crate::io::store::delete_leftovers(store.as_ref(), &dir, &dir.path).await;
}

/// The output's own table directories that lie under the input location.
fn own_tables(root: &Location, input: &Location) -> Vec<Location> {
    Table::ALL
        .iter()
        .filter(|t| !matches!(t, Table::Raw))
        .map(|t| root.child(t.dir()))
        .filter(|t| t.store_url == input.store_url && input.contains(&t.path) && !t.contains(&input.path))
        .collect()
}

/// `--out` must be a directory (or not exist yet); a file there is named as the problem.
fn check_output_is_a_directory(root: &Location, output: &Location) -> Result<()> {
    if output.is_s3() {
        return Ok(());
    }
    for loc in [root, output] {
        if std::fs::metadata(format!("/{}", loc.path)).is_ok_and(|m| !m.is_dir()) {
            return Err(Error::Option {
                option: "--out",
                reason: format!("{}: {} is a file, not a directory", root.display, loc.url_of(&loc.path)),
            });
        }
    }
    Ok(())
}

/// A read error that belongs to the file, not to the system: the file is
/// dead-lettered and the job goes on. Local: any I/O error (permissions,
/// a file that vanished); S3: an object deleted since the listing, or denied.
fn is_bad_input(input: &Location, e: &Error) -> bool {
    match e {
        Error::Store { source, .. } => {
            !input.is_s3()
                || matches!(
                    source,
                    object_store::Error::NotFound { .. }
                        | object_store::Error::PermissionDenied { .. }
                        | object_store::Error::Unauthenticated { .. }
                )
        }
        _ => false,
    }
}

/// Writes the dead letters of each input chunk, and removes those an input's
/// earlier runs left that this run did not write again.
struct DeadLetters<'a> {
    store: &'a dyn ObjectStore,
    loc: &'a Location,
    at: i64,
    previous: PreviousOutputs,
}

impl DeadLetters<'_> {
    /// `name`: the chunk's output name ([`chunk_name`]); the file written, if any.
    async fn write(&self, name: &str, rejects: &[Reject]) -> Result<Option<Path>> {
        if rejects.is_empty() {
            return Ok(None);
        }
        let path = self.loc.path.clone().join(name);
        let batch = rejects_batch(rejects, self.at)?;
        write_file(self.store, self.loc, &path, &batch).await?;
        Ok(Some(path))
    }

    async fn remove_stale(&mut self, key: &str, keep: &[Path]) -> Result<usize> {
        self.previous.remove_stale(self.store, self.loc, key, keep).await
    }
}

/// A table's files before this run, by input key ([`key_of`]): an input's
/// rows may move to other partitions or chunks (or vanish) between runs, and
/// its old files there must go, or the rows would count twice.
struct PreviousOutputs {
    by_name: std::collections::HashMap<String, Vec<Path>>,
    /// Partial files of older versions (`name#n`), never complete.
    orphans: Vec<Path>,
}

impl PreviousOutputs {
    async fn list(store: &dyn ObjectStore, output: &Location) -> Result<Self> {
        let mut by_name: std::collections::HashMap<String, Vec<Path>> = Default::default();
        let mut orphans = Vec::new();
        for m in crate::io::store::list_below(store, output, &output.path).await? {
            let Some(name) = m.location.filename().map(str::to_string) else { continue };
            if name.contains('#') {
                orphans.push(m.location);
            } else {
                by_name.entry(key_of(&name).to_string()).or_default().push(m.location);
            }
        }
        Ok(Self { by_name, orphans })
    }

    async fn remove_stale(
        &mut self,
        store: &dyn ObjectStore,
        output: &Location,
        key: &str,
        keep: &[Path],
    ) -> Result<usize> {
        let mut n = 0;
        for p in self.by_name.remove(key).unwrap_or_default() {
            if !keep.contains(&p) {
                delete_if_exists(store, output, &p).await?;
                n += 1;
            }
        }
        Ok(n)
    }

    async fn remove_orphans(&mut self, store: &dyn ObjectStore, output: &Location) -> Result<usize> {
        let mut n = 0;
        for p in std::mem::take(&mut self.orphans) {
            delete_if_exists(store, output, &p).await?;
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use std::sync::Arc;

    #[test]
    fn spread_keeps_every_row_once() {
        let schema =
            Arc::new(datafusion::arrow::datatypes::Schema::new(vec![datafusion::arrow::datatypes::Field::new(
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
