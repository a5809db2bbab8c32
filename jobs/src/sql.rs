//! SQL files of `sql/`, loaded by name, with values passed as `$params`.
//!
//! The files are compiled into the binary so it runs from any directory;
//! `SENTIFLOW_SQL_DIR` points at a directory to use edited copies instead.

use chrono::{DateTime, Utc};
use datafusion::arrow::datatypes::IntervalMonthDayNano;
use datafusion::common::ScalarValue;
use datafusion::dataframe::DataFrame;
use datafusion::prelude::SessionContext;

use crate::{Error, Result};

const FILES: &[(&str, &str)] = &[
    ("score", include_str!("../../sql/score.sql")),
    ("window_source_aggs", include_str!("../../sql/window_source_aggs.sql")),
    ("windows_by_source", include_str!("../../sql/windows_by_source.sql")),
    ("windows", include_str!("../../sql/windows.sql")),
    ("bench_scored_view", include_str!("../../sql/bench_scored_view.sql")),
    ("bench_scan", include_str!("../../sql/bench_scan.sql")),
    ("report_windows", include_str!("../../sql/report_windows.sql")),
    ("report_summary", include_str!("../../sql/report_summary.sql")),
    ("report_sources", include_str!("../../sql/report_sources.sql")),
    ("report_distribution", include_str!("../../sql/report_distribution.sql")),
    ("report_extremes", include_str!("../../sql/report_extremes.sql")),
    ("report_alerts", include_str!("../../sql/report_alerts.sql")),
    ("report_rejected", include_str!("../../sql/report_rejected.sql")),
    ("eval_probs", include_str!("../../sql/eval_probs.sql")),
    ("eval_labels", include_str!("../../sql/eval_labels.sql")),
    ("compare", include_str!("../../sql/compare.sql")),
    ("stream_merge", include_str!("../../sql/stream_merge.sql")),
];

/// A timestamp `$param` value (µs, UTC), the type of every time column.
pub fn timestamp_param(t: DateTime<Utc>) -> ScalarValue {
    ScalarValue::TimestampMicrosecond(Some(t.timestamp_micros()), Some("UTC".into()))
}

/// An interval `$param` value.
pub fn interval_param(d: chrono::Duration) -> ScalarValue {
    let nanos = d.num_nanoseconds().unwrap_or(i64::MAX);
    ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(0, 0, nanos)))
}

/// Returns the text of `sql/<name>.sql`.
pub fn load(name: &str) -> Result<String> {
    if let Some(dir) = std::env::var_os("SENTIFLOW_SQL_DIR") {
        let path = std::path::Path::new(&dir).join(format!("{name}.sql"));
        return std::fs::read_to_string(&path)
            .map_err(|source| Error::Io { path: path.display().to_string(), source });
    }
    FILES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| s.to_string())
        .ok_or_else(|| Error::UnknownSql {
            name: name.to_string(),
            known: FILES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
        })
}

/// Plans `sql/<name>.sql` with named parameters (`$name` in the file).
pub async fn query(ctx: &SessionContext, name: &str, params: Vec<(&str, ScalarValue)>) -> Result<DataFrame> {
    let text = load(name)?;
    let sql_err = |source| Error::Sql { name: format!("sql/{name}.sql"), source };
    let df = ctx.sql(&text).await.map_err(sql_err)?;
    if params.is_empty() {
        return Ok(df);
    }
    df.with_param_values(params).map_err(sql_err)
}
