//! `sentiflow report`: one self-contained HTML file (inline SVG, no JavaScript,
//! no network) with the charts and tables a non-engineer needs, and optionally
//! the sentiment-over-time chart as PNG (the same SVG, rasterized by resvg
//! with an embedded DejaVu Sans font).

mod drivers;
pub mod svg;

use std::fmt::Write;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{
    Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;

use crate::context::JobContext;
use crate::io::store::{Location, put};
use crate::schema::{Table, timestamp_type};
use crate::sql::timestamp_param;
use crate::tables::register_parquet_table;
use crate::{Error, Result, sql};
use svg::{AlertMark, SourceRow, WindowPoint, esc};

/// DejaVu Sans 2.37 (Bitstream Vera license + public domain changes; see
/// `jobs/assets/DejaVu-LICENSE.txt`), for the PNG: no system fonts needed.
const FONT: &[u8] = include_bytes!("../../../assets/DejaVuSans.ttf");

#[derive(Debug, Clone)]
pub struct ReportArgs {
    /// Data root holding scored/, windows/ (and optionally _rejected/, alerts/).
    pub data: String,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Where the HTML goes (local path or s3://).
    pub out: String,
    /// Also write the sentiment-over-time chart as PNG here.
    pub png: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ReportSummary {
    pub out: String,
    pub png: Option<String>,
    pub windows: usize,
    pub tweets: i64,
    pub alerts: usize,
    pub bytes: usize,
}

fn strings(a: &ArrayRef) -> Result<StringArray> {
    let c = cast(a, &DataType::Utf8).map_err(|e| Error::arrow("report column", e))?;
    Ok(c.as_any().downcast_ref::<StringArray>().cloned().unwrap_or_else(|| StringArray::from(Vec::<&str>::new())))
}

fn column<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    b.column_by_name(name).ok_or_else(|| Error::Internal(format!("report query lacks column {name}")))
}

fn i64s(b: &RecordBatch, name: &str) -> Result<Vec<Option<i64>>> {
    let c = cast(column(b, name)?, &DataType::Int64).map_err(|e| Error::arrow(name.to_string(), e))?;
    Ok(c.as_any().downcast_ref::<Int64Array>().map(|a| a.iter().collect()).unwrap_or_default())
}

fn f64s(b: &RecordBatch, name: &str) -> Result<Vec<Option<f64>>> {
    let c = cast(column(b, name)?, &DataType::Float64).map_err(|e| Error::arrow(name.to_string(), e))?;
    Ok(c.as_any().downcast_ref::<Float64Array>().map(|a| a.iter().collect()).unwrap_or_default())
}

fn times(b: &RecordBatch, name: &str) -> Result<Vec<Option<i64>>> {
    let c = cast(column(b, name)?, &timestamp_type()).map_err(|e| Error::arrow(name.to_string(), e))?;
    Ok(c.as_any().downcast_ref::<TimestampMicrosecondArray>().map(|a| a.iter().collect()).unwrap_or_default())
}

fn strs(b: &RecordBatch, name: &str) -> Result<Vec<Option<String>>> {
    Ok(strings(column(b, name)?)?.iter().map(|v| v.map(str::to_string)).collect())
}

fn fmt_ts(us: Option<i64>) -> String {
    us.and_then(DateTime::<Utc>::from_timestamp_micros)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| "–".into())
}

fn pct(n: i64, d: i64) -> String {
    if d == 0 { "–".into() } else { format!("{:.1} %", n as f64 * 100.0 / d as f64) }
}

async fn rows(jc: &JobContext, name: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<RecordBatch>> {
    let df = sql::query(&jc.ctx, name, vec![("from", timestamp_param(from)), ("to", timestamp_param(to))]).await?;
    crate::io::diagnose::collect(df).await
}

/// Renders an SVG document to PNG with the embedded font.
pub fn svg_to_png(svg_text: &str) -> Result<Vec<u8>> {
    let mut fontdb = resvg::usvg::fontdb::Database::new();
    fontdb.load_font_data(FONT.to_vec());
    fontdb.set_sans_serif_family("DejaVu Sans");
    let opts = resvg::usvg::Options { fontdb: Arc::new(fontdb), ..Default::default() };
    let tree = resvg::usvg::Tree::from_str(svg_text, &opts)
        .map_err(|e| Error::Internal(format!("chart SVG does not parse: {e}")))?;
    let size = tree.size().to_int_size();
    // twice the CSS size, for sharp text in READMEs and tickets
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width() * 2, size.height() * 2)
        .ok_or_else(|| Error::Internal("chart has no area".into()))?;
    resvg::render(&tree, resvg::tiny_skia::Transform::from_scale(2.0, 2.0), &mut pixmap.as_mut());
    pixmap.encode_png().map_err(|e| Error::Internal(format!("png encoding failed: {e}")))
}

pub async fn run(jc: &JobContext, args: ReportArgs) -> Result<ReportSummary> {
    let root = Location::parse(&args.data)?;
    let scored = root.child(Table::Scored.dir());
    let windows = root.child(Table::Windows.dir());
    if !jc.has_files(&scored).await? {
        return Err(Error::NoInput { location: scored.display });
    }
    if !jc.has_files(&windows).await? {
        return Err(Error::Missing {
            reason: format!(
                "no windows at {}: run `sentiflow aggregate --out {}` first",
                windows.display, root.display
            ),
        });
    }
    let (n_rejected, has_alerts, has_terms) = register_tables(jc, &root).await?;
    let from = args.from.unwrap_or_else(crate::window::far_past);
    let to = args.to.unwrap_or_else(crate::window::far_future);
    if from >= to {
        return Err(Error::Option { option: "--from", reason: "must be before --to".into() });
    }
    let data = ReportData {
        data: root.display.clone(),
        points: load_points(jc, from, to).await?,
        summary: load_summary(jc, from, to).await?,
        sources: load_sources(jc, from, to).await?,
        bins: load_bins(jc, from, to).await?,
        extremes: load_extremes(jc, from, to).await?,
        alerts: if has_alerts { load_alerts(jc, from, to).await? } else { Vec::new() },
        has_alerts,
        n_rejected,
        drivers: None,
    };
    let data = ReportData {
        drivers: match has_terms {
            true => Some(drivers::load(jc, from, to, &data.points, &data.alerts).await?),
            false => None,
        },
        ..data
    };
    let (h, chart_time) = render(&data);

    let out = Location::parse(&args.out)?;
    let store = jc.stores.store(&out.store_url)?;
    let bytes = h.len();
    put(store.as_ref(), &out, &out.path, h.into_bytes()).await?;
    let png = match &args.png {
        Some(p) => {
            let loc = Location::parse(p)?;
            let png = tokio::task::block_in_place(|| svg_to_png(&chart_time))?;
            let store = jc.stores.store(&loc.store_url)?;
            put(store.as_ref(), &loc, &loc.path, png).await?;
            Some(loc.display)
        }
        None => None,
    };
    let (windows, tweets, alerts) = (data.points.len(), data.summary.n_rows, data.alerts.len());
    tracing::info!(out = %out.display, windows, tweets, alerts, "wrote report");
    Ok(ReportSummary { out: out.display, png, windows, tweets, alerts, bytes })
}

/// A row of `report_extremes`: side, time, source, score, text.
type Extreme = (String, Option<i64>, String, Option<f64>, String);
/// A row of `report_alerts`: window start, rule, source, message.
pub(crate) type AlertRow = (Option<i64>, String, Option<String>, String);

/// The figures of `report_summary`.
struct Summary {
    n_rows: i64,
    n_scored: i64,
    n_unscorable: i64,
    n_other_language: i64,
    /// Rows the model handed to the fallback scorer.
    n_fallback: i64,
    n_neg: i64,
    n_neu: i64,
    n_pos: i64,
    n_sources: i64,
    avg: Option<f64>,
    first_at: Option<i64>,
    last_at: Option<i64>,
    scorers: String,
}

/// Everything the report shows, loaded by the `report_*.sql` queries.
struct ReportData {
    data: String,
    points: Vec<WindowPoint>,
    summary: Summary,
    sources: Vec<SourceRow>,
    bins: Vec<svg::Bin>,
    extremes: Vec<Extreme>,
    alerts: Vec<AlertRow>,
    has_alerts: bool,
    n_rejected: i64,
    /// "What drove it"; None without a window_terms table.
    drivers: Option<Vec<drivers::DriverWindow>>,
}

/// Registers the data root's tables; returns (rejected records, whether there are alerts and window_terms tables).
async fn register_tables(jc: &JobContext, root: &Location) -> Result<(i64, bool, bool)> {
    let scored = root.child(Table::Scored.dir());
    let windows = root.child(Table::Windows.dir());
    register_parquet_table(jc, "scored_tweets", Table::Scored, &scored)?;
    register_parquet_table(jc, "windows", Table::Windows, &windows)?;
    let rejected = root.child(Table::Rejected.dir());
    let n_rejected = if jc.has_files(&rejected).await? {
        register_parquet_table(jc, "rejected", Table::Rejected, &rejected)?;
        let b = crate::io::diagnose::collect(sql::query(&jc.ctx, "report_rejected", vec![]).await?).await?;
        b.first().map(|b| i64s(b, "n")).transpose()?.and_then(|v| v.first().copied().flatten()).unwrap_or(0)
    } else {
        0
    };
    let alerts_loc = root.child(Table::Alerts.dir());
    let has_alerts = jc.has_files(&alerts_loc).await?;
    if has_alerts {
        register_parquet_table(jc, "alerts", Table::Alerts, &alerts_loc)?;
    }
    let terms_loc = root.child(Table::WindowTerms.dir());
    let has_terms = jc.has_files(&terms_loc).await?;
    if has_terms {
        register_parquet_table(jc, "window_terms", Table::WindowTerms, &terms_loc)?;
    }
    Ok((n_rejected, has_alerts, has_terms))
}

async fn load_points(jc: &JobContext, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<WindowPoint>> {
    let mut points = Vec::new();
    for b in rows(jc, "report_windows", from, to).await? {
        let (s, e, n, a, sh) = (
            times(&b, "window_start")?,
            times(&b, "window_end")?,
            i64s(&b, "n")?,
            f64s(&b, "avg_score")?,
            f64s(&b, "share_negative")?,
        );
        for i in 0..b.num_rows() {
            points.push(WindowPoint {
                start_us: s[i].unwrap_or_default(),
                end_us: e[i].unwrap_or_default(),
                n: n[i].unwrap_or_default(),
                avg: a[i],
                share_negative: sh[i],
            });
        }
    }
    Ok(points)
}

async fn load_summary(jc: &JobContext, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Summary> {
    let prefix = ScalarValue::Utf8(Some(sentiflow_udfs::text::LANGUAGE_REASON_PREFIX.to_string()));
    let params = vec![("from", timestamp_param(from)), ("to", timestamp_param(to)), ("language_prefix", prefix)];
    let summary = crate::io::diagnose::collect(sql::query(&jc.ctx, "report_summary", params).await?).await?;
    let sb = summary.first().ok_or_else(|| Error::Internal("summary query returned nothing".into()))?;
    let get = |name: &str| i64s(sb, name).map(|v| v.first().copied().flatten().unwrap_or(0));
    Ok(Summary {
        n_rows: get("n_rows")?,
        n_scored: get("n_scored")?,
        n_unscorable: get("n_unscorable")?,
        n_other_language: get("n_other_language")?,
        n_fallback: get("n_fallback")?,
        n_neg: get("n_negative")?,
        n_neu: get("n_neutral")?,
        n_pos: get("n_positive")?,
        n_sources: get("n_sources")?,
        avg: f64s(sb, "avg_score")?.first().copied().flatten(),
        first_at: times(sb, "first_at")?.first().copied().flatten(),
        last_at: times(sb, "last_at")?.first().copied().flatten(),
        scorers: strs(sb, "scorers")?.first().cloned().flatten().unwrap_or_default(),
    })
}

async fn load_sources(jc: &JobContext, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<SourceRow>> {
    let mut sources = Vec::new();
    for b in rows(jc, "report_sources", from, to).await? {
        let (s, n, a, ng, nu, p) = (
            strs(&b, "source")?,
            i64s(&b, "n")?,
            f64s(&b, "avg_score")?,
            i64s(&b, "n_negative")?,
            i64s(&b, "n_neutral")?,
            i64s(&b, "n_positive")?,
        );
        for i in 0..b.num_rows() {
            sources.push(SourceRow {
                source: s[i].clone().unwrap_or_default(),
                n: n[i].unwrap_or_default(),
                avg: a[i],
                negative: ng[i].unwrap_or_default(),
                neutral: nu[i].unwrap_or_default(),
                positive: p[i].unwrap_or_default(),
            });
        }
    }
    Ok(sources)
}

async fn load_bins(jc: &JobContext, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<svg::Bin>> {
    let mut bins: Vec<svg::Bin> =
        (0..20).map(|i| svg::Bin { lo: -1.0 + i as f64 * 0.1, hi: -0.9 + i as f64 * 0.1, n: [0; 3] }).collect();
    for b in rows(jc, "report_distribution", from, to).await? {
        let (bin, label, n) = (i64s(&b, "bin")?, strs(&b, "label")?, i64s(&b, "n")?);
        for i in 0..b.num_rows() {
            let class = match label[i].as_deref().and_then(sentiflow_udfs::Label::from_name) {
                Some(sentiflow_udfs::Label::Negative) => 0,
                Some(sentiflow_udfs::Label::Neutral) => 1,
                _ => 2,
            };
            if let (Some(k), Some(c)) = (bin[i], n[i])
                && let Some(slot) = bins.get_mut(k.clamp(0, 19) as usize)
            {
                slot.n[class] += c;
            }
        }
    }
    Ok(bins)
}

async fn load_extremes(jc: &JobContext, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<Extreme>> {
    let mut extremes: Vec<Extreme> = Vec::new();
    for b in rows(jc, "report_extremes", from, to).await? {
        let (side, at, src, score, text) = (
            strs(&b, "side")?,
            times(&b, "created_at")?,
            strs(&b, "source")?,
            f64s(&b, "sentiment_score")?,
            strs(&b, "text")?,
        );
        for i in 0..b.num_rows() {
            extremes.push((
                side[i].clone().unwrap_or_default(),
                at[i],
                src[i].clone().unwrap_or_default(),
                score[i],
                text[i].clone().unwrap_or_default(),
            ));
        }
    }
    Ok(extremes)
}

async fn load_alerts(jc: &JobContext, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<AlertRow>> {
    let mut alerts: Vec<AlertRow> = Vec::new();
    for b in rows(jc, "report_alerts", from, to).await? {
        let (at, rule, src, msg) =
            (times(&b, "window_start")?, strs(&b, "rule")?, strs(&b, "source")?, strs(&b, "message")?);
        for i in 0..b.num_rows() {
            alerts.push((
                at[i],
                rule[i].clone().unwrap_or_default(),
                src[i].clone(),
                msg[i].clone().unwrap_or_default(),
            ));
        }
    }
    Ok(alerts)
}

/// The HTML page, and the time chart's SVG (also rendered to PNG).
fn render(d: &ReportData) -> (String, String) {
    let ReportData { points, alerts, bins, sources, has_alerts, .. } = d;
    let Summary { n_rows, n_scored, n_unscorable, n_other_language, n_neg, n_pos, n_sources, avg, .. } = &d.summary;
    let (n_rows, n_scored, n_neg, n_pos, avg, n_rejected) = (*n_rows, *n_scored, *n_neg, *n_pos, *avg, d.n_rejected);
    let marks: Vec<AlertMark> = alerts
        .iter()
        .filter_map(|(at, rule, src, msg)| {
            at.map(|t| AlertMark {
                at_us: t,
                label: format!(
                    "{} UTC · {rule}{}: {msg}",
                    fmt_ts(Some(t)),
                    src.as_ref().map(|s| format!(" ({s})")).unwrap_or_default()
                ),
            })
        })
        .collect();
    let window_len =
        points.first().map(|p| crate::window::fmt_duration(chrono::Duration::microseconds(p.end_us - p.start_us)));
    let period = match (points.first(), points.last()) {
        (Some(a), Some(b)) => format!("{} – {}", fmt_ts(Some(a.start_us)), fmt_ts(Some(b.end_us))),
        _ => "no windows".into(),
    };

    let chart_time = svg::sentiment_over_time(
        points,
        &marks,
        &format!("Average sentiment per {} window, with tweet volume", window_len.clone().unwrap_or_default()),
    );
    let mut h = String::with_capacity(256 * 1024);
    let _ = write!(
        h,
        r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sentiment report · {period}</title>
<style>
body {{ font-family: "DejaVu Sans", Verdana, Arial, sans-serif; color: #1d2530; margin: 0; background: #f4f6f8; }}
main {{ max-width: 1000px; margin: 0 auto; padding: 24px 20px 48px; }}
h1 {{ margin: 0 0 4px; font-size: 28px; }} h2 {{ font-size: 19px; margin: 32px 0 6px; }}
.sub, .note {{ color: #4a5560; }} .note {{ font-size: 14px; margin: 0 0 10px; }}
.kpis {{ display: flex; flex-wrap: wrap; gap: 12px; margin: 20px 0 8px; }}
.kpi {{ background: #fff; border-radius: 8px; padding: 12px 16px; min-width: 150px; box-shadow: 0 1px 2px rgba(0,0,0,.08); }}
.kpi b {{ display: block; font-size: 24px; }} .kpi span {{ color: #4a5560; font-size: 13px; }}
svg.chart {{ background: #fff; border-radius: 8px; box-shadow: 0 1px 2px rgba(0,0,0,.08); max-width: 100%; height: auto; }}
table {{ border-collapse: collapse; width: 100%; background: #fff; font-size: 14px; box-shadow: 0 1px 2px rgba(0,0,0,.08); }}
th, td {{ text-align: left; padding: 6px 10px; border-bottom: 1px solid #e6e9ed; vertical-align: top; }}
th {{ background: #eef1f4; }} h3.driver-window {{ font-size: 15px; margin: 18px 0 6px; }}
ul.driver-tweets {{ margin: 6px 0 0; padding-left: 20px; font-size: 14px; }} td.num {{ text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }}
.pos {{ color: #2e8b57; }} .neg {{ color: #c0392b; }}
dl {{ display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; background: #fff; padding: 12px 16px; border-radius: 8px; }}
dt {{ color: #4a5560; }} dd {{ margin: 0; }}
</style></head><body><main>
<h1>Sentiment report</h1>
<p class="sub">{period} · {tweets} tweets from {n_sources} sources · all times are UTC</p>
<section class="kpis">
<div class="kpi"><b>{tweets}</b><span>tweets in the period</span></div>
<div class="kpi"><b>{avg}</b><span>average sentiment (−1 … +1)</span></div>
<div class="kpi"><b>{neg_share}</b><span>negative tweets</span></div>
<div class="kpi"><b>{pos_share}</b><span>positive tweets</span></div>
<div class="kpi"><b>{n_unscorable}</b><span>could not be scored ({n_other_language} in a language the model does not read)</span></div>
<div class="kpi"><b>{n_rejected}</b><span>input records rejected</span></div>
</section>
<h2>Sentiment over time</h2>
<p class="note">The blue line is the average score of the tweets in each window (above 0 = more positive). Grey bars show how many tweets each window had. Orange markers are alerts.</p>
{chart_time}
<h2>Share of negative tweets</h2>
<p class="note">Percentage of scored tweets labelled negative in each window.</p>
{chart_neg}
<h2>How sentiment is distributed</h2>
<p class="note">Number of tweets per score band of 0.1, each bar split by label: red negative, grey neutral, green positive (a label is the most probable class, so a band can hold more than one). The legend gives each label's share of the scored tweets.</p>
{chart_dist}
<h2>By source</h2>
<p class="note">Each source's mix of negative, neutral and positive tweets, and its average score.</p>
{chart_src}
"##,
        tweets = svg::fmt_num(n_rows as f64),
        avg = avg.map(|a| format!("{a:+.3}")).unwrap_or_else(|| "–".into()),
        neg_share = pct(n_neg, n_scored),
        pos_share = pct(n_pos, n_scored),
        chart_neg = svg::share_negative(points, "Negative tweets per window"),
        chart_dist = svg::distribution(bins, "Distribution of sentiment scores"),
        chart_src = svg::sources(sources, "Sentiment by source"),
    );
    drivers::render(&mut h, d.drivers.as_deref());
    render_tables(&mut h, &d.extremes, alerts, *has_alerts);
    render_about(&mut h, d, &period, window_len);
    (h, chart_time)
}

/// The most positive and negative tweets, and the alerts.
fn render_tables(h: &mut String, extremes: &[Extreme], alerts: &[AlertRow], has_alerts: bool) {
    for (side, title) in [("positive", "Most positive tweets"), ("negative", "Most negative tweets")] {
        let _ = write!(
            h,
            r##"<h2>{title}</h2><table class="extremes {side}"><tr><th>Score</th><th>Time (UTC)</th><th>Source</th><th>Text</th></tr>"##
        );
        for (s, at, src, score, text) in extremes.iter().filter(|e| e.0 == side) {
            let cls = if s == "positive" { "pos" } else { "neg" };
            let _ = write!(
                h,
                r##"<tr><td class="num {cls}">{}</td><td class="num">{}</td><td>{}</td><td>{}</td></tr>"##,
                score.map(|v| format!("{v:+.3}")).unwrap_or_default(),
                fmt_ts(*at).trim_end_matches(" UTC"),
                esc(src),
                esc(text)
            );
        }
        h.push_str("</table>\n");
    }
    h.push_str("<h2>Alerts</h2>\n");
    if alerts.is_empty() {
        let why = if has_alerts {
            "No alert fired in this period."
        } else {
            "No alerts table in this data (alerts are written by streaming mode)."
        };
        let _ = write!(h, r##"<p class="note alerts-none">{why}</p>"##);
    } else {
        h.push_str(r##"<table class="alerts"><tr><th>Window (UTC)</th><th>Rule</th><th>Source</th><th>What happened</th></tr>"##);
        for (at, rule, src, msg) in alerts {
            let _ = write!(
                h,
                "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                fmt_ts(*at).trim_end_matches(" UTC"),
                esc(rule),
                esc(src.as_deref().unwrap_or("all")),
                esc(msg)
            );
        }
        h.push_str("</table>\n");
    }
}

/// The "About this report" block and the end of the page.
fn render_about(h: &mut String, d: &ReportData, period: &str, window_len: Option<String>) {
    let Summary {
        n_rows,
        n_scored,
        n_unscorable,
        n_other_language,
        n_fallback,
        n_neg,
        n_neu,
        n_pos,
        first_at,
        last_at,
        scorers,
        ..
    } = &d.summary;
    let fallback = if *n_fallback > 0 {
        format!("; {n_fallback} in other languages handed to the fallback scorer")
    } else {
        String::new()
    };
    let (root_display, n_rejected, points) = (&d.data, d.n_rejected, &d.points);
    let (first_at, last_at) = (*first_at, *last_at);
    let _ = write!(
        h,
        r##"<h2>About this report</h2>
<dl class="meta">
<dt>Data</dt><dd>{data}</dd>
<dt>Period</dt><dd>{period}; first tweet {first}, last {last}</dd>
<dt>Windows</dt><dd>{n_windows} windows of {window_len}</dd>
<dt>Scorer</dt><dd>{scorers}</dd>
<dt>Tweets</dt><dd>{n_rows} ({n_scored} scored: {n_neg} negative, {n_neu} neutral, {n_pos} positive; {n_unscorable} unscorable, of which {n_other_language} in a language the model does not read{fallback})</dd>
<dt>Rejected records</dt><dd>{n_rejected} (all runs; see _rejected/)</dd>
<dt>Generated</dt><dd>{now} by sentiflow {version}</dd>
</dl>
</main></body></html>
"##,
        data = esc(root_display),
        first = fmt_ts(first_at),
        last = fmt_ts(last_at),
        n_windows = points.len(),
        window_len = window_len.unwrap_or_else(|| "–".into()),
        scorers = esc(scorers),
        now = Utc::now().format("%Y-%m-%d %H:%M UTC"),
        version = env!("CARGO_PKG_VERSION"),
    );
}
