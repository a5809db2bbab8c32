//! The command line: errors are one line on stderr with exit code 2; sql works.

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

    let (code, err) = fails(&["sql", "--data", &root, "-c", "SELECT nope FROM windows"]);
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("SELECT nope FROM windows"), "{err}");
}
