//! Streaming mode against kinesalite: exactly-once windows through kill -9,
//! late rows, alerts to a webhook, SIGTERM.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sentiflow_jobs::schema::Table;

use crate::common::*;

fn kinesis() -> bool {
    if std::env::var_os("SENTIFLOW_TEST_KINESIS").is_some() {
        return true;
    }
    if std::env::var_os("SENTIFLOW_SKIP_AWS").is_some() {
        eprintln!("SKIPPED stream tests: SENTIFLOW_SKIP_AWS is set and no Kinesis server was started");
        return false;
    }
    panic!("no Kinesis server: run the tests with scripts/test.sh, or set SENTIFLOW_SKIP_AWS=1");
}

/// A runtime for SDK calls and a new stream of `shards` shards, or `None` when Kinesis tests are skipped.
fn new_stream(prefix: &str, shards: i32) -> Option<(tokio::runtime::Runtime, String)> {
    if !kinesis() {
        return None;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let stream = crate::kinesis::create_stream_pub(&rt, prefix, shards);
    Some((rt, stream))
}

fn stream_cmd(stream: &str, root: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sentiflow"));
    c.args(["stream", "--from", &format!("kinesis://{stream}"), "--to", root, "--scorer", "lexicon"])
        .args(extra)
        .env("SENTIFLOW_NO_PROGRESS", "1");
    c
}

/// Every row of a table, rendered as CSV and sorted (independent of file layout).
fn table_rows(root: &str, table: Table, cols: &str) -> Vec<String> {
    let out = sql_csv(root, &format!("SELECT {cols} FROM {} ORDER BY 1, 2", table.sql_name()));
    out.lines().skip(1).map(str::to_string).collect()
}

/// Records committed over the shard states in a local checkpoint directory.
fn records_committed(dir: &std::path::Path) -> u64 {
    shard_states(dir).iter().filter_map(|v| v["records_committed"].as_u64()).sum()
}

#[test]
fn stream_windows_are_exactly_once_through_crashes() {
    let Some((_rt, stream)) = new_stream("stream", 2) else { return };
    ok(&["generate", "--rows", "4000", "--seed", "17", "--to", &format!("kinesis://{stream}")]);
    let d = tmp();
    let (a, b) = (s(&d.path().join("a")), s(&d.path().join("b")));
    // a watermark wider than the skew between shards: no row is late, whatever the batches
    let args = [
        "--window",
        "10m",
        "--slide",
        "5m",
        "--watermark",
        "3h",
        "--until-caught-up",
        "--max-records-per-shard",
        "60",
        "--trigger",
        "100ms",
    ];
    let out_a = String::from_utf8(stream_cmd(&stream, &a, &args).output().unwrap().stdout).unwrap();
    assert!(out_a.contains("4000 records, 4000 rows, 0 rejected, 0 late rows"), "{out_a}");

    // the same stream into b, crashing after outputs and before the commit, then kill -9 at random
    let terms_dir = d.path().join(format!("b/_checkpoints/stream/{stream}/terms"));
    let pane_files = || -> BTreeMap<String, u64> {
        use std::os::unix::fs::MetadataExt;
        let files = std::fs::read_dir(&terms_dir).map(|d| d.flatten().collect::<Vec<_>>()).unwrap_or_default();
        files.iter().map(|f| (f.file_name().to_string_lossy().into_owned(), f.metadata().unwrap().ino())).collect()
    };
    let mut panes_before_replay = BTreeMap::new();
    for crash in ["stream_outputs:2", "stream_outputs:1"] {
        let o = stream_cmd(&stream, &b, &args).env("SENTIFLOW_TEST_CRASH", crash).output().unwrap();
        assert!(!o.status.success(), "{crash}");
        if panes_before_replay.is_empty() {
            panes_before_replay = pane_files();
        }
    }
    // the second run replayed the first one's uncommitted batches: it kept their term pane files
    // (a file replaced under the emitter while it reads it fails its query)
    // (files the emitter forgot since are gone, not replaced: compare the ones still there)
    let after = pane_files();
    let kept: Vec<_> =
        panes_before_replay.iter().filter_map(|(name, ino)| Some((name, ino, after.get(name)?))).collect();
    assert!(!kept.is_empty(), "{panes_before_replay:?} {after:?}");
    for (name, before, now) in kept {
        assert_eq!(before, now, "{name} was replaced by the replay");
    }
    let mut rng = sentiflow_jobs::rng::Rng::new(99);
    let (mut kills, deadline) = (0, Instant::now() + Duration::from_secs(180));
    loop {
        assert!(Instant::now() < deadline, "{kills} kills in 180 s");
        let mut child = stream_cmd(&stream, &b, &args).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(150 + rng.below(500) as u64));
        if child.try_wait().unwrap().is_some() {
            break; // it finished: nothing left to read
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        if kills >= 12 {
            break;
        }
    }
    let out_b = String::from_utf8(stream_cmd(&stream, &b, &args).output().unwrap().stdout).unwrap();
    eprintln!("{kills} kills; last run: {out_b}");
    assert!(kills >= 10, "the run finished after only {kills} kills: make the batches smaller");
    // sums of scores add up in a different order when the batches differ: averages to 1e-9;
    // min and max must be exact (the window state keeps floats exactly: serde_json float_roundtrip)
    let w =
        "window_start, window_end, n, n_unscored, round(avg_score, 9), min_score, max_score, n_negative, n_positive";
    let (wa, wb) = (table_rows(&a, Table::Windows, w), table_rows(&b, Table::Windows, w));
    assert!(wa.len() > 100, "{}", wa.len());
    let only_a: Vec<_> = wa.iter().filter(|r| !wb.contains(r)).take(5).collect();
    let only_b: Vec<_> = wb.iter().filter(|r| !wa.contains(r)).take(5).collect();
    assert!(
        wa == wb,
        "windows after crashes differ from the uninterrupted run's: {} vs {} rows; only in a: {only_a:#?}; only in b: {only_b:#?}",
        wa.len(),
        wb.len()
    );
    let ws = "window_start, source, n, round(avg_score, 9), n_negative";
    assert_eq!(table_rows(&a, Table::WindowsBySource, ws), table_rows(&b, Table::WindowsBySource, ws));
    let counts = sql_csv(&b, "SELECT count(*) AS n, count(DISTINCT tweet_id) AS d FROM scored_tweets");
    assert_eq!(counts, "n,d\n4000,4000\n", "scored rows once each");

    // compaction merges the micro-batch files without changing any query result
    let q = "SELECT tweet_id, sentiment_score, dt, hour FROM scored_tweets ORDER BY tweet_id";
    let before = (sql_csv(&b, q), table_rows(&b, Table::Windows, w));
    let files = |t: &str| {
        files_below(&d.path().join("b").join(t))
            .iter()
            .filter(|f| f.ends_with(".parquet") && !f.starts_with('_'))
            .count()
    };
    let (scored_files, window_files) = (files("scored"), files("windows"));
    let out = ok(&["compact", "--table", &format!("{b}/scored")]);
    ok(&["compact", "--table", &format!("{b}/windows")]);
    assert!(
        files("scored") == 24 && scored_files > 24 && files("windows") < window_files,
        "one file per dt/hour partition: {out}: {scored_files} -> {}",
        files("scored")
    );
    assert_eq!((sql_csv(&b, q), table_rows(&b, Table::Windows, w)), before);
    // an interrupted compaction (output written, inputs not yet deleted) is finished by the next run
    let part = d
        .path()
        .join("b/scored")
        .join(files_below(&d.path().join("b/scored")).into_iter().find(|f| f.contains("compacted-")).unwrap());
    let dup = part.with_file_name("batch-dup.parquet");
    std::fs::copy(&part, &dup).unwrap();
    std::fs::create_dir_all(d.path().join("b/scored/_compaction")).unwrap();
    let strip = |p: &std::path::Path| p.display().to_string().trim_start_matches('/').to_string();
    std::fs::write(
        d.path().join("b/scored/_compaction/x.json"),
        serde_json::json!({"inputs": [strip(&dup)], "outputs": [strip(&part)]}).to_string(),
    )
    .unwrap();
    let out = ok(&["compact", "--table", &format!("{b}/scored")]);
    assert!(out.contains("finished 1 interrupted compactions"), "{out}");
    assert!(!dup.exists());
    assert_eq!(sql_csv(&b, q), before.0);
}

#[test]
fn late_rows_alerts_webhook_and_sigterm() {
    let Some((_rt, stream)) = new_stream("late", 1) else { return };
    // a webhook that counts posts
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    let posts = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let (p2, b2) = (posts.clone(), bodies.clone());
    // each connection on its own thread: a server busy with one idle keep-alive connection
    // would leave the next waiting past the client's timeout, and its retry would repeat a post
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let (p2, b2) = (p2.clone(), b2.clone());
            std::thread::spawn(move || {
                let mut w = conn.try_clone().unwrap();
                let mut r = BufReader::new(conn);
                while let Ok(Some((_, _, body))) = crate::kinesis::read_request(&mut r) {
                    assert!(String::from_utf8_lossy(&body).contains("\"text\""));
                    p2.fetch_add(1, Ordering::SeqCst);
                    b2.lock().unwrap().insert(String::from_utf8_lossy(&body).to_string());
                    let _ = write!(w, "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
                }
            });
        }
    });
    let d = tmp();
    let rules = d.path().join("rules.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nname = \"any-negative\"\nmetric = \"share_negative\"\nop = \">=\"\nthreshold = 0.0\nmin_n = 1\n",
    )
    .unwrap();
    let root = s(&d.path().join("out"));
    ok(&["generate", "--rows", "600", "--seed", "4", "--span", "2h", "--to", &format!("kinesis://{stream}")]);
    let child = stream_cmd(
        &stream,
        &root,
        &["--window", "10m", "--watermark", "10m", "--trigger", "200ms", "--alerts", &s(&rules), "--webhook", &hook],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // wait (bounded) until the shard states have committed `n` records: no fixed sleeps, CI machines are slow
    let ck = d.path().join(format!("out/_checkpoints/stream/{stream}/shards"));
    let committed = |n: u64| {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let got = records_committed(&ck);
            if got >= n {
                return;
            }
            assert!(Instant::now() < deadline, "only {got} of {n} records committed after 90 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    committed(600);
    // a day-old batch arrives after the watermark moved on: late
    ok(&[
        "generate",
        "--rows",
        "40",
        "--seed",
        "5",
        "--span",
        "1h",
        "--start",
        "2025-02-09T00:00:00Z",
        "--to",
        &format!("kinesis://{stream}"),
    ]);
    committed(640);
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let o = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "SIGTERM exits 0: {}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("640 records") && out.contains("40 late rows"), "{out}");
    let late = ok(&[
        "sql",
        "--format",
        "csv",
        "-c",
        &format!("SELECT count(*) AS n, max(created_at) < TIMESTAMP '2025-02-10 00:00:00' AS old FROM '{root}/late/'"),
    ]);
    assert_eq!(late, "n,old\n40,true\n");
    let windows = table_rows(&root, Table::Windows, "window_start, n");
    let alerts = table_rows(&root, Table::Alerts, "window_start, rule");
    assert!(!windows.is_empty());
    assert_eq!(alerts.len(), windows.len(), "one alert per window and rule");
    let distinct: BTreeSet<_> = alerts.iter().collect();
    assert_eq!(distinct.len(), alerts.len());
    // the webhook is at least once: a retry after a lost response may repeat a post
    assert_eq!(bodies.lock().unwrap().len(), alerts.len(), "every alert posted: {out}");
    eprintln!("webhook posts {} for {} alerts", posts.load(Ordering::SeqCst), alerts.len());
    assert!(posts.load(Ordering::SeqCst) >= alerts.len());
    assert!(out.contains(&format!("{} delivered", alerts.len())), "{out}");
}

/// Shard → owner over the shard states in a local checkpoint directory.
fn shard_owners(dir: &std::path::Path) -> std::collections::BTreeMap<String, String> {
    shard_states(dir)
        .iter()
        .filter_map(|v| Some((v["shard_id"].as_str()?.to_string(), v["owner"].as_str()?.to_string())))
        .collect()
}

/// What the multi-worker tests run every worker with: a watermark wider than any skew
/// here (no row is late), small batches (many commits), short leases (quick takeovers).
const WORKER_ARGS: [&str; 12] = [
    "--window",
    "10m",
    "--slide",
    "5m",
    "--watermark",
    "3h",
    "--max-records-per-shard",
    "40",
    "--trigger",
    "100ms",
    "--lease",
    "3s",
];

/// A worker in the background; its log is appended to [`worker_log`] (for a failing test's message).
fn spawn_worker(stream: &str, root: &str, id: &str, extra: &[&str]) -> std::process::Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(worker_log(root, id)).unwrap();
    stream_cmd(stream, root, &WORKER_ARGS)
        .args(["--worker-id", id])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// `<root>.<id>.log` beside a local root; for a bucket, in the temp directory.
fn worker_log(root: &str, id: &str) -> String {
    match root.contains("://") {
        true => format!("{}/{}.{id}.log", std::env::temp_dir().display(), root.replace([':', '/'], "_")),
        false => format!("{root}.{id}.log"),
    }
}

/// The last 30 lines of a worker's log.
fn log_tail(root: &str, id: &str) -> String {
    let log = std::fs::read_to_string(worker_log(root, id)).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Panics with the worker's log when it exited (a worker only stops on a signal here).
fn assert_running(root: &str, id: &str, child: &mut std::process::Child) {
    if let Some(status) = child.try_wait().unwrap() {
        panic!("worker {id} exited ({status}); the end of its log:\n{}", log_tail(root, id));
    }
}

/// `generate` into the stream: `rows` tweets from `start` over `span`.
fn produce(to: &str, rows: u64, seed: u64, start: &str, span: &str) {
    generate_into(to, rows, seed, start, Some(span));
}

/// A `--until-caught-up` run with the workers' settings; its summary.
fn caught_up_run(stream: &str, root: &str, extra: &[&str]) -> String {
    let o = stream_cmd(stream, root, &WORKER_ARGS).arg("--until-caught-up").args(extra).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// Every tweet scored once, and windows and windows_by_source of `b` equal `a`'s, none twice.
fn assert_same_results(a: &str, b: &str, rows: u64) -> Vec<String> {
    let counts = "SELECT count(*) AS n, count(DISTINCT tweet_id) AS d FROM scored_tweets";
    let want = format!("n,d\n{rows},{rows}\n");
    assert_eq!(sql_csv(b, counts), want, "scored rows once each");
    let w =
        "window_start, window_end, n, n_unscored, round(avg_score, 9), min_score, max_score, n_negative, n_positive";
    let (wa, wb) = (table_rows(a, Table::Windows, w), table_rows(b, Table::Windows, w));
    assert!(wa.len() > 100, "{}", wa.len());
    let starts: BTreeSet<&str> = wb.iter().map(|r| r.split(',').next().unwrap()).collect();
    assert_eq!(starts.len(), wb.len(), "no window emitted twice");
    let only_b: Vec<_> = wb.iter().filter(|r| !wa.contains(r)).take(5).collect();
    assert!(wa == wb, "{} vs {} windows; only in the shared run: {only_b:#?}", wa.len(), wb.len());
    let ws = "window_start, source, n, round(avg_score, 9), n_negative";
    assert_eq!(table_rows(a, Table::WindowsBySource, ws), table_rows(b, Table::WindowsBySource, ws));
    let (ta, tb) = (table_rows(a, Table::WindowTerms, TERM_COLS), table_rows(b, Table::WindowTerms, TERM_COLS));
    assert!(ta.len() > 100, "{} window terms", ta.len());
    assert!(ta == tb, "window_terms: {} vs {} rows", ta.len(), tb.len());
    wb
}

/// window_terms' columns, floats to 9 digits (lift is exact: it comes from integer counts).
const TERM_COLS: &str = "window_start, term, kind, n, round(avg_score, 9), round(share_negative, 9), lift, neg_lift";

/// SIGSTOP at a moment the process holds no shard state's lock: on a local disk a
/// stopped lock holder keeps that one shard from everyone (their writes to it
/// are conflicts) until it runs again; the lock is held for a read and a rename.
fn stop_outside_state_locks(pid: &str, shards_dir: &std::path::Path) {
    loop {
        assert!(Command::new("kill").args(["-STOP", pid]).status().unwrap().success());
        let held = std::fs::read_dir(shards_dir).unwrap().flatten().any(|e| {
            e.path().extension().is_some_and(|x| x == "lock")
                && std::fs::File::open(e.path()).is_ok_and(|f| {
                    let free = f.try_lock().is_ok();
                    drop(f);
                    !free
                })
        });
        if !held {
            return;
        }
        assert!(Command::new("kill").args(["-CONT", pid]).status().unwrap().success());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `done`; on timeout, panics with the shard states and the workers' logs.
fn wait_for(what: &str, secs: u64, root: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        if Instant::now() >= deadline {
            let streams = std::fs::read_dir(std::path::Path::new(root).join("_checkpoints/stream")).unwrap();
            let shards: Vec<_> = streams.flatten().flat_map(|e| shard_states(&e.path().join("shards"))).collect();
            let mut logs = String::new();
            for id in ["w1", "w2"] {
                logs += &format!("--- {id}:\n{}\n", log_tail(root, id));
            }
            panic!("{what}: not within {secs} s; shard states: {shards:#?}\n{logs}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Issue 19: several `stream` workers share a 4-shard stream by leases. A
/// worker stopped for longer than the lease loses its shards to the other and
/// cannot commit when it wakes; workers killed with SIGKILL at random points
/// and restarted (with their id, or a new one) and a shard split in the middle
/// lose and duplicate nothing: every emitted window equals the single-worker
/// run's and the batch `aggregate` of the same rows, and none is emitted twice.
#[test]
fn workers_share_the_stream_through_stops_kills_and_a_split() {
    let Some((rt, stream)) = new_stream("workers", 4) else { return };
    let to = format!("kinesis://{stream}");
    produce(&to, 4000, 31, "2025-03-01T00:00:00Z", "12h");
    let d = tmp();
    let b = s(&d.path().join("b"));
    let shards_dir = d.path().join(format!("b/_checkpoints/stream/{stream}/shards"));
    // an alert rule that fires on every window: each window's alert written once, whoever emits it
    let rules = d.path().join("rules.toml");
    std::fs::write(&rules, "[[rule]]\nname = \"any\"\nmetric = \"share_negative\"\nop = \">=\"\nthreshold = 0.0\n")
        .unwrap();
    let alerts = ["--alerts", &s(&rules)];
    let spawn = |id: &str| (id.to_string(), spawn_worker(&stream, &b, id, &alerts));
    let mut workers = vec![spawn("w1"), spawn("w2")];
    wait_for("both workers hold shards", 60, &b, || {
        workers.iter_mut().for_each(|(id, c)| assert_running(&b, id, c));
        let owners = shard_owners(&shards_dir);
        owners.values().any(|o| o == "w1") && owners.values().any(|o| o == "w2")
    });
    // w2 stopped for longer than its lease: its shards move to w1, and it cannot commit when it wakes
    let w2 = workers[1].1.id().to_string();
    stop_outside_state_locks(&w2, &shards_dir);
    wait_for("w1 takes the stopped worker's shards", 60, &b, || {
        assert_running(&b, "w1", &mut workers[0].1);
        let owners = shard_owners(&shards_dir);
        owners.len() == 4 && owners.values().all(|o| o == "w1")
    });
    let moved_at = records_committed(&shards_dir);
    assert!(Command::new("kill").args(["-CONT", &w2]).status().unwrap().success());
    workers.push(spawn("w3"));

    // kill -9 at random points, restarting with the same id or a new one; a split in the middle
    let mut rng = sentiflow_jobs::rng::Rng::new(19);
    for k in 0..6 {
        std::thread::sleep(Duration::from_millis(700 + rng.below(900) as u64));
        let (id, mut child) = workers.remove(rng.below(workers.len()));
        child.kill().unwrap();
        child.wait().unwrap();
        workers.push(spawn(&if k % 2 == 0 { id } else { format!("w{}", 4 + k) }));
        if k == 2 {
            rt.block_on(async {
                let c = sentiflow_jobs::io::aws::kinesis_client().await;
                c.split_shard()
                    .stream_name(&stream)
                    .shard_to_split("shardId-000000000000")
                    .new_starting_hash_key("42535295865117307932921825928971026432")
                    .send()
                    .await
                    .unwrap();
            });
            std::thread::sleep(Duration::from_millis(500));
            produce(&to, 2000, 32, "2025-03-01T12:00:00Z", "6h");
        }
    }
    // the last workers stop on SIGTERM; each says which shards it held
    let mut outs = Vec::new();
    for (id, c) in workers {
        assert!(Command::new("kill").args(["-TERM", &c.id().to_string()]).status().unwrap().success());
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "SIGTERM exits 0: worker {id} {}\n{}", o.status, log_tail(&b, &id));
        outs.push(String::from_utf8_lossy(&o.stdout).to_string());
    }
    assert!(outs.iter().all(|o| o.contains("held shards [")), "{outs:#?}");
    // a caught-up run finishes what the stopped workers left, then the single-worker reference
    let out_b = caught_up_run(&stream, &b, &alerts);
    let a = s(&d.path().join("a"));
    let out_a = caught_up_run(&stream, &a, &[]);
    assert!(out_a.contains("6000 records, 6000 rows, 0 rejected, 0 late rows"), "{out_a}");
    eprintln!("records committed when w1 had every shard: {moved_at}; last runs: {outs:#?}\n{out_b}");
    assert!(moved_at > 0);
    // the watermark is wider than any skew here: sharing the stream made no row late
    assert!(!d.path().join("b/late").exists(), "late rows in the shared run: {out_b}");
    assert_eq!(sql_csv(&b, "SELECT count(*) AS n FROM raw_tweets"), "n\n6000\n");
    let wb = assert_same_results(&a, &b, 6000);
    let fired = table_rows(&b, Table::Alerts, "window_start, rule");
    let scored_windows = wb.iter().filter(|r| r.split(',').nth(2).is_some_and(|n| n != "0")).count();
    assert_eq!(fired.len(), scored_windows, "one alert per emitted window with scored rows");
    assert_eq!(fired.iter().collect::<BTreeSet<_>>().len(), fired.len(), "no alert twice");
    // the batch aggregate of the same scored rows has every emitted window, equal
    let c = d.path().join("c");
    std::fs::create_dir_all(&c).unwrap();
    assert!(Command::new("cp").args(["-r", &format!("{b}/scored"), &s(&c)]).status().unwrap().success());
    ok(&["aggregate", "--out", &s(&c), "--window", "10m", "--slide", "5m"]);
    let w =
        "window_start, window_end, n, n_unscored, round(avg_score, 9), min_score, max_score, n_negative, n_positive";
    let wc = table_rows(&s(&c), Table::Windows, w);
    let missing: Vec<_> = wb.iter().filter(|r| !wc.contains(r)).take(5).collect();
    assert!(missing.is_empty(), "windows the batch aggregate does not give: {missing:#?}");
    // window_terms: the stream's (trailing 24 h background) are the batch's with that background
    ok(&["aggregate", "--out", &s(&c), "--window", "10m", "--slide", "5m", "--background", "24h"]);
    let (tb, tc) = (table_rows(&b, Table::WindowTerms, TERM_COLS), table_rows(&s(&c), Table::WindowTerms, TERM_COLS));
    let emitted: BTreeSet<&str> = wb.iter().map(|r| r.split(',').next().unwrap()).collect();
    let tc: Vec<&String> = tc.iter().filter(|r| emitted.contains(r.split(',').next().unwrap())).collect();
    assert_eq!(tb.iter().collect::<Vec<_>>(), tc, "the stream's window_terms equal the batch's");
    // each alert names its window's top terms by neg_lift
    let check = sql_csv(
        &b,
        "WITH ranked AS (
             SELECT window_start, term, row_number() OVER (PARTITION BY window_start ORDER BY neg_lift DESC, term) AS k
             FROM window_terms WHERE neg_lift > 0),
         want AS (SELECT window_start, string_agg(term, ', ' ORDER BY k) AS d FROM ranked WHERE k <= 5 GROUP BY window_start)
         SELECT count(*) AS alerts, count(a.drivers) AS with_drivers,
                count(*) FILTER (WHERE coalesce(a.drivers, '') <> coalesce(w.d, '')) AS wrong,
                count(*) FILTER (WHERE a.drivers IS NOT NULL AND strpos(a.message, ' — driven by ' || a.drivers) = 0) AS not_in_message
         FROM alerts a LEFT JOIN want w ON w.window_start = a.window_start",
    );
    let f: Vec<i64> = check.lines().nth(1).unwrap().split(',').map(|x| x.parse().unwrap()).collect();
    assert!(f[1] > 50 && f[2] == 0 && f[3] == 0, "alerts, with drivers, wrong, not in the message: {check}");
    let terms_dir = d.path().join(format!("b/_checkpoints/stream/{stream}/terms"));
    let bytes: u64 = std::fs::read_dir(&terms_dir).unwrap().flatten().map(|e| e.metadata().unwrap().len()).sum();
    eprintln!("term panes kept under the checkpoint: {} files, {bytes} bytes", files_below(&terms_dir).len());
}

/// The same on the S3 test server, where the leases and commits are
/// conditional PUTs: two workers, one killed with SIGKILL mid-run, the other
/// stopped with SIGTERM, then a caught-up run that waits for the dead worker's
/// leases to expire; results equal a local single-worker run's.
#[test]
fn workers_share_a_stream_on_s3() {
    let Some(b) = crate::s3::s3_root("stream-workers") else { return };
    let Some((_rt, stream)) = new_stream("s3workers", 4) else { return };
    produce(&format!("kinesis://{stream}"), 3000, 33, "2025-03-02T00:00:00Z", "12h");
    let (mut w1, w2) = (spawn_worker(&stream, &b, "s1", &[]), spawn_worker(&stream, &b, "s2", &[]));
    std::thread::sleep(Duration::from_millis(2500));
    assert!(w1.try_wait().unwrap().is_none(), "s1 still working when killed");
    w1.kill().unwrap();
    w1.wait().unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    assert!(Command::new("kill").args(["-TERM", &w2.id().to_string()]).status().unwrap().success());
    let o = w2.wait_with_output().unwrap();
    assert!(o.status.success());
    let out_b = caught_up_run(&stream, &b, &[]);
    assert!(!out_b.contains("not caught up"), "{out_b}");
    let d = tmp();
    let a = s(&d.path().join("a"));
    let out_a = caught_up_run(&stream, &a, &[]);
    assert!(out_a.contains("3000 records, 3000 rows, 0 rejected, 0 late rows"), "{out_a}");
    eprintln!("s2: {}\nlast run: {out_b}", String::from_utf8_lossy(&o.stdout));
    assert_same_results(&a, &b, 3000);
}

/// `--fallback llm` in the stream: the rows the model does not read go to the
/// LLM in the micro-batch, and the windows equal the batch run's of the same
/// records. A dead LLM (it accepts connections and never answers) holds a
/// micro-batch at most its timeout: those rows commit with NULL and the
/// reason, and windows keep coming.
#[test]
fn stream_with_an_llm_fallback_equals_batch_and_a_dead_llm_does_not_stop_it() {
    let Some((_rt, stream)) = new_stream("fallback", 2) else { return };
    let (url, seen) = crate::llm::start_fake_openai();
    let (rows, seed, start) = (1200, 29, "2025-02-10T00:00:00Z");
    produce(&format!("kinesis://{stream}"), rows, seed, start, "6h");
    let d = tmp();
    let file = d.path().join("tweets.ndjson");
    produce(&s(&file), rows, seed, start, "6h");
    let llm = ["--fallback", "llm", "--llm-base-url", &url, "--llm-model", "test-model", "--llm-max-retries", "0"];
    let (a, b) = (s(&d.path().join("stream")), s(&d.path().join("batch")));
    let summary = caught_up_run(&stream, &a, &llm);
    let run = ["run", "--input", &s(&file), "--out", &b, "--scorer", "lexicon", "--window", "10m", "--slide", "5m"];
    let batch = ok(&[&run[..], &llm].concat());
    let routed = "SELECT count(*) AS n FROM scored_tweets WHERE fallback_reason IS NOT NULL";
    let n_routed: u64 = sql_csv(&a, routed).lines().nth(1).unwrap().parse().unwrap();
    assert!(n_routed > 20, "the generator writes other languages: {n_routed} routed");
    assert!(summary.contains(&format!("fallback          {n_routed} rows the model does not read")), "{summary}");
    assert!(batch.contains(&format!("fallback          {n_routed} rows")), "{batch}");
    let q = "SELECT tweet_id, sentiment_score, sentiment_label, scorer, fallback_reason, score_error FROM scored_tweets ORDER BY tweet_id";
    assert_eq!(sql_csv(&a, q), sql_csv(&b, q), "the same rows scored by the same scorers");
    let llm_rows = "SELECT count(*) AS n FROM scored_tweets WHERE scorer = 'llm:test-model@score-v2' AND sentiment_score IS NOT NULL";
    assert_eq!(sql_csv(&a, llm_rows), format!("n\n{n_routed}\n"));
    // every window the stream emitted (those the watermark passed) is the batch run's
    let w = "window_start, window_end, n, n_unscored, round(avg_score, 9), min_score, max_score, n_negative, \
             n_positive, n_fallback";
    let (wa, wb) = (table_rows(&a, Table::Windows, w), table_rows(&b, Table::Windows, w));
    assert!(wa.len() > 20, "{} windows emitted", wa.len());
    let differ: Vec<_> = wa.iter().filter(|r| !wb.contains(r)).take(5).collect();
    assert!(differ.is_empty(), "stream windows the batch run does not give: {differ:#?}");
    let mix = sql_csv(&a, "SELECT count(*) AS n FROM windows WHERE n_fallback > 0 AND n_fallback < n");
    assert_ne!(mix, "n\n0\n", "windows show the mix of scorers");
    assert!(seen.lock().unwrap().asked.len() as u64 <= n_routed, "only routed texts are asked");

    // a dead LLM: accepted connections, no answer
    let hole = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/v1", hole.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in hole.incoming().flatten() {
            held.push(c);
        }
    });
    let (_rt2, stream2) = new_stream("fallback-dead", 1).unwrap();
    // over 8 h: the 3 h watermark passes windows, so some are emitted
    produce(&format!("kinesis://{stream2}"), 300, seed, start, "8h");
    let c = s(&d.path().join("dead"));
    let t0 = Instant::now();
    let dead_llm = [
        "--fallback",
        "llm",
        "--llm-base-url",
        &dead,
        "--llm-model",
        "test-model",
        "--llm-max-retries",
        "0",
        "--llm-timeout",
        "1s",
        "--llm-concurrency",
        "16",
        "--no-llm-cache",
    ];
    let summary = caught_up_run(&stream2, &c, &dead_llm);
    let took = t0.elapsed();
    let failed = "SELECT count(*) AS n FROM scored_tweets WHERE fallback_reason IS NOT NULL AND sentiment_score IS NULL AND score_error LIKE 'llm: %timed out%'";
    let n_failed: u64 = sql_csv(&c, failed).lines().nth(1).unwrap().parse().unwrap();
    assert!(n_failed > 0, "{summary}");
    assert!(
        summary.contains(&format!("{n_failed} rows the model does not read: 0 scored, {n_failed} not")),
        "{summary}"
    );
    assert!(summary.contains("300 records, 300 rows"), "{summary}");
    let windows: u64 = sql_csv(&c, "SELECT count(*) AS n FROM windows").lines().nth(1).unwrap().parse().unwrap();
    assert!(windows > 10, "windows are emitted: {windows}");
    assert!(took < Duration::from_secs(90), "a dead LLM holds each batch at most its timeout: {took:?}");
}

/// A free port on 127.0.0.1 (bound and let go: a race only with other tests taking ports by chance).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `GET path` on 127.0.0.1:port: (status, body); None when nothing answers.
pub(crate) fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::Read;
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(c, "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n").ok()?;
    let mut buf = String::new();
    c.read_to_string(&mut buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    // axum answers with a length; a chunked answer is not expected here
    Some((status, body.to_string()))
}

/// A scrape parsed by Python's prometheus_client OpenMetrics parser (a real, strict one):
/// sample `name{labels}` → value, and family name → type.
pub(crate) fn parse_openmetrics(
    text: &str,
) -> (std::collections::BTreeMap<String, f64>, std::collections::BTreeMap<String, String>) {
    let py = std::env::var("SENTIFLOW_PYTHON").unwrap_or_else(|_| "python3".into());
    let code = r#"
import sys, json
from prometheus_client.openmetrics.parser import text_string_to_metric_families
samples, types = {}, {}
for fam in text_string_to_metric_families(sys.stdin.read()):
    types[fam.name] = fam.type
    for s in fam.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        samples[s.name + ("{" + labels + "}" if labels else "")] = s.value
print(json.dumps({"samples": samples, "types": types}))
"#;
    let mut child = Command::new(&py)
        .args(["-c", code])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "prometheus_client could not parse the scrape ({py}; scripts/test.sh installs prometheus-client): {}\n{text}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let samples = v["samples"].as_object().unwrap().iter().map(|(k, x)| (k.clone(), x.as_f64().unwrap())).collect();
    let types = v["types"].as_object().unwrap().iter().map(|(k, x)| (k.clone(), x.as_str().unwrap().into())).collect();
    (samples, types)
}

/// The figure after `label` in a summary (`… 12 records, …` → figure_before(s, " records,") = 12).
fn figure_before(summary: &str, label: &str) -> f64 {
    let at = summary.find(label).unwrap_or_else(|| panic!("{label:?} not in {summary}"));
    let head = summary[..at].trim_end();
    let start = head.rfind(|c: char| !c.is_ascii_digit()).map_or(0, |i| i + 1);
    head[start..].parse().unwrap_or_else(|_| panic!("no figure before {label:?} in {summary}"))
}

/// A Prometheus server (Debian's `prometheus`) scraping 127.0.0.1:`targets` every second: its port
/// and process, or None (said out loud) when the machine has none or SENTIFLOW_SKIP_PROMETHEUS is set.
fn start_prometheus(dir: &std::path::Path, targets: &[u16]) -> Option<(u16, std::process::Child)> {
    let bin = std::env::var("SENTIFLOW_PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
    if std::env::var_os("SENTIFLOW_SKIP_PROMETHEUS").is_some() || Command::new(&bin).arg("--version").output().is_err()
    {
        eprintln!("SKIPPED the Prometheus server check: no {bin} (scripts/test.sh installs Debian's package)");
        return None;
    }
    std::fs::create_dir_all(dir).unwrap();
    let list: Vec<String> = targets.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: sentiflow\n    static_configs:\n      - targets: [{}]\n",
            list.join(", ")
        ),
    )
    .unwrap();
    let port = free_port();
    let server = Command::new(&bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(port, "/-/ready").is_none_or(|(code, _)| code != 200) {
        assert!(
            Instant::now() < deadline,
            "Prometheus did not start: {}",
            std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    Some((port, server))
}

/// A TCP proxy in front of `upstream` that can be frozen: bytes stop moving both ways
/// (the peer's calls hang, as behind a dead network path) until it thaws.
fn start_freezable_proxy(upstream: &str) -> (String, Arc<std::sync::atomic::AtomicBool>) {
    let up = upstream.trim_start_matches("http://").to_string();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let frozen = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let f = frozen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let Ok(server) = std::net::TcpStream::connect(&up) else { continue };
            for (mut from, mut to) in [(conn.try_clone().unwrap(), server.try_clone().unwrap()), (server, conn)] {
                let f = f.clone();
                std::thread::spawn(move || {
                    use std::io::Read;
                    let mut buf = [0u8; 16384];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        while f.load(Ordering::SeqCst) {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
    (url, frozen)
}

/// `--metrics-addr`: two workers serve /metrics (parsed by a real OpenMetrics parser while they
/// run: counters only grow) and /healthz; once the stream is read, each worker's counters equal
/// the summary it prints at SIGTERM. A worker whose Kinesis calls hang answers 503.
#[test]
fn workers_serve_metrics_that_equal_their_summaries_and_health_that_sees_a_stall() {
    let Some((_rt, stream)) = new_stream("metrics", 2) else { return };
    let rows = 1500.0;
    produce(&format!("kinesis://{stream}"), rows as u64, 37, "2025-03-01T00:00:00Z", "6h");
    let d = tmp();
    let root = s(&d.path().join("out"));
    let ports = [free_port(), free_port()];
    let mut workers: Vec<_> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let id = format!("m{i}");
            let addr = p.to_string();
            let log = std::fs::File::create(worker_log(&root, &id)).unwrap();
            // a 10 s lease (WORKER_ARGS has 3 s): the scrapes load the 2 cores, and a lease lost
            // at the wrong moment only delays the emission this test waits for
            let child = stream_cmd(&stream, &root, &["--window", "10m", "--slide", "5m", "--watermark", "3h"])
                .args(["--max-records-per-shard", "100", "--trigger", "200ms", "--lease", "10s"])
                .args(["--worker-id", &id, "--metrics-addr", &addr, "--stall-after", "60s"])
                .env("RUST_LOG", "info")
                .stdout(Stdio::piped())
                .stderr(log)
                .spawn()
                .unwrap();
            (id, child)
        })
        .collect();
    // a real Prometheus server scraping both workers every second, where the machine has one
    // (scripts/test.sh installs Debian's package; SENTIFLOW_SKIP_PROMETHEUS=1 skips it out loud)
    let prometheus = start_prometheus(&d.path().join("prometheus"), &ports);
    // every window up to the watermark (the last event, about 06:00, less 3 h) emitted
    let emitted_through = chrono::DateTime::parse_from_rfc3339("2025-03-01T02:45:00Z").unwrap().timestamp() as f64;
    let monotonic = |k: &str| k.ends_with("_total") || k.ends_with("_count") || k.ends_with("_bucket");
    let mut last: Vec<std::collections::BTreeMap<String, f64>> = vec![Default::default(); 2];
    let (mut stable, mut scrapes, deadline) = (0, 0, Instant::now() + Duration::from_secs(300));
    let mut types = std::collections::BTreeMap::new();
    while stable < 3 {
        assert!(Instant::now() < deadline, "the stream was not read and emitted in 300 s: {last:#?}");
        std::thread::sleep(Duration::from_millis(1500));
        let mut changed = false;
        for (i, p) in ports.iter().enumerate() {
            let (id, child) = &mut workers[i];
            assert_running(&root, id, child);
            let Some((200, body)) = http_get(*p, "/metrics") else { continue };
            let (now, t) = parse_openmetrics(&body);
            types.extend(t);
            scrapes += 1;
            for (k, v) in &now {
                if let Some(before) = last[i].get(k).filter(|_| monotonic(k)) {
                    assert!(v >= before, "{k} went down from {before} to {v}");
                }
            }
            let key = |m: &std::collections::BTreeMap<String, f64>| {
                ["sentiflow_records_read_total", "sentiflow_windows_emitted_total", "sentiflow_batches_total"]
                    .map(|k| m.get(k).copied())
            };
            changed |= key(&now) != key(&last[i]);
            last[i] = now;
            let (code, why) = http_get(*p, "/healthz").unwrap();
            assert_eq!(code, 200, "a progressing worker is healthy: {why}");
        }
        let read: f64 = last.iter().filter_map(|m| m.get("sentiflow_records_read_total")).sum();
        let watermark =
            last.iter().filter_map(|m| m.get("sentiflow_watermark_seconds")).fold(0.0, |a: f64, b| a.max(*b));
        stable = if read == rows && watermark >= emitted_through && !changed { stable + 1 } else { 0 };
    }
    assert!(scrapes >= 6, "{scrapes} scrapes");
    for (name, ty) in [
        ("sentiflow_records_read", "counter"),
        ("sentiflow_rows_scored", "counter"),
        ("sentiflow_batch_duration_seconds", "histogram"),
        ("sentiflow_shard_millis_behind_latest", "gauge"),
        ("sentiflow_watermark_seconds", "gauge"),
        ("sentiflow_checkpoint_requests", "counter"),
        ("sentiflow_leases_held", "gauge"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_cpu_seconds", "counter"),
    ] {
        assert_eq!(types.get(name).map(String::as_str), Some(ty), "{name}: {types:?}");
    }
    if let Some((port, mut server)) = prometheus {
        // the server's own view after two more scrapes: both targets up, the same totals
        std::thread::sleep(Duration::from_secs(3));
        let q = |expr: &str| -> f64 {
            let path =
                format!("/api/v1/query?query={}", expr.replace(' ', "%20").replace('(', "%28").replace(')', "%29"));
            let (code, body) = http_get(port, &path).expect("Prometheus answers");
            assert_eq!(code, 200, "{body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            v["data"]["result"][0]["value"][1].as_str().unwrap_or("NaN").parse().unwrap()
        };
        assert_eq!(q("sum(up)"), 2.0, "Prometheus scrapes both workers");
        assert_eq!(q("sum(sentiflow_records_read_total)"), rows, "Prometheus sees every record read");
        let scraped: f64 = last.iter().filter_map(|m| m.get("sentiflow_windows_emitted_total")).sum();
        assert_eq!(q("sum(sentiflow_windows_emitted_total)"), scraped);
        server.kill().unwrap();
        server.wait().unwrap();
    }
    let mut emitted = 0.0;
    // both at once: a worker left running would take the other's shards and emit more
    for (_, child) in &workers {
        assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    }
    for (i, (id, child)) in workers.into_iter().enumerate() {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{id}: {}", log_tail(&root, &id));
        let summary = String::from_utf8_lossy(&o.stdout).to_string();
        let m = &last[i];
        let got = |k: &str| m.get(k).copied().unwrap_or(0.0);
        for (metric, label) in [
            ("sentiflow_batches_total", " micro-batches"),
            ("sentiflow_records_read_total", " records,"),
            ("sentiflow_rows_written_total", " rows,"),
            ("sentiflow_rows_rejected_total", " rejected,"),
            ("sentiflow_rows_late_total", " late rows"),
            ("sentiflow_windows_emitted_total", " windows,"),
            ("sentiflow_alerts_fired_total", " alerts"),
            ("sentiflow_leases_lost_total", " leases lost"),
        ] {
            assert_eq!(got(metric), figure_before(&summary, label), "{id}: {metric} vs the summary: {summary}");
        }
        let scored: f64 = m.iter().filter(|(k, _)| k.starts_with("sentiflow_rows_scored_total{")).map(|(_, v)| v).sum();
        let unscored: f64 =
            m.iter().filter(|(k, _)| k.starts_with("sentiflow_rows_unscorable_total{")).map(|(_, v)| v).sum();
        assert_eq!(scored + unscored, got("sentiflow_rows_written_total"), "{id}: every written row is counted once");
        emitted += got("sentiflow_windows_emitted_total");
    }
    let windows: f64 = sql_csv(&root, "SELECT count(*) AS n FROM windows").lines().nth(1).unwrap().parse().unwrap();
    assert_eq!(emitted, windows, "windows emitted, over the workers, are the table's");

    // a stall: this worker's Kinesis calls hang; /healthz turns 503 after --stall-after
    let (_rt2, stream2) = new_stream("metrics-stall", 1).unwrap();
    produce(&format!("kinesis://{stream2}"), 300, 37, "2025-03-01T00:00:00Z", "1h");
    let (proxy, frozen) = start_freezable_proxy(&std::env::var("AWS_ENDPOINT_URL_KINESIS").unwrap());
    let port = free_port();
    let root2 = s(&d.path().join("stall"));
    let log = std::fs::File::create(worker_log(&root2, "s")).unwrap();
    let mut child = stream_cmd(&stream2, &root2, &WORKER_ARGS)
        .args(["--metrics-addr", &port.to_string(), "--stall-after", "3s"])
        .env("AWS_ENDPOINT_URL_KINESIS", &proxy)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    wait_for("the worker reads its shard", 60, &root2, || {
        assert_running(&root2, "s", &mut child);
        http_get(port, "/metrics").is_some_and(|(_, b)| b.contains("sentiflow_records_read_total 300"))
    });
    assert_eq!(http_get(port, "/healthz").unwrap().0, 200);
    frozen.store(true, Ordering::SeqCst);
    wait_for("/healthz sees the stall", 30, &root2, || {
        assert_running(&root2, "s", &mut child);
        http_get(port, "/healthz").is_some_and(|(code, body)| code == 503 && body.starts_with("stalled"))
    });
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Issue 24 #3: a record stamped far ahead of its arrival on the stream (a producer's clock
/// running ahead, or a typo'd year inside the accepted range) is rejected with the reason, so
/// it cannot move the watermark past every later record: with two workers sharing the shards,
/// the records after it are on time, and windows keep being emitted for them.
#[test]
fn records_stamped_far_ahead_of_their_arrival_do_not_move_the_watermark() {
    let Some((_rt, stream)) = new_stream("ahead", 2) else { return };
    let to = format!("kinesis://{stream}");
    produce(&to, 300, 41, "2025-02-10T00:00:00Z", "1h");
    produce(&to, 2, 42, "2199-01-01T00:00:00Z", "1m");
    produce(&to, 2, 43, "2100-06-01T00:00:00Z", "1m");
    produce(&to, 300, 44, "2025-02-10T01:00:00Z", "1h");
    let d = tmp();
    let root = s(&d.path().join("out"));
    let args = [
        "--window",
        "10m",
        "--watermark",
        "10m",
        "--trigger",
        "100ms",
        "--lease",
        "3s",
        "--max-records-per-shard",
        "50",
    ];
    let spawn = |id: &str| {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(worker_log(&root, id)).unwrap();
        stream_cmd(&stream, &root, &args).args(["--worker-id", id]).stdout(Stdio::piped()).stderr(log).spawn().unwrap()
    };
    let mut workers = [spawn("w1"), spawn("w2")];
    let ck = d.path().join(format!("out/_checkpoints/stream/{stream}/shards"));
    wait_for("every record committed", 120, &root, || {
        for (id, c) in ["w1", "w2"].iter().zip(workers.iter_mut()) {
            assert_running(&root, id, c);
        }
        records_committed(&ck) >= 604
    });
    let (mut rejected, mut late) = (0.0, 0.0);
    for c in workers {
        assert!(Command::new("kill").args(["-TERM", &c.id().to_string()]).status().unwrap().success());
        let o = c.wait_with_output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(o.status.success(), "SIGTERM exits 0: {out}");
        rejected += figure_before(&out, "rejected");
        late += figure_before(&out, "late rows");
    }
    assert_eq!((rejected, late), (4.0, 0.0), "the 4 far-ahead records rejected, no row late");
    let reasons = sql_csv(
        &root,
        "SELECT count(*) AS n FROM rejected WHERE reason LIKE '%ahead of the record''s arrival%--max-event-ahead%'",
    );
    assert_eq!(reasons, "n\n4\n");
    // windows of the second hour were emitted: the watermark follows the on-time records
    let last = sql_csv(&root, "SELECT max(window_end) >= TIMESTAMP '2025-02-10T01:40:00Z' AS second_hour FROM windows");
    assert_eq!(last, "second_hour\ntrue\n");
    // and every on-time row before the last emitted window's end is in a window
    let counted = sql_csv(
        &root,
        "SELECT (SELECT sum(n + n_unscored) FROM windows) AS in_windows, count(*) AS before_end FROM scored_tweets \
         WHERE created_at < (SELECT max(window_end) FROM windows)",
    );
    let figures: Vec<&str> = counted.lines().nth(1).unwrap().split(',').collect();
    assert!(figures[0] == figures[1] && figures[0].parse::<u32>().unwrap() > 400, "{counted}");
}
