//! Bad input: every bad record lands in _rejected/ with file, line and reason;
//! the job finishes and nothing is silently dropped.

use std::io::Write;

use crate::common::*;
use sentiflow_jobs::schema::Table;

fn rec(id: &str, text: &str) -> String {
    serde_json::json!({"tweet_id": id, "created_at": "2025-02-10T10:00:00Z", "text": text, "source": "twitter"})
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_records_go_to_rejected_with_file_line_and_reason() {
    let d = tmp();
    let input = d.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(
        input.join("good.jsonl"),
        format!("{}\n{}\n{}\n", rec("g1", "love it"), rec("g2", "hate it"), rec("g3", "ok")),
    )
    .unwrap();
    let mut bad = Vec::new();
    writeln!(bad, "{}", rec("b1", "great day")).unwrap(); // 1 good
    writeln!(bad, "{{not json").unwrap(); // 2 malformed
    writeln!(bad, r#"{{"tweet_id":"b3","created_at":"2025-02-10T10:00:00Z","source":"x"}}"#).unwrap(); // 3 missing text
    let mut extra: serde_json::Value = serde_json::from_str(&rec("b4", "nice")).unwrap();
    extra["retweets"] = 5.into();
    writeln!(bad, "{extra}").unwrap(); // 4 extra field: kept, field reported
    writeln!(bad, r#"{{"tweet_id":"b5","created_at":12345,"text":"x","source":"x"}}"#).unwrap(); // 5 wrong type
    bad.extend_from_slice(
        b"{\"tweet_id\":\"b6\",\"created_at\":\"2025-02-10T10:00:00Z\",\"text\":\"caf\xe9\",\"source\":\"x\"}\n",
    ); // 6 latin-1
    writeln!(bad, "{}", rec("b7", &"spam ".repeat(210_000))).unwrap(); // 7 ~1 MB text
    writeln!(bad, "{}", rec("b8", "")).unwrap(); // 8 empty text: kept, unscorable
    std::fs::write(input.join("bad.jsonl"), &bad).unwrap();
    std::fs::write(input.join("empty.json"), b"").unwrap();
    std::fs::write(
        input.join("mixed.csv"),
        "tweet_id,created_at,text,source\nc1,2025-02-10 10:00:00,\"good, fine\",reddit\nc2,2025-02-10 10:00:00,too,many,fields\n",
    )
    .unwrap();
    std::fs::write(input.join("junk.parquet"), b"PAR1 this is not parquet").unwrap();

    let root = d.path().join("out");
    let out = ok(&["score", "--input", &s(&input), "--out", &s(&root)]);
    assert!(out.contains("input files       5 (1 empty)"), "{out}");
    assert!(out.contains("scored            6"), "{out}");
    assert!(out.contains("unscorable        1"), "{out}");
    assert!(out.contains("rejected          6"), "{out}");
    assert!(out.contains("files rejected    1"), "junk.parquet, as one row: {out}");
    assert!(out.contains("ignored fields    retweets"), "{out}");

    let rej = query(
        &s(&root),
        &[Table::Rejected],
        "SELECT regexp_replace(file, '.*/', '') AS f, line, reason, record_bytes, length(record) AS kept
         FROM rejected ORDER BY f, line",
    )
    .await;
    let text = render(&rej);
    let rows: Vec<Vec<String>> = text
        .lines()
        .skip(3)
        .filter(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<String> = l.split('|').map(|c| c.trim().to_string()).collect();
            cells[1..cells.len() - 1].to_vec()
        })
        .collect();
    let keyed: Vec<(String, String)> = rows.iter().map(|r| (r[0].clone(), r[1].clone())).collect();
    assert_eq!(
        keyed,
        vec![
            ("bad.jsonl".into(), "2".into()),
            ("bad.jsonl".into(), "3".into()),
            ("bad.jsonl".into(), "5".into()),
            ("bad.jsonl".into(), "6".into()),
            ("bad.jsonl".into(), "7".into()),
            ("junk.parquet".into(), "".into()),
            ("mixed.csv".into(), "3".into()),
        ],
        "{text}"
    );
    assert!(rows[0][2].starts_with("malformed JSON"), "{text}");
    assert_eq!(rows[1][2], "missing required field text");
    assert!(rows[2][2].contains("created_at: 12345 is a number"), "{text}");
    assert!(rows[3][2].contains("invalid UTF-8"), "{text}");
    assert!(rows[4][2].contains("over the limit of 65536"), "{text}");
    assert!(rows[4][3].parse::<i64>().unwrap() > 1_000_000, "full size recorded");
    assert_eq!(rows[4][4], "4096", "excerpt is capped");
    assert!(rows[5][2].contains("not a readable Parquet file"), "{text}");
    assert!(rows[6][2].contains("expected 4 fields"), "{text}");

    // the unscorable text is kept with a NULL score and a reason, never 0.0
    let b = query(
        &s(&root),
        &[Table::Scored],
        "SELECT tweet_id, sentiment_score IS NULL AS null_score, sentiment_label IS NULL AS null_label, score_error
         FROM scored_tweets WHERE score_error IS NOT NULL",
    )
    .await;
    let t = render(&b);
    assert!(t.contains("| b8       | true       | true       | text is empty |"), "{t}");

    // fixing a file and re-running clears its dead letters; the rest stay
    std::fs::write(
        input.join("mixed.csv"),
        "tweet_id,created_at,text,source\nc1,2025-02-10 10:00:00,\"good, fine\",reddit\n",
    )
    .unwrap();
    let out = ok(&["score", "--input", &s(&input), "--out", &s(&root)]);
    assert!(out.contains("rejected          5"), "{out}");
    assert!(out.contains("files rejected    1"), "{out}");
    let n = scalar_i64(&query(&s(&root), &[Table::Rejected], "SELECT count(*) FROM rejected").await);
    assert_eq!(n, 6);
    let n = scalar_i64(&query(&s(&root), &[Table::Scored], "SELECT count(*) FROM scored_tweets").await);
    assert_eq!(n, 7, "re-run replaced, did not duplicate");
}
