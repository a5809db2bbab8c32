//! Issue 16: bad input never stops a job nor vanishes, a crash leaves no
//! partial file where readers look, and `sql` neither overflows nor writes
//! unless asked. Every test runs the real binary.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};

use crate::common::*;

fn rec(id: &str, at: &str, text: &str) -> String {
    format!("{{\"tweet_id\":\"{id}\",\"created_at\":\"{at}\",\"text\":\"{text}\",\"source\":\"x\",\"lang\":\"en\"}}\n")
}

fn good(n: usize, hour: u32) -> String {
    (0..n)
        .map(|i| rec(&format!("g{hour}-{i}"), &format!("2025-02-10T{hour:02}:00:{:02}Z", i % 60), "a good day"))
        .collect()
}

/// The figure a summary line of `score` prints (`records read      12`).
fn figure(out: &str, label: &str) -> usize {
    let line = out.lines().find(|l| l.starts_with(label)).unwrap_or_else(|| panic!("no {label:?} in:\n{out}"));
    line[label.len()..].split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{line}"))
}

fn count(data: &str, sql: &str) -> i64 {
    let csv = sql_csv(data, sql);
    csv.lines().nth(1).and_then(|l| l.parse().ok()).unwrap_or_else(|| panic!("{csv}"))
}

fn parquet_file(path: &Path, cols: Vec<(&str, ArrayRef)>) {
    let batch = RecordBatch::try_from_iter(cols).unwrap();
    let f = std::fs::File::create(path).unwrap();
    let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(f, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// Creates `parent/name` and returns it.
fn mkdir(parent: &Path, name: &str) -> std::path::PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir(&dir).unwrap();
    dir
}

fn in_dir(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sentiflow"))
        .args(args)
        .current_dir(dir)
        .env("SENTIFLOW_NO_PROGRESS", "1")
        .output()
        .expect("the sentiflow binary runs")
}

/// #1, #2: an out-of-range time or one NULL in a Parquet file costs one row,
/// not the job or the rest of the batch; the files after it are read.
#[test]
fn one_bad_record_costs_one_row() {
    let d = tmp();
    let input = mkdir(d.path(), "in");
    let mut a = good(5, 1);
    a.push_str(&rec("far", "9999-12-31T23:59:59Z", "x"));
    a.push_str(&rec("old", "1600-01-01T00:00:00Z", "x"));
    std::fs::write(input.join("a.json"), a).unwrap();
    let n = 10_000;
    let ids: ArrayRef = Arc::new((0..n).map(|i| Some(format!("p{i}"))).collect::<StringArray>());
    let at: ArrayRef = Arc::new(
        TimestampMicrosecondArray::from(
            (0..n).map(|i| if i == 10 { 253_402_300_799_000_000 } else { 1_739_149_200_000_000 }).collect::<Vec<i64>>(),
        )
        .with_timezone("UTC"),
    );
    let text: ArrayRef = Arc::new((0..n).map(|i| (i != 4_999).then_some("fine")).collect::<StringArray>());
    let src: ArrayRef = Arc::new(StringArray::from(vec!["x"; n]));
    parquet_file(
        &input.join("b.parquet"),
        vec![("tweet_id", ids), ("created_at", at), ("text", text), ("source", src)],
    );
    std::fs::write(input.join("c.json"), good(3, 2)).unwrap();
    let out_dir = d.path().join("out");
    let out = ok(&["score", "--scorer", "lexicon", "--input", &s(&input), "--out", &s(&out_dir)]);
    assert_eq!(figure(&out, "records read"), 7 + n + 3, "{out}");
    assert_eq!(figure(&out, "scored"), 5 + n - 2 + 3, "{out}");
    assert_eq!(figure(&out, "rejected"), 4, "{out}");
    let data = s(&out_dir);
    assert_eq!(count(&data, "SELECT count(*) FROM scored_tweets"), (5 + n - 2 + 3) as i64);
    let reasons =
        sql_csv(&data, "SELECT regexp_replace(file, '.*/', '') AS f, line, reason FROM rejected ORDER BY f, line");
    assert!(
        reasons
            .contains("a.json,6,\"field created_at: \"\"9999-12-31T23:59:59Z\"\" is outside the supported time range"),
        "{reasons}"
    );
    assert!(reasons.contains("b.parquet,11,field created_at"), "{reasons}");
    assert!(reasons.contains("b.parquet,5000,missing required field text"), "{reasons}");
}

/// #4, #5: `..` paths, a symlink and its target, `--input .` above the
/// output, and a record that became invalid: no literal `%2E%2E` directory,
/// no doubled rows, no stale row left in its old partition.
#[test]
fn paths_and_reruns_never_double_rows() {
    let d = tmp();
    let w = d.path().join("w");
    let input = w.join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::create_dir_all(d.path().join("x")).unwrap();
    let body: String = (1..=5).map(|i| rec(&i.to_string(), &format!("2025-02-10T0{i}:00:00Z"), "nice")).collect();
    std::fs::write(input.join("a.json"), &body).unwrap();
    std::os::unix::fs::symlink(input.join("a.json"), d.path().join("link.json")).unwrap();

    let run = |dir: &Path, args: &[&str]| {
        let o = in_dir(dir, args);
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    run(&w, &["score", "--scorer", "lexicon", "--input", "./in", "--out", "../x/o"]);
    assert!(!w.join("%2E%2E").exists(), "no literal %2E%2E directory");
    let data = s(&d.path().join("x/o"));
    assert_eq!(count(&data, "SELECT count(*) FROM scored_tweets"), 5);
    run(&d.path().join("x"), &["score", "--scorer", "lexicon", "--input", "../w/in", "--out", "o"]);
    run(d.path(), &["score", "--scorer", "lexicon", "--input", "link.json", "--out", "x/o"]);
    assert_eq!(count(&data, "SELECT count(*) FROM scored_tweets"), 5, "one file under three names is scored once");
    let o =
        in_dir(&w, &["sql", "--data", "../x/o", "--format", "csv", "-c", "SELECT count(*) AS n FROM scored_tweets"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "n\n5\n");

    // a record turns invalid: its old row leaves its old hour= partition
    std::fs::write(input.join("a.json"), body.replace("2025-02-10T03:00:00Z", "garbage")).unwrap();
    let out = run(&w, &["score", "--scorer", "lexicon", "--input", "./in", "--out", "../x/o"]);
    assert!(out.contains("stale removed     1"), "{out}");
    assert_eq!(count(&data, "SELECT count(*) FROM scored_tweets"), 4);
    assert_eq!(count(&data, "SELECT count(*) FROM scored_tweets WHERE hour = '03'"), 0);

    // `--input .` with the default --out below it, three times
    for _ in 0..3 {
        run(&input, &["score", "--scorer", "lexicon", "--input", "."]);
    }
    let own = s(&input.join("sentiflow-out"));
    assert_eq!(count(&own, "SELECT count(*) FROM scored_tweets"), 4, "the output is not read back as input");
}

/// #7: a dangling symlink, a FIFO and an unreadable file are dead-lettered
/// one row each; the readable files are scored and the job exits 0.
#[test]
fn unreadable_entries_are_dead_lettered() {
    let d = tmp();
    let input = mkdir(d.path(), "in");
    std::fs::write(input.join("a.json"), good(4, 1)).unwrap();
    std::os::unix::fs::symlink("nowhere.json", input.join("dangling.json")).unwrap();
    assert!(Command::new("mkfifo").arg(input.join("pipe.json")).status().unwrap().success());
    std::fs::write(input.join("locked.json"), good(2, 2)).unwrap();
    std::fs::set_permissions(input.join("locked.json"), std::os::unix::fs::PermissionsExt::from_mode(0o0)).unwrap();
    // Parquet files that panic the Parquet/Arrow readers (found by fuzzing) are one reject each
    for seed in ["parquet_ipc_schema_panic", "parquet_metadata_panic"] {
        let bytes = std::fs::read(repo().join("fuzz/corpus/parse_record_file").join(seed)).unwrap();
        std::fs::write(input.join(format!("{seed}.parquet")), &bytes[1..]).unwrap();
    }
    // root reads a mode-0 file anyway; then it is simply scored
    let root = String::from_utf8_lossy(&Command::new("id").arg("-u").output().unwrap().stdout).trim() == "0";
    let out_dir = s(&d.path().join("out"));
    let out = ok(&["score", "--scorer", "lexicon", "--input", &s(&input), "--out", &out_dir]);
    let files_rejected = if root { 4 } else { 5 };
    assert_eq!(figure(&out, "files rejected"), files_rejected, "{out}");
    assert_eq!(figure(&out, "scored"), if root { 6 } else { 4 }, "{out}");
    let reasons = sql_csv(
        &out_dir,
        "SELECT regexp_replace(file, '.*/', '') AS f, line IS NULL AS whole, reason FROM rejected ORDER BY f",
    );
    assert!(reasons.contains("dangling.json,true,a symlink whose target cannot be read"), "{reasons}");
    assert!(reasons.contains("pipe.json,true,\"a FIFO, not a regular file"), "{reasons}");
    assert!(reasons.contains("parquet_ipc_schema_panic.parquet,true,Parquet data is corrupt after row 0"), "{reasons}");
    assert!(reasons.contains("parquet_metadata_panic.parquet,true,not a readable Parquet file"), "{reasons}");
    if !root {
        assert!(reasons.contains("locked.json,true,"), "{reasons}");
    }
}

/// #6: kill -9 while a large file is being written leaves nothing partial
/// under any table prefix; every object there is a complete Parquet file,
/// and the rerun's counts are exact.
#[test]
fn kill_during_a_large_write_leaves_no_partial_file() {
    let d = tmp();
    let input = d.path().join("in.json");
    let rows = big_input(&input);
    let out_dir = d.path().join("out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sentiflow"))
        .args(["score", "--scorer", "lexicon", "--input", &s(&input), "--out", &s(&out_dir)])
        .env("SENTIFLOW_NO_PROGRESS", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // object_store writes a local file as `<name>#<n>` and renames it when complete:
    // wait until one exists, then kill
    let t0 = std::time::Instant::now();
    let caught = loop {
        if files_below(&out_dir).iter().any(|f| f.contains('#')) {
            break true;
        }
        if child.try_wait().unwrap().is_some() || t0.elapsed().as_secs() > 300 {
            break false;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    assert!(caught, "the write finished before a partial file was seen; the test needs a larger input");
    let partial: Vec<String> = files_below(&out_dir).into_iter().filter(|f| f.contains('#')).collect();
    assert!(!partial.is_empty());
    assert!(partial.iter().all(|f| f.starts_with("_staging/")), "partial files only in _staging/: {partial:?}");
    assert_every_table_file_is_parquet(&out_dir);
    let out = ok(&["score", "--scorer", "lexicon", "--input", &s(&input), "--out", &s(&out_dir)]);
    assert_eq!(figure(&out, "scored"), rows, "{out}");
    assert_eq!(count(&s(&out_dir), "SELECT count(*) FROM scored_tweets"), rows as i64);
    assert_every_table_file_is_parquet(&out_dir);
}

/// About 80 MB of one-hour tweets with incompressible text: several 32 MiB
/// row groups, so the file is half written for most of the run.
pub fn big_input(path: &Path) -> usize {
    use std::io::Write;
    let rows = 40_000;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..rows {
        let text: String = (0..2000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (b'a' + (x % 26) as u8) as char
            })
            .collect();
        f.write_all(rec(&i.to_string(), &format!("2025-02-10T05:{:02}:00Z", i % 60), &text).as_bytes()).unwrap();
    }
    rows
}

/// What pyarrow, Polars, Athena or Spark would do: open every visible object
/// below each table prefix as Parquet (hidden `_x`/`.x` names are skipped by all of them).
fn assert_every_table_file_is_parquet(root: &Path) {
    for f in files_below(root) {
        if f.split('/').any(|p| p.starts_with('_') || p.starts_with('.')) || f.ends_with(".html") || f.ends_with(".png")
        {
            continue;
        }
        let file = std::fs::File::open(root.join(&f)).unwrap();
        let r = datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file);
        assert!(r.is_ok(), "{f} is not a complete Parquet file: {:?}", r.err());
    }
}

/// #9: two aggregate runs on one output with different windows: the first
/// pauses between its two tables while the second runs; both tables must
/// end up holding one run's windows.
#[test]
fn concurrent_aggregates_do_not_mix() {
    let d = tmp();
    let data = s(d.path());
    ok(&["score", "--scorer", "lexicon", "--input", &sample_tweets(), "--out", &data]);
    let aggregate = |w: &str, pause: &str| {
        Command::new(env!("CARGO_BIN_EXE_sentiflow"))
            .args(["aggregate", "--input", &format!("{data}/scored"), "--out", &data, "--window", w])
            .env("SENTIFLOW_NO_PROGRESS", "1")
            .env("SENTIFLOW_TEST_PAUSE", pause)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = aggregate("5m", "aggregate_tables:4000");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let second = aggregate("1h", "");
    for k in [first, second] {
        let o = k.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let sizes = sql_csv(
        &data,
        "SELECT DISTINCT 'w' AS t, CAST(window_end - window_start AS VARCHAR) AS size FROM windows UNION ALL SELECT DISTINCT 'b', CAST(window_end - window_start AS VARCHAR) FROM windows_by_source ORDER BY t",
    );
    let lines: Vec<&str> = sizes.lines().skip(1).collect();
    assert_eq!(lines.len(), 2, "one window size per table: {sizes}");
    assert_eq!(lines[0].split(',').nth(1), lines[1].split(',').nth(1), "both tables from one run: {sizes}");
}

/// #10, #11, #14 and the smaller `sql` cases.
#[test]
fn sql_is_safe_with_deep_expressions_comments_and_writes() {
    let d = tmp();
    let data = s(d.path());
    ok(&["score", "--scorer", "lexicon", "--input", &sample_tweets(), "--out", &data]);
    let ors = (0..400).map(|i| format!("x = {i}")).collect::<Vec<_>>().join(" OR ");
    let out = sql_csv(&data, &format!("SELECT count(*) AS n FROM (VALUES (7)) t(x) WHERE {ors}"));
    assert_eq!(out, "n\n1\n");
    let sum = vec!["1"; 500].join("+");
    assert_eq!(sql_csv(&data, &format!("SELECT {sum} AS s")), "s\n500\n");
    assert_eq!(sql_csv(&data, "select 1 /* ; */ as a"), "a\n1\n");

    // read-only unless --allow-write
    let target = d.path().join("copy.csv");
    let copy = format!("COPY (SELECT 1 AS a) TO '{}' STORED AS CSV", s(&target));
    let (code, err) = fails(&["sql", "--data", &data, "-c", &copy]);
    assert_eq!(code, 2);
    assert!(err.contains("read-only") && err.contains("--allow-write"), "{err}");
    assert!(!target.exists());
    let (_, err) = fails(&["sql", "--data", &data, "-c", "INSERT INTO scored_tweets SELECT * FROM scored_tweets"]);
    assert!(err.contains("read-only"), "{err}");
    assert_eq!(count(&data, "SELECT count(*) FROM scored_tweets"), 5000);
    ok(&["sql", "--data", &data, "--allow-write", "-c", &copy]);
    assert!(target.exists());

    // control characters in text are shown escaped in the table view
    let input = d.path().join("esc.json");
    std::fs::write(&input, rec("e", "2025-02-10T00:00:00Z", "a\\u001b[2Jb\\u0007")).unwrap();
    let other = s(&d.path().join("esc"));
    ok(&["score", "--scorer", "lexicon", "--input", &s(&input), "--out", &other]);
    let table = ok(&["sql", "--data", &other, "-c", "SELECT text FROM scored_tweets"]);
    assert!(table.contains("a\\u{1b}[2Jb\\u{7}") && !table.contains('\u{1b}'), "{table}");

    // no data root: the error names --data and its default
    let (_, err) = fails(&["sql", "--data", &s(&d.path().join("none")), "-c", "SELECT * FROM scored_tweets"]);
    assert!(err.contains("--data") && err.contains("./sentiflow-out"), "{err}");
}

/// #8: `sql` over raw files says what validation left out and shows it.
#[test]
fn sql_over_raw_counts_what_it_leaves_out() {
    let d = tmp();
    let raw = mkdir(d.path(), "raw");
    let mut body = good(15, 1);
    for i in 0..16 {
        body.push_str(&format!("{{broken {i}\n"));
    }
    std::fs::write(raw.join("a.json"), body).unwrap();
    let out = sentiflow(&[
        "sql",
        "--data",
        &s(d.path()),
        "--format",
        "csv",
        "-c",
        "SELECT count(*) AS n FROM raw_tweets; SELECT count(*) AS n FROM raw_tweets_rejected",
    ]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "n\n15\nn\n16\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("leaves out 16 records"), "{err}");
}

/// Smaller cases: --out naming a file, --onnx-sessions without a cap,
/// generate with an empty source name or a start outside the time range.
#[test]
fn bad_arguments_are_named() {
    let d = tmp();
    let file = d.path().join("f");
    std::fs::write(&file, "x").unwrap();
    let (_, err) = fails(&["score", "--scorer", "lexicon", "--input", &sample_tweets(), "--out", &s(&file)]);
    assert!(err.contains("--out") && err.contains("is a file"), "{err}");
    let (_, err) = fails(&["generate", "--sources", "", "--to", &s(&d.path().join("g"))]);
    assert!(err.contains("--sources"), "{err}");
    let (_, err) = fails(&["generate", "--start", "1600-01-01", "--to", &s(&d.path().join("g"))]);
    assert!(err.contains("supported time range"), "{err}");
    let (_, err) =
        fails(&["score", "--input", &sample_tweets(), "--out", &s(&d.path().join("o")), "--onnx-sessions", "999"]);
    assert!(err.contains("--onnx-sessions 999"), "{err}");

    // `… | head`: a closed pipe ends the process by SIGPIPE, not by a panic
    use std::io::BufRead;
    use std::os::unix::process::ExitStatusExt;
    let mut child = Command::new(env!("CARGO_BIN_EXE_sentiflow"))
        .args(["sql", "--data", &s(d.path()), "--format", "csv", "-c", "SELECT * FROM generate_series(1, 2000000)"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.signal(), Some(libc_sigpipe()), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));

    // issue 24 #5: rows are printed as they come, tables in pieces, so `… | head` on a huge result
    // prints at once and ends (before, the table of 50M rows was held and formatted whole: 22.9 GB)
    for format in ["table", "csv", "json"] {
        let started = std::time::Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sentiflow"))
            .args([
                "sql",
                "--data",
                &s(d.path()),
                "--format",
                format,
                "-c",
                "SELECT * FROM generate_series(1, 50000000)",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // the first 4 KiB (a JSON array is one line), then the pipe closes
        let mut head = vec![0u8; 4096];
        let mut stdout = child.stdout.take().unwrap();
        std::io::Read::read_exact(&mut stdout, &mut head).unwrap();
        drop(stdout);
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.signal(), Some(libc_sigpipe()), "{format}: {}", String::from_utf8_lossy(&out.stderr));
        let head = String::from_utf8_lossy(&head);
        assert!(head.contains('1') && head.contains('2'), "{format}: {head}");
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "{format}: {:?}", started.elapsed());
    }
}

/// SIGPIPE's number on Linux.
fn libc_sigpipe() -> i32 {
    13
}

/// The accounting invariant on random mixtures of good and bad records,
/// NDJSON, CSV, gzip and Parquet, from local disk and from S3: every record
/// read is scored or rejected, and the counts match what was generated.
#[test]
fn every_record_is_scored_or_rejected() {
    for seed in [1u64, 2, 3] {
        let d = tmp();
        let input = mkdir(d.path(), "in");
        let (good, bad) = mixture(seed, &input);
        let out = ok(&["score", "--scorer", "lexicon", "--input", &s(&input), "--out", &s(&d.path().join("out"))]);
        check_counts(&out, good, bad, seed);
        if let Some(root) = crate::s3::s3_root("accounting") {
            upload_dir(&input, &format!("{root}/in"));
            let out = ok(&[
                "score",
                "--scorer",
                "lexicon",
                "--input",
                &format!("{root}/in"),
                "--out",
                &format!("{root}/out"),
            ]);
            check_counts(&out, good, bad, seed);
        }
    }
}

fn check_counts(out: &str, good: usize, bad: usize, seed: u64) {
    let scored = figure(out, "scored") + figure(out, "unscorable");
    let rejected = figure(out, "rejected");
    assert_eq!((figure(out, "records read"), scored, rejected), (good + bad, good, bad), "seed {seed}:\n{out}");
}

/// A small xorshift generator: the mixtures are the same on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Writes 8 files of random formats; returns (good, bad) record counts.
fn mixture(seed: u64, dir: &Path) -> (usize, usize) {
    use std::io::Write;
    const BAD_JSON: &[&str] = &[
        "{not json",
        r#"{"tweet_id":"b","created_at":"2025-02-10T00:00:00Z","text":"t"}"#,
        r#"{"tweet_id":"b","created_at":"yesterday","text":"t","source":"x"}"#,
        r#"{"tweet_id":"b","created_at":"9999-12-31T23:59:59Z","text":"t","source":"x"}"#,
        r#"{"tweet_id":"b","created_at":"2025-02-10T00:00:00Z","text":"t","source":"x","truth_label":"bogus"}"#,
        r#"{"tweet_id":"b","created_at":"2025-02-10T00:00:00Z","text":["t"],"source":"x"}"#,
        r#"{"tweet_id":"b","created_at":1739145600,"text":"t","source":"x"}"#,
        r#"{"tweet_id":"","created_at":"2025-02-10T00:00:00Z","text":"t","source":"x"}"#,
        "[1,2]",
    ];
    const BAD_CSV: &[&str] = &[
        "b,yesterday,t,x",
        "b,2025-02-10T00:00:00Z,t",
        "b,2025-02-10T00:00:00Z,t,",
        "b,1600-01-01T00:00:00Z,t,x",
        ",2025-02-10T00:00:00Z,t,x",
    ];
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let (mut good, mut bad) = (0, 0);
    for f in 0..8 {
        let n = 1 + rng.below(300) as usize;
        let kinds: Vec<bool> = (0..n).map(|_| rng.below(4) == 0).collect(); // true = bad
        good += kinds.iter().filter(|b| !**b).count();
        bad += kinds.iter().filter(|b| **b).count();
        let at = |i: usize| format!("2025-02-10T{:02}:{:02}:00Z", i % 24, i % 60);
        match rng.below(4) {
            0 | 1 => {
                let mut body = String::new();
                for (i, b) in kinds.iter().enumerate() {
                    if *b {
                        body.push_str(BAD_JSON[rng.below(BAD_JSON.len() as u64) as usize]);
                        body.push('\n');
                    } else {
                        body.push_str(&rec(&format!("{f}-{i}"), &at(i), "fine \\\"quoted\\\", day"));
                    }
                }
                if f % 2 == 0 {
                    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    gz.write_all(body.as_bytes()).unwrap();
                    std::fs::write(dir.join(format!("f{f}.json.gz")), gz.finish().unwrap()).unwrap();
                } else {
                    std::fs::write(dir.join(format!("f{f}.json")), body).unwrap();
                }
            }
            2 => {
                let mut body = String::from("tweet_id,created_at,text,source\n");
                for (i, b) in kinds.iter().enumerate() {
                    if *b {
                        body.push_str(BAD_CSV[rng.below(BAD_CSV.len() as u64) as usize]);
                    } else {
                        body.push_str(&format!("{f}-{i},{},\"fine, \"\"quoted\"\"\nday\",x", at(i)));
                    }
                    body.push('\n');
                }
                std::fs::write(dir.join(format!("f{f}.csv")), body).unwrap();
            }
            _ => {
                // Parquet: bad rows are a NULL text, an empty source, a bogus label or a far time
                let mut ids = Vec::new();
                let mut times = Vec::new();
                let mut texts = Vec::new();
                let mut sources = Vec::new();
                let mut labels = Vec::new();
                for (i, b) in kinds.iter().enumerate() {
                    let k = if *b { 1 + rng.below(4) } else { 0 };
                    ids.push(Some(format!("{f}-{i}")));
                    times.push(if k == 4 { 253_402_300_799_000_000 } else { 1_739_145_600_000_000 + i as i64 });
                    texts.push((k != 1).then(|| "fine".to_string()));
                    sources.push(Some(if k == 2 { String::new() } else { "x".into() }));
                    labels.push((k == 3).then(|| "bogus".to_string()));
                }
                parquet_file(
                    &dir.join(format!("f{f}.parquet")),
                    vec![
                        ("tweet_id", Arc::new(StringArray::from(ids)) as ArrayRef),
                        ("created_at", Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC"))),
                        ("text", Arc::new(StringArray::from(texts))),
                        ("source", Arc::new(StringArray::from(sources))),
                        ("truth_label", Arc::new(StringArray::from(labels))),
                    ],
                );
            }
        }
    }
    (good, bad)
}

/// Copies a local directory's files to an s3:// prefix.
fn upload_dir(dir: &Path, prefix: &str) {
    let loc = sentiflow_jobs::io::store::Location::parse(prefix).unwrap();
    let store = sentiflow_jobs::io::store::build_object_store(&loc.store_url).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for f in files_below(dir) {
        let bytes = std::fs::read(dir.join(&f)).unwrap();
        let path = loc.child(&f).path;
        rt.block_on(object_store::ObjectStoreExt::put(store.as_ref(), &path, bytes.into())).unwrap();
    }
}

/// #6 on S3: a crash with a multipart upload in flight leaves no object
/// under the table prefix; the rerun's counts are exact.
#[test]
fn crash_during_an_s3_upload_leaves_nothing_visible() {
    let Some(root) = crate::s3::s3_root("crash") else { return };
    let d = tmp();
    let input = d.path().join("in.json");
    let rows = big_input(&input);
    let out = Command::new(env!("CARGO_BIN_EXE_sentiflow"))
        .args(["score", "--scorer", "lexicon", "--input", &s(&input), "--out", &root])
        .env("SENTIFLOW_NO_PROGRESS", "1")
        .env("SENTIFLOW_TEST_CRASH", "parquet_write:1")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the crash point was not reached");
    assert!(String::from_utf8_lossy(&out.stderr).contains("SENTIFLOW_TEST_CRASH"));
    let loc = sentiflow_jobs::io::store::Location::parse(&format!("{root}/scored")).unwrap();
    let store = sentiflow_jobs::io::store::build_object_store(&loc.store_url).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listed = rt.block_on(sentiflow_jobs::io::store::list_below(store.as_ref(), &loc, &loc.path)).unwrap();
    assert!(
        listed.is_empty(),
        "nothing visible after the crash: {:?}",
        listed.iter().map(|m| m.location.to_string()).collect::<Vec<_>>()
    );
    let out = ok(&["score", "--scorer", "lexicon", "--input", &s(&input), "--out", &root]);
    assert_eq!(figure(&out, "scored"), rows, "{out}");
    assert_eq!(count(&root, "SELECT count(*) FROM scored_tweets"), rows as i64);
    for m in rt.block_on(sentiflow_jobs::io::store::list_below(store.as_ref(), &loc, &loc.path)).unwrap() {
        let bytes = rt.block_on(async {
            object_store::ObjectStoreExt::get(store.as_ref(), &m.location).await.unwrap().bytes().await.unwrap()
        });
        assert!(
            datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes).is_ok(),
            "{}",
            m.location
        );
    }
}

/// Issue 24 #2: CRLF line ends (RFC 4180's own, Excel's and Python's default) in CSV and TSV
/// read every record once, with no phantom reject, in `score` and in `sql`'s raw_tweets; a
/// quoted field may hold a CRLF, and a runaway quote still costs its own line only, named by
/// its line number.
#[test]
fn crlf_csv_and_tsv_read_each_record_once() {
    let d = tmp();
    let raw = mkdir(d.path(), "raw");
    std::fs::write(
        raw.join("a.csv"),
        "tweet_id,created_at,text,source\r\n\
         1,2025-02-10T00:00:00Z,hello world good,x\r\n\
         2,2025-02-10T00:01:00Z,\"bad, very\r\nbad\",x\r\n\
         \r\n\
         3,2025-02-10T00:02:00Z,\"never closed,x\r\n\
         4,2025-02-10T00:03:00Z,fine then,x\r\n",
    )
    .unwrap();
    std::fs::write(
        raw.join("b.tsv"),
        "tweet_id\tcreated_at\ttext\tsource\r\n5\t2025-02-10T00:04:00Z\ta tab file\tx\r\n6\t2025-02-10T00:05:00Z\tits end\tx\r\n",
    )
    .unwrap();
    let out = d.path().join("out");
    let summary = ok(&["score", "--input", &s(&raw), "--out", &s(&out)]);
    assert_eq!((figure(&summary, "records read"), figure(&summary, "rejected")), (6, 1), "{summary}");
    let rejects = sql_csv(&s(&out), "SELECT regexp_replace(file, '.*/', '') AS f, line, reason FROM rejected");
    let lines: Vec<&str> = rejects.lines().skip(1).collect();
    assert!(lines.len() == 1 && lines[0].starts_with("a.csv,6,") && lines[0].contains("never closes"), "{rejects}");
    let texts = sql_csv(&s(&out), "SELECT tweet_id, text FROM scored_tweets ORDER BY tweet_id");
    assert!(texts.contains("2,\"bad, very\r\nbad\"") && texts.contains("6,its end\n"), "{texts:?}");
    // sql reads the same files as raw_tweets: the same records, the same one reject
    let sql =
        sentiflow(&["sql", "--data", &s(d.path()), "--format", "csv", "-c", "SELECT count(*) AS n FROM raw_tweets"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&sql.stdout), String::from_utf8_lossy(&sql.stderr));
    assert!(sql.status.success() && stdout == "n\n5\n", "{stdout} {stderr}");
    assert!(stderr.contains("leaves out 1 records") && stderr.contains("a.csv:6"), "{stderr}");
}

/// Issue 24 #12: hidden input entries (`_x.json`, `.x.json`, `_dir/`, names as Spark and
/// Hadoop write them) are not read, and the summary says how many there were and names one;
/// an input of hidden entries only is "no input files", naming them.
#[test]
fn hidden_input_entries_are_counted_and_named() {
    let d = tmp();
    let input = mkdir(d.path(), "in");
    std::fs::write(input.join("a.json"), good(2, 1)).unwrap();
    std::fs::write(input.join("_x.json"), good(3, 2)).unwrap();
    std::fs::write(input.join(".x.json"), good(3, 3)).unwrap();
    let hidden_dir = mkdir(&input, "_dir");
    std::fs::write(hidden_dir.join("b.json"), good(3, 4)).unwrap();
    std::fs::write(hidden_dir.join("c.json"), good(3, 5)).unwrap();
    let out = ok(&["score", "--input", &s(&input), "--out", &s(&d.path().join("out"))]);
    assert_eq!(figure(&out, "records read"), 2, "{out}");
    assert_eq!(figure(&out, "hidden, not read"), 3, "three entries, the directory once: {out}");
    assert!(out.contains(&format!("first: {}", s(&input.join(".x.json")))), "{out}");
    // nothing visible: the error says what is there
    std::fs::remove_file(input.join("a.json")).unwrap();
    let (code, err) = fails(&["score", "--input", &s(&input), "--out", &s(&d.path().join("out2"))]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no input files found") && err.contains("3 hidden entries there, e.g."), "{err}");
}

/// A Parquet file with `created_at` as INT96 (Spark's and Impala's default timestamp), one row
/// per (tweet_id, julian day, nanoseconds of the day).
fn int96_parquet(path: &Path, rows: &[(&str, u32, u64)]) {
    use datafusion::parquet::data_type::{ByteArray, ByteArrayType, Int96, Int96Type};
    use datafusion::parquet::file::writer::SerializedFileWriter;
    let schema = datafusion::parquet::schema::parser::parse_message_type(
        "message spark_schema { REQUIRED BYTE_ARRAY tweet_id (UTF8); REQUIRED INT96 created_at; \
         REQUIRED BYTE_ARRAY text (UTF8); REQUIRED BYTE_ARRAY source (UTF8); }",
    )
    .unwrap();
    let mut w =
        SerializedFileWriter::new(std::fs::File::create(path).unwrap(), Arc::new(schema), Default::default()).unwrap();
    let mut g = w.next_row_group().unwrap();
    let strings = |f: &dyn Fn(&(&str, u32, u64)) -> String| -> Vec<ByteArray> {
        rows.iter().map(|r| ByteArray::from(f(r).as_str())).collect()
    };
    let mut col = 0;
    while let Some(mut c) = g.next_column().unwrap() {
        match col {
            1 => {
                let v: Vec<Int96> = rows
                    .iter()
                    .map(|&(_, day, nanos)| {
                        let mut x = Int96::new();
                        x.set_data(nanos as u32, (nanos >> 32) as u32, day);
                        x
                    })
                    .collect();
                c.typed::<Int96Type>().write_batch(&v, None, None).unwrap();
            }
            k => {
                let v = match k {
                    0 => strings(&|r| r.0.to_string()),
                    2 => strings(&|r| format!("tweet {}", r.0)),
                    _ => strings(&|_| "spark".to_string()),
                };
                c.typed::<ByteArrayType>().write_batch(&v, None, None).unwrap();
            }
        }
        c.close().unwrap();
        col += 1;
    }
    g.close().unwrap();
    w.close().unwrap();
}

/// Issue 24 #4: INT96 timestamps outside 1677..2262 (where nanoseconds end) are read as what they
/// are and rejected by the time range check, not wrapped around (1600-01-01 was stored as 2184-07-20).
#[test]
fn int96_timestamps_are_read_without_wrapping() {
    let d = tmp();
    let input = mkdir(d.path(), "in");
    // julian day 2440588 is 1970-01-01; 2305448 is 1600-01-01; 2488070 is 2100-01-01; 2816788 is 3000-01-01
    let hour = 3_600_000_000_000u64;
    int96_parquet(
        &input.join("spark.parquet"),
        &[("1", 2440588 + 20129, 9 * hour), ("2", 2305448, 0), ("3", 2816788, 0), ("4", 2488070, hour)],
    );
    let out = d.path().join("out");
    let summary = ok(&["score", "--input", &s(&input), "--out", &s(&out)]);
    assert_eq!((figure(&summary, "records read"), figure(&summary, "rejected")), (4, 2), "{summary}");
    let rows = sql_csv(&s(&out), "SELECT tweet_id, created_at FROM scored_tweets ORDER BY tweet_id");
    assert_eq!(rows, "tweet_id,created_at\n1,2025-02-10T09:00:00Z\n4,2100-01-01T01:00:00Z\n");
    let rejects = sql_csv(&s(&out), "SELECT line, reason FROM rejected ORDER BY line");
    let lines: Vec<&str> = rejects.lines().skip(1).collect();
    assert!(
        lines.len() == 2
            && lines[0].starts_with("2,")
            && lines[0].contains("1600-01-01")
            && lines[1].starts_with("3,")
            && lines[1].contains("3000-01-01")
            && lines.iter().all(|l| l.contains("outside the supported time range")),
        "{rejects}"
    );
}

/// Issue 24 #19: a file with two columns named `text` (or any raw column) is rejected, naming the
/// column, instead of silently reading the first; the other files are read.
#[test]
fn a_raw_column_named_twice_rejects_the_file() {
    let d = tmp();
    let input = mkdir(d.path(), "in");
    let strings = |v: &[&str]| -> ArrayRef { Arc::new(StringArray::from(v.to_vec())) };
    let at: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![1_739_178_000_000_000]).with_timezone("UTC"));
    parquet_file(
        &input.join("two_texts.parquet"),
        vec![
            ("tweet_id", strings(&["p1"])),
            ("created_at", at),
            ("text", strings(&["a good day"])),
            ("source", strings(&["x"])),
            ("text", strings(&["an awful day"])),
        ],
    );
    std::fs::write(
        input.join("two_texts.csv"),
        "tweet_id,created_at,text,source,text\nc1,2025-02-10 10:00:00,good,x,bad\n",
    )
    .unwrap();
    std::fs::write(input.join("fine.jsonl"), good(2, 10)).unwrap();
    let out = d.path().join("out");
    let summary = ok(&["score", "--input", &s(&input), "--out", &s(&out)]);
    assert_eq!((figure(&summary, "scored"), figure(&summary, "files rejected")), (2, 1), "{summary}");
    let rejects = sql_csv(&s(&out), "SELECT regexp_replace(file, '.*/', '') AS f, reason FROM rejected ORDER BY f");
    let lines: Vec<&str> = rejects.lines().skip(1).collect();
    assert_eq!(lines.len(), 2, "{rejects}");
    assert!(lines[0].starts_with("two_texts.csv,") && lines[0].contains("more than one column named text (2 columns)"));
    assert!(
        lines[1].starts_with("two_texts.parquet,") && lines[1].contains("more than one column named text (2 columns)")
    );
}

/// Issue 24 #18: names from the data (ignored fields, a hidden file) reach the terminal escaped, so a
/// field named with an escape sequence cannot drive it.
#[test]
fn score_summary_escapes_control_characters_in_names_from_the_data() {
    let d = tmp();
    let input = mkdir(d.path(), "in");
    let rec = "{\"tweet_id\":\"e1\",\"created_at\":\"2025-02-10T10:00:00Z\",\"text\":\"ok\",\"source\":\"x\",\
               \"\\u001b]0;pwned\\u0007\\u001b[2J\":1}\n";
    std::fs::write(input.join("esc.jsonl"), rec).unwrap();
    std::fs::write(input.join("_\u{1b}[31mhidden.jsonl"), rec).unwrap();
    let out = d.path().join("out");
    let summary = ok(&["score", "--input", &s(&input), "--out", &s(&out)]);
    assert!(!summary.contains('\u{1b}') && !summary.contains('\u{7}'), "{summary:?}");
    assert!(summary.contains("ignored fields    \\u{1b}]0;pwned\\u{7}\\u{1b}[2J"), "{summary}");
    assert!(summary.contains("_\\u{1b}[31mhidden.jsonl"), "{summary}");
}

/// Issue 24 #14: a page whose CRC does not match (pyarrow and Spark write page checksums) rejects
/// the file, naming it, instead of scoring the changed bytes as text. The fixture was written by
/// pyarrow 26 (`write_page_checksum=True`, uncompressed, no dictionary).
#[test]
fn a_page_that_fails_its_checksum_rejects_the_file() {
    let fixture = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/page_checksums.parquet"))
        .expect("the fixture");
    let d = tmp();
    let intact = mkdir(d.path(), "intact");
    std::fs::write(intact.join("spark.parquet"), &fixture).unwrap();
    let summary = ok(&["score", "--input", &s(&intact), "--out", &s(&d.path().join("out1"))]);
    assert_eq!(figure(&summary, "scored"), 3, "the intact file is read: {summary}");

    let changed = mkdir(d.path(), "changed");
    let at = fixture.windows(14).position(|w| w == b"an awful crash").expect("the text is stored plain");
    let mut bad = fixture.clone();
    bad[at + 3] = b'X'; // "an Xwful crash": still valid UTF-8, only the checksum can tell
    std::fs::write(changed.join("spark.parquet"), &bad).unwrap();
    let out = d.path().join("out2");
    let summary = ok(&["score", "--input", &s(&changed), "--out", &s(&out)]);
    assert_eq!((figure(&summary, "scored"), figure(&summary, "files rejected")), (0, 1), "{summary}");
    let rejects = sql_csv(&s(&out), "SELECT file, reason FROM rejected");
    assert!(rejects.contains("spark.parquet") && rejects.contains("checksum mismatch"), "{rejects}");
}

/// Issue 24 #15: a corrupt Parquet file inside a table fails `sql` and `aggregate` with an error
/// that names the file and the fix, not only "Corrupt footer" or "Data corruption detected".
#[test]
fn a_corrupt_file_in_a_table_is_named_by_sql_and_aggregate() {
    let d = tmp();
    let input = mkdir(d.path(), "in");
    std::fs::write(input.join("a.jsonl"), format!("{}{}", good(3, 10), good(3, 13))).unwrap();
    let root = d.path().join("out");
    ok(&["score", "--input", &s(&input), "--out", &s(&root)]);
    let hour13 = root.join("scored/dt=2025-02-10/hour=13");
    let file = std::fs::read_dir(&hour13)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .unwrap();
    let name = file.file_name().unwrap().to_string_lossy().to_string();
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap(); // cut in half: no footer
    let (code, err) = fails(&["sql", "--data", &s(&root), "-c", "SELECT count(*) FROM scored_tweets"]);
    assert_ne!(code, 0);
    assert!(err.contains(&format!("hour=13/{name}")) && err.contains("move the file out of the table"), "{err}");
    let (code, err) = fails(&["aggregate", "--out", &s(&root)]);
    assert_ne!(code, 0);
    assert!(err.contains(&format!("hour=13/{name}")) && err.contains("move the file out of the table"), "{err}");
    // moved away, both work again on the rest; the failed aggregate let go of its output lock, so
    // this one does not wait out the lease (60 s) of a run that is gone
    std::fs::rename(&file, d.path().join(&name)).unwrap();
    assert_eq!(count(&s(&root), "SELECT count(*) FROM scored_tweets"), 3);
    let started = std::time::Instant::now();
    ok(&["aggregate", "--out", &s(&root)]);
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "waited {:?}", started.elapsed());
}

/// Issue 24 #1: names a filesystem or S3 allows (non-ASCII, `%`, `#`, `?`, `{}`, spaces) are read and
/// written as they are: locally, and on S3 where the object keys are checked as written (they were
/// percent-encoded: `--out s3://b/sortié` landed under `sorti%C3%A9/`).
#[test]
fn paths_with_any_allowed_characters_are_read_and_written_as_named() {
    let d = tmp();
    let input = mkdir(d.path(), "données");
    let names = ["ü.json", "a#1.json", "100%.json", "q?x.json", "{b}.json", "sp ace.json", "x%41.json"];
    for (i, n) in names.iter().enumerate() {
        std::fs::write(input.join(n), rec(&format!("n{i}"), "2025-02-10T10:00:00Z", "a good day")).unwrap();
    }
    let out = d.path().join("sortié#1 x%41");
    let summary = ok(&["score", "--input", &s(&input), "--out", &s(&out)]);
    assert_eq!((figure(&summary, "input files"), figure(&summary, "scored")), (7, 7), "{summary}");
    assert!(out.join("scored/dt=2025-02-10/hour=10").is_dir(), "written under the name as given");
    assert_eq!(count(&s(&out), "SELECT count(*) FROM scored_tweets"), 7);
    ok(&["aggregate", "--out", &s(&out)]);
    assert!(count(&s(&out), "SELECT count(*) FROM windows") > 0);
    // each name alone, as a file argument (glob characters in a name that exists are that name)
    for n in names {
        let summary = ok(&["score", "--input", &s(&input.join(n)), "--out", &s(&d.path().join("one"))]);
        assert_eq!(figure(&summary, "records read"), 1, "{n}: {summary}");
    }
    // the rejects name the file as it is called
    std::fs::write(input.join("ü.json"), "{not json\n").unwrap();
    ok(&["score", "--input", &s(&input), "--out", &s(&out)]);
    let files = sql_csv(&s(&out), "SELECT file FROM rejected");
    assert!(files.contains("données/ü.json"), "{files}");

    // S3: keys as written, read back by the same names
    let Some(root) = crate::s3::s3_root("names") else { return };
    let s3_out = format!("{root}/sortié#1 x%41");
    let summary = ok(&["score", "--input", &s(&input), "--out", &s3_out]);
    assert_eq!(figure(&summary, "scored"), 6, "{summary}");
    assert_eq!(count(&s3_out, "SELECT count(*) FROM scored_tweets"), 6);
    let summary = ok(&["score", "--input", &format!("{s3_out}/scored"), "--out", &format!("{root}/again")]);
    assert_eq!(figure(&summary, "records read"), 6, "{summary}");
    let loc = sentiflow_jobs::io::store::Location::parse(&s3_out).unwrap();
    let store = sentiflow_jobs::io::store::build_object_store(&loc.store_url).unwrap();
    let prefix = root.trim_start_matches("s3://").split_once('/').unwrap().1.to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let keys: Vec<String> = rt.block_on(async {
        use futures::TryStreamExt;
        let p = object_store::path::Path::parse(&prefix).unwrap();
        store.list(Some(&p)).map_ok(|m| m.location.to_string()).try_collect().await.unwrap()
    });
    assert!(keys.iter().any(|k| k.starts_with(&format!("{prefix}/sortié#1 x%41/scored/dt="))), "{keys:?}");
}

/// Runs the binary and returns (success, stdout, its peak RSS in MiB): the child's VmHWM (its own
/// high-water mark) read from /proc every 10 ms while it runs.
fn run_measured(args: &[&str], dir: &Path) -> (bool, String, f64) {
    let out_file = dir.join("measured.out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sentiflow"))
        .args(args)
        .env("SENTIFLOW_NO_PROGRESS", "1")
        .stdout(std::fs::File::create(&out_file).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    let status = loop {
        if let Some(hwm) = std::fs::read_to_string(&status_file).ok().and_then(|st| {
            st.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        }) {
            peak_kib = peak_kib.max(hwm);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    (status.success(), std::fs::read_to_string(&out_file).unwrap(), peak_kib as f64 / 1024.0)
}

/// Issue 24 #7: one input file whose rows span 3,000 hours is written partition by partition, one
/// file open at a time; its memory does not grow by ~300 KB per hour reached (before: 20,000 hours
/// took 5.8 GB). Measured with the lexicon scorer, so the model's memory does not hide it.
#[test]
fn a_file_spanning_thousands_of_hours_is_written_in_bounded_memory() {
    let d = tmp();
    let input = mkdir(d.path(), "in");
    let start = chrono::DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z").unwrap();
    let rows: String = (0..3000)
        .map(|h| {
            let at = (start + chrono::Duration::hours(h)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            rec(&format!("h{h}"), &at, "a good day")
        })
        .collect();
    std::fs::write(input.join("hours.jsonl"), rows).unwrap();
    let out = d.path().join("out");
    let args = ["score", "--scorer", "lexicon", "--input", &s(&input), "--out", &s(&out)];
    let (success, summary, peak_mib) = run_measured(&args, d.path());
    assert!(success, "{summary}");
    assert_eq!(figure(&summary, "scored"), 3000, "{summary}");
    assert!(summary.contains("partitions        3000  files 3000"), "{summary}");
    assert!(peak_mib < 400.0, "peak RSS {peak_mib:.0} MiB for 3,000 hour partitions");
    assert_eq!(count(&s(&out), "SELECT count(DISTINCT tweet_id) FROM scored_tweets"), 3000);
}

/// Issue 24 #6: a large file is read, scored and written in chunks, so memory follows the chunk,
/// not the file (before: the file, its rows and their scores all at once; a 2.6 GB NDJSON file
/// peaked at 6.6 GB). The same file in one chunk (as before) is the control. Rejects in later
/// chunks keep the file's line numbers; a CSV record spanning lines is never cut between chunks;
/// a gzip file is decompressed as it is read; a re-run in larger chunks leaves no file of the
/// smaller ones behind (rows once).
#[test]
fn a_large_file_is_scored_in_chunks_in_bounded_memory() {
    let d = tmp();
    let input = mkdir(d.path(), "in");
    // about 48 MB of NDJSON over 24 hours, 2 KB texts; line 20,001 is malformed
    let words = "a good day, nothing more to say about it than that:".split(' ').collect::<Vec<_>>();
    let text: String = (0..400).map(|i| words[i % words.len()]).collect::<Vec<_>>().join(" ");
    let n = 24_000usize;
    let mut body = String::with_capacity(n * 2200);
    for i in 0..n {
        if i == 20_000 {
            body.push_str("{\"tweet_id\": \"broken\n");
        }
        let at = format!("2025-03-01T{:02}:{:02}:{:02}Z", i % 24, (i / 24) % 60, i % 60);
        body.push_str(&rec(&format!("t{i}"), &at, &format!("{text} {i}")));
    }
    let file = input.join("big.jsonl");
    std::fs::write(&file, &body).unwrap();
    let head: String = body.lines().take(100).map(|l| format!("{l}\n")).collect();
    std::fs::write(d.path().join("head.jsonl"), head).unwrap();
    let file_mib = body.len() as f64 / (1 << 20) as f64;
    drop(body);
    let score = |input: &Path, out: &str, chunk_mib: &str| {
        let args = ["score", "--scorer", "lexicon", "--chunk-mib", chunk_mib, "--input", &s(input), "--out", out];
        let (success, summary, peak_mib) = run_measured(&args, d.path());
        assert!(success, "{summary}");
        (summary, peak_mib)
    };
    let (_, base) = score(&d.path().join("head.jsonl"), &s(&d.path().join("head")), "1");
    let out = d.path().join("out");
    let data = s(&out);
    let (summary, chunked) = score(&file, &data, "1");
    assert_eq!(figure(&summary, "scored"), n, "{summary}");
    assert_eq!(figure(&summary, "rejected"), 1, "{summary}");
    assert_eq!(count(&data, "SELECT count(DISTINCT tweet_id) FROM scored_tweets"), n as i64);
    assert_eq!(count(&data, "SELECT count(*) FROM scored_tweets"), n as i64);
    assert_eq!(count(&data, "SELECT min(line) FROM rejected WHERE job = 'score'"), 20_001, "the file's own line");
    let files = |dir: &str| files_below(&out.join(dir)).len();
    let (scored_files, reject_files) = (files("scored"), files("_rejected"));
    assert!(scored_files > 24 * 10, "one file per chunk and hour: {scored_files}");
    // the control, and a re-run in larger chunks: it replaces the smaller chunks' files
    let (again, whole) = score(&file, &data, "4096");
    assert_eq!(count(&data, "SELECT count(*) FROM scored_tweets"), n as i64, "{again}");
    assert_eq!(count(&data, "SELECT count(*) FROM rejected WHERE job = 'score'"), 1);
    assert_eq!((files("scored"), files("_rejected")), (24, reject_files), "{again}");
    assert!(figure(&again, "stale removed") >= scored_files - 24, "{again}");
    let (grown, grown_whole) = (chunked - base, whole - base);
    eprintln!(
        "peak RSS: 100 lines {base:.0} MiB; {file_mib:.0} MiB file: 1 MiB chunks {chunked:.0}, one chunk {whole:.0}"
    );
    assert!(
        grown < 32.0 && grown < 0.4 * grown_whole,
        "peak RSS over a 100-line run's ({base:.0} MiB) for a {file_mib:.0} MiB file: {grown:.0} MiB in 1 MiB \
         chunks, {grown_whole:.0} MiB in one"
    );

    // CSV whose quoted texts span lines, with a chunk far smaller than the file; and gzip NDJSON
    let csv_dir = mkdir(d.path(), "csv");
    let mut csv = String::from("tweet_id,created_at,text,source\n");
    let rows = 40_000;
    for i in 0..rows {
        csv.push_str(&format!("c{i},2025-03-02T01:00:00Z,\"first line, \"\"quoted\"\"\nsecond line {i}\",x\n"));
    }
    csv.push_str("bad,not a time,\"text\",x\n"); // line 1 + 2 x 40,000 + 1
    std::fs::write(csv_dir.join("multi.csv"), &csv).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, good(30_000, 3).as_bytes()).unwrap();
    std::fs::write(csv_dir.join("g.jsonl.gz"), gz.finish().unwrap()).unwrap();
    let out2 = d.path().join("out2");
    let args = ["score", "--scorer", "lexicon", "--chunk-mib", "1", "--input", &s(&csv_dir), "--out", &s(&out2)];
    let summary = ok(&args);
    assert_eq!(figure(&summary, "scored"), rows + 30_000, "{summary}");
    assert_eq!(figure(&summary, "rejected"), 1, "{summary}");
    let data2 = s(&out2);
    let texts = "SELECT count(*) FROM scored_tweets WHERE text LIKE 'first line, \"quoted\"\nsecond line %'";
    assert_eq!(count(&data2, texts), rows as i64, "every multi-line text whole");
    assert_eq!(count(&data2, "SELECT min(line) FROM rejected WHERE job = 'score'"), 2 + 2 * rows as i64);
    assert!(files_below(&out2.join("scored")).len() > 2, "the files were read in several chunks");
    // the same two files read from S3 as a stream
    let Some(root) = crate::s3::s3_root("chunks") else { return };
    upload_dir(&csv_dir, &format!("{root}/in"));
    let args = ["score", "--scorer", "lexicon", "--chunk-mib", "1", "--input", &format!("{root}/in"), "--out", &root];
    let summary = ok(&args);
    assert_eq!(figure(&summary, "scored"), rows + 30_000, "{summary}");
    assert_eq!(count(&root, texts), rows as i64);
    assert_eq!(count(&root, "SELECT min(line) FROM rejected WHERE job = 'score'"), 2 + 2 * rows as i64);
}
