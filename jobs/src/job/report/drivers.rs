//! The report's "What drove it": for the most negative windows and every
//! window an alert fired in, the window's top terms (`window_terms`) and the
//! most negative tweets containing its top term (`sql/report_drivers.sql`).

use std::fmt::Write;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{ArrayRef, RecordBatch, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::common::ScalarValue;

use super::svg::{WindowPoint, esc};
use super::{AlertRow, f64s, fmt_ts, i64s, strs};
use crate::context::JobContext;
use crate::schema::timestamp_type;
use crate::sql::timestamp_param;
use crate::tables::register_batches;
use crate::{Error, Result, sql};

/// Windows an alert fired in that the section explains at most (the most negative first).
const MAX_ALERT_WINDOWS: usize = 20;
/// Scored tweets a window needs to be among the "most negative".
const MIN_N: i64 = 10;

/// One top term of a window: term, kind, tweets, share negative, lift, neg_lift.
type TermRow = (String, String, i64, Option<f64>, Option<f64>, Option<f64>);

/// One explained window.
pub(super) struct DriverWindow {
    start_us: i64,
    end_us: i64,
    n: i64,
    share_negative: Option<f64>,
    /// The rules that fired in it.
    rules: Vec<String>,
    terms: Vec<TermRow>,
    /// The most negative tweets with the top term: score, text.
    tweets: Vec<(Option<f64>, String)>,
}

/// The windows to explain, with their drivers.
pub(super) async fn load(
    jc: &JobContext,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    points: &[WindowPoint],
    alerts: &[AlertRow],
) -> Result<Vec<DriverWindow>> {
    let params =
        vec![("from", timestamp_param(from)), ("to", timestamp_param(to)), ("min_n", ScalarValue::Int64(Some(MIN_N)))];
    let mut picked: Vec<(i64, Vec<String>)> = Vec::new();
    for b in crate::io::diagnose::collect(sql::query(&jc.ctx, "report_driver_windows", params).await?).await? {
        for start in super::times(&b, "window_start")?.into_iter().flatten() {
            picked.push((start, Vec::new()));
        }
    }
    let mut alert_windows: Vec<(&WindowPoint, String)> = alerts
        .iter()
        .filter_map(|(at, rule, _, _)| points.iter().find(|p| Some(p.start_us) == *at).map(|p| (p, rule.clone())))
        .collect();
    alert_windows.sort_by(|a, b| b.0.share_negative.unwrap_or(0.0).total_cmp(&a.0.share_negative.unwrap_or(0.0)));
    for (p, rule) in alert_windows {
        let room = picked.len() < 5 + MAX_ALERT_WINDOWS;
        match picked.iter_mut().find(|w| w.0 == p.start_us) {
            Some(w) if !w.1.contains(&rule) => w.1.push(rule),
            Some(_) => {}
            None if room => picked.push((p.start_us, vec![rule])),
            None => {}
        }
    }
    picked.sort_by_key(|w| w.0);
    let mut out: Vec<DriverWindow> = picked
        .into_iter()
        .filter_map(|(start_us, rules)| {
            let p = points.iter().find(|p| p.start_us == start_us)?;
            Some(DriverWindow {
                start_us,
                end_us: p.end_us,
                n: p.n,
                share_negative: p.share_negative,
                rules,
                terms: Vec::new(),
                tweets: Vec::new(),
            })
        })
        .collect();
    if out.is_empty() {
        return Ok(out);
    }
    register_windows(jc, &out)?;
    for b in crate::io::diagnose::collect(sql::query(&jc.ctx, "report_drivers", Vec::new()).await?).await? {
        let (start, what) = (super::times(&b, "window_start")?, strs(&b, "what")?);
        let (term, kind, n) = (strs(&b, "term")?, strs(&b, "kind")?, i64s(&b, "n")?);
        let (share, lift, neg_lift) = (f64s(&b, "share_negative")?, f64s(&b, "lift")?, f64s(&b, "neg_lift")?);
        let (score, text) = (f64s(&b, "score")?, strs(&b, "text")?);
        for i in 0..b.num_rows() {
            let Some(w) = out.iter_mut().find(|w| Some(w.start_us) == start[i]) else { continue };
            if what[i].as_deref() == Some("term") {
                let s = |v: &Option<String>| v.clone().unwrap_or_default();
                w.terms.push((s(&term[i]), s(&kind[i]), n[i].unwrap_or(0), share[i], lift[i], neg_lift[i]));
            } else {
                w.tweets.push((score[i], text[i].clone().unwrap_or_default()));
            }
        }
    }
    Ok(out)
}

/// Registers the picked windows as `report_windows(window_start, window_end)`,
/// the table `sql/report_drivers.sql` explains in one scan.
fn register_windows(jc: &JobContext, windows: &[DriverWindow]) -> Result<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("window_start", timestamp_type(), false),
        Field::new("window_end", timestamp_type(), false),
    ]));
    let col = |f: fn(&DriverWindow) -> i64| -> ArrayRef {
        Arc::new(TimestampMicrosecondArray::from(windows.iter().map(f).collect::<Vec<_>>()).with_timezone("UTC"))
    };
    let batch = RecordBatch::try_new(schema.clone(), vec![col(|w| w.start_us), col(|w| w.end_us)])
        .map_err(|e| Error::arrow("the report's windows", e))?;
    register_batches(jc, "report_windows", schema, vec![vec![batch]])
}

/// The section; `None`: the data has no window_terms table.
pub(super) fn render(h: &mut String, windows: Option<&[DriverWindow]>) {
    h.push_str("<h2>What drove it</h2>\n");
    let Some(windows) = windows else {
        h.push_str(
            r##"<p class="note drivers-none">No window_terms table in this data: <code>sentiflow aggregate</code> writes it.</p>"##,
        );
        return;
    };
    h.push_str(
        r##"<p class="note">For the 5 most negative windows and each window an alert fired in: the terms that stood out (lift: how far above the whole period's rate, as a z-score; neg. lift: the same in the window's negative tweets against its others), and the most negative tweets with the top term.</p>
"##,
    );
    if windows.is_empty() {
        h.push_str(r##"<p class="note">No window with enough scored tweets in this period.</p>"##);
    }
    for w in windows {
        let share = w.share_negative.map(|s| format!("{:.0} % negative", 100.0 * s)).unwrap_or_default();
        let alert = if w.rules.is_empty() { String::new() } else { format!(" · alert: {}", esc(&w.rules.join(", "))) };
        let _ = write!(
            h,
            r##"<h3 class="driver-window">{} – {} · {share} · {} tweets{alert}</h3>"##,
            fmt_ts(Some(w.start_us)).trim_end_matches(" UTC"),
            fmt_ts(Some(w.end_us)),
            w.n
        );
        if w.terms.is_empty() {
            h.push_str(r##"<p class="note">No term reached the minimum support in this window.</p>"##);
            continue;
        }
        h.push_str(r##"<table class="drivers"><tr><th>Term</th><th>Kind</th><th>Tweets</th><th>Negative</th><th>Lift</th><th>Neg. lift</th></tr>"##);
        // one decimal; a value that rounds to zero is shown as 0.0, never -0.0
        let f = |v: &Option<f64>| {
            v.map(|v| if v.abs() < 0.05 { "0.0".to_string() } else { format!("{v:+.1}") }).unwrap_or_else(|| "–".into())
        };
        for (term, kind, n, share, lift, neg_lift) in &w.terms {
            let _ = write!(
                h,
                r##"<tr><td><b>{}</b></td><td>{}</td><td class="num">{n}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td></tr>"##,
                esc(term),
                esc(kind),
                share.map(|s| format!("{:.0} %", 100.0 * s)).unwrap_or_else(|| "–".into()),
                f(lift),
                f(neg_lift)
            );
        }
        h.push_str("</table>\n");
        if !w.tweets.is_empty() {
            let _ = write!(h, r##"<ul class="driver-tweets">"##);
            for (score, text) in &w.tweets {
                let _ = write!(
                    h,
                    r##"<li><span class="neg">{}</span> {}</li>"##,
                    score.map(|v| format!("{v:+.2}")).unwrap_or_default(),
                    esc(text)
                );
            }
            h.push_str("</ul>\n");
        }
    }
}
