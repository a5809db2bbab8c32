//! `sentiflow aggregate`: event-time windows over scored tweets.

use super::DEFAULT_OUT;
use super::WindowCli;
use super::expand_location;
use super::parse_time;
use anyhow::Result;
use chrono::{DateTime, Utc};
use sentiflow_jobs::JobContext;
use sentiflow_jobs::io::store::Location;
use sentiflow_jobs::job::aggregate;
use sentiflow_jobs::job::aggregate::AggregateArgs;
use sentiflow_jobs::job::aggregate::WindowSpec;
use sentiflow_jobs::job::aggregate::fmt_duration;
use sentiflow_jobs::schema::Table;
use sentiflow_jobs::window::Background;

#[derive(clap::Args, Debug)]
pub(crate) struct AggregateCli {
    /// Scored tweets (default: <out>/scored).
    #[arg(long, value_parser = expand_location)]
    input: Option<String>,
    /// Data root: writes windows/ and windows_by_source/ below it.
    #[arg(long, default_value = DEFAULT_OUT, value_parser = expand_location)]
    out: String,
    #[command(flatten)]
    window: WindowCli,
    #[command(flatten)]
    terms: super::TermCli,
    /// Recompute windows from this time (widened to the UTC day); default: everything.
    #[arg(long, value_parser = parse_time)]
    from: Option<DateTime<Utc>>,
    /// Recompute windows before this time (widened to the UTC day).
    #[arg(long, value_parser = parse_time)]
    to: Option<DateTime<Utc>>,
    #[command(flatten)]
    cluster: super::cluster::ClusterArg,
    /// The summary's figures as a CloudWatch EMF line on stdout too.
    #[arg(long, value_enum)]
    metrics: Option<super::MetricsFormat>,
}

pub(crate) async fn run(jc: &JobContext, a: AggregateCli) -> Result<()> {
    let started = std::time::Instant::now();
    let out = Location::parse(&a.out)?;
    let input = a.input.unwrap_or_else(|| out.child(Table::Scored.dir()).display);
    let spec = WindowSpec::new(a.window.window, a.window.slide)?;
    let jc = &a.cluster.context(jc, None).await?;
    let terms = a.terms.spec(Background::Whole);
    let r = aggregate::run(jc, AggregateArgs { input, out: a.out, spec, terms, from: a.from, to: a.to }).await?;
    println!(
        "{} windows, {} (window, source) rows and {} window terms of {} sliding every {} in {} partitions{}",
        r.windows,
        r.windows_by_source,
        r.window_terms,
        fmt_duration(spec.window),
        fmt_duration(spec.slide),
        r.partitions.len(),
        match r.replaced {
            Some((f, t)) => format!(", replaced days {} .. {}", f.format("%Y-%m-%d"), t.format("%Y-%m-%d")),
            None => ", whole table replaced".into(),
        }
    );
    super::print_emf(
        a.metrics,
        "aggregate",
        &[
            ("Windows", r.windows as f64, "Count"),
            ("WindowsBySource", r.windows_by_source as f64, "Count"),
            ("WindowTerms", r.window_terms as f64, "Count"),
            ("Partitions", r.partitions.len() as f64, "Count"),
            ("AggregateSeconds", started.elapsed().as_secs_f64(), "Seconds"),
        ],
    );
    Ok(())
}
