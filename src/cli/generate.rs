//! `sentiflow generate`: synthetic (or LLM-written) tweets to files, S3 or a stream.

use super::expand_location;
use super::parse_time;
use super::scorer::LlmArgs;
use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::ValueEnum;
use sentiflow_jobs::JobContext;
use sentiflow_jobs::io::retry::RetryPolicy;
use sentiflow_jobs::job::generate;
use sentiflow_jobs::job::generate::GenerateArgs;
use sentiflow_jobs::job::generate::OutputFormat;
use sentiflow_jobs::timeexpr::parse_duration;

#[derive(clap::Args, Debug)]
pub(crate) struct GenerateCli {
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
    llm_args: LlmArgs,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub(crate) enum GenFormat {
    /// Newline-delimited JSON in Firehose's YYYY/MM/DD/HH/ layout.
    Ndjson,
    /// Parquet partitioned dt=/hour=.
    Parquet,
}

pub(crate) async fn run(jc: &JobContext, g: GenerateCli) -> Result<()> {
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
        None => println!("generated {} tweets ({truth}) in {} files, {} bytes, to {}", r.rows, r.files, r.bytes, r.to),
        Some(p) => println!(
            "generated {} tweets ({truth}), {} bytes, to {}: {} requests, {} retries, {} throttled, {} failed entries retried",
            r.rows, r.bytes, r.to, p.requests, p.retries, p.throttled, p.failed_entries
        ),
    }
    Ok(())
}
