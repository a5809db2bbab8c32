//! `sentiflow stream`: micro-batches from Kinesis to windows and alerts.

use super::WindowCli;
use super::expand_location;
use super::scorer::ScorerArgs;
use super::secs;
use super::stop_signal;
use anyhow::Result;
use chrono::{DateTime, Utc};
use sentiflow_jobs::JobContext;
use sentiflow_jobs::io::read::DEFAULT_MAX_TEXT_BYTES;
use sentiflow_jobs::io::retry::RetryPolicy;
use sentiflow_jobs::job::aggregate::WindowSpec;
use sentiflow_jobs::timeexpr::parse_duration;

#[derive(clap::Args, Debug)]
pub(crate) struct StreamCli {
    /// The stream: kinesis://STREAM.
    #[arg(long)]
    from: String,
    /// Data root (local or s3://): raw/, scored/, late/, windows/, windows_by_source/, window_terms/, alerts/.
    #[arg(long, value_parser = expand_location)]
    to: String,
    #[command(flatten)]
    window: WindowCli,
    /// `--background` is trailing here (default 24h): a stream knows only the past.
    #[command(flatten)]
    terms: super::TermCli,
    /// Watermark delay: windows are emitted once max event time − this passes their end.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    watermark: chrono::Duration,
    /// Micro-batch interval.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    trigger: chrono::Duration,
    /// Exit once every shard this worker can take is read to its tip (emitting only the windows the
    /// watermark closed); shards of live workers are left to them.
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
    /// A record whose event time (`created_at`) is more than this after its arrival on the stream
    /// (Kinesis's ApproximateArrivalTimestamp) is rejected with the reason: a producer's clock
    /// running ahead would otherwise move the watermark past every later record.
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    max_event_ahead: chrono::Duration,
    /// This worker's id, unique among the workers sharing the stream (default: host, pid and a random
    /// suffix); a restarted worker with the same id takes its shards back without waiting for the lease.
    #[arg(long, env = "SENTIFLOW_WORKER_ID")]
    worker_id: Option<String>,
    /// Shard and emitter lease length; a crashed worker's shards are taken over after this.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    lease: chrono::Duration,
    #[command(flatten)]
    scorer: ScorerArgs,
    #[command(flatten)]
    serve: super::ServeMetricsCli,
    /// `emf`: every --emf-every, a CloudWatch EMF line on stdout (records, rows, rejected and late
    /// rows and windows since the last line; the watermark delay; the largest shard lag).
    #[arg(long, value_enum)]
    metrics: Option<super::MetricsFormat>,
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    emf_every: chrono::Duration,
}

pub(crate) async fn run(jc: &JobContext, st: StreamCli) -> Result<()> {
    let spec = WindowSpec::new(st.window.window, st.window.slide)?;
    let rules = st.alerts.as_deref().map(sentiflow_jobs::job::alerts::Rules::load).transpose()?;
    let scorer = st.scorer.build(jc, Some(&st.to)).await?;
    st.serve.start().await?;
    if st.metrics == Some(super::MetricsFormat::Emf) {
        let every =
            st.emf_every.to_std().unwrap_or(std::time::Duration::from_secs(60)).max(std::time::Duration::from_secs(1));
        tokio::spawn(async move {
            let mut mark = [0u64; 5];
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                println!("{}", sentiflow_jobs::metrics::metrics().stream_emf("stream", &mut mark));
            }
        });
    }
    let trigger = st.trigger.to_std().unwrap_or(std::time::Duration::from_secs(5));
    let args = sentiflow_jobs::job::stream::StreamArgs {
        from: st.from,
        to: st.to,
        spec,
        terms: st.terms.spec(sentiflow_jobs::window::Background::Trailing(chrono::Duration::hours(
            sentiflow_jobs::window::DEFAULT_STREAM_BACKGROUND_HOURS,
        ))),
        watermark: st.watermark,
        trigger,
        stall_after: st.serve.stall_after(trigger),
        until_caught_up: st.until_caught_up,
        max_records_per_shard: st.max_records_per_shard.max(1),
        rules,
        webhook: st.webhook,
        max_text_bytes: st.max_text_bytes,
        max_event_ahead: st.max_event_ahead.to_std().unwrap_or_default(),
        retry: RetryPolicy::default(),
        worker_id: st.worker_id,
        lease: st.lease.to_std().unwrap_or(std::time::Duration::from_secs(30)).max(std::time::Duration::from_secs(1)),
    };
    let r = sentiflow_jobs::job::stream::run(jc, scorer, args, stop_signal()).await?;
    let wm = r
        .watermark_us
        .and_then(DateTime::<Utc>::from_timestamp_micros)
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| "none".into());
    println!(
        "streamed {} micro-batches ({} replayed): {} records, {} rows, {} rejected, {} late rows; {} windows, {} by source and {} window terms emitted, {} alerts ({} delivered to the webhook); {} open windows, watermark {wm}, in {}",
        r.batches,
        r.replays,
        r.records,
        r.rows,
        r.rejected,
        r.late_rows,
        r.windows,
        r.windows_by_source,
        r.window_terms,
        r.alerts,
        r.webhook_delivered,
        r.open_windows,
        secs(r.elapsed)
    );
    let held: Vec<&str> = r.shards_held.iter().map(String::as_str).collect();
    let (gets, puts, lists) = r.state_requests;
    println!(
        "worker {} held shards [{}], {} closed and finished, {} leases lost, {} emissions; checkpoint requests: {gets} GET, {puts} PUT, {lists} LIST",
        r.worker_id,
        held.join(", "),
        r.shards_closed,
        r.leases_lost,
        r.emits
    );
    super::score::print_by_scorer(&r.by_scorer, 0);
    if let Some(l) = &r.llm {
        super::score::print_llm(l);
    }
    if !r.left_to_live_workers.is_empty() {
        println!("not caught up: shard(s) {} are held by live workers", r.left_to_live_workers.join(", "));
    }
    if let Some([p50, p95, p99, max]) = r.latency_ms {
        println!(
            "latency (arrival on the stream → micro-batch durable): p50 {p50} ms, p95 {p95} ms, p99 {p99} ms, max {max} ms"
        );
    }
    Ok(())
}
