//! generate → score → aggregate on the sample data, through the binary.

use crate::common::*;
use sentiflow_jobs::schema::Table;

#[test]
fn generator_reproduces_the_committed_sample_data_byte_for_byte() {
    let d = tmp();
    let out = ok(&["generate", "--to", &s(d.path())]);
    assert!(out.starts_with("generated 5000 tweets"), "{out}");
    let sample = repo().join("sample_data/tweets");
    let ours = files_below(d.path());
    assert_eq!(ours, files_below(&sample), "same file names (Firehose YYYY/MM/DD/HH layout)");
    assert_eq!(ours.len(), 24);
    for f in &ours {
        let a = std::fs::read(d.path().join(f)).unwrap();
        let b = std::fs::read(sample.join(f)).unwrap();
        assert!(a == b, "{f} differs from sample_data: the generator is no longer deterministic");
    }
    // another seed gives other data
    let e = tmp();
    ok(&["generate", "--to", &s(e.path()), "--seed", "7", "--rows", "100"]);
    let f0 = &files_below(e.path())[0];
    assert!(f0.starts_with("2025/02/10/00/sentiflow-1-"), "{f0}");
}

#[tokio::test(flavor = "multi_thread")]
async fn run_scores_and_aggregates_the_sample() {
    let d = tmp();
    let root = s(d.path());
    let out = ok(&["run", "--out", &root]);
    assert!(out.contains("generate   raw/                        5000"), "{out}");
    assert!(out.contains("aggregate  windows/                     288"), "{out}");
    for dir in ["raw", "scored", "windows", "windows_by_source"] {
        assert!(d.path().join(dir).is_dir(), "{dir}/ exists");
    }
    // the scored table: every row, with the schema module's columns, partitioned dt/hour
    let b = query(&root, &[Table::Scored], "SELECT * FROM scored_tweets LIMIT 1").await;
    let got: Vec<String> = b[0].schema().fields().iter().map(|f| format!("{}:{}", f.name(), f.data_type())).collect();
    let mut want: Vec<String> =
        Table::Scored.schema().fields().iter().map(|f| format!("{}:{}", f.name(), f.data_type())).collect();
    want.extend(["dt:Utf8".to_string(), "hour:Utf8".to_string()]);
    assert_eq!(got, want);
    let parts = files_below(&d.path().join("scored"));
    assert_eq!(parts.len(), 24);
    assert!(parts.iter().all(|p| p.starts_with("dt=2025-02-10/hour=")), "{parts:?}");

    let b = query(
        &root,
        &[Table::Scored],
        "SELECT count(*) AS n,
                count(*) FILTER (WHERE dt <> to_char(created_at, '%Y-%m-%d') OR hour <> to_char(created_at, '%H')) AS misfiled,
                count(*) FILTER (WHERE sentiment_score < -1 OR sentiment_score > 1) AS out_of_range,
                count(*) FILTER (WHERE (sentiment_score IS NULL) <> (lang <> 'en')) AS null_unless_other_language,
                count(*) FILTER (WHERE sentiment_label NOT IN ('positive', 'neutral', 'negative')) AS odd_label,
                count(DISTINCT tweet_id) AS ids,
                count(*) FILTER (WHERE scorer NOT LIKE 'onnx:sentiment-minilm@%'
                                    OR (score_error IS NOT NULL) <> (sentiment_score IS NULL)) AS odd
         FROM scored_tweets",
    )
    .await;
    assert_eq!(
        render(&b).lines().nth(3).unwrap().split('|').map(str::trim).filter(|x| !x.is_empty()).collect::<Vec<_>>(),
        vec!["5000", "0", "0", "0", "0", "5000", "0"],
        "{}",
        render(&b)
    );
    // the default scorer is the shipped 3-class tweet model; the targets on the sample:
    // >= 90 % of ground-truth-neutral posts labelled neutral (issue 28), and each window's share_negative
    // within 5 points of the ground truth's on average (measured 2026-12-04, AVX-512 VNNI EPYC: 92.3 %
    // and 4.4 points)
    let b = query(
        &root,
        &[Table::Scored],
        "SELECT count(*) FILTER (WHERE sentiment_label = 'neutral') * 1000 / count(*)
         FROM scored_tweets WHERE truth_label = 'neutral'",
    )
    .await;
    let per_mille = scalar_i64(&b);
    assert!(per_mille >= 900, "{per_mille}‰ of the neutral tweets labelled neutral");
    let b = query(
        &root,
        &[Table::Scored, Table::Windows],
        "WITH truth AS (
             SELECT date_bin(INTERVAL '5 minutes', created_at, TIMESTAMP '1970-01-01T00:00:00Z') AS w,
                    CAST(count(*) FILTER (WHERE truth_label = 'negative') AS DOUBLE) / count(*) AS share
             FROM scored_tweets GROUP BY 1)
         SELECT CAST(avg(abs(x.share_negative - t.share)) * 10000 AS BIGINT) FROM windows x JOIN truth t ON x.window_start = t.w",
    )
    .await;
    let basis_points = scalar_i64(&b);
    assert!(basis_points <= 500, "share_negative is {basis_points} bp from the truth on average");
}

#[tokio::test(flavor = "multi_thread")]
async fn score_reads_parquet_and_gzip_inputs_and_is_idempotent() {
    let d = tmp();
    let raw_pq = d.path().join("raw_pq");
    let raw_gz = d.path().join("raw_gz");
    ok(&["generate", "--rows", "700", "--span", "3h", "--format", "parquet", "--to", &s(&raw_pq)]);
    ok(&["generate", "--rows", "700", "--span", "3h", "--gzip", "--to", &s(&raw_gz)]);
    assert!(files_below(&raw_pq).iter().all(|f| f.starts_with("dt=2025-02-10/hour=0") && f.ends_with(".parquet")));
    assert!(files_below(&raw_gz).iter().all(|f| f.ends_with(".gz")));

    let a = d.path().join("a");
    let b = d.path().join("b");
    let out = ok(&["score", "--input", &s(&raw_pq), "--out", &s(&a)]);
    // every record is scored, or unscorable with its reason (the non-English ones)
    let count = |name: &str| -> usize {
        out.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l[name.len()..].split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!((count("records read"), count("rejected")), (700, 0), "{out}");
    assert_eq!(count("scored") + count("unscorable"), 700, "{out}");
    assert!(count("unscorable") < 100, "{out}");
    ok(&["score", "--input", &s(&raw_gz), "--out", &s(&b)]);
    // same records, same scores, whichever format they came in
    let diff = |root: &std::path::Path| {
        let root = s(root);
        async move {
            query(
                &root,
                &[Table::Scored],
                "SELECT tweet_id, sentiment_score, text FROM scored_tweets ORDER BY tweet_id",
            )
            .await
        }
    };
    assert_eq!(render(&diff(&a).await), render(&diff(&b).await));

    // re-running overwrites its own files: no duplicate rows
    let files = files_below(&a.join("scored"));
    ok(&["score", "--input", &s(&raw_pq), "--out", &s(&a)]);
    assert_eq!(files_below(&a.join("scored")), files);
    let n = scalar_i64(&query(&s(&a), &[Table::Scored], "SELECT count(*) FROM scored_tweets").await);
    assert_eq!(n, 700);
}
