//! Alert rules over emitted windows, and the webhook that carries them.
//!
//! Rules live in a small TOML file:
//!
//! ```toml
//! [[rule]]
//! name = "negative-spike"
//! metric = "share_negative"     # share_negative | avg_score | n
//! op = ">="                     # >= | <=
//! threshold = 0.5
//! min_n = 20                    # windows with fewer scored tweets are skipped
//!
//! [[rule]]
//! name = "sentiment-drop"
//! kind = "zscore_drop"          # avg_score below the trailing mean by more than z std devs
//! z = 2.0
//! trailing = "1h"
//! min_n = 20
//! ```
//!
//! A rule fires at most once per window (the window is emitted once).

use std::time::Duration;

use datafusion::arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use serde::Deserialize;

use crate::io::aws::Failure;
use crate::schema::Table;
use crate::{Error, Result};

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Rule {
    pub name: String,
    #[serde(default = "default_kind")]
    pub kind: String,
    #[serde(default)]
    pub metric: Option<String>,
    #[serde(default)]
    pub op: Option<String>,
    #[serde(default)]
    pub threshold: Option<f64>,
    #[serde(default)]
    pub min_n: i64,
    #[serde(default)]
    pub z: Option<f64>,
    #[serde(default)]
    pub trailing: Option<String>,
}

fn default_kind() -> String {
    "threshold".into()
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
pub struct Rules {
    #[serde(default)]
    pub rule: Vec<Rule>,
}

impl Rules {
    pub fn parse(path: &str, text: &str) -> Result<Self> {
        let bad = |reason: String| Error::InputFile { what: "alert rules", path: path.to_string(), reason };
        let r: Rules = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        for rule in &r.rule {
            match rule.kind.as_str() {
                "threshold" => {
                    let m = rule.metric.as_deref().unwrap_or("");
                    if !matches!(m, "share_negative" | "avg_score" | "n") {
                        return Err(bad(format!(
                            "rule {}: metric must be share_negative, avg_score or n, not {m:?}",
                            rule.name
                        )));
                    }
                    if !matches!(rule.op.as_deref(), Some(">=") | Some("<=")) || rule.threshold.is_none() {
                        return Err(bad(format!("rule {}: needs op = \">=\" or \"<=\" and a threshold", rule.name)));
                    }
                }
                "zscore_drop" => {
                    if rule.z.is_none_or(|z| z <= 0.0) {
                        return Err(bad(format!("rule {}: needs z > 0", rule.name)));
                    }
                    crate::timeexpr::parse_duration(rule.trailing.as_deref().unwrap_or("1h"))
                        .map_err(|e| bad(format!("rule {}: trailing: {e}", rule.name)))?;
                }
                k => return Err(bad(format!("rule {}: unknown kind {k:?} (threshold or zscore_drop)", rule.name))),
            }
        }
        Ok(r)
    }

    pub fn load(path: &str) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.into(), source })?;
        Self::parse(path, &text)
    }
}

/// One emitted window, as rules see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowFigures {
    pub start_us: i64,
    pub end_us: i64,
    pub n: i64,
    pub avg_score: Option<f64>,
    pub share_negative: Option<f64>,
}

/// A fired alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub window_start_us: i64,
    pub window_end_us: i64,
    pub rule: String,
    pub metric: String,
    pub value: f64,
    pub threshold: f64,
    pub message: String,
    /// What drove the window (its top terms by `neg_lift`); see [`Alert::with_drivers`].
    pub drivers: Vec<String>,
}

impl Alert {
    /// The alert with its window's drivers, named in its message too:
    /// "… — driven by #hack, $btc, withdrawals".
    pub fn with_drivers(mut self, drivers: &[String]) -> Self {
        if !drivers.is_empty() {
            self.message = format!("{} — driven by {}", self.message, drivers.join(", "));
            self.drivers = drivers.to_vec();
        }
        self
    }
}

fn ts(us: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

/// Evaluates the rules on windows emitted in order; `history` holds (start,
/// avg, n) of earlier emitted windows and is extended. A rule's trailing
/// statistics use only windows with at least its `min_n` tweets.
pub fn evaluate(rules: &Rules, windows: &[WindowFigures], history: &mut Vec<(i64, f64, i64)>) -> Vec<Alert> {
    let mut out = Vec::new();
    for w in windows {
        for r in &rules.rule {
            if w.n < r.min_n {
                continue;
            }
            match r.kind.as_str() {
                "threshold" => {
                    let metric = r.metric.clone().unwrap_or_default();
                    let value = match metric.as_str() {
                        "share_negative" => w.share_negative,
                        "avg_score" => w.avg_score,
                        _ => Some(w.n as f64),
                    };
                    let (Some(v), Some(t)) = (value, r.threshold) else { continue };
                    let fires = if r.op.as_deref() == Some("<=") { v <= t } else { v >= t };
                    if fires {
                        out.push(Alert {
                            window_start_us: w.start_us,
                            window_end_us: w.end_us,
                            rule: r.name.clone(),
                            metric: metric.clone(),
                            value: v,
                            threshold: t,
                            message: format!(
                                "{}: {metric} {v:.3} {} {t} in the window {} .. {} UTC ({} tweets)",
                                r.name,
                                r.op.as_deref().unwrap_or(">="),
                                ts(w.start_us),
                                ts(w.end_us),
                                w.n
                            ),
                            drivers: Vec::new(),
                        });
                    }
                }
                _ => {
                    let Some(avg) = w.avg_score else { continue };
                    let trailing = crate::timeexpr::parse_duration(r.trailing.as_deref().unwrap_or("1h"))
                        .ok()
                        .and_then(|d| d.num_microseconds())
                        .unwrap_or(3_600_000_000);
                    let past: Vec<f64> = history
                        .iter()
                        .filter(|(s, _, n)| *s < w.start_us && *s >= w.start_us - trailing && *n >= r.min_n)
                        .map(|(_, a, _)| *a)
                        .collect();
                    if past.len() < 3 {
                        continue;
                    }
                    let mean = past.iter().sum::<f64>() / past.len() as f64;
                    let sd = (past.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (past.len() - 1) as f64).sqrt();
                    let z = r.z.unwrap_or(2.0);
                    if sd > 0.0 && avg < mean - z * sd {
                        out.push(Alert {
                            window_start_us: w.start_us,
                            window_end_us: w.end_us,
                            rule: r.name.clone(),
                            metric: "avg_score".into(),
                            value: avg,
                            threshold: mean - z * sd,
                            message: format!(
                                "{}: avg_score {avg:.3} is {:.1} std devs below the trailing mean {mean:.3} in the window {} .. {} UTC ({} tweets)",
                                r.name,
                                (mean - avg) / sd,
                                ts(w.start_us),
                                ts(w.end_us),
                                w.n
                            ),
                            drivers: Vec::new(),
                        });
                    }
                }
            }
        }
        if let Some(a) = w.avg_score {
            history.push((w.start_us, a, w.n));
        }
    }
    // keep a day of history at most
    if let Some(last) = windows.last() {
        history.retain(|(s, _, _)| *s >= last.start_us - 86_400_000_000);
    }
    out
}

/// Alerts as a batch of the alerts table (plus its `dt` partition column).
pub fn alerts_batch(alerts: &[Alert], fired_at_us: i64) -> Result<RecordBatch> {
    let t = |f: fn(&Alert) -> i64| -> ArrayRef {
        std::sync::Arc::new(
            TimestampMicrosecondArray::from(alerts.iter().map(f).collect::<Vec<_>>()).with_timezone("UTC"),
        )
    };
    let s = |f: fn(&Alert) -> &str| -> ArrayRef {
        std::sync::Arc::new(alerts.iter().map(|a| Some(f(a))).collect::<StringArray>())
    };
    let f = |f: fn(&Alert) -> f64| -> ArrayRef {
        std::sync::Arc::new(Float64Array::from(alerts.iter().map(f).collect::<Vec<_>>()))
    };
    let mut fields: Vec<datafusion::arrow::datatypes::Field> =
        Table::Alerts.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(datafusion::arrow::datatypes::Field::new("dt", datafusion::arrow::datatypes::DataType::Utf8, false));
    let dt: ArrayRef = std::sync::Arc::new(
        alerts
            .iter()
            .map(|a| {
                Some(
                    chrono::DateTime::<chrono::Utc>::from_timestamp_micros(a.window_start_us)
                        .map(|t| t.format("%Y-%m-%d").to_string())
                        .unwrap_or_default(),
                )
            })
            .collect::<StringArray>(),
    );
    let cols = vec![
        t(|a| a.window_start_us),
        t(|a| a.window_end_us),
        s(|a| &a.rule),
        std::sync::Arc::new(StringArray::from(vec![None::<&str>; alerts.len()])) as ArrayRef,
        s(|a| &a.metric),
        f(|a| a.value),
        f(|a| a.threshold),
        s(|a| &a.message),
        std::sync::Arc::new(TimestampMicrosecondArray::from(vec![fired_at_us; alerts.len()]).with_timezone("UTC"))
            as ArrayRef,
        std::sync::Arc::new(
            alerts.iter().map(|a| (!a.drivers.is_empty()).then(|| a.drivers.join(", "))).collect::<StringArray>(),
        ) as ArrayRef,
        dt,
    ];
    RecordBatch::try_new(std::sync::Arc::new(datafusion::arrow::datatypes::Schema::new(fields)), cols)
        .map_err(|e| Error::arrow("alerts", e))
}

/// A Slack-compatible webhook (`{"text": …}`) for fired alerts. One client, and so one
/// connection pool, per run: built once and reused for every micro-batch.
pub struct Webhook {
    url: String,
    http: reqwest::Client,
    jitter: crate::io::retry::Jitter,
}

impl Webhook {
    /// A webhook client with a 5 s timeout per post.
    pub fn new(url: &str) -> Result<Self> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().map_err(|e| Error::Option {
            option: "--webhook",
            reason: format!("{url}: cannot build an HTTP client: {e}"),
        })?;
        Ok(Webhook { url: url.to_string(), http, jitter: crate::io::retry::Jitter::default() })
    }

    /// Posts each alert, with up to 3 retries on 5xx, 429, timeouts and connection errors.
    /// Returns how many were delivered. At least once: a retry after a timed-out post that
    /// the server did receive repeats it.
    pub async fn post(&self, alerts: &[Alert]) -> usize {
        let policy = crate::io::retry::RetryPolicy {
            max_retries: 3,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(2),
        };
        let mut delivered = 0;
        for a in alerts {
            let body = serde_json::json!({"text": format!("sentiflow alert {}", a.message)}).to_string();
            let sent = crate::io::retry::retrying("webhook", &policy, &self.jitter, |_| {
                let post = self.http.post(&self.url).header("content-type", "application/json").body(body.clone());
                async move {
                    match post.send().await {
                        Ok(resp) if resp.status().is_success() => Ok(()),
                        Ok(resp) => {
                            let (code, why) = (resp.status().as_u16(), format!("HTTP {}", resp.status().as_u16()));
                            Err(match code {
                                429 => Failure::Throttled(why),
                                500..=599 => Failure::Transient(why),
                                _ => Failure::Fatal(why),
                            })
                        }
                        Err(e) => Err(Failure::Transient(e.to_string())),
                    }
                }
            })
            .await;
            match sent {
                Ok(()) => delivered += 1,
                Err((Failure::Fatal(why), _)) => {
                    tracing::warn!(reason = %why, rule = %a.rule, "webhook refused the alert")
                }
                Err((failure, retries)) => {
                    tracing::warn!(error = failure.message(), retries, rule = %a.rule, "webhook unreachable; alert kept in alerts/ only")
                }
            }
        }
        delivered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = r#"
[[rule]]
name = "negative-spike"
metric = "share_negative"
op = ">="
threshold = 0.5
min_n = 10

[[rule]]
name = "drop"
kind = "zscore_drop"
z = 2.0
trailing = "1h"
min_n = 10
"#;

    fn w(i: i64, n: i64, avg: f64, neg: f64) -> WindowFigures {
        WindowFigures {
            start_us: i * 60_000_000,
            end_us: (i + 1) * 60_000_000,
            n,
            avg_score: Some(avg),
            share_negative: Some(neg),
        }
    }

    #[test]
    fn rules_fire_once_per_window() {
        let rules = Rules::parse("r.toml", RULES).unwrap();
        let mut hist = Vec::new();
        let ws = vec![
            w(0, 50, 0.30, 0.2),
            w(1, 50, 0.31, 0.2),
            w(2, 50, 0.29, 0.2),
            w(3, 50, 0.30, 0.6),
            w(4, 5, -0.9, 0.9),
            w(5, 50, -0.5, 0.7),
        ];
        let a = evaluate(&rules, &ws, &mut hist);
        let fired: Vec<(i64, &str)> = a.iter().map(|a| (a.window_start_us / 60_000_000, a.rule.as_str())).collect();
        assert_eq!(fired, vec![(3, "negative-spike"), (5, "negative-spike"), (5, "drop")], "{a:#?}");
        assert!(a[0].message.contains("share_negative 0.600 >= 0.5"));
        assert!(Rules::parse("r.toml", "[[rule]]\nname='x'\nmetric='bogus'\nop='>='\nthreshold=1").is_err());
        assert!(Rules::parse("r.toml", "[[rule]]\nname='x'\nkind='zscore_drop'").is_err());
        let batch = alerts_batch(&a, 0).unwrap();
        assert_eq!(batch.num_rows(), 3);
    }
}
