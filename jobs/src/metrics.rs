//! What operators scrape: one Prometheus registry per process, served with
//! `--metrics-addr` on the long-running roles (`/metrics` in the OpenMetrics
//! text format, `/healthz`), and CloudWatch Embedded Metric Format lines for
//! the batch jobs (`--metrics emf`).
//!
//! The jobs count into [`metrics()`] at the places their summaries count, so
//! at the end of a run each counter equals the figure the summary prints. The
//! LLM client's and the checkpoint store's own counters are read at scrape
//! time (they are the summaries' source too), with the process's RSS and CPU.
//! Labels are bounded: `shard` (the stream's shards), `scorer` (one or two),
//! `reason` ([`reason_class`]: a fixed set), `op` (get/put/list).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::io::checkpoint::StateRequests;
use crate::llm::{Budget, LlmStats, Prices};
use crate::{Error, Result};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabel {
    pub shard: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScorerLabel {
    pub scorer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: &'static str,
}

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    /// Records read from the input (Kinesis records for `stream`/`ingest`).
    pub records_read: Counter,
    /// Rows written to the scored (`stream`) or raw (`ingest`) table.
    pub rows_written: Counter,
    pub rows_scored: Family<ScorerLabel, Counter>,
    pub rows_unscorable: Family<ReasonLabel, Counter>,
    pub rows_rejected: Counter,
    pub rows_late: Counter,
    /// Shard micro-batches committed.
    pub batches: Counter,
    pub batch_seconds: Histogram,
    pub batch_rows: Histogram,
    pub shard_millis_behind: Family<ShardLabel, Gauge>,
    pub shard_records: Family<ShardLabel, Counter>,
    /// Windows ending at or before this are emitted (UNIX seconds).
    pub watermark_seconds: Gauge<f64, AtomicU64>,
    /// Wall clock minus the watermark, when it was last moved or read.
    pub watermark_delay_seconds: Gauge<f64, AtomicU64>,
    pub windows_emitted: Counter,
    pub alerts_fired: Counter,
    pub webhook_failures: Counter,
    pub leases_held: Gauge,
    pub leases_taken: Counter,
    pub leases_lost: Counter,
    pub health: Health,
    sources: Arc<Sources>,
    /// The shards' last lag, for the EMF line's maximum.
    shard_lags: Mutex<std::collections::HashMap<String, i64>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Self {
        let mut r = Registry::default();
        let m = Metrics {
            records_read: Counter::default(),
            rows_written: Counter::default(),
            rows_scored: Family::default(),
            rows_unscorable: Family::default(),
            rows_rejected: Counter::default(),
            rows_late: Counter::default(),
            batches: Counter::default(),
            batch_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            batch_rows: Histogram::new(exponential_buckets(1.0, 4.0, 10)),
            shard_millis_behind: Family::default(),
            shard_records: Family::default(),
            watermark_seconds: Gauge::default(),
            watermark_delay_seconds: Gauge::default(),
            windows_emitted: Counter::default(),
            alerts_fired: Counter::default(),
            webhook_failures: Counter::default(),
            leases_held: Gauge::default(),
            leases_taken: Counter::default(),
            leases_lost: Counter::default(),
            health: Health::default(),
            sources: Arc::default(),
            shard_lags: Mutex::default(),
            registry: Registry::default(),
        };
        r.register("sentiflow_records_read", "Records read from the input", m.records_read.clone());
        r.register("sentiflow_rows_written", "Rows written to the output table", m.rows_written.clone());
        r.register(
            "sentiflow_rows_scored",
            "Rows given a score, by the scorer that scored them",
            m.rows_scored.clone(),
        );
        r.register(
            "sentiflow_rows_unscorable",
            "Rows left with a NULL score, by reason (language, empty, content_free, llm, llm_budget, other)",
            m.rows_unscorable.clone(),
        );
        r.register("sentiflow_rows_rejected", "Records that failed validation (dead letters)", m.rows_rejected.clone());
        r.register("sentiflow_rows_late", "Rows behind the watermark, written to late/", m.rows_late.clone());
        r.register("sentiflow_batches", "Shard micro-batches committed", m.batches.clone());
        r.register_with_unit(
            "sentiflow_batch_duration",
            "Time of a micro-batch round, reading to commit",
            Unit::Seconds,
            m.batch_seconds.clone(),
        );
        r.register("sentiflow_batch_rows", "Rows per shard micro-batch", m.batch_rows.clone());
        r.register(
            "sentiflow_shard_millis_behind_latest",
            "How far a shard's last read is behind its tip (Kinesis MillisBehindLatest)",
            m.shard_millis_behind.clone(),
        );
        r.register("sentiflow_shard_records", "Records committed per shard", m.shard_records.clone());
        r.register_with_unit(
            "sentiflow_watermark",
            "Windows ending at or before this are emitted (UNIX time)",
            Unit::Seconds,
            m.watermark_seconds.clone(),
        );
        r.register_with_unit(
            "sentiflow_watermark_delay",
            "Wall clock minus the watermark",
            Unit::Seconds,
            m.watermark_delay_seconds.clone(),
        );
        r.register("sentiflow_windows_emitted", "Windows written to the windows table", m.windows_emitted.clone());
        r.register("sentiflow_alerts_fired", "Alerts written to alerts/", m.alerts_fired.clone());
        r.register("sentiflow_webhook_failures", "Alerts the webhook did not take", m.webhook_failures.clone());
        r.register("sentiflow_leases_held", "Shard leases this worker holds", m.leases_held.clone());
        r.register("sentiflow_leases_taken", "Shard leases this worker took", m.leases_taken.clone());
        r.register("sentiflow_leases_lost", "Shard leases lost to another worker", m.leases_lost.clone());
        r.register_collector(Box::new(m.sources.clone()));
        Metrics { registry: r, ..m }
    }

    /// The registry in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // writing to a String cannot fail
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// A shard's MillisBehindLatest.
    pub fn set_shard_lag(&self, shard: &str, ms: i64) {
        self.shard_millis_behind.get_or_create(&ShardLabel { shard: shard.to_string() }).set(ms);
        self.shard_lags.lock().unwrap_or_else(|e| e.into_inner()).insert(shard.to_string(), ms);
    }

    /// The stream's EMF line: what the counters added since `mark` (then moved to now), and
    /// the watermark delay and the largest shard lag as they are.
    pub fn stream_emf(&self, job: &str, mark: &mut [u64; 5]) -> String {
        let now = [
            self.records_read.get(),
            self.rows_written.get(),
            self.rows_rejected.get(),
            self.rows_late.get(),
            self.windows_emitted.get(),
        ];
        let d = |i: usize| now[i].saturating_sub(mark[i]) as f64;
        let mut figures = vec![
            ("RecordsRead", d(0), "Count"),
            ("RowsWritten", d(1), "Count"),
            ("RowsRejected", d(2), "Count"),
            ("RowsLate", d(3), "Count"),
            ("Windows", d(4), "Count"),
        ];
        *mark = now;
        let lag = self.shard_lags.lock().unwrap_or_else(|e| e.into_inner()).values().copied().max();
        if let Some(ms) = lag {
            figures.push(("MaxShardMillisBehind", ms as f64, "Milliseconds"));
        }
        if self.watermark_seconds.get() > 0.0 {
            figures.push(("WatermarkDelaySeconds", self.watermark_delay_seconds.get(), "Seconds"));
        }
        emf_line(&emf_namespace(), job, &figures)
    }

    /// The LLM client whose counters `/metrics` shows (`sentiflow_llm_*`).
    pub fn watch_llm(&self, stats: Arc<LlmStats>, prices: Prices, budget: Budget) {
        *self.sources.llm.lock().unwrap_or_else(|e| e.into_inner()) = Some((stats, prices, budget));
    }

    /// The local scorer whose counters `/metrics` shows (`sentiflow_scorer_*`: texts, session
    /// runs, seconds tokenizing and in inference).
    pub fn watch_scorer(&self, scorer: sentiflow_udfs::SharedScorer) {
        *self.sources.scorer.lock().unwrap_or_else(|e| e.into_inner()) = Some(scorer);
    }

    /// The checkpoint store whose requests `/metrics` shows (`sentiflow_checkpoint_requests`).
    pub fn watch_checkpoints(&self, requests: Arc<StateRequests>) {
        *self.sources.checkpoints.lock().unwrap_or_else(|e| e.into_inner()) = Some(requests);
    }
}

/// A `score_error` as one of a few label values.
pub fn reason_class(reason: &str) -> &'static str {
    use sentiflow_udfs::text::{CONTENT_FREE_REASON, LANGUAGE_REASON_PREFIX};
    if reason.starts_with(LANGUAGE_REASON_PREFIX) {
        "language"
    } else if reason == "text is empty" {
        "empty"
    } else if reason == CONTENT_FREE_REASON {
        "content_free"
    } else if reason.starts_with("llm: budget exhausted") {
        "llm_budget"
    } else if reason.starts_with("llm: ") {
        "llm"
    } else {
        "other"
    }
}

/// Counters kept elsewhere, read at scrape time, and the process's RSS and CPU.
#[derive(Debug, Default)]
struct Sources {
    scorer: Mutex<Option<sentiflow_udfs::SharedScorer>>,
    llm: Mutex<Option<(Arc<LlmStats>, Prices, Budget)>>,
    checkpoints: Mutex<Option<Arc<StateRequests>>>,
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

impl Collector for Sources {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        if let Some(s) = self.scorer.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            for (key, v) in s.stats() {
                // seconds figures end in _s: base unit names
                let name = match key.strip_suffix("_s") {
                    Some(k) => format!("sentiflow_scorer_{k}_seconds"),
                    None => format!("sentiflow_scorer_{key}"),
                };
                let c = ConstCounter::new(v);
                c.encode(e.encode_descriptor(
                    &name,
                    "The local scorer's counter of that name",
                    None,
                    c.metric_type(),
                )?)?;
            }
        }
        if let Some((stats, prices, budget)) = self.llm.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let s = stats.summary(*prices);
            counter(&mut e, "sentiflow_llm_requests", "HTTP requests to the LLM, retries included", s.requests)?;
            counter(&mut e, "sentiflow_llm_retries", "LLM requests retried (429, 5xx, timeouts)", s.retries)?;
            counter(&mut e, "sentiflow_llm_failures", "Texts the LLM gave no usable score", s.failures)?;
            counter(&mut e, "sentiflow_llm_cache_hits", "Texts answered from the LLM answer cache", s.cache_hits)?;
            counter(&mut e, "sentiflow_llm_prompt_tokens", "Prompt tokens the LLM counted", s.prompt_tokens)?;
            counter(&mut e, "sentiflow_llm_completion_tokens", "Completion tokens", s.completion_tokens)?;
            let cost = ConstCounter::new(s.cost_usd);
            cost.encode(e.encode_descriptor(
                "sentiflow_llm_cost_usd",
                "Estimated LLM cost in USD (--llm-price-in/out)",
                None,
                cost.metric_type(),
            )?)?;
            if let Some(max) = budget.max_requests {
                let g = ConstGauge::new(max.saturating_sub(s.requests) as i64);
                g.encode(e.encode_descriptor(
                    "sentiflow_llm_budget_remaining_requests",
                    "Requests left of --llm-max-requests",
                    None,
                    g.metric_type(),
                )?)?;
            }
        }
        if let Some(r) = self.checkpoints.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let c = Family::<OpLabel, Counter>::default();
            for (op, v) in [("get", &r.gets), ("put", &r.puts), ("list", &r.lists)] {
                c.get_or_create(&OpLabel { op }).inc_by(v.load(Relaxed));
            }
            c.encode(e.encode_descriptor(
                "sentiflow_checkpoint_requests",
                "Checkpoint and lease requests (GET, conditional PUT, LIST)",
                None,
                c.metric_type(),
            )?)?;
            counter(
                &mut e,
                "sentiflow_checkpoint_conflicts",
                "Conditional checkpoint writes refused because another worker wrote first",
                r.conflicts.load(Relaxed),
            )?;
        }
        if let Some((rss, cpu)) = process_usage() {
            let g = ConstGauge::new(rss as i64);
            g.encode(e.encode_descriptor(
                "process_resident_memory",
                "Resident memory size",
                Some(&Unit::Bytes),
                g.metric_type(),
            )?)?;
            let c = ConstCounter::new(cpu);
            c.encode(e.encode_descriptor(
                "process_cpu",
                "User and system CPU time",
                Some(&Unit::Seconds),
                c.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

/// (RSS bytes, user + system CPU seconds) from /proc (Linux); None elsewhere.
pub fn process_usage() -> Option<(u64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // fields after the command name, which is in parentheses and may hold spaces
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks = 100.0; // USER_HZ on Linux
    let cpu = (f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / ticks;
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split(' ').nth(1)?.parse().ok()?;
    Some((pages * 4096, cpu))
}

/// `/healthz`: 200 while the role's loop completes rounds, 503 once none has
/// completed within the stall limit.
#[derive(Debug, Default)]
pub struct Health {
    /// UNIX ms of the last completed round; 0: none yet (the role is starting).
    last_round_ms: AtomicI64,
    started_ms: AtomicI64,
    stall_after_ms: AtomicI64,
}

impl Health {
    /// The role's loop starts; it is stalled after `stall_after` without a round.
    pub fn start(&self, stall_after: std::time::Duration) {
        self.started_ms.store(chrono::Utc::now().timestamp_millis(), Relaxed);
        self.stall_after_ms.store(stall_after.as_millis() as i64, Relaxed);
    }

    /// A round of the loop completed (a micro-batch, or a lease renewal with nothing to read).
    pub fn round(&self) {
        self.last_round_ms.store(chrono::Utc::now().timestamp_millis(), Relaxed);
    }

    /// (healthy, what to answer).
    pub fn status(&self) -> (bool, String) {
        let now = chrono::Utc::now().timestamp_millis();
        let (last, started, limit) =
            (self.last_round_ms.load(Relaxed), self.started_ms.load(Relaxed), self.stall_after_ms.load(Relaxed));
        if started == 0 {
            return (true, "ok: no loop (this role serves metrics only)\n".into());
        }
        let since = now - if last > 0 { last } else { started };
        if since > limit {
            (
                false,
                format!("stalled: no round of the loop completed for {} s (limit {} s)\n", since / 1000, limit / 1000),
            )
        } else if last == 0 {
            (true, "ok: starting\n".into())
        } else {
            (true, format!("ok: last round {} ms ago\n", since))
        }
    }
}

/// `--metrics-addr`: a bare port binds to 127.0.0.1.
pub fn parse_addr(s: &str) -> Result<SocketAddr> {
    let with_host = if s.chars().all(|c| c.is_ascii_digit()) { format!("127.0.0.1:{s}") } else { s.to_string() };
    with_host.parse().map_err(|e| Error::Option {
        option: "--metrics-addr",
        reason: format!("{s:?} is not HOST:PORT or PORT ({e})"),
    })
}

/// Serves `/metrics` and `/healthz` on `addr` until the process ends; returns the bound address.
pub async fn serve(addr: SocketAddr) -> Result<SocketAddr> {
    use axum::http::{StatusCode, header};
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                    metrics().encode(),
                )
            }),
        )
        .route(
            "/healthz",
            get(|| async {
                let (ok, body) = metrics().health.status();
                (if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, body)
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Option { option: "--metrics-addr", reason: format!("cannot listen on {addr}: {e}") })?;
    let bound = listener.local_addr().unwrap_or(addr);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "the metrics server stopped");
        }
    });
    tracing::info!(addr = %bound, "serving /metrics and /healthz");
    Ok(bound)
}

/// The CloudWatch namespace of the EMF metrics unless `SENTIFLOW_METRICS_NAMESPACE` names one
/// (the Terraform sets `sentiflow/<environment>`).
pub const EMF_NAMESPACE: &str = "sentiflow";

/// The namespace EMF lines go to.
pub fn emf_namespace() -> String {
    std::env::var("SENTIFLOW_METRICS_NAMESPACE").ok().filter(|n| !n.trim().is_empty()).unwrap_or(EMF_NAMESPACE.into())
}

/// One CloudWatch Embedded Metric Format line: `figures` as metrics of
/// `namespace` with the dimension `job`, each with its unit (`Count`, `Seconds`, …).
pub fn emf_line(namespace: &str, job: &str, figures: &[(&str, f64, &str)]) -> String {
    let metrics: Vec<serde_json::Value> =
        figures.iter().map(|(n, _, u)| serde_json::json!({"Name": n, "Unit": u})).collect();
    let mut doc = serde_json::json!({
        "_aws": {
            "Timestamp": chrono::Utc::now().timestamp_millis(),
            "CloudWatchMetrics": [{"Namespace": namespace, "Dimensions": [["job"]], "Metrics": metrics}]
        },
        "job": job,
    });
    for (n, v, _) in figures {
        doc[*n] = serde_json::json!(v);
    }
    doc.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_reasons() {
        assert_eq!(parse_addr("9100").unwrap().to_string(), "127.0.0.1:9100");
        assert_eq!(parse_addr("0.0.0.0:9100").unwrap().to_string(), "0.0.0.0:9100");
        assert!(parse_addr("nine").is_err());
        assert_eq!(reason_class("language es (lang field) is not read by x"), "language");
        assert_eq!(reason_class("llm: budget exhausted: 3 requests made"), "llm_budget");
        assert_eq!(reason_class("llm: timed out after 1s"), "llm");
        assert_eq!(reason_class("text is empty"), "empty");
    }

    #[test]
    fn emf_has_what_the_specification_requires() {
        let line = emf_line("sentiflow", "score", &[("RowsScored", 12.0, "Count"), ("ScoreSeconds", 1.5, "Seconds")]);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert!(v["_aws"]["Timestamp"].as_i64().unwrap() > 1_600_000_000_000);
        let d = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(d["Namespace"], "sentiflow");
        assert_eq!(d["Dimensions"][0][0], "job");
        assert_eq!(v["job"], "score");
        assert_eq!(d["Metrics"][1]["Name"], "ScoreSeconds");
        assert_eq!(v["RowsScored"], 12.0);
    }

    #[test]
    fn health_goes_stale() {
        let h = Health::default();
        assert!(h.status().0, "no loop: healthy");
        h.start(std::time::Duration::from_millis(50));
        h.round();
        assert!(h.status().0);
        std::thread::sleep(std::time::Duration::from_millis(120));
        let (ok, why) = h.status();
        assert!(!ok && why.starts_with("stalled"), "{why}");
    }
}
