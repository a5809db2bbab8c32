//! `sentiflow aggregate`: event-time windows over scored tweets.
//!
//! `sql/window_source_aggs.sql` computes per-(window, source) partials in one
//! scan; `sql/windows_by_source.sql` and `sql/windows.sql` shape the two
//! output tables, each Parquet partitioned by `dt` (the UTC day of
//! `window_start`). Output is idempotent: every partition in the recomputed
//! range is rewritten as `part-00000.parquet` and stray files are removed, so
//! re-running a range replaces it and never duplicates rows.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, DurationRound, Utc};
use object_store::ObjectStore;
use object_store::path::Path;

use crate::context::JobContext;
use crate::io::store::{Location, delete_except, list_below};
use crate::io::write::PartitionedWriter;
use crate::schema::Table;
use crate::sql::{interval_param, timestamp_param};
use crate::tables::{register_batches, register_parquet_table};
use crate::{Error, Result, sql};

/// Window size and slide. Tumbling when `slide == window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    pub window: Duration,
    pub slide: Duration,
}

impl WindowSpec {
    pub fn new(window: Duration, slide: Option<Duration>) -> Result<Self> {
        let slide = slide.unwrap_or(window);
        let us = |d: Duration| d.num_microseconds().unwrap_or(0);
        if us(window) <= 0 || us(slide) <= 0 {
            return Err(Error::Option { option: "--window", reason: "--window and --slide must be positive".into() });
        }
        if us(slide) > us(window) || us(window) % us(slide) != 0 {
            return Err(Error::Option {
                option: "--window",
                reason: format!(
                    "{} must be a whole multiple of --slide ({}): windows are built from slide-wide panes",
                    fmt_duration(window),
                    fmt_duration(slide)
                ),
            });
        }
        if us(window) / us(slide) > 1000 {
            return Err(Error::Option {
                option: "--slide",
                reason: "over 1000 panes per window; use a larger slide".into(),
            });
        }
        Ok(Self { window, slide })
    }

    pub fn tumbling(window: Duration) -> Self {
        Self { window, slide: window }
    }
}

impl Default for WindowSpec {
    fn default() -> Self {
        Self::tumbling(Duration::minutes(5))
    }
}

/// `5m`, `1h30m`, `30s`.
pub fn fmt_duration(d: Duration) -> String {
    let mut s = d.num_seconds();
    let mut out = String::new();
    for (unit, len) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if s >= len {
            out.push_str(&format!("{}{unit}", s / len));
            s %= len;
        }
    }
    if out.is_empty() { format!("{}ms", d.num_milliseconds()) } else { out }
}

#[derive(Debug, Clone)]
pub struct AggregateArgs {
    /// Root of the scored table.
    pub input: String,
    /// Output root: writes `windows/` and `windows_by_source/` below it.
    pub out: String,
    pub spec: WindowSpec,
    /// Recompute only windows starting in [from, to), widened to whole UTC days.
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default)]
pub struct AggregateReport {
    pub windows: usize,
    pub windows_by_source: usize,
    pub partitions: BTreeSet<String>,
    pub files_removed: usize,
    /// The day range replaced: None when the whole table was rebuilt.
    pub replaced: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// The default bounds of a time range: far enough to hold any real data,
/// near enough that window arithmetic cannot overflow.
pub fn far_past() -> DateTime<Utc> {
    DateTime::from_timestamp(crate::schema::EVENT_TIME_MIN_SECS, 0).unwrap_or_default() // 1900-01-01
}

pub fn far_future() -> DateTime<Utc> {
    DateTime::from_timestamp(crate::schema::EVENT_TIME_MAX_SECS, 0).unwrap_or_default() // 2200-01-01
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
    compute_and_write(jc, args.spec, range, &out).await
}

/// Computes windows over the registered `scored_tweets` table and replaces
/// the output partitions of `range` (all partitions when `None`). The bench
/// command runs this same function over the peer data.
pub async fn compute_and_write(
    jc: &JobContext,
    spec: WindowSpec,
    range: Option<(DateTime<Utc>, DateTime<Utc>)>,
    out: &Location,
) -> Result<AggregateReport> {
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
    let partials = jc.collect("window_source_aggs", params).await?;
    // the partials are small (one row per window pane and source): the windows are shaped here,
    // in this process, even when the scan above ran on a cluster
    let jc = &jc.local();
    register_batches(jc, "window_source_aggs", partials.schema, vec![partials.batches])?;

    let mut report = AggregateReport { replaced: range, ..Default::default() };
    for (table, sql_name) in [(Table::WindowsBySource, "windows_by_source"), (Table::Windows, "windows")] {
        let root = out.child(table.dir());
        let df = sql::query(&jc.ctx, sql_name, vec![("window", interval_param(spec.window))]).await?;
        let mut writer = PartitionedWriter::new(store.clone(), root.clone(), table, "part-00000.parquet");
        writer.write_dataframe(df).await?;
        lock.check()?;
        let written = writer.finish().await?;
        let rows: usize = written.iter().map(|f| f.rows).sum();
        match table {
            Table::Windows => report.windows = rows,
            _ => report.windows_by_source = rows,
        }
        lock.check()?;
        report.files_removed += replace_partitions(store.as_ref(), &root, &written, range).await?;
        report.partitions.extend(written.iter().map(|f| f.partition.clone()));
        crate::io::checkpoint::pause_point("aggregate_tables").await;
    }
    let _ = jc.ctx.deregister_table("window_source_aggs");
    lock.release().await?;
    tracing::info!(
        windows = report.windows,
        windows_by_source = report.windows_by_source,
        partitions = report.partitions.len(),
        removed = report.files_removed,
        "aggregated windows"
    );
    Ok(report)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_specs() {
        assert!(WindowSpec::new(Duration::minutes(5), None).is_ok());
        assert!(WindowSpec::new(Duration::minutes(10), Some(Duration::minutes(5))).is_ok());
        let e = WindowSpec::new(Duration::minutes(10), Some(Duration::minutes(3))).unwrap_err();
        assert!(e.to_string().contains("whole multiple"), "{e}");
        assert!(WindowSpec::new(Duration::minutes(1), Some(Duration::minutes(5))).is_err());
        assert!(WindowSpec::new(Duration::zero(), None).is_err());
        assert_eq!(fmt_duration(Duration::seconds(5430)), "1h30m30s");
    }
}
