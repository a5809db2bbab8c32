//! The `sentiflow` command line: parses arguments and dispatches to the jobs.

mod cli_scorer;
mod cli_sql;

use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::{DateTime, NaiveDate, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use sentiflow_jobs::io::kinesis::StartPosition;
use sentiflow_jobs::io::read::{DEFAULT_MAX_TEXT_BYTES, Format};
use sentiflow_jobs::io::retry::RetryPolicy;
use sentiflow_jobs::io::store::Location;
use sentiflow_jobs::job::aggregate::{self, AggregateArgs, WindowSpec, fmt_duration};
use sentiflow_jobs::job::bench::{self, BenchTask};
use sentiflow_jobs::job::generate::{self, GenerateArgs, OutputFormat};
use sentiflow_jobs::job::ingest::{self, IngestArgs};
use sentiflow_jobs::job::pipeline::{self, RunArgs};
use sentiflow_jobs::job::report::{self, ReportArgs};
use sentiflow_jobs::job::score::{self, ScoreArgs};
use sentiflow_jobs::llm::cache::default_dir;
use sentiflow_jobs::schema::Table;
use sentiflow_jobs::{ContextOptions, JobContext};

use crate::cli_scorer::ScorerArgs;

const DEFAULT_OUT: &str = "./sentiflow-out";

#[derive(Parser, Debug)]
#[command(name = "sentiflow", version, about = "Sentiment dataflow jobs on Apache DataFusion")]
struct Cli {
    /// Query worker threads (0 = all cores).
    #[arg(long, global = true, default_value_t = 0, env = "SENTIFLOW_THREADS")]
    threads: usize,
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Generate synthetic tweets (seeded, deterministic) to files or S3.
    Generate(GenerateCli),
    /// Score raw tweets (NDJSON/CSV/Parquet, local or s3://) into partitioned Parquet.
    Score(ScoreCli),
    /// Aggregate scored tweets over event-time windows.
    Aggregate(AggregateCli),
    /// Read a Kinesis data stream into raw Parquet (dt=/hour=), exactly once, with checkpoints.
    Ingest(IngestCli),
    /// Micro-batch streaming: Kinesis → scored rows → event-time windows with a watermark → alerts.
    Stream(StreamCli),
    /// Merge a table's small files (one per micro-batch) into files of about --target-mb.
    Compact(CompactCli),
    /// Generate, score and aggregate the embedded sample data set, then print a summary.
    Run(RunCli),
    /// Write an HTML report (charts, extremes, alerts) of a data root, optionally a PNG chart.
    Report(ReportCli),
    /// Ad-hoc SQL over the tables of a data root (REPL, -c or -f).
    Sql(cli_sql::SqlCli),
    /// A scorer's accuracy, macro-F1, confusion matrix and throughput on labelled data.
    Eval(cli_scorer::EvalCli),
    /// How two scorers agree on the same tweets: sign and label agreement, Spearman, accuracy.
    Compare(CompareCli),
    /// The peer benchmark contract: --input DIR --out DIR --task scan|window.
    Bench(BenchCli),
    /// Print the table schemas for Glue/Terraform (--glue-json) or Athena (--athena-ddl).
    Schema(SchemaCli),
}

#[derive(clap::Args, Debug)]
#[group(required = true, multiple = false)]
struct SchemaCli {
    /// The JSON infra/terraform/glue_schema.json holds.
    #[arg(long)]
    glue_json: bool,
    /// The CREATE EXTERNAL TABLE statements of sql/athena/ddl.sql.
    #[arg(long)]
    athena_ddl: bool,
}

#[derive(clap::Args, Debug)]
struct GenerateCli {
    /// Number of tweets.
    #[arg(long, default_value_t = 5_000)]
    rows: u64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// First event time (RFC 3339 or YYYY-MM-DD, UTC).
    #[arg(long, default_value = "2025-02-10T00:00:00Z", value_parser = parse_time)]
    start: DateTime<Utc>,
    /// Event times spread over this span (e.g. 24h, 7d, 90m).
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    span: chrono::Duration,
    /// Comma-separated source names.
    #[arg(long, value_delimiter = ',', default_values_t = generate::DEFAULT_SOURCES.iter().map(|s| s.to_string()).collect::<Vec<_>>())]
    sources: Vec<String>,
    #[arg(long, default_value = "bitcoin")]
    topic: String,
    /// Output directory or s3://bucket/prefix, or a stream: kinesis://STREAM (PutRecords,
    /// partition key = tweet id) or firehose://DELIVERY_STREAM (PutRecordBatch, NDJSON).
    #[arg(long, default_value = "./sentiflow-out/raw", value_parser = expand_location)]
    to: String,
    /// Streams: records per second (default: as fast as the stream takes them).
    #[arg(long)]
    rate: Option<f64>,
    /// Streams: retries of a throttled or failed put (full-jitter exponential backoff).
    #[arg(long, default_value_t = 10)]
    max_retries: u32,
    #[arg(long, value_enum, default_value_t = GenFormat::Ndjson)]
    format: GenFormat,
    /// Gzip NDJSON files (as Firehose's GZIP compression does).
    #[arg(long)]
    gzip: bool,
    #[arg(long, default_value_t = 100_000)]
    max_rows_per_file: usize,
    /// Ask a chat model (--llm-base-url, --llm-model) for the posts instead of the offline
    /// generator; event times, sources and users still come from the seed.
    #[arg(long)]
    llm: bool,
    #[command(flatten)]
    llm_args: cli_scorer::LlmArgs,
}

#[derive(clap::Args, Debug)]
struct StreamCli {
    /// The stream: kinesis://STREAM.
    #[arg(long)]
    from: String,
    /// Data root (local or s3://): raw/, scored/, late/, windows/, windows_by_source/, alerts/.
    #[arg(long, value_parser = expand_location)]
    to: String,
    #[command(flatten)]
    window: WindowCli,
    /// Watermark delay: windows are emitted once max event time − this passes their end.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    watermark: chrono::Duration,
    /// Micro-batch interval.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    trigger: chrono::Duration,
    /// Exit once every shard is read to its tip (emitting only the windows the watermark closed).
    #[arg(long)]
    until_caught_up: bool,
    /// Records read per shard per micro-batch at most.
    #[arg(long, default_value_t = 10_000)]
    max_records_per_shard: usize,
    /// Alert rules (TOML; see README).
    #[arg(long)]
    alerts: Option<String>,
    /// Slack-compatible webhook for fired alerts.
    #[arg(long, env = "SENTIFLOW_ALERT_WEBHOOK")]
    webhook: Option<String>,
    #[arg(long, default_value_t = DEFAULT_MAX_TEXT_BYTES)]
    max_text_bytes: usize,
    #[command(flatten)]
    scorer: ScorerArgs,
}

#[derive(clap::Args, Debug)]
struct CompactCli {
    /// A table directory, local or s3:// (e.g. OUT/scored, OUT/windows).
    #[arg(long, value_parser = expand_location)]
    table: String,
    /// Output files of about this many MiB of input Parquet.
    #[arg(long, default_value_t = 128)]
    target_mb: u64,
    /// Partitions with fewer files are left alone.
    #[arg(long, default_value_t = 2)]
    min_files: usize,
}

#[derive(clap::Args, Debug)]
struct CompareCli {
    /// A data root with scored/ (e.g. scored by --scorer onnx).
    #[arg(long, value_parser = expand_location)]
    a: String,
    /// Another data root with scored/ of the same tweets (e.g. --scorer llm).
    #[arg(long, value_parser = expand_location)]
    b: String,
}

#[derive(clap::Args, Debug)]
struct IngestCli {
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
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum StartCli {
    TrimHorizon,
    Latest,
    AtTimestamp,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum GenFormat {
    /// Newline-delimited JSON in Firehose's YYYY/MM/DD/HH/ layout.
    Ndjson,
    /// Parquet partitioned dt=/hour=.
    Parquet,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum InFormat {
    Ndjson,
    Csv,
    Parquet,
}

#[derive(clap::Args, Debug)]
struct ScoreCli {
    /// Raw tweets: a file, a directory or a glob, local or s3://; time templates like
    /// dt={now-1h|%Y-%m-%d} are expanded.
    #[arg(long, value_parser = expand_location)]
    input: String,
    /// Data root: writes scored/ and _rejected/ below it.
    #[arg(long, default_value = DEFAULT_OUT, value_parser = expand_location)]
    out: String,
    /// Input format (default: from each file's name; no extension = NDJSON).
    #[arg(long, value_enum)]
    format: Option<InFormat>,
    /// Longer texts are rejected to _rejected/ instead of scored.
    #[arg(long, default_value_t = DEFAULT_MAX_TEXT_BYTES)]
    max_text_bytes: usize,
    #[command(flatten)]
    scorer: ScorerArgs,
}

#[derive(clap::Args, Debug, Clone)]
struct WindowCli {
    /// Window size (e.g. 5m, 1h).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    window: chrono::Duration,
    /// Slide for sliding windows (a divisor of --window); tumbling when absent.
    #[arg(long, value_parser = parse_duration)]
    slide: Option<chrono::Duration>,
}

#[derive(clap::Args, Debug)]
struct AggregateCli {
    /// Scored tweets (default: <out>/scored).
    #[arg(long, value_parser = expand_location)]
    input: Option<String>,
    /// Data root: writes windows/ and windows_by_source/ below it.
    #[arg(long, default_value = DEFAULT_OUT, value_parser = expand_location)]
    out: String,
    #[command(flatten)]
    window: WindowCli,
    /// Recompute windows from this time (widened to the UTC day); default: everything.
    #[arg(long, value_parser = parse_time)]
    from: Option<DateTime<Utc>>,
    /// Recompute windows before this time (widened to the UTC day).
    #[arg(long, value_parser = parse_time)]
    to: Option<DateTime<Utc>>,
}

#[derive(clap::Args, Debug)]
struct RunCli {
    /// Output root (local or s3://).
    #[arg(long, default_value = DEFAULT_OUT)]
    out: String,
    /// Score these raw tweets instead of generating the sample data set.
    #[arg(long)]
    input: Option<String>,
    #[command(flatten)]
    window: WindowCli,
    #[command(flatten)]
    scorer: ScorerArgs,
}

#[derive(clap::Args, Debug)]
struct ReportCli {
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

#[derive(clap::Args, Debug)]
struct BenchCli {
    #[arg(long)]
    input: String,
    #[arg(long)]
    out: String,
    #[arg(long, value_enum)]
    task: BenchTaskCli,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum BenchTaskCli {
    Scan,
    Window,
}

use sentiflow_jobs::timeexpr::parse_duration;

/// A location argument with its time templates expanded (see timeexpr).
fn expand_location(s: &str) -> Result<String, String> {
    sentiflow_jobs::timeexpr::expand(s).map_err(|e| e.to_string())
}

/// RFC 3339 or a plain date (midnight UTC), after expanding time templates
/// (`{now-1h}`, `{${BACKFILL_START}+${AWS_BATCH_JOB_ARRAY_INDEX}d}`: see timeexpr).
fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
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

fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "warn,sentiflow=info,sentiflow_jobs=info,sentiflow_udfs=info",
        _ => "info,sentiflow=debug,sentiflow_jobs=debug,sentiflow_udfs=debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}

/// Turns true on SIGTERM or SIGINT (Ctrl-C): long-running jobs finish their
/// current work, checkpoint and exit 0.
fn stop_signal() -> tokio::sync::watch::Receiver<bool> {
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

fn secs(d: std::time::Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

async fn dispatch(cli: Cli) -> Result<()> {
    let jc = JobContext::new(ContextOptions { threads: cli.threads }).context("cannot start the query engine")?;
    match cli.cmd {
        Cmd::Generate(g) => {
            let llm = if g.llm { Some(g.llm_args.client().await?) } else { None };
            let args = GenerateArgs {
                rows: g.rows,
                seed: g.seed,
                start: g.start,
                span: g.span,
                sources: g.sources,
                topic: g.topic,
                to: g.to,
                format: match g.format {
                    GenFormat::Ndjson => OutputFormat::Ndjson,
                    GenFormat::Parquet => OutputFormat::Parquet,
                },
                gzip: g.gzip,
                max_rows_per_file: g.max_rows_per_file.max(1),
                rate: g.rate,
                retry: RetryPolicy { max_retries: g.max_retries, ..Default::default() },
            };
            let r = match &llm {
                None => generate::run(&jc.stores, args).await?,
                Some(client) => {
                    let (posts, dropped) =
                        sentiflow_jobs::job::generate::llm::posts(client, &args.topic, args.rows as usize).await?;
                    let tweets = sentiflow_jobs::job::generate::llm::as_tweets(posts, &args);
                    let r = generate::write_tweets(&jc.stores, args, tweets.into_iter()).await?;
                    let m = client.summary();
                    println!(
                        "llm: {} requests, {} retries, {} near-duplicates dropped, {} prompt + {} completion tokens, estimated cost ${:.4}",
                        m.requests, m.retries, dropped, m.prompt_tokens, m.completion_tokens, m.cost_usd
                    );
                    r
                }
            };
            let truth = if r.unlabelled > 0 {
                format!("{} written by the LLM, no ground truth", r.unlabelled)
            } else {
                format!("{} negative, {} neutral, {} positive", r.negative, r.neutral, r.positive)
            };
            match &r.producer {
                None => println!(
                    "generated {} tweets ({truth}) in {} files, {} bytes, to {}",
                    r.rows, r.files, r.bytes, r.to
                ),
                Some(p) => println!(
                    "generated {} tweets ({truth}), {} bytes, to {}: {} requests, {} retries, {} throttled, {} failed entries retried",
                    r.rows, r.bytes, r.to, p.requests, p.retries, p.throttled, p.failed_entries
                ),
            }
        }
        Cmd::Ingest(i) => {
            let start = match (i.start, i.start_time) {
                (StartCli::TrimHorizon, None) => StartPosition::TrimHorizon,
                (StartCli::Latest, None) => StartPosition::Latest,
                (StartCli::AtTimestamp, Some(t)) => StartPosition::AtTimestamp(t.timestamp_millis()),
                (StartCli::AtTimestamp, None) => anyhow::bail!("--start at-timestamp needs --start-time"),
                (_, Some(_)) => anyhow::bail!("--start-time goes with --start at-timestamp"),
            };
            let std = |d: chrono::Duration| d.to_std().unwrap_or_default();
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
        }
        Cmd::Score(s) => {
            let out = Location::parse(&s.out)?;
            let cache = default_dir(&out);
            let r = score::run(
                &jc,
                s.scorer.build(&jc, Some(cache)).await?,
                ScoreArgs {
                    input: s.input,
                    output: out.child(Table::Scored.dir()).display,
                    rejected: out.child(Table::Rejected.dir()).display,
                    format: s.format.map(|f| match f {
                        InFormat::Ndjson => Format::Ndjson,
                        InFormat::Csv => Format::Csv,
                        InFormat::Parquet => Format::Parquet,
                    }),
                    max_text_bytes: s.max_text_bytes,
                },
            )
            .await?;
            print_score(&r);
        }
        Cmd::Aggregate(a) => {
            let out = Location::parse(&a.out)?;
            let input = a.input.unwrap_or_else(|| out.child(Table::Scored.dir()).display);
            let spec = WindowSpec::new(a.window.window, a.window.slide)?;
            let r = aggregate::run(&jc, AggregateArgs { input, out: a.out, spec, from: a.from, to: a.to }).await?;
            println!(
                "{} windows and {} (window, source) rows of {} sliding every {} in {} partitions{}",
                r.windows,
                r.windows_by_source,
                fmt_duration(spec.window),
                fmt_duration(spec.slide),
                r.partitions.len(),
                match r.replaced {
                    Some((f, t)) => format!(", replaced days {} .. {}", f.format("%Y-%m-%d"), t.format("%Y-%m-%d")),
                    None => ", whole table replaced".into(),
                }
            );
        }
        Cmd::Run(r) => {
            let spec = WindowSpec::new(r.window.window, r.window.slide)?;
            let cache = default_dir(&Location::parse(&r.out)?);
            let rep = pipeline::run(
                &jc,
                r.scorer.build(&jc, Some(cache)).await?,
                RunArgs { out: r.out, input: r.input, generate: GenerateArgs::default(), spec },
            )
            .await?;
            print_run(&rep, spec);
        }
        Cmd::Report(r) => {
            let data = Location::parse(&r.data)?;
            let out = r.out.unwrap_or_else(|| data.child("report.html").display);
            let rep = report::run(&jc, ReportArgs { data: r.data, from: r.from, to: r.to, out, png: r.png }).await?;
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
        }
        Cmd::Sql(s) => {
            jc.select_scorer(&s.scorer.build(&jc, None).await?);
            cli_sql::run(&jc, s).await?
        }
        Cmd::Eval(e) => cli_scorer::eval(&jc, e).await?,
        Cmd::Stream(st) => {
            let spec = WindowSpec::new(st.window.window, st.window.slide)?;
            let rules = st.alerts.as_deref().map(sentiflow_jobs::job::alerts::Rules::load).transpose()?;
            let cache = default_dir(&Location::parse(&st.to)?);
            let scorer = st.scorer.build(&jc, Some(cache)).await?;
            let args = sentiflow_jobs::job::stream::StreamArgs {
                from: st.from,
                to: st.to,
                spec,
                watermark: st.watermark,
                trigger: st.trigger.to_std().unwrap_or(std::time::Duration::from_secs(5)),
                until_caught_up: st.until_caught_up,
                max_records_per_shard: st.max_records_per_shard.max(1),
                rules,
                webhook: st.webhook,
                max_text_bytes: st.max_text_bytes,
                retry: RetryPolicy::default(),
            };
            let r = sentiflow_jobs::job::stream::run(&jc, scorer, args, stop_signal()).await?;
            let wm = r
                .watermark_us
                .and_then(DateTime::<Utc>::from_timestamp_micros)
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| "none".into());
            println!(
                "streamed {} micro-batches ({} replayed): {} records, {} rows, {} rejected, {} late rows; {} windows and {} by source emitted, {} alerts ({} delivered to the webhook); {} open windows, watermark {wm}, in {}",
                r.batches,
                r.replays,
                r.records,
                r.rows,
                r.rejected,
                r.late_rows,
                r.windows,
                r.windows_by_source,
                r.alerts,
                r.webhook_delivered,
                r.open_windows,
                secs(r.elapsed)
            );
            if let Some([p50, p95, p99, max]) = r.latency_ms {
                println!(
                    "latency (arrival on the stream → micro-batch durable): p50 {p50} ms, p95 {p95} ms, p99 {p99} ms, max {max} ms"
                );
            }
        }
        Cmd::Compact(c) => {
            let r = sentiflow_jobs::job::compact::run(
                &jc.stores,
                sentiflow_jobs::job::compact::CompactArgs {
                    table: c.table.clone(),
                    target_bytes: c.target_mb.max(1) << 20,
                    min_files: c.min_files,
                },
            )
            .await?;
            println!(
                "compacted {}: {} partitions, {} files ({} bytes, {} rows) into {} files{}",
                c.table,
                r.partitions,
                r.files_in,
                r.bytes_in,
                r.rows,
                r.files_out,
                if r.recovered > 0 {
                    format!("; finished {} interrupted compactions", r.recovered)
                } else {
                    String::new()
                }
            );
        }
        Cmd::Compare(c) => {
            let r =
                sentiflow_jobs::job::compare::run(&jc, sentiflow_jobs::job::compare::CompareArgs { a: c.a, b: c.b })
                    .await?;
            println!("a                {}", r.a_scorer);
            println!("b                {}", r.b_scorer);
            println!("tweets           {} in both, {} scored by both", r.joined, r.both_scored);
            println!("sign agreement   {:.4} ({} tweets both scored non-zero)", r.sign_agreement, r.sign_pairs);
            println!("label agreement  {:.4}", r.label_agreement);
            println!("spearman         {:.4}", r.spearman);
            if let Some((a, b, n)) = r.truth {
                println!("truth (pos/neg)  a {a:.4}, b {b:.4} on {n} tweets labelled positive or negative");
            }
        }
        Cmd::Schema(s) => {
            if s.glue_json {
                println!("{}", serde_json::to_string_pretty(&sentiflow_jobs::schema::glue_json())?);
            } else {
                print!("{}", sentiflow_jobs::schema::athena_ddl());
            }
        }
        Cmd::Bench(b) => {
            let task = match b.task {
                BenchTaskCli::Scan => BenchTask::Scan,
                BenchTaskCli::Window => BenchTask::Window,
            };
            let r = bench::run(&jc, &b.input, &b.out, task).await?;
            let mut j = serde_json::json!({
                "engine": "sentiflow",
                "version": env!("CARGO_PKG_VERSION"),
                "task": r.task,
                "query_s": r.query_s,
            });
            if let Some(c) = r.count {
                j["count"] = c.into();
            }
            if let Some(a) = r.avg {
                j["avg"] = a.into();
            }
            if let Some(w) = r.windows_rows {
                j["windows_rows"] = w.into();
            }
            if let Some(w) = r.by_source_rows {
                j["by_source_rows"] = w.into();
            }
            println!("RESULT {j}");
        }
    }
    Ok(())
}

fn print_score(r: &score::ScoreReport) {
    println!("scorer            {}", r.scorer);
    println!(
        "input files       {}{}",
        r.files,
        if r.empty_files.is_empty() { String::new() } else { format!(" ({} empty)", r.empty_files.len()) }
    );
    println!("records read      {}", r.rows_read);
    println!("scored            {}", r.rows_scored);
    println!(
        "unscorable        {} (NULL score, reason in score_error; {} in a language the model does not read)",
        r.rows_unscorable, r.rows_other_language
    );
    println!("rejected          {} (see _rejected/job=score/)", r.rows_rejected);
    if r.files_rejected > 0 {
        println!(
            "files rejected    {} (unreadable, not a regular file, corrupt or lacking a column; see _rejected/job=score/)",
            r.files_rejected
        );
    }
    if r.output_files_skipped > 0 {
        println!("not input         {} files of the output's own tables below --input", r.output_files_skipped);
    }
    if r.stale_files_removed > 0 {
        println!("stale removed     {} files of earlier runs whose rows moved or were rejected", r.stale_files_removed);
    }
    if !r.extra_fields.is_empty() {
        println!("ignored fields    {}", r.extra_fields.iter().cloned().collect::<Vec<_>>().join(", "));
    }
    println!("partitions        {}  files {}", r.partitions.len(), r.output_files);
    if let Some(l) = &r.llm {
        println!(
            "llm               {} requests, {} cache hits, {} deduplicated, {} retries ({} throttled), {} failures",
            l.requests, l.cache_hits, l.deduplicated, l.retries, l.throttled, l.failures
        );
        println!(
            "llm tokens        {} prompt + {} completion, estimated cost ${:.4}",
            l.prompt_tokens, l.completion_tokens, l.cost_usd
        );
    }
}

fn print_run(r: &pipeline::RunReport, spec: WindowSpec) {
    let (s, st) = &r.score;
    let (a, at) = &r.aggregate;
    println!("sentiflow run → {}   scorer {}", r.out, s.scorer);
    println!();
    println!("{:<10} {:<22} {:>9} {:>9}  {:>7}  detail", "step", "output", "rows", "files", "time");
    if let Some((g, gt)) = &r.generate {
        println!(
            "{:<10} {:<22} {:>9} {:>9}  {:>7}  {} neg / {} neu / {} pos (ground truth)",
            "generate",
            "raw/",
            g.rows,
            g.files,
            secs(*gt),
            g.negative,
            g.neutral,
            g.positive
        );
    }
    println!(
        "{:<10} {:<22} {:>9} {:>9}  {:>7}  {} unscorable ({} other language), {} partitions",
        "score",
        "scored/",
        s.rows_scored + s.rows_unscorable,
        s.output_files,
        secs(*st),
        s.rows_unscorable,
        s.rows_other_language,
        s.partitions.len()
    );
    println!(
        "{:<10} {:<22} {:>9} {:>9}  {:>7}  records that failed validation",
        "", "_rejected/", s.rows_rejected, "", ""
    );
    println!(
        "{:<10} {:<22} {:>9} {:>9}  {:>7}  {} windows, slide {}",
        "aggregate",
        "windows/",
        a.windows,
        "",
        secs(*at),
        fmt_duration(spec.window),
        fmt_duration(spec.slide)
    );
    println!("{:<10} {:<22} {:>9}", "", "windows_by_source/", a.windows_by_source);
    let (rep, rt) = &r.report;
    println!(
        "{:<10} {:<22} {:>9} {:>9}  {:>7}  {} KiB, open it in a browser",
        "report",
        "report.html",
        "",
        1,
        secs(*rt),
        rep.bytes / 1024
    );
    println!();
    println!("report:    {}", rep.out);
    println!("query it:  sentiflow sql --data {} -c \"SELECT * FROM windows ORDER BY window_start LIMIT 10\"", r.out);
}

/// Stack of the thread that plans queries: DataFusion's planner and optimizer
/// recurse over the expression tree, and a WHERE with a few hundred `OR`s
/// overflows the default 8 MiB in a debug build. Pages are only committed
/// when touched, so a large reservation costs nothing for ordinary queries.
const PLANNER_STACK_BYTES: usize = 512 << 20;
/// Stack of the runtime's worker threads, which evaluate the expressions.
const WORKER_STACK_BYTES: usize = 64 << 20;

fn main() -> ExitCode {
    // `sentiflow eval … | head`: a closed pipe ends the process quietly, as
    // for other command-line tools, instead of a panic in println!
    // SAFETY: called before any thread starts; SIG_DFL is a valid disposition.
    #[allow(unsafe_code)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let main = std::thread::Builder::new().name("sentiflow".into()).stack_size(PLANNER_STACK_BYTES).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .thread_stack_size(WORKER_STACK_BYTES)
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: cannot start the async runtime: {e}");
                return ExitCode::from(2);
            }
        };
        match runtime.block_on(dispatch(cli)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {}", one_line(&e));
                ExitCode::from(2)
            }
        }
    });
    match main.map(|h| h.join()) {
        Ok(Ok(code)) => code,
        Ok(Err(_)) => ExitCode::from(101), // a panic, already printed
        Err(e) => {
            eprintln!("error: cannot start the main thread: {e}");
            ExitCode::from(2)
        }
    }
}

/// The error chain as `{:#}` prints it, on one line: whitespace collapsed, and
/// a cause skipped when its parent's message already quotes it (DataFusion
/// and object_store errors embed their sources).
pub(crate) fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let msg = cause.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
        if parts.last().is_some_and(|p| p.contains(&msg)) {
            continue;
        }
        parts.push(msg);
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_print_on_one_line_without_repeats() {
        let inner = std::io::Error::other("disk\nfull");
        let e = anyhow::Error::new(inner).context("write x failed: disk full").context("job failed");
        assert_eq!(one_line(&e), "job failed: write x failed: disk full");
    }

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
