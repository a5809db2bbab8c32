//! `sentiflow ingest`: a Kinesis stream into raw Parquet, exactly once.

use super::expand_location;
use super::parse_time;
use super::secs;
use super::stop_signal;
use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::ValueEnum;
use sentiflow_jobs::JobContext;
use sentiflow_jobs::io::kinesis::StartPosition;
use sentiflow_jobs::io::read::DEFAULT_MAX_TEXT_BYTES;
use sentiflow_jobs::io::retry::RetryPolicy;
use sentiflow_jobs::job::ingest;
use sentiflow_jobs::job::ingest::IngestArgs;
use sentiflow_jobs::timeexpr::parse_duration;

#[derive(clap::Args, Debug)]
pub(crate) struct IngestCli {
    /// The stream: kinesis://STREAM.
    #[arg(long)]
    from: String,
    /// The raw table's directory, local or s3://bucket/prefix/raw/ (checkpoints go to its
    /// _checkpoints/, bad records to its _rejected/).
    #[arg(long, value_parser = expand_location)]
    to: String,
    /// Where shards without a checkpoint start.
    #[arg(long, value_enum, default_value_t = StartCli::TrimHorizon)]
    start: StartCli,
    /// With --start at-timestamp: the time (RFC 3339 or a date).
    #[arg(long, value_parser = parse_time)]
    start_time: Option<DateTime<Utc>>,
    /// Records per file (per shard) at most.
    #[arg(long, default_value_t = 100_000)]
    max_rows: usize,
    /// A file is cut once its oldest record was read this many seconds ago.
    #[arg(long, default_value_t = 60.0)]
    max_seconds: f64,
    /// Exit once every shard is read to its tip (for scheduled runs); otherwise run until
    /// SIGTERM/SIGINT (the current files are finished and checkpointed first).
    #[arg(long)]
    until_caught_up: bool,
    /// This worker's id, unique among concurrent workers (default: host-pid-random). A restarted
    /// worker with the same id takes its shards back without waiting for the lease to expire.
    #[arg(long, env = "SENTIFLOW_WORKER_ID")]
    worker_id: Option<String>,
    /// Shard lease length; a crashed worker's shards are taken over after this.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    lease: chrono::Duration,
    /// How often the shard list is refreshed (resharding, other workers' shards).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    list_every: chrono::Duration,
    /// Wait between reads of a shard that is at its tip.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    idle_poll: chrono::Duration,
    /// Retries of a throttled or failed call (full-jitter exponential backoff).
    #[arg(long, default_value_t = 10)]
    max_retries: u32,
    /// Longer texts are rejected to _rejected/.
    #[arg(long, default_value_t = DEFAULT_MAX_TEXT_BYTES)]
    max_text_bytes: usize,
    #[command(flatten)]
    serve: super::ServeMetricsCli,
    /// With --until-caught-up: the summary's figures as a CloudWatch EMF line too.
    #[arg(long, value_enum)]
    metrics: Option<super::MetricsFormat>,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub(crate) enum StartCli {
    TrimHorizon,
    Latest,
    AtTimestamp,
}

pub(crate) async fn run(jc: &JobContext, i: IngestCli) -> Result<()> {
    let start = match (i.start, i.start_time) {
        (StartCli::TrimHorizon, None) => StartPosition::TrimHorizon,
        (StartCli::Latest, None) => StartPosition::Latest,
        (StartCli::AtTimestamp, Some(t)) => StartPosition::AtTimestamp(t.timestamp_millis()),
        (StartCli::AtTimestamp, None) => anyhow::bail!("--start at-timestamp needs --start-time"),
        (_, Some(_)) => anyhow::bail!("--start-time goes with --start at-timestamp"),
    };
    let std = |d: chrono::Duration| d.to_std().unwrap_or_default();
    i.serve.start().await?;
    let args = IngestArgs {
        from: i.from,
        to: i.to,
        start,
        max_rows: i.max_rows,
        max_seconds: i.max_seconds,
        until_caught_up: i.until_caught_up,
        worker_id: i.worker_id,
        lease: std(i.lease),
        idle_poll: std(i.idle_poll),
        list_every: std(i.list_every),
        max_text_bytes: i.max_text_bytes,
        retry: RetryPolicy { max_retries: i.max_retries, ..Default::default() },
        stall_after: i.serve.stall_after(std(i.idle_poll).max(std(i.list_every))),
        ..Default::default()
    };
    let r = ingest::run(&jc.stores, args, stop_signal()).await?;
    println!(
        "ingested {} records ({} rows, {} rejected, {} bytes) from kinesis://{} into {} files, {} commits, in {}",
        r.records,
        r.rows,
        r.rejected,
        r.bytes,
        r.stream,
        r.files,
        r.commits,
        secs(r.elapsed)
    );
    println!(
        "shards: {} read, {} closed and finished, {} leased by other workers; worker {}; {} requests, {} retries, {} throttled, {} replays, {} leases lost",
        r.shards_read,
        r.shards_closed,
        r.shards_leased_elsewhere,
        r.worker_id,
        r.requests,
        r.retries,
        r.throttled,
        r.replays,
        r.leases_lost
    );
    super::print_emf(
        i.metrics,
        "ingest",
        &[
            ("RecordsRead", r.records as f64, "Count"),
            ("RowsWritten", r.rows as f64, "Count"),
            ("RowsRejected", r.rejected as f64, "Count"),
            ("Bytes", r.bytes as f64, "Bytes"),
            ("Files", r.files as f64, "Count"),
            ("Commits", r.commits as f64, "Count"),
            ("Replays", r.replays as f64, "Count"),
            ("LeasesLost", r.leases_lost as f64, "Count"),
            ("Seconds", r.elapsed.as_secs_f64(), "Seconds"),
        ],
    );
    if !r.left_to_live_workers.is_empty() {
        println!(
            "not caught up: shard(s) {} are read by other live workers (they kept renewing their leases)",
            r.left_to_live_workers.join(", ")
        );
    }
    Ok(())
}
