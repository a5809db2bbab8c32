//! The S3 path against a real S3 server on 127.0.0.1 (SeaweedFS, started by
//! scripts/test.sh). Without a server the test fails, unless
//! SENTIFLOW_SKIP_S3=1 says to skip it out loud.

use crate::common::*;

pub fn s3_root(test: &str) -> Option<String> {
    if std::env::var_os("SENTIFLOW_TEST_S3_BUCKET").is_none() {
        if std::env::var_os("SENTIFLOW_SKIP_S3").is_some() {
            eprintln!("SKIPPED {test}: SENTIFLOW_SKIP_S3 is set and no S3 server was started");
            return None;
        }
        panic!("no S3 server: run the tests with scripts/test.sh (it starts SeaweedFS), or set SENTIFLOW_SKIP_S3=1");
    }
    let bucket = std::env::var("SENTIFLOW_TEST_S3_BUCKET").unwrap();
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    Some(format!("s3://{bucket}/{test}-{nonce}"))
}

#[test]
fn run_score_and_sql_on_s3() {
    let Some(root) = s3_root("run") else { return };
    let out = ok(&["run", "--out", &root]);
    assert!(out.contains("aggregate  windows/                     288"), "{out}");
    let csv = sql_csv(
        &root,
        "SELECT count(*) AS n FROM scored_tweets; SELECT count(*) AS n FROM windows_by_source; SELECT count(DISTINCT hour) AS h FROM scored_tweets",
    );
    assert_eq!(csv, "n\n5000\nn\n1079\nh\n24\n");

    // a glob over the Firehose layout on S3, into another root
    let other = format!("{root}-glob");
    let out = ok(&["score", "--input", &format!("{root}/raw/2025/02/10/0*/*"), "--out", &other]);
    assert!(out.contains("input files       10"), "{out}");
    // and the same data from local disk gives the same scores
    let d = tmp();
    ok(&["score", "--input", &format!("{}/2025/02/10/0*/*", sample_tweets()), "--out", &s(d.path())]);
    let q = "SELECT tweet_id, sentiment_score FROM scored_tweets ORDER BY tweet_id";
    assert_eq!(sql_csv(&other, q), sql_csv(&s(d.path()), q));

    // the report reads S3 data and writes to S3
    let out =
        ok(&["report", "--data", &root, "--out", &format!("{root}/r.html"), "--png", &format!("{root}/chart.png")]);
    assert!(out.contains("288 windows, 5000 tweets"), "{out}");
    let by_path = ok(&["sql", "--format", "csv", "-c", &format!("SELECT count(*) AS n FROM '{root}/windows/'")]);
    assert_eq!(by_path, "n\n288\n", "windows on S3 are queryable by path");

    // hidden objects under an S3 input are counted, not read (issue 24 #12)
    let input = format!("{root}-hidden");
    let row =
        "SELECT '1' AS tweet_id, TIMESTAMP '2025-02-10T00:00:00Z' AS created_at, 'a fine day' AS text, 'x' AS source";
    for name in ["a.parquet", "_x.parquet", "_dir/b.parquet"] {
        let copy = format!("COPY ({row}) TO '{input}/{name}' STORED AS PARQUET");
        ok(&["sql", "--allow-write", "-c", &copy]);
    }
    let out = ok(&["score", "--input", &input, "--out", &format!("{root}-hidden-out")]);
    assert!(out.contains("records read      1") && out.contains("hidden, not read  2"), "{out}");

    // a missing bucket is a clear error
    let (code, err) = fails(&["score", "--input", "s3://no-such-bucket-sentiflow/x", "--out", &root]);
    assert_eq!(code, 2);
    assert!(err.contains("s3://no-such-bucket-sentiflow/x"), "{err}");
}
