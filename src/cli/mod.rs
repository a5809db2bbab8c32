//! The command line, split by concern: one module per command holding its
//! arguments, their mapping to the job's arguments and the printing of its
//! summary; [`scorer`] holds the scorer options every scoring command shares.

pub(crate) mod aggregate;
pub(crate) mod bench;
pub(crate) mod cluster;
pub(crate) mod compact;
pub(crate) mod compare;
pub(crate) mod eval;
pub(crate) mod generate;
pub(crate) mod ingest;
pub(crate) mod report;
pub(crate) mod run;
pub(crate) mod schema;
pub(crate) mod score;
pub(crate) mod scorer;
pub(crate) mod sql;
pub(crate) mod stream;

use anyhow::Result;
use chrono::{DateTime, NaiveDate, Utc};
use clap::Subcommand;
use sentiflow_jobs::JobContext;
use sentiflow_jobs::timeexpr::parse_duration;

/// Default data root of every command.
pub(crate) const DEFAULT_OUT: &str = "./sentiflow-out";

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Generate synthetic tweets (seeded, deterministic) to files or S3.
    Generate(generate::GenerateCli),
    /// Score raw tweets (NDJSON/CSV/Parquet, local or s3://) into partitioned Parquet.
    Score(score::ScoreCli),
    /// Aggregate scored tweets over event-time windows.
    Aggregate(aggregate::AggregateCli),
    /// Read a Kinesis data stream into raw Parquet (dt=/hour=), exactly once, with checkpoints.
    Ingest(ingest::IngestCli),
    /// Micro-batch streaming: Kinesis → scored rows → event-time windows with a watermark → alerts.
    Stream(stream::StreamCli),
    /// Merge a table's small files (one per micro-batch) into files of about --target-mb.
    Compact(compact::CompactCli),
    /// Generate, score and aggregate the embedded sample data set, then print a summary.
    Run(run::RunCli),
    /// Write an HTML report (charts, extremes, alerts) of a data root, optionally a PNG chart.
    Report(report::ReportCli),
    /// Ad-hoc SQL over the tables of a data root (REPL, -c or -f).
    Sql(sql::SqlCli),
    /// A scorer's accuracy, macro-F1, confusion matrix and throughput on labelled data.
    Eval(eval::EvalCli),
    /// How two scorers agree on the same tweets: sign and label agreement, Spearman, accuracy.
    Compare(compare::CompareCli),
    /// The peer benchmark contract: --input DIR --out DIR --task scan|window.
    Bench(bench::BenchCli),
    /// Print the table schemas for Glue/Terraform (--glue-json) or Athena (--athena-ddl).
    Schema(schema::SchemaCli),
    /// A Ballista scheduler or executor for `--cluster` (score, aggregate, sql).
    #[cfg(feature = "cluster")]
    Cluster(cluster::ClusterCli),
}

/// Runs one command.
pub(crate) async fn dispatch(jc: &JobContext, cmd: Command) -> Result<()> {
    match cmd {
        Command::Generate(a) => generate::run(jc, a).await,
        Command::Score(a) => score::run(jc, a).await,
        Command::Aggregate(a) => aggregate::run(jc, a).await,
        Command::Ingest(a) => ingest::run(jc, a).await,
        Command::Stream(a) => stream::run(jc, a).await,
        Command::Compact(a) => compact::run(jc, a).await,
        Command::Run(a) => run::run(jc, a).await,
        Command::Report(a) => report::run(jc, a).await,
        Command::Sql(a) => {
            let scorer = a.scorer.build(jc, None).await?;
            let jc = &a.cluster.context(jc, Some(&scorer)).await?;
            jc.select_scorer(&scorer);
            sql::run(jc, a).await
        }
        Command::Eval(a) => eval::run(jc, a).await,
        Command::Compare(a) => compare::run(jc, a).await,
        Command::Bench(a) => bench::run(jc, a).await,
        Command::Schema(a) => schema::run(a),
        #[cfg(feature = "cluster")]
        Command::Cluster(a) => cluster::run(jc, a).await,
    }
}

#[derive(clap::Args, Debug, Clone)]
pub(crate) struct WindowCli {
    /// Window size (e.g. 5m, 1h).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    window: chrono::Duration,
    /// Slide for sliding windows (a divisor of --window); tumbling when absent.
    #[arg(long, value_parser = parse_duration)]
    slide: Option<chrono::Duration>,
}

/// What `window_terms` keeps per window (aggregate, run, stream).
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct TermCli {
    /// Rows of window_terms per window: its top terms by lift (0: write no window_terms).
    #[arg(long, default_value_t = sentiflow_jobs::window::DEFAULT_TOP_TERMS)]
    top_terms: usize,
    /// Least tweets of a window containing a term for it to be ranked.
    #[arg(long, default_value_t = sentiflow_jobs::window::DEFAULT_MIN_TERM_COUNT)]
    min_term_count: usize,
    /// What a term's lift is measured against: `all` (every row the run reads; the default of batch
    /// jobs) or a trailing duration such as 24h (the rows in [window end - 24h, window end); the
    /// stream's default, since a stream knows only the past).
    #[arg(long, value_parser = parse_background)]
    background: Option<sentiflow_jobs::window::Background>,
}

impl TermCli {
    /// The term spec, with `default` as the background when `--background` is absent.
    pub(crate) fn spec(&self, default: sentiflow_jobs::window::Background) -> sentiflow_jobs::window::TermSpec {
        sentiflow_jobs::window::TermSpec {
            top_k: self.top_terms,
            min_count: self.min_term_count,
            background: self.background.unwrap_or(default),
        }
    }
}

/// A name or text from the data as the terminal may show it: control
/// characters (ESC, BEL, CR…) as `\u{1b}`, so data cannot drive the terminal.
/// Newlines and tabs stay unless `one_line`.
pub(crate) fn printable(s: &str, one_line: bool) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && (one_line || (c != '\n' && c != '\t')) {
                format!("\\u{{{:x}}}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn parse_background(s: &str) -> Result<sentiflow_jobs::window::Background, String> {
    use sentiflow_jobs::window::Background;
    match s {
        "all" | "whole" => Ok(Background::Whole),
        d => parse_duration(d).map(Background::Trailing),
    }
}

/// A location argument with its time templates expanded (see timeexpr); a
/// local path that exists as written (a file named `{b}.json`) is that path.
pub(crate) fn expand_location(s: &str) -> Result<String, String> {
    if s.contains('{') && sentiflow_jobs::io::store::is_existing_local(s) {
        return Ok(s.to_string());
    }
    sentiflow_jobs::timeexpr::expand(s).map_err(|e| e.to_string())
}

/// RFC 3339 or a plain date (midnight UTC), after expanding time templates
/// (`{now-1h}`, `{${BACKFILL_START}+${AWS_BATCH_JOB_ARRAY_INDEX}d}`: see timeexpr).
pub(crate) fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    let s = &sentiflow_jobs::timeexpr::expand(s).map_err(|e| e.to_string())?;
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("{s:?} is not a time: use RFC 3339 (2025-02-10T13:00:00Z) or a date (2025-02-10)"))
}

/// Turns true on SIGTERM or SIGINT (Ctrl-C): long-running jobs finish their
/// current work, checkpoint and exit 0.
pub(crate) fn stop_signal() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await
                }
            }
        };
        tokio::select! {
            _ = term => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        eprintln!("stopping: finishing the current files and checkpointing");
        let _ = tx.send(true);
    });
    rx
}

pub(crate) fn secs(d: std::time::Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times() {
        assert_eq!(parse_duration("5m").unwrap(), chrono::Duration::minutes(5));
        assert_eq!(parse_duration("1h30m").unwrap(), chrono::Duration::minutes(90));
        assert_eq!(parse_duration("250ms").unwrap(), chrono::Duration::milliseconds(250));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5x").is_err());
        assert_eq!(parse_time("2025-02-10").unwrap().to_rfc3339(), "2025-02-10T00:00:00+00:00");
        assert!(parse_time("feb 10").is_err());
    }
}

/// `/metrics` and `/healthz` of a long-running role (`stream`, `ingest`, `cluster scheduler|executor`).
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ServeMetricsCli {
    /// Serve /metrics (OpenMetrics text, for Prometheus) and /healthz on HOST:PORT; a bare PORT binds
    /// 127.0.0.1 (0.0.0.0:PORT for a scraper on another host). Off by default.
    #[arg(long, env = "SENTIFLOW_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// /healthz answers 503 once no round of the role's loop (a micro-batch, or a lease renewal with
    /// nothing to read) completed for this long. Default: 10 triggers, at least 60s.
    #[arg(long, value_parser = parse_duration)]
    pub stall_after: Option<chrono::Duration>,
}

impl ServeMetricsCli {
    /// Starts the server when asked for.
    pub async fn start(&self) -> Result<()> {
        if let Some(a) = &self.metrics_addr {
            sentiflow_jobs::metrics::serve(sentiflow_jobs::metrics::parse_addr(a)?).await?;
        }
        Ok(())
    }

    /// The stall limit for a loop that runs every `trigger`.
    pub fn stall_after(&self, trigger: std::time::Duration) -> std::time::Duration {
        match self.stall_after.and_then(|d| d.to_std().ok()) {
            Some(d) => d,
            None => (trigger * 10).max(std::time::Duration::from_secs(60)),
        }
    }
}

/// `--metrics emf` on a batch job: its summary's figures as one CloudWatch EMF line on stdout.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MetricsFormat {
    /// CloudWatch Embedded Metric Format (ECS/Batch log groups turn it into metrics, no agent).
    Emf,
}

/// Prints the EMF line of a batch job's figures (namespace `sentiflow`, dimension `job`).
pub(crate) fn print_emf(format: Option<MetricsFormat>, job: &str, figures: &[(&str, f64, &str)]) {
    if format == Some(MetricsFormat::Emf) {
        println!("{}", sentiflow_jobs::metrics::emf_line(&sentiflow_jobs::metrics::emf_namespace(), job, figures));
    }
}
