//! The HTML report, rendered by a real browser (headless Chromium), and the PNG chart.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use sentiflow_jobs::schema::Table;

use crate::common::*;

/// Decodes a PNG: (width, height, distinct colours, share of pixels that are not the most common colour).
fn png_stats(path: &Path) -> (u32, u32, usize, f64) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).expect("png file")));
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("png data");
    let bpp = info.color_type.samples();
    let mut counts = std::collections::HashMap::new();
    for px in buf[..info.buffer_size()].chunks(bpp) {
        *counts.entry(px[..3.min(bpp)].to_vec()).or_insert(0usize) += 1;
    }
    let total = (info.width * info.height) as f64;
    let top = counts.values().copied().max().unwrap_or(0) as f64;
    (info.width, info.height, counts.len(), 1.0 - top / total)
}

fn chromium() -> Option<String> {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()) {
            return Some(c.to_string());
        }
    }
    if std::env::var_os("SENTIFLOW_SKIP_BROWSER").is_some() {
        eprintln!("SKIPPED the browser check: SENTIFLOW_SKIP_BROWSER is set and no chromium was found");
        return None;
    }
    panic!("no chromium: install it (apt-get install chromium; scripts/test.sh does) or set SENTIFLOW_SKIP_BROWSER=1");
}

fn headless(bin: &str, profile: &Path, extra: &[&str], url: &str) -> std::process::Output {
    let mut args = vec![
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
    ];
    let prof = format!("--user-data-dir={}", s(profile));
    args.push(&prof);
    args.extend_from_slice(extra);
    args.push(url);
    Command::new(bin).args(&args).output().expect("chromium runs")
}

fn write_alert(root: &Path) {
    let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp_micros();
    let ts = |v: i64| Arc::new(TimestampMicrosecondArray::from(vec![v]).with_timezone("UTC")) as ArrayRef;
    let st = |v: &str| Arc::new(StringArray::from(vec![v])) as ArrayRef;
    let f = |v: f64| Arc::new(Float64Array::from(vec![v])) as ArrayRef;
    let cols = vec![
        ts(t("2025-02-10T14:00:00Z")),
        ts(t("2025-02-10T14:05:00Z")),
        st("negative_share_high"),
        st("twitter"),
        st("share_negative"),
        f(0.71),
        f(0.6),
        st("71 % negative <in> 14 tweets"),
        ts(t("2025-02-10T14:06:00Z")),
        st("#hack, coinvault"),
    ];
    let batch = RecordBatch::try_new(Table::Alerts.schema(), cols).unwrap();
    let dir = root.join("alerts/dt=2025-02-10");
    std::fs::create_dir_all(&dir).unwrap();
    let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(dir.join("a.parquet")).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[test]
fn report_renders_in_a_browser_with_every_section() {
    let d = tmp();
    let root = d.path().join("out");
    // a hostile tweet: its text must come out escaped
    let raw = d.path().join("raw");
    ok(&["generate", "--rows", "3000", "--to", &s(&raw)]);
    std::fs::write(
        raw.join("evil.json"),
        r#"{"tweet_id":"x1","created_at":"2025-02-10T12:00:00Z","text":"<script>alert('pwned')</script> LOVE it!!! Best, most amazing, wonderful, awesome, happy day ever!!!","source":"twitter"}"#,
    )
    .unwrap();
    std::fs::write(raw.join("bad.json"), "{not json\n").unwrap();
    // the lexicon scores the hostile tweet near +1, so it is among the most positive shown
    // (the 3-class model's probabilities are smoothed: it gives 0.93, below the sample's best)
    let out = ok(&["run", "--out", &s(&root), "--input", &s(&raw), "--scorer", "lexicon"]);
    assert!(out.contains("report:    "), "{out}");
    write_alert(&root);
    let html_path = d.path().join("report.html");
    let png_path = d.path().join("chart.png");
    let out = ok(&["report", "--data", &s(&root), "--out", &s(&html_path), "--png", &s(&png_path)]);
    assert!(out.contains("288 windows, 3001 tweets, 1 alerts"), "{out}");

    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(!html.to_lowercase().contains("<script"), "no script tags at all, and the tweet's is escaped");
    assert!(html.contains("&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;"));
    assert!(html.contains("<b>1</b><span>input records rejected"), "the rejected record is counted");
    assert!(html.contains("Rejected records</dt><dd>1 (all runs"));
    for loader in [" src=", " href=", "<link", "url(", "@import", "<iframe", "<img"] {
        assert!(!html.contains(loader), "self-contained: nothing is loaded ({loader} found)");
    }
    for needle in [
        "chart-sentiment",
        "chart-negative",
        "chart-distribution",
        "chart-sources",
        "Most positive tweets",
        "Most negative tweets",
        "negative_share_high",
        "71 % negative &lt;in&gt; 14 tweets",
        "alert-mark",
        "UTC",
        "vader-lexicon",
        "Tweets per window",
        "Average sentiment score",
        "in a language the model does not read",
        "neutral tweets</title>",
        // what drove it: the most negative windows (the planted hack) and the alert's window
        "What drove it",
        "<table class=\"drivers\">",
        "alert: negative_share_high",
        "coinvault",
        "class=\"driver-tweets\"",
    ] {
        assert!(html.contains(needle), "report lacks {needle}");
    }

    // the PNG chart: the sentiment-over-time SVG at 2x
    let (w, h, colours, ink) = png_stats(&png_path);
    assert_eq!((w, h), (1920, 760));
    assert!(colours > 20 && ink > 0.05, "chart PNG has content: {colours} colours, {ink:.3} ink");

    // a real browser: DOM after parsing, console, screenshot
    let Some(bin) = chromium() else { return };
    let url = format!("file://{}", s(&html_path));
    let dom = headless(&bin, &d.path().join("prof1"), &["--dump-dom"], &url);
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.status.success(), "{}", String::from_utf8_lossy(&dom.stderr));
    for class in ["chart-sentiment", "chart-negative", "chart-distribution", "chart-sources"] {
        assert!(dom_text.contains(&format!("class=\"chart {class}\"")), "rendered DOM lacks {class}");
    }
    assert!(dom_text.matches("<rect").count() > 300, "bars rendered");
    let stderr = String::from_utf8_lossy(&dom.stderr);
    let console: Vec<&str> = stderr.lines().filter(|l| l.contains("CONSOLE") || l.contains("Uncaught")).collect();
    assert!(console.is_empty(), "console messages: {console:?}");

    let shot = d.path().join("shot.png");
    let run = headless(
        &bin,
        &d.path().join("prof2"),
        &["--window-size=1040,3400", &format!("--screenshot={}", s(&shot))],
        &url,
    );
    assert!(run.status.success() && shot.exists(), "{}", String::from_utf8_lossy(&run.stderr));
    let (w, h, colours, ink) = png_stats(&shot);
    assert_eq!((w, h), (1040, 3400));
    assert!(colours > 50, "screenshot is not blank: {colours} colours");
    assert!(ink > 0.15, "screenshot has content over {:.0} % of the page", ink * 100.0);
}

#[test]
fn report_explains_missing_inputs() {
    let d = tmp();
    let (code, err) = fails(&["report", "--data", &s(d.path())]);
    assert_eq!(code, 2);
    assert!(err.contains("no input files found") && err.contains("scored"), "{err}");
    ok(&["generate", "--rows", "50", "--to", &s(&d.path().join("raw"))]);
    ok(&["score", "--input", &s(&d.path().join("raw")), "--out", &s(d.path())]);
    let (_, err) = fails(&["report", "--data", &s(d.path())]);
    assert!(err.contains("run `sentiflow aggregate"), "{err}");
}
