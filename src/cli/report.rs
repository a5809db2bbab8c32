//! `sentiflow report`: the HTML report and PNG chart of a data root.

use super::DEFAULT_OUT;
use super::parse_time;
use anyhow::Result;
use chrono::{DateTime, Utc};
use sentiflow_jobs::JobContext;
use sentiflow_jobs::io::store::Location;
use sentiflow_jobs::job::report;
use sentiflow_jobs::job::report::ReportArgs;

#[derive(clap::Args, Debug)]
pub(crate) struct ReportCli {
    /// Data root with scored/ and windows/ (local or s3://).
    #[arg(long, default_value = DEFAULT_OUT)]
    data: String,
    /// Report on windows/tweets from this time (RFC 3339 or YYYY-MM-DD, UTC).
    #[arg(long, value_parser = parse_time)]
    from: Option<DateTime<Utc>>,
    /// ... until before this time.
    #[arg(long, value_parser = parse_time)]
    to: Option<DateTime<Utc>>,
    /// The HTML file to write (default: <data>/report.html).
    #[arg(long)]
    out: Option<String>,
    /// Also write the sentiment-over-time chart as PNG here.
    #[arg(long)]
    png: Option<String>,
}

pub(crate) async fn run(jc: &JobContext, r: ReportCli) -> Result<()> {
    let data = Location::parse(&r.data)?;
    let out = r.out.unwrap_or_else(|| data.child("report.html").display);
    let rep = report::run(jc, ReportArgs { data: r.data, from: r.from, to: r.to, out, png: r.png }).await?;
    println!(
        "report: {} ({} windows, {} tweets, {} alerts, {} KiB)",
        rep.out,
        rep.windows,
        rep.tweets,
        rep.alerts,
        rep.bytes / 1024
    );
    if let Some(p) = rep.png {
        println!("chart:  {p}");
    }
    Ok(())
}
