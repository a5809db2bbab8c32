//! `sentiflow aggregate`: event-time windows over scored tweets.
//!
//! `sql/window_source_aggs.sql` computes per-(window, source) partials in one
//! scan; `sql/windows_by_source.sql` and `sql/windows.sql` shape the two
//! output tables; `sql/term_panes.sql` counts terms per pane and
//! `sql/window_terms.sql` keeps each window's top terms (`window_terms`).
//! Each table is Parquet partitioned by `dt` (the UTC day of
//! `window_start`). Output is idempotent: every partition in the recomputed
//! range is rewritten as `part-00000.parquet` and stray files are removed, so
//! re-running a range replaces it and never duplicates rows.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, DurationRound, Utc};
use object_store::ObjectStore;
use object_store::path::Path;
use std::sync::Arc;

use crate::context::JobContext;
use crate::io::store::{Location, delete_except, list_below};
use crate::io::write::PartitionedWriter;
use crate::schema::Table;
use crate::sql::{interval_param, timestamp_param};
use crate::tables::{register_batches, register_parquet_table};
use crate::window::{TermSpec, term_pane_params, window_terms};
pub use crate::window::{WindowSpec, far_future, far_past, fmt_duration};
use crate::{Error, Result, sql};

#[derive(Debug, Clone)]
pub struct AggregateArgs {
    /// Root of the scored table.
    pub input: String,
    /// Output root: writes `windows/` and `windows_by_source/` below it.
    pub out: String,
    pub spec: WindowSpec,
    /// What `window_terms` keeps (`top_k` 0: no `window_terms`).
    pub terms: TermSpec,
    /// Recompute only windows starting in [from, to), widened to whole UTC days.
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default)]
pub struct AggregateReport {
    pub windows: usize,
    pub windows_by_source: usize,
    /// Rows of `window_terms` written.
    pub window_terms: usize,
    pub partitions: BTreeSet<String>,
    pub files_removed: usize,
    /// The day range replaced: None when the whole table was rebuilt.
    pub replaced: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

pub async fn run(jc: &JobContext, args: AggregateArgs) -> Result<AggregateReport> {
    let input = Location::parse(&args.input)?;
    if !jc.has_files(&input).await? {
        return Err(Error::NoInput { location: input.display.clone() });
    }
    register_parquet_table(jc, "scored_tweets", Table::Scored, &input)?;
    let range = match (args.from, args.to) {
        (None, None) => None,
        (from, to) => {
            let day = Duration::days(1);
            let from = from.unwrap_or_else(far_past);
            let from = from.duration_trunc(day).unwrap_or(from);
            let to = to.unwrap_or_else(far_future);
            let to = match to.duration_trunc(day) {
                Ok(d) if d == to => d,
                Ok(d) => d + day,
                Err(_) => to,
            };
            if from < far_past() || to > far_future() {
                return Err(Error::Option { option: "--from/--to", reason: "must lie between 1900 and 2200".into() });
            }
            if from >= to {
                return Err(Error::Option { option: "--from", reason: "must be before --to".into() });
            }
            Some((from, to))
        }
    };
    let out = Location::parse(&args.out)?;
    compute_and_write(jc, args.spec, &args.terms, range, &out).await
}

/// Computes windows over the registered `scored_tweets` table and replaces
/// the output partitions of `range` (all partitions when `None`). The bench
/// command runs this same function over the peer data.
pub async fn compute_and_write(
    jc: &JobContext,
    spec: WindowSpec,
    terms: &TermSpec,
    range: Option<(DateTime<Utc>, DateTime<Utc>)>,
    out: &Location,
) -> Result<AggregateReport> {
    terms.check(&spec)?;
    let (from, to) = range.unwrap_or((far_past(), far_future()));
    let params = vec![
        ("slide", interval_param(spec.slide)),
        ("lookback", interval_param(spec.window - spec.slide)),
        ("origin", timestamp_param(DateTime::UNIX_EPOCH)),
        ("from", timestamp_param(from)),
        ("to", timestamp_param(to)),
        ("rows_to", timestamp_param(to + spec.window)),
    ];
    let store = jc.stores.store(&out.store_url)?;
    // one run at a time replaces windows/ and windows_by_source/ under this root
    let lock = crate::io::lock::OutputLock::acquire(store.clone(), out, "aggregate").await?;
    // a failed run lets go of the lock at once: the next run need not wait out the lease
    match compute_and_write_locked(jc, spec, terms, range, out, &store, &lock, params).await {
        Ok(report) => {
            lock.release().await?;
            Ok(report)
        }
        Err(e) => {
            if let Err(release) = lock.release().await {
                tracing::warn!(error = %release, "could not release the output lock after a failure; it expires by itself");
            }
            Err(e)
        }
    }
}

/// [`compute_and_write`] once the output lock is held.
#[allow(clippy::too_many_arguments)]
async fn compute_and_write_locked(
    jc: &JobContext,
    spec: WindowSpec,
    terms: &TermSpec,
    range: Option<(DateTime<Utc>, DateTime<Utc>)>,
    out: &Location,
    store: &Arc<dyn ObjectStore>,
    lock: &crate::io::lock::OutputLock,
    params: Vec<(&str, datafusion::common::ScalarValue)>,
) -> Result<AggregateReport> {
    let (from, to) = range.unwrap_or((far_past(), far_future()));
    let partials = jc.collect("window_source_aggs", params).await?;
    // term counts per pane (one scan, on the cluster when there is one); small next to the rows
    let panes = match terms.top_k {
        0 => None,
        _ => Some(
            jc.collect("term_panes", term_pane_params(&spec, terms.rows_from(&spec, from), to + spec.window)).await?,
        ),
    };
    // the partials are small (one row per window pane and source): the windows are shaped here,
    // in this process, even when the scan above ran on a cluster
    let jc = &jc.local();
    register_batches(jc, "window_source_aggs", partials.schema, vec![partials.batches])?;

    let mut report = AggregateReport { replaced: range, ..Default::default() };
    for (table, sql_name) in [(Table::WindowsBySource, "windows_by_source"), (Table::Windows, "windows")] {
        let df = sql::query(&jc.ctx, sql_name, vec![("window", interval_param(spec.window))]).await?;
        let rows = write_replacing(store, lock, out, table, df, range, &mut report).await?;
        match table {
            Table::Windows => report.windows = rows,
            _ => report.windows_by_source = rows,
        }
        crate::io::checkpoint::pause_point("aggregate_tables").await;
    }
    if let Some(panes) = panes {
        register_batches(jc, "term_panes", panes.schema, vec![panes.batches])?;
        let df = window_terms(jc, &spec, terms, from, to).await?;
        report.window_terms = write_replacing(store, lock, out, Table::WindowTerms, df, range, &mut report).await?;
        let _ = jc.ctx.deregister_table("term_panes");
    }
    let _ = jc.ctx.deregister_table("window_source_aggs");
    tracing::info!(
        windows = report.windows,
        windows_by_source = report.windows_by_source,
        window_terms = report.window_terms,
        partitions = report.partitions.len(),
        removed = report.files_removed,
        "aggregated windows"
    );
    Ok(report)
}

/// Writes one table's rows as `part-00000.parquet` per partition, then
/// replaces the table's other files in the range; returns the rows written.
async fn write_replacing(
    store: &Arc<dyn ObjectStore>,
    lock: &crate::io::lock::OutputLock,
    out: &Location,
    table: Table,
    df: datafusion::dataframe::DataFrame,
    range: Option<(DateTime<Utc>, DateTime<Utc>)>,
    report: &mut AggregateReport,
) -> Result<usize> {
    let root = out.child(table.dir());
    let mut writer = PartitionedWriter::new(store.clone(), root.clone(), table, "part-00000.parquet");
    writer.write_dataframe(df).await?;
    lock.check()?;
    let written = writer.finish().await?;
    lock.check()?;
    report.files_removed += replace_partitions(store.as_ref(), &root, &written, range).await?;
    report.partitions.extend(written.iter().map(|f| f.partition.clone()));
    Ok(written.iter().map(|f| f.rows).sum())
}

/// After new files are durable: removes other files in the written
/// partitions, and whole partitions of the range that got no windows.
async fn replace_partitions(
    store: &dyn ObjectStore,
    root: &Location,
    written: &[crate::io::write::WrittenFile],
    range: Option<(DateTime<Utc>, DateTime<Utc>)>,
) -> Result<usize> {
    let keep: Vec<Path> = written.iter().map(|f| f.path.clone()).collect();
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    for m in list_below(store, root, &root.path).await? {
        if let Some(dt) = m.location.parts().find_map(|s| s.as_ref().strip_prefix("dt=").map(str::to_string)) {
            dirs.insert(dt);
        }
    }
    let in_range = |dt: &str| match range {
        None => true,
        Some((from, to)) => {
            let d = from.format("%Y-%m-%d").to_string();
            let e = to.format("%Y-%m-%d").to_string();
            dt >= d.as_str() && dt < e.as_str()
        }
    };
    let mut removed = 0;
    for dt in dirs.iter().filter(|d| in_range(d)) {
        let dir = root.path.clone().join(format!("dt={dt}"));
        removed += delete_except(store, root, &dir, &keep).await?;
    }
    Ok(removed)
}
