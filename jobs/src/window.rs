//! Event-time windows, shared by every job that makes them (`aggregate`,
//! `stream`, `bench`): the window spec, the bounds of a time range, and what
//! drove each window (`window_terms`, from `sql/term_panes.sql` and
//! `sql/window_terms.sql`).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Schema, SchemaRef, TimestampMicrosecondType};
use datafusion::common::ScalarValue;

use crate::context::JobContext;
use crate::sql::{interval_param, timestamp_param};
use crate::{Error, Result};

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

/// The default bounds of a time range: far enough to hold any real data,
/// near enough that window arithmetic cannot overflow.
pub fn far_past() -> DateTime<Utc> {
    DateTime::from_timestamp(crate::schema::EVENT_TIME_MIN_SECS, 0).unwrap_or_default() // 1900-01-01
}

pub fn far_future() -> DateTime<Utc> {
    DateTime::from_timestamp(crate::schema::EVENT_TIME_MAX_SECS, 0).unwrap_or_default() // 2200-01-01
}

/// What `window_terms` keeps per window, and what a term's lift is measured against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TermSpec {
    /// Rows per window (`--top-terms`); 0 writes no `window_terms`.
    pub top_k: usize,
    /// Least tweets of the window containing a term (`--min-term-count`).
    pub min_count: usize,
    /// The background of `lift` (`--background`).
    pub background: Background,
}

/// What a window's term counts are compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Background {
    /// Every row the run reads: the whole scored time range (batch default).
    Whole,
    /// The rows in [window_end - d, window_end): what a stream knows when it
    /// emits a window (stream's default, 24 h).
    Trailing(Duration),
}

/// Default `--top-terms`.
pub const DEFAULT_TOP_TERMS: usize = 10;
/// Default `--min-term-count`.
pub const DEFAULT_MIN_TERM_COUNT: usize = 3;
/// The stream's default trailing background.
pub const DEFAULT_STREAM_BACKGROUND_HOURS: i64 = 24;
/// The Dirichlet prior's strength α₀ in term occurrences (Monroe et al.'s
/// informative prior: α_w = α₀ · the term's background share). About 40
/// minutes of the sample's term occurrences (38,219 in 24 h): a window's own
/// counts move its estimate, a handful of tweets does not.
pub const TERM_PRIOR_ALPHA0: f64 = 1000.0;

impl Default for TermSpec {
    fn default() -> Self {
        Self { top_k: DEFAULT_TOP_TERMS, min_count: DEFAULT_MIN_TERM_COUNT, background: Background::Whole }
    }
}

impl TermSpec {
    /// Checks the spec against the windows: a trailing background holds whole
    /// windows and whole panes.
    pub fn check(&self, spec: &WindowSpec) -> Result<()> {
        if let Background::Trailing(d) = self.background {
            let us = |d: Duration| d.num_microseconds().unwrap_or(0);
            if us(d) < us(spec.window) || us(d) % us(spec.slide) != 0 {
                return Err(Error::Option {
                    option: "--background",
                    reason: format!(
                        "{} must be at least --window ({}) and a whole multiple of --slide ({}); or `all` for the whole range",
                        fmt_duration(d),
                        fmt_duration(spec.window),
                        fmt_duration(spec.slide)
                    ),
                });
            }
        }
        if self.min_count == 0 {
            return Err(Error::Option { option: "--min-term-count", reason: "must be at least 1".into() });
        }
        Ok(())
    }

    /// The earliest row time the terms of windows starting at `from` need:
    /// a trailing background reaches back before the first window.
    pub fn rows_from(&self, spec: &WindowSpec, from: DateTime<Utc>) -> DateTime<Utc> {
        match self.background {
            Background::Whole => from,
            Background::Trailing(d) if d > spec.window => (from - (d - spec.window)).max(far_past()),
            Background::Trailing(_) => from,
        }
    }
}

/// Parameters of `sql/term_panes.sql`: the panes of rows in [rows_from, rows_to).
pub fn term_pane_params(
    spec: &WindowSpec,
    rows_from: DateTime<Utc>,
    rows_to: DateTime<Utc>,
) -> Vec<(&'static str, ScalarValue)> {
    vec![
        ("slide", interval_param(spec.slide)),
        ("origin", timestamp_param(DateTime::UNIX_EPOCH)),
        ("rows_from", timestamp_param(rows_from)),
        ("rows_to", timestamp_param(rows_to)),
    ]
}

/// The columns of `sql/term_panes.sql` (what the stream keeps per micro-batch).
pub fn term_panes_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("pane_start", crate::schema::timestamp_type(), true),
        Field::new("term", DataType::Utf8, true),
        Field::new("n", DataType::Int64, true),
        Field::new("n_scored", DataType::Int64, true),
        Field::new("sum_score", DataType::Float64, true),
        Field::new("n_negative", DataType::Int64, true),
    ]))
}

/// Term panes as batches of [`term_panes_schema`] (the query's own types may
/// differ in nullability or string layout); their latest pane start.
pub fn as_term_panes(batches: &[RecordBatch]) -> Result<(Vec<RecordBatch>, Option<i64>)> {
    let schema = term_panes_schema();
    let mut out = Vec::new();
    let mut max = None;
    for b in batches.iter().filter(|b| b.num_rows() > 0) {
        let cols = schema
            .fields()
            .iter()
            .zip(b.columns())
            .map(|(f, c)| datafusion::arrow::compute::cast(c, f.data_type()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::arrow("term panes", e))?;
        let panes = cols[0].as_primitive::<TimestampMicrosecondType>();
        max = max.max(datafusion::arrow::compute::max(panes));
        out.push(RecordBatch::try_new(schema.clone(), cols).map_err(|e| Error::arrow("term panes", e))?);
    }
    Ok((out, max))
}

/// How many terms an alert names as its window's drivers.
pub const ALERT_DRIVERS: usize = 5;

/// Each window's drivers (window start µs → terms): its `window_terms` rows
/// with a positive `neg_lift`, by `neg_lift` (then term), at most [`ALERT_DRIVERS`].
pub fn drivers(window_terms: &[RecordBatch]) -> BTreeMap<i64, Vec<String>> {
    let mut all: BTreeMap<i64, Vec<(f64, String)>> = BTreeMap::new();
    for b in window_terms {
        let (Some(w), Some(t), Some(l)) =
            (b.column_by_name("window_start"), b.column_by_name("term"), b.column_by_name("neg_lift"))
        else {
            continue;
        };
        let (w, l) = (w.as_primitive::<TimestampMicrosecondType>(), l.as_primitive::<Float64Type>());
        let t = datafusion::arrow::compute::cast(t, &DataType::Utf8).unwrap_or_else(|_| t.clone());
        let t = t.as_string::<i32>();
        for r in 0..b.num_rows() {
            if !l.is_null(r) && l.value(r) > 0.0 {
                all.entry(w.value(r)).or_default().push((l.value(r), t.value(r).to_string()));
            }
        }
    }
    all.into_iter()
        .map(|(w, mut v)| {
            v.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
            (w, v.into_iter().take(ALERT_DRIVERS).map(|(_, t)| t).collect())
        })
        .collect()
}

/// Plans `sql/window_terms.sql` over the registered `term_panes` table (in
/// `jc`'s session): the top terms of the windows starting in [from, to). Their
/// counts per window (`sql/window_term_counts.sql`), which it reads three
/// times, are computed first, once.
pub async fn window_terms(
    jc: &JobContext,
    spec: &WindowSpec,
    terms: &TermSpec,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<datafusion::dataframe::DataFrame> {
    let us = |d: Duration| ScalarValue::Int64(Some(d.num_microseconds().unwrap_or(i64::MAX)));
    let counts = vec![
        ("slide_us", us(spec.slide)),
        ("lookback_us", us(spec.window - spec.slide)),
        ("from_us", ScalarValue::Int64(Some(from.timestamp_micros()))),
        ("to_us", ScalarValue::Int64(Some(to.timestamp_micros()))),
    ];
    let counts = crate::sql::query(&jc.ctx, "window_term_counts", counts).await?;
    let schema = counts.schema().inner().clone();
    let scope = crate::io::diagnose::QueryScope::of(&counts);
    let batches = match counts.collect_partitioned().await {
        Ok(batches) => batches,
        Err(e) => return Err(scope.error(e).await),
    };
    crate::tables::register_batches(jc, WINDOW_TERM_COUNTS, schema, batches)?;
    let (trailing, background) = match terms.background {
        Background::Whole => (false, spec.window),
        Background::Trailing(d) => (true, d),
    };
    let params = vec![
        ("window", interval_param(spec.window)),
        ("background", interval_param(background)),
        ("trailing", ScalarValue::Boolean(Some(trailing))),
        ("alpha0", ScalarValue::Float64(Some(TERM_PRIOR_ALPHA0))),
        ("top_k", ScalarValue::Int64(Some(terms.top_k as i64))),
        ("min_count", ScalarValue::Int64(Some(terms.min_count as i64))),
    ];
    let df = crate::sql::query(&jc.ctx, "window_terms", params).await;
    // the plan holds the table; the name is not needed past planning
    let _ = jc.ctx.deregister_table(WINDOW_TERM_COUNTS);
    df
}

/// The in-memory table of `sql/window_term_counts.sql`'s rows that `sql/window_terms.sql` reads.
const WINDOW_TERM_COUNTS: &str = "window_term_counts";

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

    #[test]
    fn term_specs() {
        let spec = WindowSpec::new(Duration::minutes(10), Some(Duration::minutes(5))).unwrap();
        let t = |d| TermSpec { background: Background::Trailing(d), ..TermSpec::default() };
        assert!(t(Duration::hours(24)).check(&spec).is_ok());
        assert!(t(Duration::minutes(5)).check(&spec).is_err(), "shorter than a window");
        assert!(t(Duration::minutes(12)).check(&spec).is_err(), "not whole panes");
        let from = DateTime::from_timestamp(1_000_000, 0).unwrap();
        assert_eq!(t(Duration::hours(1)).rows_from(&spec, from), from - Duration::minutes(50));
        assert_eq!(TermSpec::default().rows_from(&spec, from), from);
    }
}
