//! Hand-written SVG charts: no JavaScript, no CDN, readable without a server.
//!
//! Every chart has a title, labelled axes with units, and states UTC where it
//! shows time. All text that comes from data is escaped.

use std::fmt::Write;

use chrono::{DateTime, Utc};

pub const WIDTH: f64 = 960.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 72.0;
const TOP: f64 = 44.0;
const BOTTOM: f64 = 64.0;

pub const C_LINE: &str = "#1f5fa8";
pub const C_BAR: &str = "#c9d3de";
pub const C_NEG: &str = "#c0392b";
pub const C_NEU: &str = "#9aa5b1";
pub const C_POS: &str = "#2e8b57";
pub const C_ALERT: &str = "#d35400";
const C_GRID: &str = "#e6e9ed";
const C_AXIS: &str = "#4a5560";
const FONT: &str = "font-family=\"DejaVu Sans, Verdana, sans-serif\"";

/// Escapes text for HTML and SVG.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// One window for the time charts.
#[derive(Debug, Clone)]
pub struct WindowPoint {
    pub start_us: i64,
    pub end_us: i64,
    pub n: i64,
    pub avg: Option<f64>,
    pub share_negative: Option<f64>,
}

/// An alert marker on the time axis.
#[derive(Debug, Clone)]
pub struct AlertMark {
    pub at_us: i64,
    pub label: String,
}

fn header(out: &mut String, class: &str, height: f64, title: &str) {
    let _ = write!(
        out,
        r##"<svg class="chart {class}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img" {FONT} font-size="12"><title>{t}</title><rect width="{WIDTH}" height="{height}" fill="#ffffff"/><text x="{LEFT}" y="24" font-size="16" font-weight="bold" fill="#1d2530">{t}</text>"##,
        t = esc(title)
    );
}

/// A "nice" step (1, 2, 2.5, 5 × 10^k) giving about `target` intervals.
pub fn nice_step(range: f64, target: f64) -> f64 {
    if range <= 0.0 || !range.is_finite() {
        return 1.0;
    }
    let raw = range / target;
    let mag = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * mag >= raw {
            return m * mag;
        }
    }
    10.0 * mag
}

/// `12,345`, `0.5`, `-1`.
pub fn fmt_num(v: f64) -> String {
    if v.abs() >= 1000.0 && v.fract() == 0.0 {
        let s = format!("{}", v as i64);
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 && c != '-' {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if v.fract() == 0.0 {
        format!("{}", v as i64)
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Time axis ticks: a step from a fixed ladder, labels in UTC.
fn time_ticks(t0: i64, t1: i64) -> (Vec<i64>, bool) {
    const MIN: i64 = 60_000_000;
    let ladder = [5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080].map(|m| m * MIN);
    let span = (t1 - t0).max(1);
    let step = ladder.iter().copied().find(|s| span / s <= 10).unwrap_or(30 * 1440 * MIN);
    let first = t0.div_euclid(step) * step + if t0.rem_euclid(step) == 0 { 0 } else { step };
    let ticks = (0..).map(|i| first + i * step).take_while(|t| *t <= t1).collect();
    (ticks, span > 1440 * MIN)
}

fn fmt_time(us: i64, with_date: bool) -> String {
    let t = DateTime::<Utc>::from_timestamp_micros(us).unwrap_or_default();
    if with_date { t.format("%m-%d %H:%M").to_string() } else { t.format("%H:%M").to_string() }
}

struct TimeAxis {
    t0: i64,
    t1: i64,
    plot_w: f64,
}

impl TimeAxis {
    fn x(&self, t: i64) -> f64 {
        LEFT + (t - self.t0) as f64 / (self.t1 - self.t0).max(1) as f64 * self.plot_w
    }

    fn draw(&self, out: &mut String, y_base: f64, top: f64) {
        let (ticks, with_date) = time_ticks(self.t0, self.t1);
        for t in ticks {
            let x = self.x(t);
            let _ = write!(
                out,
                r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{y_base}" stroke="{C_GRID}"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="{C_AXIS}">{}</text>"##,
                y_base + 16.0,
                fmt_time(t, with_date)
            );
        }
        let day0 = DateTime::<Utc>::from_timestamp_micros(self.t0).unwrap_or_default().format("%Y-%m-%d");
        let day1 = DateTime::<Utc>::from_timestamp_micros(self.t1 - 1).unwrap_or_default().format("%Y-%m-%d");
        let days = if day0.to_string() == day1.to_string() { day0.to_string() } else { format!("{day0} … {day1}") };
        let _ = write!(
            out,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="{C_AXIS}">Window start, UTC ({days})</text>"##,
            LEFT + self.plot_w / 2.0,
            y_base + 40.0
        );
    }
}

fn y_label(out: &mut String, x: f64, y: f64, text: &str) {
    let _ = write!(
        out,
        r##"<text transform="translate({x:.1},{y:.1}) rotate(-90)" text-anchor="middle" fill="{C_AXIS}">{}</text>"##,
        esc(text)
    );
}

/// Horizontal grid lines with left-axis labels at `ticks` (the zero line
/// drawn stronger when `strong_zero`).
fn y_grid(o: &mut String, ticks: &[f64], y: impl Fn(f64) -> f64, label: impl Fn(f64) -> String, strong_zero: bool) {
    let plot_w = WIDTH - LEFT - RIGHT;
    for &v in ticks {
        let yy = y(v);
        let stroke = if strong_zero && v == 0.0 { "#aab4bf" } else { C_GRID };
        let _ = write!(
            o,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="{stroke}"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="{C_AXIS}">{}</text>"##,
            LEFT + plot_w,
            LEFT - 8.0,
            yy + 4.0,
            label(v)
        );
    }
}

/// 0, step, 2·step … up to `top`.
fn steps(top: f64, step: f64) -> Vec<f64> {
    (0..).map(|i| i as f64 * step).take_while(|v| *v <= top + 1e-9).collect()
}

/// Average sentiment per window (line, left axis) over volume (bars, right
/// axis), with alerts as vertical markers.
pub fn sentiment_over_time(points: &[WindowPoint], alerts: &[AlertMark], title: &str) -> String {
    let height = 380.0;
    let mut o = String::new();
    header(&mut o, "chart-sentiment", height, title);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = height - TOP - BOTTOM;
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        let _ = write!(o, r##"<text x="{LEFT}" y="80" fill="{C_AXIS}">No windows in this period.</text></svg>"##);
        return o;
    };
    let axis = TimeAxis { t0: first.start_us, t1: last.end_us, plot_w };
    let y_score = |v: f64| TOP + (1.0 - v) / 2.0 * plot_h;
    let max_n = points.iter().map(|p| p.n).max().unwrap_or(0).max(1) as f64;
    let n_step = nice_step(max_n, 4.0);
    let n_top = (max_n / n_step).ceil() * n_step;
    // volume lives in the bottom third, under the line
    let vol_h = plot_h * 0.33;
    let y_n = |v: f64| TOP + plot_h - v / n_top * vol_h;

    y_grid(&mut o, &[-1.0, -0.5, 0.0, 0.5, 1.0], y_score, fmt_num, true);
    // right axis (volume)
    for v in steps(n_top, n_step) {
        let _ = write!(
            o,
            r##"<text x="{:.1}" y="{:.1}" fill="{C_AXIS}">{}</text>"##,
            LEFT + plot_w + 8.0,
            y_n(v) + 4.0,
            fmt_num(v)
        );
    }
    axis.draw(&mut o, TOP + plot_h, TOP);
    // volume bars
    o.push_str(r##"<g class="volume-bars">"##);
    for p in points {
        let x0 = axis.x(p.start_us);
        let w = (axis.x(p.end_us) - x0 - 0.5).max(0.6);
        let y = y_n(p.n as f64);
        let _ = write!(
            o,
            r##"<rect x="{x0:.2}" y="{y:.2}" width="{w:.2}" height="{:.2}" fill="{C_BAR}"><title>{} UTC: {} tweets</title></rect>"##,
            TOP + plot_h - y,
            fmt_time(p.start_us, true),
            p.n
        );
    }
    o.push_str("</g>");
    // average line, broken where a window has no score
    let mut d = String::new();
    let mut pen_down = false;
    for p in points {
        match p.avg {
            Some(a) => {
                let x = axis.x(p.start_us) + (axis.x(p.end_us) - axis.x(p.start_us)) / 2.0;
                let _ = write!(d, "{}{x:.2},{:.2} ", if pen_down { "L" } else { "M" }, y_score(a));
                pen_down = true;
            }
            None => pen_down = false,
        }
    }
    let _ =
        write!(o, r##"<path class="avg-line" d="{}" fill="none" stroke="{C_LINE}" stroke-width="1.8"/>"##, d.trim());
    // alerts
    for a in alerts {
        if a.at_us < axis.t0 || a.at_us > axis.t1 {
            continue;
        }
        let x = axis.x(a.at_us);
        let _ = write!(
            o,
            r##"<g class="alert-mark"><line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="{C_ALERT}" stroke-width="1.5" stroke-dasharray="4 3"/><path d="M{:.1},{:.1} l5,-9 l-10,0 z" fill="{C_ALERT}"/><title>{}</title></g>"##,
            TOP + plot_h,
            x,
            TOP - 1.0,
            esc(&a.label)
        );
    }
    y_label(&mut o, 18.0, TOP + plot_h / 2.0, "Average sentiment score (−1 negative … +1 positive)");
    y_label(&mut o, WIDTH - 14.0, TOP + plot_h / 2.0, "Tweets per window (grey bars)");
    o.push_str("</svg>");
    o
}

/// Share of negative tweets per window, 0–100 %.
pub fn share_negative(points: &[WindowPoint], title: &str) -> String {
    let height = 260.0;
    let mut o = String::new();
    header(&mut o, "chart-negative", height, title);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = height - TOP - BOTTOM;
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        o.push_str("</svg>");
        return o;
    };
    let axis = TimeAxis { t0: first.start_us, t1: last.end_us, plot_w };
    let y = |v: f64| TOP + plot_h - v * plot_h;
    y_grid(&mut o, &[0.0, 0.25, 0.5, 0.75, 1.0], y, |v| format!("{}%", (v * 100.0) as i64), false);
    axis.draw(&mut o, TOP + plot_h, TOP);
    let mut d = String::new();
    let mut pen_down = false;
    let mut area = String::new();
    for p in points {
        if let Some(s) = p.share_negative {
            let x = axis.x(p.start_us) + (axis.x(p.end_us) - axis.x(p.start_us)) / 2.0;
            let _ = write!(d, "{}{x:.2},{:.2} ", if pen_down { "L" } else { "M" }, y(s));
            let _ = write!(area, "{x:.2},{:.2} ", y(s));
            pen_down = true;
        } else {
            pen_down = false;
        }
    }
    let _ = write!(
        o,
        r##"<path class="negative-line" d="{}" fill="none" stroke="{C_NEG}" stroke-width="1.6"/>"##,
        d.trim()
    );
    y_label(&mut o, 18.0, TOP + plot_h / 2.0, "Negative tweets (% of scored)");
    o.push_str("</svg>");
    o
}

/// One band of the score histogram: [lo, hi) and its tweets by label
/// (negative, neutral, positive).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bin {
    pub lo: f64,
    pub hi: f64,
    pub n: [i64; 3],
}

/// Histogram of scores over [-1, 1], each bar stacked by label (negative,
/// neutral, positive), with the labels' shares in the legend.
pub fn distribution(bins: &[Bin], title: &str) -> String {
    let height = 300.0;
    let mut o = String::new();
    header(&mut o, "chart-distribution", height, title);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = height - TOP - BOTTOM;
    let x = |v: f64| LEFT + (v + 1.0) / 2.0 * plot_w;
    let totals: [i64; 3] = [0, 1, 2].map(|c| bins.iter().map(|b| b.n[c]).sum());
    let all = totals.iter().sum::<i64>().max(1) as f64;
    let _ = write!(o, r##"<g class="legend">"##);
    for (k, (name, color)) in [("negative", C_NEG), ("neutral", C_NEU), ("positive", C_POS)].into_iter().enumerate() {
        let lx = LEFT + 8.0 + k as f64 * 150.0;
        let _ = write!(
            o,
            r##"<rect x="{lx:.1}" y="{:.1}" width="10" height="10" fill="{color}"/><text x="{:.1}" y="{:.1}" fill="{C_AXIS}">{name} {:.1} %</text>"##,
            TOP - 14.0,
            lx + 14.0,
            TOP - 5.0,
            100.0 * totals[k] as f64 / all
        );
    }
    o.push_str("</g>");
    let max = bins.iter().map(|b| b.n.iter().sum::<i64>()).max().unwrap_or(0).max(1) as f64;
    let step = nice_step(max, 4.0);
    let top = (max / step).ceil() * step;
    let y = |v: f64| TOP + plot_h - v / top * plot_h;
    y_grid(&mut o, &steps(top, step), y, fmt_num, false);
    o.push_str(r##"<g class="histogram-bars">"##);
    for b in bins {
        let x0 = x(b.lo) + 1.0;
        let w = (x(b.hi) - x(b.lo) - 2.0).max(0.5);
        let mut below = 0i64;
        for (k, (name, color)) in [("negative", C_NEG), ("neutral", C_NEU), ("positive", C_POS)].into_iter().enumerate()
        {
            let n = b.n[k];
            if n == 0 {
                continue;
            }
            let _ = write!(
                o,
                r##"<rect x="{x0:.1}" y="{:.1}" width="{w:.1}" height="{:.1}" fill="{color}"><title>{:+.1} … {:+.1}: {n} {name} tweets</title></rect>"##,
                y((below + n) as f64),
                y(below as f64) - y((below + n) as f64),
                b.lo,
                b.hi
            );
            below += n;
        }
    }
    o.push_str("</g>");
    for v in [-1.0, -0.5, 0.0, 0.5, 1.0] {
        let _ = write!(
            o,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="{C_AXIS}">{}</text>"##,
            x(v),
            TOP + plot_h + 16.0,
            fmt_num(v)
        );
    }
    let _ = write!(
        o,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="{C_AXIS}">Sentiment score (−1 negative … +1 positive)</text>"##,
        LEFT + plot_w / 2.0,
        TOP + plot_h + 40.0
    );
    y_label(&mut o, 18.0, TOP + plot_h / 2.0, "Tweets");
    o.push_str("</svg>");
    o
}

/// One source for the comparison chart.
#[derive(Debug, Clone)]
pub struct SourceRow {
    pub source: String,
    pub n: i64,
    pub avg: Option<f64>,
    pub negative: i64,
    pub neutral: i64,
    pub positive: i64,
}

/// Per source: label shares as a stacked bar, and the average score.
pub fn sources(rows: &[SourceRow], title: &str) -> String {
    let row_h = 34.0;
    let height = TOP + 30.0 + rows.len() as f64 * row_h + 56.0;
    let mut o = String::new();
    header(&mut o, "chart-sources", height, title);
    let label_w = 130.0;
    let bar_x = LEFT + label_w;
    let bar_w = 460.0;
    let avg_x = bar_x + bar_w + 60.0;
    let avg_w = WIDTH - avg_x - 30.0;
    let top = TOP + 26.0;
    let _ = write!(
        o,
        r##"<text x="{bar_x}" y="{:.1}" fill="{C_AXIS}">Share of tweets by label (%): negative / neutral / positive</text><text x="{avg_x}" y="{:.1}" fill="{C_AXIS}">Average score (−1 … +1)</text>"##,
        top - 8.0,
        top - 8.0
    );
    let ax = |v: f64| avg_x + (v + 1.0) / 2.0 * avg_w;
    let _ = write!(
        o,
        r##"<line x1="{:.1}" y1="{top}" x2="{:.1}" y2="{:.1}" stroke="#aab4bf"/>"##,
        ax(0.0),
        ax(0.0),
        top + rows.len() as f64 * row_h
    );
    for (i, r) in rows.iter().enumerate() {
        let y = top + i as f64 * row_h;
        let total = (r.negative + r.neutral + r.positive).max(1) as f64;
        let _ = write!(
            o,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#1d2530">{} ({})</text>"##,
            bar_x - 8.0,
            y + 20.0,
            esc(&r.source),
            fmt_num(r.n as f64)
        );
        let mut x = bar_x;
        for (count, color, name) in
            [(r.negative, C_NEG, "negative"), (r.neutral, C_NEU, "neutral"), (r.positive, C_POS, "positive")]
        {
            let w = count as f64 / total * bar_w;
            let pct = count as f64 / total * 100.0;
            let _ = write!(
                o,
                r##"<rect class="source-bar" x="{x:.1}" y="{:.1}" width="{w:.1}" height="{:.1}" fill="{color}"><title>{}: {pct:.1}% {name}</title></rect>"##,
                y + 6.0,
                row_h - 10.0,
                esc(&r.source)
            );
            if w > 34.0 {
                let _ = write!(
                    o,
                    r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#ffffff">{pct:.0}%</text>"##,
                    x + w / 2.0,
                    y + 21.0
                );
            }
            x += w;
        }
        if let Some(a) = r.avg {
            let (x0, x1) = if a < 0.0 { (ax(a), ax(0.0)) } else { (ax(0.0), ax(a)) };
            let color = if a < 0.0 { C_NEG } else { C_POS };
            let _ = write!(
                o,
                r##"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{color}"/><text x="{:.1}" y="{:.1}" fill="#1d2530">{a:+.3}</text>"##,
                y + 9.0,
                (x1 - x0).max(1.0),
                row_h - 16.0,
                x1.max(ax(0.0)) + 6.0,
                y + 21.0
            );
        }
    }
    let yb = top + rows.len() as f64 * row_h + 18.0;
    for v in [-1.0, 0.0, 1.0] {
        let _ = write!(
            o,
            r##"<text x="{:.1}" y="{yb:.1}" text-anchor="middle" fill="{C_AXIS}">{}</text>"##,
            ax(v),
            fmt_num(v)
        );
    }
    o.push_str("</svg>");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(esc(r##"<script>"a"&'b'</script>"##), "&lt;script&gt;&quot;a&quot;&amp;&#39;b&#39;&lt;/script&gt;");
    }

    #[test]
    fn nice_steps_and_ticks() {
        assert_eq!(nice_step(100.0, 4.0), 25.0);
        assert_eq!(nice_step(7.0, 4.0), 2.0);
        let (ticks, with_date) = time_ticks(0, 24 * 3_600_000_000);
        assert!(ticks.len() <= 11 && ticks.len() >= 4, "{ticks:?}");
        assert!(!with_date);
        assert_eq!(fmt_num(12345.0), "12,345");
    }

    #[test]
    fn chart_has_line_bars_and_alerts() {
        let pts: Vec<WindowPoint> = (0..10)
            .map(|i| WindowPoint {
                start_us: i * 300_000_000,
                end_us: (i + 1) * 300_000_000,
                n: 10 + i,
                avg: if i == 4 { None } else { Some(0.1 * i as f64 - 0.5) },
                share_negative: Some(0.3),
            })
            .collect();
        let svg = sentiment_over_time(&pts, &[AlertMark { at_us: 900_000_000, label: "neg > 40% <x>".into() }], "T");
        assert_eq!(svg.matches("<rect x=").count(), 10);
        let line = svg.split("class=\"avg-line\" d=\"").nth(1).and_then(|r| r.split('"').next()).expect("avg line");
        assert_eq!(line.matches('M').count(), 2, "line breaks at the unscored window: {line}");
        assert_eq!(line.matches('L').count(), 7);
        assert!(svg.contains("neg &gt; 40% &lt;x&gt;"));
        assert!(svg.contains("UTC"));
    }
}
