//! The command line: errors are one line on stderr with exit code 2; sql works.

use std::process::Command;

use crate::common::*;

#[test]
fn errors_are_one_line_with_exit_code_2() {
    let d = tmp();
    let missing = d.path().join("nope");
    let (code, err) = fails(&["score", "--input", &s(&missing), "--out", &s(d.path())]);
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: no input files found at "), "{err}");
    assert!(err.contains(&s(&missing)), "{err}");

    let (code, err) = fails(&["aggregate", "--out", &s(d.path()), "--window", "10m", "--slide", "3m"]);
    assert_eq!(code, 2);
    assert!(err.contains("must be a whole multiple of --slide"), "{err}");

    let (code, err) = fails(&["generate", "--to", "gs://bucket/x", "--rows", "1"]);
    assert_eq!(code, 2);
    assert!(err.contains("unsupported scheme"), "{err}");

    let (code, _) = fails(&["aggregate", "--window", "5 minutes"]);
    assert_eq!(code, 2, "clap's usage errors exit 2 too");
}

#[test]
fn sql_command_formats_and_files() {
    let d = tmp();
    let root = s(d.path());
    ok(&["run", "--out", &root]);
    let csv = sql_csv(
        &root,
        "SELECT count(*) AS n FROM windows; SELECT source, count(*) AS n FROM raw_tweets GROUP BY source ORDER BY n DESC LIMIT 1",
    );
    assert_eq!(csv, "n\n288\nsource,n\ntwitter,2727\n");
    let json = ok(&[
        "sql",
        "--data",
        &root,
        "--format",
        "json",
        "-c",
        "SELECT n, n_negative FROM windows ORDER BY window_start LIMIT 2",
    ]);
    let v: serde_json::Value = serde_json::from_str(json.trim()).expect("json array");
    assert_eq!(v.as_array().map(Vec::len), Some(2));
    assert!(v[0]["n"].as_i64().unwrap() > 0);

    let f = d.path().join("q.sql");
    std::fs::write(&f, "-- a comment; with a semicolon\nSELECT count(*) AS scored FROM scored_tweets WHERE sentiment_label = 'negative';\n").unwrap();
    let out = ok(&["sql", "--data", &root, "--format", "csv", "-f", &s(&f)]);
    assert!(out.starts_with("scored\n"), "{out}");

    // any path is queryable directly
    let file = files_below(&d.path().join("windows"))[0].clone();
    let path = d.path().join("windows").join(file);
    let out = sql_csv(&root, &format!("SELECT count(*) AS n FROM '{}'", s(&path)));
    assert_eq!(out, "n\n288\n");
    // and a statement without a result (a DDL) runs and prints nothing, in the default table view
    let out = ok(&[
        "sql",
        "--data",
        &root,
        "-c",
        &format!(
            "CREATE EXTERNAL TABLE w STORED AS PARQUET LOCATION '{}'; CREATE VIEW v AS SELECT count(*) AS n FROM w; SELECT n FROM v",
            s(&path)
        ),
    ]);
    assert!(out.starts_with("+-----+\n| n   |\n+-----+\n| 288 |"), "{out}");

    let (code, err) = fails(&["sql", "--data", &root, "-c", "SELECT nope FROM windows"]);
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("SELECT nope FROM windows"), "{err}");
}

/// `--metrics emf`: one CloudWatch Embedded Metric Format line with what the EMF specification
/// requires (`_aws.Timestamp` in ms, `CloudWatchMetrics` with `Namespace`, `Dimensions` and `Metrics`,
/// every dimension and metric as a top-level member) and the summary's own figures.
#[test]
fn batch_jobs_print_their_summary_as_an_emf_line() {
    let d = tmp();
    let out = s(&d.path().join("out"));
    let summary =
        sentiflow(&["score", "--scorer", "lexicon", "--input", &sample_tweets(), "--out", &out, "--metrics", "emf"]);
    assert!(summary.status.success(), "{}", String::from_utf8_lossy(&summary.stderr));
    let text = String::from_utf8(summary.stdout).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with('{')).collect();
    assert_eq!(lines.len(), 1, "{text}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let ts = v["_aws"]["Timestamp"].as_i64().expect("_aws.Timestamp, integer ms");
    assert!((now - 600_000..=now).contains(&ts), "{ts}");
    let directives = v["_aws"]["CloudWatchMetrics"].as_array().expect("CloudWatchMetrics array");
    assert_eq!(directives.len(), 1);
    let d0 = &directives[0];
    assert_eq!(d0["Namespace"], "sentiflow");
    for set in d0["Dimensions"].as_array().unwrap() {
        for dim in set.as_array().unwrap() {
            assert!(v[dim.as_str().unwrap()].is_string(), "dimension {dim} is a top-level string");
        }
    }
    assert_eq!(v["job"], "score");
    let metrics = d0["Metrics"].as_array().unwrap();
    assert!(metrics.len() <= 100, "at most 100 metrics per directive");
    for m in metrics {
        let name = m["Name"].as_str().unwrap();
        assert!(v[name].is_number(), "metric {name} is a top-level number: {v}");
        assert!(m["Unit"].is_string());
    }
    let figure = |label: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(label)).unwrap_or_else(|| panic!("{label} in {text}"));
        line[label.len()..].split_whitespace().next().unwrap().parse().unwrap()
    };
    assert_eq!(v["RecordsRead"].as_f64().unwrap(), figure("records read"));
    assert_eq!(v["RowsScored"].as_f64().unwrap(), figure("scored "));
    assert_eq!(v["RowsUnscorable"].as_f64().unwrap(), figure("unscorable"));
    assert_eq!(v["RowsRejected"].as_f64().unwrap(), figure("rejected"));
    // the namespace the Terraform sets
    let o = Command::new(env!("CARGO_BIN_EXE_sentiflow"))
        .args(["aggregate", "--out", &out, "--metrics", "emf"])
        .env("SENTIFLOW_METRICS_NAMESPACE", "sentiflow/prod")
        .env("SENTIFLOW_NO_PROGRESS", "1")
        .output()
        .unwrap();
    let text = String::from_utf8(o.stdout).unwrap();
    let line = text.lines().find(|l| l.starts_with('{')).expect("an EMF line");
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "sentiflow/prod");
    assert_eq!(v["job"], "aggregate");
    assert!(v["Windows"].as_f64().unwrap() > 0.0);
}
