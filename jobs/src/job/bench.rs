//! `sentiflow bench`: the peer benchmark contract of `../shared/peers/`.
//!
//! `--task scan` runs `sql/bench_scan.sql`; `--task window` maps the peer
//! data onto `scored_tweets` (`sql/bench_scored_view.sql`) and runs the very
//! function `sentiflow aggregate` uses, with 5-minute tumbling windows.

use std::time::Instant;

use datafusion::arrow::array::{Array, Float64Array, Int64Array};
use datafusion::prelude::ParquetReadOptions;

use crate::context::JobContext;
use crate::io::store::Location;
use crate::job::aggregate::compute_and_write;
use crate::window::{TermSpec, WindowSpec};
use crate::{Error, Result, sql};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchTask {
    Scan,
    Window,
}

/// What the peers' `RESULT {json}` line carries.
#[derive(Debug, Clone, Default)]
pub struct BenchReport {
    pub task: &'static str,
    pub query_s: f64,
    pub count: Option<i64>,
    pub avg: Option<f64>,
    pub windows_rows: Option<usize>,
    pub by_source_rows: Option<usize>,
}

pub async fn run(jc: &JobContext, input: &str, out: &str, task: BenchTask) -> Result<BenchReport> {
    let input = Location::parse(input)?;
    jc.ctx
        .register_parquet("peer_tweets", input.dir_url(), ParquetReadOptions::default())
        .await
        .map_err(|source| Error::Sql { name: format!("peer data at {}", input.display), source })?;
    let t0 = Instant::now();
    match task {
        BenchTask::Scan => {
            let batches = crate::io::diagnose::collect(sql::query(&jc.ctx, "bench_scan", vec![]).await?).await?;
            let b = batches.first().ok_or_else(|| Error::Internal("scan returned no rows".into()))?;
            let count = b.column(0).as_any().downcast_ref::<Int64Array>().filter(|a| !a.is_empty()).map(|a| a.value(0));
            let avg = b.column(1).as_any().downcast_ref::<Float64Array>().filter(|a| !a.is_empty()).map(|a| a.value(0));
            Ok(BenchReport { task: "scan", query_s: t0.elapsed().as_secs_f64(), count, avg, ..Default::default() })
        }
        BenchTask::Window => {
            let view = sql::query(&jc.ctx, "bench_scored_view", vec![]).await?;
            jc.ctx.register_table("scored_tweets", view.into_view()).map_err(Error::query)?;
            // the peers compute windows only: no window_terms here (benches/terms.sh measures them)
            let terms = TermSpec { top_k: 0, ..TermSpec::default() };
            let report = compute_and_write(jc, WindowSpec::default(), &terms, None, &Location::parse(out)?).await?;
            Ok(BenchReport {
                task: "window",
                query_s: t0.elapsed().as_secs_f64(),
                windows_rows: Some(report.windows),
                by_source_rows: Some(report.windows_by_source),
                ..Default::default()
            })
        }
    }
}
