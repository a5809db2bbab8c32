//! Windows: the SQL against an independent Rust oracle, golden files on the
//! sample data, idempotent partition replacement, the bench contract.

use std::collections::BTreeMap;
use std::path::Path;

use datafusion::arrow::array::{Array, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;

use crate::common::*;
use sentiflow_jobs::schema::Table;

fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> &'a T {
    b.column_by_name(name)
        .unwrap_or_else(|| panic!("column {name}"))
        .as_any()
        .downcast_ref::<T>()
        .unwrap_or_else(|| panic!("type of {name}"))
}

fn strings(b: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let c = cast(b.column_by_name(name).unwrap(), &DataType::Utf8).unwrap();
    c.as_any().downcast_ref::<StringArray>().unwrap().iter().map(|v| v.map(str::to_string)).collect()
}

#[derive(Debug, Default, Clone, PartialEq)]
struct Agg {
    n: i64,
    n_unscored: i64,
    sum: f64,
    min: Option<f64>,
    max: Option<f64>,
    neg: i64,
    pos: i64,
}

const MIN_US: i64 = 60_000_000;

/// Windows computed the plain way: every row added to every window holding it.
async fn oracle(root: &str, window_us: i64, slide_us: i64) -> BTreeMap<(i64, String), Agg> {
    let rows =
        query(root, &[Table::Scored], "SELECT created_at, source, sentiment_score, sentiment_label FROM scored_tweets")
            .await;
    let mut out: BTreeMap<(i64, String), Agg> = BTreeMap::new();
    for b in &rows {
        let t = col::<TimestampMicrosecondArray>(b, "created_at");
        let src = strings(b, "source");
        let score = col::<Float64Array>(b, "sentiment_score");
        let label = strings(b, "sentiment_label");
        for i in 0..b.num_rows() {
            let ts = t.value(i);
            let first = (ts - window_us).div_euclid(slide_us) * slide_us + slide_us;
            let mut start = first;
            while start <= ts {
                assert!(start + window_us > ts && start <= ts);
                let a = out.entry((start, src[i].clone().unwrap())).or_default();
                if score.is_null(i) {
                    a.n_unscored += 1;
                } else {
                    let v = score.value(i);
                    a.n += 1;
                    a.sum += v;
                    a.min = Some(a.min.map_or(v, |m| m.min(v)));
                    a.max = Some(a.max.map_or(v, |m| m.max(v)));
                }
                match label[i].as_deref() {
                    Some("negative") => a.neg += 1,
                    Some("positive") => a.pos += 1,
                    _ => {}
                }
                start += slide_us;
            }
        }
    }
    out
}

fn check_output(batches: &[RecordBatch], expect: &BTreeMap<(i64, String), Agg>, window_us: i64, by_source: bool) {
    let mut seen = 0;
    for b in batches {
        let ws = col::<TimestampMicrosecondArray>(b, "window_start");
        let we = col::<TimestampMicrosecondArray>(b, "window_end");
        let n = col::<Int64Array>(b, "n");
        let nu = col::<Int64Array>(b, "n_unscored");
        let avg = col::<Float64Array>(b, "avg_score");
        let min = col::<Float64Array>(b, "min_score");
        let max = col::<Float64Array>(b, "max_score");
        let neg = col::<Int64Array>(b, "n_negative");
        let pos = col::<Int64Array>(b, "n_positive");
        let share = col::<Float64Array>(b, "share_negative");
        let dt = strings(b, "dt");
        let src = if by_source { strings(b, "source") } else { vec![None; b.num_rows()] };
        for i in 0..b.num_rows() {
            seen += 1;
            let start = ws.value(i);
            let e = match &src[i] {
                Some(s) => {
                    expect.get(&(start, s.clone())).cloned().unwrap_or_else(|| panic!("unexpected window {start} {s}"))
                }
                None => expect.iter().filter(|((w, _), _)| *w == start).fold(Agg::default(), |mut acc, (_, a)| {
                    acc.n += a.n;
                    acc.n_unscored += a.n_unscored;
                    acc.sum += a.sum;
                    acc.min = match (acc.min, a.min) {
                        (Some(x), Some(y)) => Some(x.min(y)),
                        (x, y) => x.or(y),
                    };
                    acc.max = match (acc.max, a.max) {
                        (Some(x), Some(y)) => Some(x.max(y)),
                        (x, y) => x.or(y),
                    };
                    acc.neg += a.neg;
                    acc.pos += a.pos;
                    acc
                }),
            };
            assert_eq!(we.value(i) - start, window_us);
            let day = chrono::DateTime::from_timestamp_micros(start).unwrap().format("%Y-%m-%d").to_string();
            assert_eq!(dt[i].as_deref(), Some(day.as_str()), "dt is the day of window_start");
            assert_eq!(
                (n.value(i), nu.value(i), neg.value(i), pos.value(i)),
                (e.n, e.n_unscored, e.neg, e.pos),
                "counts at {start}"
            );
            if e.n == 0 {
                // every row unscorable (e.g. all in a language the model does not read)
                assert!(avg.is_null(i) && min.is_null(i) && max.is_null(i) && share.is_null(i), "window {start}");
                assert!(e.min.is_none() && e.max.is_none());
                continue;
            }
            assert!((avg.value(i) - e.sum / e.n as f64).abs() < 1e-12, "avg at {start}");
            assert_eq!(Some(min.value(i)), e.min);
            assert_eq!(Some(max.value(i)), e.max);
            assert!((share.value(i) - e.neg as f64 / e.n as f64).abs() < 1e-12);
        }
    }
    let want = if by_source {
        expect.len()
    } else {
        expect.keys().map(|(w, _)| *w).collect::<std::collections::BTreeSet<_>>().len()
    };
    assert_eq!(seen, want, "one output row per window{}", if by_source { " and source" } else { "" });
}

async fn assert_matches_oracle(root: &str, window_min: i64, slide_min: i64) {
    let expect = oracle(root, window_min * MIN_US, slide_min * MIN_US).await;
    assert!(!expect.is_empty());
    let bs = query(root, &[Table::WindowsBySource], "SELECT * FROM windows_by_source").await;
    check_output(&bs, &expect, window_min * MIN_US, true);
    let w = query(root, &[Table::Windows], "SELECT * FROM windows").await;
    check_output(&w, &expect, window_min * MIN_US, false);
}

/// Three days of data: windows cross midnight and partitions.
fn three_days(d: &Path) -> String {
    let root = s(d);
    ok(&["generate", "--rows", "3000", "--span", "3d", "--to", &s(&d.join("raw"))]);
    // the lexicon: fast in debug builds; the window logic does not depend on the scorer
    ok(&["score", "--scorer", "lexicon", "--input", &s(&d.join("raw")), "--out", &root]);
    root
}

#[tokio::test(flavor = "multi_thread")]
async fn tumbling_and_sliding_windows_match_the_oracle() {
    let d = tmp();
    let root = three_days(d.path());
    ok(&["aggregate", "--out", &root]);
    assert_matches_oracle(&root, 5, 5).await;
    let out = ok(&["aggregate", "--out", &root, "--window", "1h", "--slide", "15m"]);
    assert!(out.contains("of 1h sliding every 15m"), "{out}");
    assert_matches_oracle(&root, 60, 15).await;
    // windows starting before the first row exist for sliding windows; all dt partitions present
    let parts = files_below(&d.path().join("windows"));
    assert_eq!(
        parts,
        vec![
            "dt=2025-02-09/part-00000.parquet",
            "dt=2025-02-10/part-00000.parquet",
            "dt=2025-02-11/part-00000.parquet",
            "dt=2025-02-12/part-00000.parquet",
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rerunning_a_range_replaces_its_partitions_only() {
    let d = tmp();
    let root = three_days(d.path());
    ok(&["aggregate", "--out", &root]);
    let total = |root: String| async move {
        scalar_i64(&query(&root, &[Table::Windows], "SELECT count(*) FROM windows").await)
    };
    let n = total(root.clone()).await;
    assert_eq!(n, 3 * 288);
    ok(&["aggregate", "--out", &root]);
    assert_eq!(total(root.clone()).await, n, "re-run does not duplicate");

    // strays (say, files of an older run) in two partitions
    let w = d.path().join("windows");
    for day in ["2025-02-10", "2025-02-11"] {
        std::fs::copy(w.join(format!("dt={day}/part-00000.parquet")), w.join(format!("dt={day}/old-run.parquet")))
            .unwrap();
    }
    assert_eq!(total(root.clone()).await, n + 2 * 288);
    let out = ok(&["aggregate", "--out", &root, "--from", "2025-02-11", "--to", "2025-02-12"]);
    assert!(out.contains("replaced days 2025-02-11 .. 2025-02-12"), "{out}");
    assert!(w.join("dt=2025-02-10/old-run.parquet").exists(), "outside the range: untouched");
    assert!(!w.join("dt=2025-02-11/old-run.parquet").exists(), "inside the range: replaced");
    assert_eq!(total(root.clone()).await, n + 288);
    // open-ended ranges: from a day on, and up to a day
    let out = ok(&["aggregate", "--out", &root, "--from", "2025-02-12"]);
    assert!(out.contains("replaced days 2025-02-12 .. 2200-01-01"), "{out}");
    let out = ok(&["aggregate", "--out", &root, "--to", "2025-02-10T06:00:00Z"]);
    assert!(out.contains("replaced days 1900-01-01 .. 2025-02-11"), "{out}");
    assert!(!w.join("dt=2025-02-10/old-run.parquet").exists(), "--to widened to the whole day 2025-02-10");
    assert_eq!(total(root.clone()).await, n, "open ranges replace, never add");
    let (code, err) = fails(&["aggregate", "--out", &root, "--from", "1800-01-01"]);
    assert_eq!(code, 2);
    assert!(err.contains("between 1900 and 2200"), "{err}");
    ok(&["aggregate", "--out", &root]);
    assert_eq!(total(root.clone()).await, n, "a full run replaces every partition");
    assert_matches_oracle(&root, 5, 5).await;
}

/// Golden outputs of sql/score.sql, sql/windows.sql and sql/windows_by_source.sql
/// on the sample data. SENTIFLOW_BLESS=1 rewrites them after an intended change.
#[test]
fn golden_outputs_on_sample_data() {
    let d = tmp();
    let root = s(d.path());
    // goldens of the lexicon baseline (the ONNX model has its own accuracy tests)
    ok(&["run", "--scorer", "lexicon", "--out", &root]);
    let cases = [
        ("windows.csv", "SELECT * FROM windows ORDER BY window_start"),
        ("windows_by_source.csv", "SELECT * FROM windows_by_source ORDER BY window_start, source"),
        (
            "scored_by_hour.csv",
            "SELECT dt, hour, source, sentiment_label, count(*) AS n, round(sum(sentiment_score), 9) AS sum_score,
                    count(*) FILTER (WHERE sentiment_label = truth_label) AS agrees_with_truth
             FROM scored_tweets GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
        ),
        (
            "scored_head.csv",
            "SELECT tweet_id, created_at, text, source, user_id, lang, ingested_at, truth_label, sentiment_score, sentiment_label, scorer, score_error
             FROM scored_tweets ORDER BY created_at LIMIT 40",
        ),
    ];
    let bless = std::env::var_os("SENTIFLOW_BLESS").is_some();
    for (file, sql) in cases {
        let got = sql_csv(&root, sql);
        let path = repo().join("tests/golden").join(file);
        if bless {
            std::fs::write(&path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("{} missing: run with SENTIFLOW_BLESS=1", path.display()));
        // numbers may differ in the last bits (parallel sums add in any order); text must not
        let same_cell = |a: &str, b: &str| {
            a == b
                || matches!((a.parse::<f64>(), b.parse::<f64>()), (Ok(x), Ok(y)) if (x - y).abs() <= 1e-12 * x.abs().max(1.0))
        };
        let same_line = |a: &str, b: &str| {
            let (x, y): (Vec<&str>, Vec<&str>) = (a.split(',').collect(), b.split(',').collect());
            x.len() == y.len() && x.iter().zip(&y).all(|(p, q)| same_cell(p, q))
        };
        if got.lines().count() != want.lines().count() || got.lines().zip(want.lines()).any(|(a, b)| !same_line(a, b)) {
            let line = got.lines().zip(want.lines()).position(|(a, b)| !same_line(a, b)).unwrap_or(0);
            panic!(
                "{file} differs from the golden file at line {}:\n got: {}\nwant: {}\n(SENTIFLOW_BLESS=1 rewrites it after an intended change)",
                line + 1,
                got.lines().nth(line).unwrap_or(""),
                want.lines().nth(line).unwrap_or("")
            );
        }
    }
}

/// The peer benchmark contract on a small data set in the peers' format.
#[tokio::test(flavor = "multi_thread")]
async fn bench_contract_matches_the_oracle() {
    use datafusion::arrow::datatypes::{Field, Schema, TimeUnit};
    use std::sync::Arc;
    let d = tmp();
    let input = d.path().join("peer");
    std::fs::create_dir_all(&input).unwrap();
    let n = 20_000i64;
    let start = 1_739_145_600_000_000i64; // 2025-02-10
    let mut rng = sentiflow_jobs::rng::Rng::new(1);
    let ts: Vec<i64> = (0..n).map(|_| start + (rng.f64() * 2.0 * 86_400e6) as i64).collect();
    let score: Vec<f64> = (0..n).map(|_| (rng.below(81) as f64 - 40.0) * 0.25).collect();
    let sources = ["a", "b", "c"];
    let src: Vec<&str> = (0..n).map(|_| sources[rng.below(3)]).collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("created_at", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
        Field::new("text", DataType::Utf8, false),
        Field::new("score", DataType::Float64, false),
        Field::new("source", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from((0..n).map(|i| i.to_string()).collect::<Vec<_>>())),
            Arc::new(TimestampMicrosecondArray::from(ts.clone()).with_timezone("UTC")),
            Arc::new(StringArray::from(vec!["t"; n as usize])),
            Arc::new(Float64Array::from(score.clone())),
            Arc::new(StringArray::from(src.clone())),
        ],
    )
    .unwrap();
    let file = std::fs::File::create(input.join("part-0.parquet")).unwrap();
    let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();

    let out = d.path().join("out");
    let scan = ok(&["bench", "--input", &s(&input), "--out", &s(&out), "--task", "scan"]);
    let r: serde_json::Value = serde_json::from_str(scan.trim().strip_prefix("RESULT ").expect("RESULT line")).unwrap();
    assert_eq!(r["count"], n);
    let avg = score.iter().sum::<f64>() / n as f64;
    assert!((r["avg"].as_f64().unwrap() - avg).abs() < 1e-12);

    let win = ok(&["bench", "--input", &s(&input), "--out", &s(&out), "--task", "window"]);
    let r: serde_json::Value = serde_json::from_str(win.trim().strip_prefix("RESULT ").unwrap()).unwrap();
    // oracle in the peers' terms: n_negative is score < 0
    let mut by_window: BTreeMap<i64, (i64, f64, i64)> = BTreeMap::new();
    for i in 0..n as usize {
        let wstart = ts[i].div_euclid(5 * MIN_US) * 5 * MIN_US;
        let e = by_window.entry(wstart).or_default();
        e.0 += 1;
        e.1 += score[i];
        e.2 += i64::from(score[i] < 0.0);
    }
    assert_eq!(r["windows_rows"].as_u64().unwrap() as usize, by_window.len());
    let root = s(&out);
    let b = query(
        &root,
        &[Table::Windows],
        "SELECT window_start, n, avg_score, n_negative FROM windows ORDER BY window_start",
    )
    .await;
    let mut i = 0;
    for batch in &b {
        let ws = col::<TimestampMicrosecondArray>(batch, "window_start");
        let nn = col::<Int64Array>(batch, "n");
        let a = col::<Float64Array>(batch, "avg_score");
        let neg = col::<Int64Array>(batch, "n_negative");
        for j in 0..batch.num_rows() {
            let (k, (cnt, sum, ng)) = by_window.iter().nth(i).unwrap();
            assert_eq!((ws.value(j), nn.value(j), neg.value(j)), (*k, *cnt, *ng));
            assert_eq!(a.value(j), sum / *cnt as f64, "scores are multiples of 0.25: averages agree exactly");
            i += 1;
        }
    }
    assert_eq!(i, by_window.len());
    assert!(files_below(&out.join("windows_by_source")).iter().all(|f| f.starts_with("dt=2025-02-1")));
}
