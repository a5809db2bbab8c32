//! Kinesis and Firehose against real servers on 127.0.0.1 (kinesalite for
//! Kinesis, moto for Firehose, SeaweedFS for S3; scripts/test.sh starts
//! them). Without them the tests fail, unless SENTIFLOW_SKIP_AWS=1 says to
//! skip them out loud.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use datafusion::arrow::array::AsArray;
use sentiflow_jobs::job::generate::{GenerateArgs, Generator};
use sentiflow_jobs::schema::Table;

use crate::common::*;

fn kinesis_endpoint(test: &str) -> Option<String> {
    match std::env::var("SENTIFLOW_TEST_KINESIS") {
        Ok(e) => Some(e),
        Err(_) if std::env::var_os("SENTIFLOW_SKIP_AWS").is_some() => {
            eprintln!("SKIPPED {test}: SENTIFLOW_SKIP_AWS is set and no Kinesis server was started");
            None
        }
        Err(_) => panic!(
            "no Kinesis server: run the tests with scripts/test.sh (it starts kinesalite and moto), or set SENTIFLOW_SKIP_AWS=1"
        ),
    }
}

fn nonce() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

/// An S3 root on the test server when there is one, else a local directory.
fn out_root(test: &str, keep: &mut Option<tempfile::TempDir>) -> String {
    match std::env::var("SENTIFLOW_TEST_S3_BUCKET") {
        Ok(b) => format!("s3://{b}/{test}-{}", nonce()),
        Err(_) => {
            let d = tmp();
            let p = s(d.path());
            *keep = Some(d);
            p
        }
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap()
}

async fn client() -> aws_sdk_kinesis::Client {
    sentiflow_jobs::io::aws::kinesis_client().await
}

async fn wait_active(c: &aws_sdk_kinesis::Client, name: &str) {
    for _ in 0..200 {
        let d = c.describe_stream_summary().stream_name(name).send().await.unwrap();
        if d.stream_description_summary().unwrap().stream_status().as_str() == "ACTIVE" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("stream {name} did not become ACTIVE");
}

pub fn create_stream_pub(rt: &tokio::runtime::Runtime, prefix: &str, shards: i32) -> String {
    create_stream(rt, prefix, shards)
}

fn create_stream(rt: &tokio::runtime::Runtime, prefix: &str, shards: i32) -> String {
    let name = format!("{prefix}-{}", nonce() % 1_000_000_000);
    rt.block_on(async {
        let c = client().await;
        c.create_stream().stream_name(&name).shard_count(shards).send().await.unwrap();
        wait_active(&c, &name).await;
    });
    name
}

fn shard_ids(rt: &tokio::runtime::Runtime, stream: &str) -> Vec<(String, bool)> {
    rt.block_on(async {
        let c = client().await;
        let o = c.list_shards().stream_name(stream).send().await.unwrap();
        o.shards()
            .iter()
            .map(|s| (s.shard_id().to_string(), s.sequence_number_range().unwrap().ending_sequence_number().is_some()))
            .collect()
    })
}

/// (tweet_id, text) of what `generate --rows N --seed S --start T` produces.
fn produced(rows: u64, seed: u64, start: &str) -> BTreeMap<String, String> {
    let args = GenerateArgs {
        rows,
        seed,
        start: chrono::DateTime::parse_from_rfc3339(start).unwrap().with_timezone(&chrono::Utc),
        ..Default::default()
    };
    Generator::new(args).map(|t| (t.tweet_id, t.text)).collect()
}

fn produce(stream: &str, rows: u64, seed: u64, start: &str) -> BTreeMap<String, String> {
    let out = generate_into(&format!("kinesis://{stream}"), rows, seed, start, None);
    assert!(out.contains(&format!("generated {rows} tweets")), "{out}");
    produced(rows, seed, start)
}

/// Every (tweet_id, text) row of the raw table at `raw`, and the row count.
fn ingested(raw: &str) -> (BTreeMap<String, String>, usize) {
    let batches =
        rt().block_on(query(raw.trim_end_matches("/raw"), &[Table::Raw], "SELECT tweet_id, text FROM raw_tweets"));
    let mut m = BTreeMap::new();
    let mut n = 0;
    for b in &batches {
        let ids = b.column(0).as_string::<i32>();
        let texts = b.column(1).as_string::<i32>();
        for i in 0..b.num_rows() {
            m.insert(ids.value(i).to_string(), texts.value(i).to_string());
            n += 1;
        }
    }
    (m, n)
}

fn ingest_cmd(stream: &str, raw: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sentiflow"));
    c.args(["ingest", "--from", &format!("kinesis://{stream}"), "--to", raw])
        .args(extra)
        .env("SENTIFLOW_NO_PROGRESS", "1");
    c
}

fn run_ok(mut c: Command) -> String {
    let out = c.output().unwrap();
    assert!(out.status.success(), "{:?} failed: {}", c, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A number printed before `label` in a report line ("12 retries").
pub fn figure_pub(out: &str, label: &str) -> u64 {
    figure(out, label)
}

fn figure(out: &str, label: &str) -> u64 {
    let words: Vec<&str> =
        out.split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')').filter(|w| !w.is_empty()).collect();
    words
        .windows(2)
        .find(|w| w[1] == label)
        .and_then(|w| w[0].parse().ok())
        .unwrap_or_else(|| panic!("no figure for {label} in {out}"))
}

#[test]
fn produce_then_ingest_exactly_once_through_kill_9() {
    let Some(_) = kinesis_endpoint("kinesis kill -9") else { return };
    let rt = rt();
    let stream = create_stream(&rt, "kill", 2);
    let mut keep = None;
    let raw = format!("{}/raw", out_root("kinesis-kill", &mut keep));
    let mut expected = produce(&stream, 3000, 7, "2025-02-10T00:00:00Z");

    let args = ["--until-caught-up", "--max-rows", "40", "--worker-id", "w1", "--lease", "20s"];
    // deterministic crashes first: after a commit's files (before its checkpoint), after an intent
    for crash in ["files:3", "intent:2", "files:1"] {
        let out = ingest_cmd(&stream, &raw, &args).env("SENTIFLOW_TEST_CRASH", crash).output().unwrap();
        assert!(
            !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("aborting after"),
            "{crash}: {out:?}"
        );
    }
    let out = run_ok(ingest_cmd(&stream, &raw, &args));
    assert!(figure(&out, "replays") >= 1, "the range written before the crash is re-written: {out}");
    let (rows, n) = ingested(&raw);
    assert_eq!((n, rows.len()), (expected.len(), expected.len()), "after three crashes: {out}");
    assert!(rows == expected);
    // then kill -9 at random moments, with more data arriving between runs
    expected.extend(produce(&stream, 3000, 8, "2025-02-20T00:00:00Z"));
    let mut rng = sentiflow_jobs::rng::Rng::new(nonce() as u64);
    let deadline = Instant::now() + Duration::from_secs(240);
    let (mut kills, mut completed, mut batch) = (0, 0, 0);
    while kills < 12 {
        assert!(Instant::now() < deadline, "only {kills} kills in 240 s");
        let mut child: Child =
            ingest_cmd(&stream, &raw, &args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(100 + rng.below(600) as u64));
        match child.try_wait().unwrap() {
            Some(status) => {
                let mut err = String::new();
                child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
                assert!(status.success(), "ingest failed: {err}");
                // it caught up before the kill: give it more to read
                completed += 1;
                batch += 1;
                let start = (chrono::DateTime::parse_from_rfc3339("2025-03-01T00:00:00Z").unwrap()
                    + chrono::Duration::days(batch as i64))
                .to_rfc3339();
                expected.extend(produce(&stream, 3000, 100 + batch, &start));
            }
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
            }
        }
    }
    let out = run_ok(ingest_cmd(&stream, &raw, &args));
    eprintln!("{kills} kills, {completed} completed runs; last run: {out}");
    let (rows, n) = ingested(&raw);
    assert_eq!(n, expected.len(), "rows: {n} for {} produced records (duplicates or losses)", expected.len());
    assert_eq!(rows.len(), expected.len(), "distinct ids");
    assert!(rows == expected, "ingested rows differ from the produced ones");
}

#[test]
fn resharding_split_and_merge_loses_nothing_and_sigterm_checkpoints() {
    let Some(_) = kinesis_endpoint("kinesis resharding") else { return };
    let rt = rt();
    let stream = create_stream(&rt, "reshard", 1);
    let d = tmp();
    let raw = format!("{}/raw", s(d.path()));
    let mut expected = produce(&stream, 1500, 1, "2025-02-10T00:00:00Z");
    let child = ingest_cmd(
        &stream,
        &raw,
        &["--max-seconds", "0.5", "--list-every", "300ms", "--idle-poll", "100ms", "--worker-id", "r1"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // split the only shard in two, write to the children, then merge them back
    rt.block_on(async {
        let c = client().await;
        c.split_shard()
            .stream_name(&stream)
            .shard_to_split("shardId-000000000000")
            .new_starting_hash_key("170141183460469231731687303715884105728")
            .send()
            .await
            .unwrap();
        wait_active(&c, &stream).await;
    });
    expected.extend(produce(&stream, 1500, 2, "2025-02-12T00:00:00Z"));
    std::thread::sleep(Duration::from_millis(1000));
    rt.block_on(async {
        let c = client().await;
        c.merge_shards()
            .stream_name(&stream)
            .shard_to_merge("shardId-000000000001")
            .adjacent_shard_to_merge("shardId-000000000002")
            .send()
            .await
            .unwrap();
        wait_active(&c, &stream).await;
    });
    expected.extend(produce(&stream, 1500, 3, "2025-02-14T00:00:00Z"));
    std::thread::sleep(Duration::from_millis(2500));
    // SIGTERM: the current files are finished and checkpointed, exit 0
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let start = Instant::now();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "SIGTERM exit: {:?} {}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(start.elapsed() < Duration::from_secs(10), "stopping took {:?}", start.elapsed());
    assert!(stdout.contains("closed and finished"), "{stdout}");

    let shards = shard_ids(&rt, &stream);
    assert_eq!(shards.len(), 4, "{shards:?}");
    assert_eq!(shards.iter().filter(|s| s.1).count(), 3, "three closed shards: {shards:?}");
    // what the stopped run had not read yet, a scheduled run picks up
    let out = run_ok(ingest_cmd(&stream, &raw, &["--until-caught-up", "--worker-id", "r1"]));
    let (rows, n) = ingested(&raw);
    assert_eq!(n, expected.len(), "{out}");
    assert!(rows == expected);
    // every closed shard is marked finished in its checkpoint
    for (id, closed) in &shards {
        let ck = std::fs::read_to_string(d.path().join(format!("raw/_checkpoints/ingest/{stream}/{id}.json"))).unwrap();
        let v: serde_json::Value = serde_json::from_str(&ck).unwrap();
        assert_eq!(v["closed"].as_bool(), Some(*closed), "{id}: {ck}");
        assert_eq!(v["owner"], serde_json::Value::Null, "{id} released: {ck}");
    }
}

#[test]
fn poisoned_records_go_to_rejected_with_shard_and_sequence() {
    let Some(_) = kinesis_endpoint("kinesis poison") else { return };
    let rt = rt();
    let stream = create_stream(&rt, "poison", 1);
    let good = |id: &str| {
        format!(r#"{{"tweet_id":"{id}","created_at":"2025-02-10T10:00:00Z","text":"great day","source":"twitter"}}"#)
            .into_bytes()
    };
    let junk: Vec<u8> = (0..(1024 * 1024 - 1)).map(|i| (i % 251) as u8).collect();
    let records: Vec<(&str, Vec<u8>)> = vec![
        ("a", good("g1")),
        ("b", b"not json at all".to_vec()),
        ("c", br#"{"tweet_id":"x1","text":"no time or source"}"#.to_vec()),
        ("d", junk.clone()),
        ("e", good("g2")),
    ];
    let seqs: Vec<String> = rt.block_on(async {
        let c = client().await;
        let mut seqs = Vec::new();
        for (k, data) in &records {
            let o = c
                .put_record()
                .stream_name(&stream)
                .partition_key(*k)
                .data(aws_sdk_kinesis::primitives::Blob::new(data.clone()))
                .send()
                .await
                .unwrap();
            seqs.push(o.sequence_number().to_string());
        }
        seqs
    });
    let d = tmp();
    let raw = format!("{}/raw", s(d.path()));
    let out = run_ok(ingest_cmd(&stream, &raw, &["--until-caught-up"]));
    assert!(out.contains("ingested 5 records (2 rows, 3 rejected"), "{out}");
    let (rows, _) = ingested(&raw);
    assert_eq!(rows.keys().collect::<Vec<_>>(), vec!["g1", "g2"]);
    let rej = rt.block_on(query(
        &raw,
        &[Table::Rejected],
        "SELECT sequence_number, shard_id, reason, record_bytes, file, job FROM rejected ORDER BY record_bytes",
    ));
    let b = &rej[0];
    assert_eq!(b.num_rows(), 3, "{}", render(&rej));
    let col = |i: usize| (0..3).map(|r| b.column(i).as_string::<i32>().value(r).to_string()).collect::<Vec<_>>();
    let got_seqs: BTreeSet<String> = col(0).into_iter().collect();
    assert_eq!(got_seqs, [&seqs[1], &seqs[2], &seqs[3]].into_iter().cloned().collect());
    assert!(col(1).iter().all(|s| s == "shardId-000000000000"));
    let reasons = col(2);
    assert!(reasons[0].contains("malformed JSON"), "{reasons:?}");
    assert!(reasons[1].contains("missing required field created_at"), "{reasons:?}");
    assert!(reasons[2].contains("UTF-8") || reasons[2].contains("JSON"), "{reasons:?}");
    let bytes = b.column(3).as_primitive::<datafusion::arrow::datatypes::Int64Type>();
    assert_eq!(bytes.value(2), junk.len() as i64, "the 1 MiB record's full size is kept");
    assert!(col(4).iter().all(|f| f == &format!("kinesis://{stream}/shardId-000000000000")));
    assert!(col(5).iter().all(|j| j == "ingest"));
    // running again reads nothing new and writes nothing twice
    let out = run_ok(ingest_cmd(&stream, &raw, &["--until-caught-up"]));
    assert!(out.contains("ingested 0 records"), "{out}");
}

/// Issue 24 #20: a record is read as a file is. Gzip (as CloudWatch Logs
/// subscriptions send) is decompressed and a byte-order mark dropped; UTF-16
/// and broken gzip are rejected with the reason and the fix, not "malformed JSON".
#[test]
fn gzip_bom_and_utf16_records_are_read_or_named_as_files_are() {
    use std::io::Write;
    let Some(_) = kinesis_endpoint("kinesis encodings") else { return };
    let rt = rt();
    let stream = create_stream(&rt, "encodings", 1);
    let good = |id: &str| {
        format!(r#"{{"tweet_id":"{id}","created_at":"2025-02-10T10:00:00Z","text":"great day","source":"twitter"}}"#)
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(good("gz1").as_bytes()).unwrap();
    let gzipped = gz.finish().unwrap();
    let mut utf16 = vec![0xFF, 0xFE];
    utf16.extend(good("u16").encode_utf16().flat_map(|u| u.to_le_bytes()));
    let records: Vec<Vec<u8>> = vec![
        gzipped.clone(),
        [&b"\xEF\xBB\xBF"[..], good("bom1").as_bytes()].concat(),
        utf16,
        gzipped[..gzipped.len() / 2].to_vec(),
    ];
    rt.block_on(async {
        let c = client().await;
        for data in &records {
            let blob = aws_sdk_kinesis::primitives::Blob::new(data.clone());
            c.put_record().stream_name(&stream).partition_key("k").data(blob).send().await.unwrap();
        }
    });
    let d = tmp();
    let raw = format!("{}/raw", s(d.path()));
    let out = run_ok(ingest_cmd(&stream, &raw, &["--until-caught-up"]));
    assert!(out.contains("ingested 4 records (2 rows, 2 rejected"), "{out}");
    let (rows, _) = ingested(&raw);
    assert_eq!(rows.keys().collect::<Vec<_>>(), vec!["bom1", "gz1"]);
    let rej = rt.block_on(query(&raw, &[Table::Rejected], "SELECT reason FROM rejected ORDER BY reason"));
    let reasons: Vec<String> =
        (0..rej[0].num_rows()).map(|r| rej[0].column(0).as_string::<i32>().value(r).into()).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    // ordered by reason: "the record is UTF-16 …" sorts before "the record is gzip …"
    assert!(reasons[0].contains("UTF-16 text, not UTF-8") && reasons[0].contains("encode records as UTF-8"));
    assert!(reasons[1].contains("gzip data that does not decompress"), "{reasons:?}");
}

#[test]
fn two_workers_split_the_shards_without_double_reading() {
    let Some(_) = kinesis_endpoint("kinesis two workers") else { return };
    let rt = rt();
    let stream = create_stream(&rt, "workers", 4);
    let mut keep = None;
    let raw = format!("{}/raw", out_root("kinesis-workers", &mut keep));
    let expected = produce(&stream, 4000, 11, "2025-02-10T00:00:00Z");
    let args = |w: &'static str| {
        ["--max-seconds", "0.5", "--list-every", "500ms", "--idle-poll", "200ms", "--lease", "3s", "--worker-id", w]
    };
    let a = ingest_cmd(&stream, &raw, &args("wa")).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let b = ingest_cmd(&stream, &raw, &args("wb")).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(8000));
    let mut outs = Vec::new();
    for c in [a, b] {
        assert!(Command::new("kill").args(["-TERM", &c.id().to_string()]).status().unwrap().success());
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        outs.push(String::from_utf8_lossy(&o.stdout).into_owned());
    }
    let read: Vec<u64> = outs.iter().map(|o| figure(o, "read")).collect();
    assert!(read.iter().all(|&r| r >= 1), "both workers read shards: {outs:?}");
    let (rows, n) = ingested(&raw);
    assert_eq!(n, expected.len(), "{outs:?}");
    assert!(rows == expected);
    let records: u64 = outs.iter().map(|o| figure(o, "records")).sum();
    assert_eq!(records, expected.len() as u64, "each record committed by exactly one worker: {outs:?}");
}

// ---- throttling: a proxy in front of kinesalite that answers some calls with
// ProvisionedThroughputExceededException and fails part of some PutRecords ----

#[derive(Default)]
struct ProxyStats {
    throttled: AtomicU64,
    partial: AtomicU64,
    calls: std::sync::Mutex<HashMap<String, u64>>,
}

fn start_throttling_proxy(upstream: &str) -> (String, Arc<ProxyStats>) {
    let upstream = upstream.trim_start_matches("http://").to_string();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let stats = Arc::new(ProxyStats::default());
    let st = stats.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let (up, st) = (upstream.clone(), st.clone());
            std::thread::spawn(move || {
                let _ = proxy_conn(conn, &up, &st);
            });
        }
    });
    (url, stats)
}

/// An HTTP request: path, headers, body.
type Request = (String, Vec<(String, String)>, Vec<u8>);

pub fn read_request(r: &mut BufReader<TcpStream>) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let len: usize = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(Some((line.trim_end().to_string(), headers, body)))
}

/// Forwards a request (the S3 fault proxy's forwarding); the answer's status and de-chunked body.
fn forward(up: &str, line: &str, headers: &[(String, String)], body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    let (head, body) = crate::s3_faults::forward_raw(up, line, headers, body)?;
    let status = String::from_utf8_lossy(&head).split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(502);
    Ok((status, body))
}

fn proxy_conn(conn: TcpStream, up: &str, st: &ProxyStats) -> std::io::Result<()> {
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    while let Some((line, headers, body)) = read_request(&mut r)? {
        let target = headers.iter().find(|(k, _)| k == "x-amz-target").map(|(_, v)| v.clone()).unwrap_or_default();
        let op = target.rsplit('.').next().unwrap_or("").to_string();
        let n = {
            let mut calls = st.calls.lock().unwrap();
            let c = calls.entry(op.clone()).or_default();
            *c += 1;
            *c
        };
        let (status, body) = if (op == "PutRecords" || op == "GetRecords") && n % 3 == 1 {
            st.throttled.fetch_add(1, Ordering::Relaxed);
            (400, br#"{"__type":"ProvisionedThroughputExceededException","message":"Rate exceeded for shard shardId-000000000000 in stream s under account 000000000000."}"#.to_vec())
        } else if op == "PutRecords" && n % 3 == 2 {
            // store the first half, report the second half as throttled entries
            let mut req: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let all = req["Records"].as_array().cloned().unwrap_or_default();
            let half = all.len().div_ceil(2);
            req["Records"] = serde_json::Value::Array(all[..half].to_vec());
            let (status, resp) = forward(up, &line, &headers, &serde_json::to_vec(&req).unwrap())?;
            let mut resp: serde_json::Value = serde_json::from_slice(&resp).unwrap();
            let failed = all.len() - half;
            if let Some(recs) = resp["Records"].as_array_mut() {
                for _ in 0..failed {
                    recs.push(serde_json::json!({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded for shard"}));
                }
            }
            resp["FailedRecordCount"] =
                serde_json::json!(resp["FailedRecordCount"].as_u64().unwrap_or(0) + failed as u64);
            st.partial.fetch_add(1, Ordering::Relaxed);
            (status, serde_json::to_vec(&resp).unwrap())
        } else {
            forward(up, &line, &headers, &body)?
        };
        let head = format!(
            "HTTP/1.1 {status} {}\r\ncontent-type: application/x-amz-json-1.1\r\nx-amzn-requestid: proxy-{n}\r\ncontent-length: {}\r\n\r\n",
            if status == 200 { "OK" } else { "Bad Request" },
            body.len()
        );
        w.write_all(head.as_bytes())?;
        w.write_all(&body)?;
    }
    Ok(())
}

fn sentiflow_via(endpoint: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sentiflow"))
        .args(args)
        .env("SENTIFLOW_NO_PROGRESS", "1")
        .env("AWS_ENDPOINT_URL_KINESIS", endpoint)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn throttling_is_retried_and_succeeds() {
    let Some(endpoint) = kinesis_endpoint("kinesis throttling") else { return };
    let rt = rt();
    let stream = create_stream(&rt, "throttle", 2);
    let (proxy, stats) = start_throttling_proxy(&endpoint);
    let out =
        sentiflow_via(&proxy, &["generate", "--rows", "3000", "--seed", "5", "--to", &format!("kinesis://{stream}")]);
    assert!(figure(&out, "throttled") >= 2 && figure(&out, "retries") >= 2, "{out}");
    assert!(figure(&out, "failed") >= 500, "a half-failed PutRecords retries its failed entries: {out}");
    let d = tmp();
    let raw = format!("{}/raw", s(d.path()));
    let out = sentiflow_via(
        &proxy,
        &["ingest", "--from", &format!("kinesis://{stream}"), "--to", &raw, "--until-caught-up", "--max-rows", "500"],
    );
    assert!(figure(&out, "throttled") >= 1, "{out}");
    assert!(stats.throttled.load(Ordering::Relaxed) >= 3 && stats.partial.load(Ordering::Relaxed) >= 1);
    let (rows, n) = ingested(&raw);
    assert_eq!(n, 3000, "{out}");
    assert!(rows == produced(3000, 5, "2025-02-10T00:00:00Z"), "every record once, none made up");
}

// ---- Firehose (moto): PutRecordBatch into its S3, then `score` reads what it delivered ----

fn http(endpoint: &str, method: &str, path: &str) -> u16 {
    let mut s = TcpStream::connect(endpoint.trim_start_matches("http://")).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: {}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        endpoint.trim_start_matches("http://")
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[test]
fn firehose_delivery_is_scored_from_s3() {
    let Some(_) = kinesis_endpoint("firehose") else { return };
    let moto = std::env::var("SENTIFLOW_TEST_MOTO").expect("SENTIFLOW_TEST_MOTO (scripts/aws-local.sh sets it)");
    let rt = rt();
    let bucket = format!("fh-{}", nonce() % 1_000_000_000);
    assert_eq!(http(&moto, "PUT", &format!("/{bucket}")), 200, "create the bucket in moto's S3");
    let name = format!("tweets-{}", nonce() % 1_000_000);
    rt.block_on(async {
        let c = sentiflow_jobs::io::aws::firehose_client().await;
        use aws_sdk_firehose::types::{CompressionFormat, ExtendedS3DestinationConfiguration};
        c.create_delivery_stream()
            .delivery_stream_name(&name)
            .extended_s3_destination_configuration(
                ExtendedS3DestinationConfiguration::builder()
                    .bucket_arn(format!("arn:aws:s3:::{bucket}"))
                    .role_arn("arn:aws:iam::000000000000:role/firehose")
                    .prefix("raw/")
                    // moto's DescribeDeliveryStream lacks this field unless it is set
                    .compression_format(CompressionFormat::Uncompressed)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    });
    let out = ok(&["generate", "--rows", "1200", "--seed", "9", "--to", &format!("firehose://{name}")]);
    assert!(out.contains("generated 1200 tweets") && out.contains("3 requests"), "{out}");
    // score reads moto's S3 output (AWS key layout raw/YYYY/MM/DD/HH/<stream>-1-…)
    let d = tmp();
    let o = Command::new(env!("CARGO_BIN_EXE_sentiflow"))
        .args(["score", "--scorer", "lexicon", "--input", &format!("s3://{bucket}/raw/"), "--out", &s(d.path())])
        .env("SENTIFLOW_NO_PROGRESS", "1")
        .env("AWS_ENDPOINT_URL_S3", &moto)
        .env("AWS_ALLOW_HTTP", "true")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("input files       3"), "one object per PutRecordBatch: {stdout}");
    let ids = rt.block_on(query(
        &s(d.path()),
        &[Table::Scored],
        "SELECT count(*), count(DISTINCT tweet_id) FROM scored_tweets",
    ));
    let b = &ids[0];
    let c = |i: usize| b.column(i).as_primitive::<datafusion::arrow::datatypes::Int64Type>().value(0);
    assert_eq!((c(0), c(1)), (1200, 1200));
}

#[test]
fn start_latest_is_pinned_so_a_restart_misses_nothing() {
    let Some(_) = kinesis_endpoint("kinesis --start latest") else { return };
    let rt = rt();
    let stream = create_stream(&rt, "latest", 1);
    produce(&stream, 300, 21, "2025-02-10T00:00:00Z");
    let d = tmp();
    let raw = format!("{}/raw", s(d.path()));
    let args = ["--start", "latest", "--until-caught-up", "--worker-id", "l1"];
    let out = run_ok(ingest_cmd(&stream, &raw, &args));
    assert!(out.contains("ingested 0 records"), "records before the first start are skipped: {out}");
    // records that arrive between two runs are read by the second, not skipped as "latest" would
    std::thread::sleep(Duration::from_millis(50));
    let later = produce(&stream, 200, 22, "2025-02-11T00:00:00Z");
    let out = run_ok(ingest_cmd(&stream, &raw, &args));
    assert!(out.contains("ingested 200 records"), "{out}");
    let (rows, n) = ingested(&raw);
    assert_eq!(n, 200);
    assert!(rows == later);
    // at-timestamp needs its time, and a typo in the stream URL is a clear error
    let (code, err) =
        fails(&["ingest", "--from", &format!("kinesis://{stream}"), "--to", &raw, "--start", "at-timestamp"]);
    assert_eq!(code, 2);
    assert!(err.contains("--start-time"), "{err}");
    let (_, err) = fails(&["ingest", "--from", "kinesis://no-such-stream", "--to", &raw, "--until-caught-up"]);
    assert!(err.contains("no-such-stream") && err.contains("ResourceNotFoundException"), "{err}");
}

/// Issue 19: `--until-caught-up` after workers were killed waits for their
/// leases to expire and reads every shard to its tip, instead of exiting at
/// once with the shards "leased by other workers"; a shard whose holder keeps
/// renewing its lease is left to it, and the summary says so.
#[test]
fn until_caught_up_takes_over_dead_workers_shards() {
    let Some(_) = kinesis_endpoint("kinesis dead leases") else { return };
    let rt = rt();
    let stream = create_stream(&rt, "dead", 2);
    let d = tmp();
    let raw = format!("{}/raw", s(d.path()));
    let states = d.path().join(format!("raw/_checkpoints/ingest/{stream}"));
    let expected = produce(&stream, 20_000, 19, "2025-02-10T00:00:00Z");
    let lease = ["--lease", "6s", "--max-rows", "500"];
    for k in 0..5 {
        // a new worker id each time, as the default gives; killed once it holds a lease
        let mut child = ingest_cmd(&stream, &raw, &lease).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let t = Instant::now();
        while live_leases(&states) == 0 && t.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(100 * k));
        child.kill().unwrap(); // SIGKILL: the leases stay until they expire
        child.wait().unwrap();
    }
    assert!(live_leases(&states) >= 1, "a killed worker's lease is still live");
    let t0 = Instant::now();
    let out = run_ok(ingest_cmd(&stream, &raw, &["--until-caught-up", "--lease", "6s"]));
    assert!(out.contains("shards: 2 read"), "{out}");
    assert!(!out.contains("not caught up"), "{out}");
    let (rows, n) = ingested(&raw);
    assert_eq!(n, expected.len(), "every record once after the killed runs ({:?}): {out}", t0.elapsed());
    assert!(rows == expected);

    // a live worker keeps one shard: the caught-up run takes its share and says what it left
    let more = produce(&stream, 2_000, 20, "2025-02-20T00:00:00Z");
    let mut live = ingest_cmd(&stream, &raw, &["--lease", "3s", "--worker-id", "live", "--list-every", "500ms"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let out = run_ok(ingest_cmd(&stream, &raw, &["--until-caught-up", "--lease", "3s", "--worker-id", "other"]));
    let _ = live.kill();
    let _ = live.wait();
    assert!(out.contains("not caught up: shard(s) shardId-"), "{out}");
    let run = run_ok(ingest_cmd(&stream, &raw, &["--until-caught-up", "--lease", "3s"]));
    assert!(!run.contains("not caught up"), "{run}");
    let (rows, n) = ingested(&raw);
    assert_eq!(n, expected.len() + more.len(), "{run}");
    assert_eq!(rows.len(), n);
}

/// Issue 24 #8: a crashed worker whose clock ran 2 h fast left a lease ending 2 h from now. Liveness
/// is judged by renewals seen on this worker's clock (as KCL does), so the lease is taken over after
/// one lease length without a renewal, with a word in the log, not after 2 h.
#[test]
fn a_lease_dated_hours_ahead_by_a_fast_clock_is_taken_over_after_one_lease() {
    let Some(_) = kinesis_endpoint("kinesis skewed lease") else { return };
    let rt = rt();
    let stream = create_stream(&rt, "skew", 1);
    let d = tmp();
    let raw = format!("{}/raw", s(d.path()));
    let states = d.path().join(format!("raw/_checkpoints/ingest/{stream}"));
    let first = produce(&stream, 200, 31, "2025-02-10T00:00:00Z");
    run_ok(ingest_cmd(&stream, &raw, &["--until-caught-up", "--worker-id", "ghost"]));
    let more = produce(&stream, 100, 32, "2025-02-11T00:00:00Z");
    // the ghost "crashed" holding the lease; its clock was 2 h fast
    let path = std::fs::read_dir(&states)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("a shard state");
    let mut state: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    state["owner"] = "ghost".into();
    state["lease_until_ms"] = (chrono::Utc::now().timestamp_millis() + 2 * 3_600_000).into();
    std::fs::write(&path, serde_json::to_vec_pretty(&state).unwrap()).unwrap();

    let t0 = Instant::now();
    let mut c = ingest_cmd(&stream, &raw, &["--until-caught-up", "--lease", "3s", "--worker-id", "w2", "-v"]);
    let child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(90));
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    });
    let o = child.wait_with_output().unwrap();
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "killed after 90 s: it waited for the 2 h lease\n{out}\n{err}");
    assert!(t0.elapsed() < Duration::from_secs(60), "{:?}", t0.elapsed());
    assert!(err.contains("taking over a lease its holder has not renewed"), "{err}");
    assert!(out.contains("ingested 100 records"), "{out}");
    let (rows, n) = ingested(&raw);
    assert_eq!(n, first.len() + more.len());
    assert_eq!(rows.len(), n);
    drop(watchdog);
}

/// Shard leases in a local checkpoint directory that have not expired.
fn live_leases(dir: &std::path::Path) -> usize {
    let now = chrono::Utc::now().timestamp_millis();
    shard_states(dir)
        .into_iter()
        .filter(|v| v["owner"].is_string() && v["lease_until_ms"].as_i64().is_some_and(|t| t > now))
        .count()
}

/// `ingest --metrics-addr`: /metrics (a real OpenMetrics parser) and /healthz while it runs; once
/// every record is committed, the counters equal the summary it prints at SIGTERM.
#[test]
fn ingest_serves_metrics_that_equal_its_summary() {
    let Some(_) = kinesis_endpoint("ingest metrics") else { return };
    let rt = rt();
    let stream = create_stream(&rt, "ingest-metrics", 2);
    produce(&stream, 800, 41, "2025-03-01T00:00:00Z");
    let mut keep = None;
    let raw = format!("{}/raw", out_root("ingest-metrics", &mut keep));
    let port = crate::stream::free_port();
    let child = ingest_cmd(&stream, &raw, &["--metrics-addr", &port.to_string(), "--idle-poll", "200ms"])
        .args(["--list-every", "1s", "--max-seconds", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let last = loop {
        assert!(Instant::now() < deadline, "ingest did not commit 800 records in 120 s");
        std::thread::sleep(Duration::from_millis(500));
        let Some((200, body)) = crate::stream::http_get(port, "/metrics") else { continue };
        let (m, types) = crate::stream::parse_openmetrics(&body);
        assert_eq!(types.get("sentiflow_records_read").map(String::as_str), Some("counter"));
        assert_eq!(crate::stream::http_get(port, "/healthz").map(|r| r.0), Some(200));
        if m.get("sentiflow_records_read_total") == Some(&800.0) {
            break m;
        }
    };
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    let summary = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(figure(&summary, "records") as f64, last["sentiflow_records_read_total"], "{summary}");
    assert_eq!(figure(&summary, "rows") as f64, last["sentiflow_rows_written_total"], "{summary}");
    assert_eq!(figure(&summary, "rejected") as f64, last["sentiflow_rows_rejected_total"], "{summary}");
    assert_eq!(figure(&summary, "commits") as f64, last["sentiflow_batches_total"], "{summary}");
    assert_eq!(ingested(&raw).1, 800);
}
