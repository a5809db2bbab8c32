//! Issue 18: `score`, `aggregate` and `sql` on an Apache DataFusion Ballista
//! cluster give the rows a single process gives: an in-process cluster
//! (`--cluster standalone`), and a real one (a scheduler and two executor
//! processes on 127.0.0.1) over local disk and the S3 test server, with an
//! executor killed during a job.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{files_below, generate_into, ok, s, sample_tweets, sql_csv, tmp};

/// Every scored row but `scored_at` (the time of the run), in tweet order.
const SCORED: &str = "SELECT * EXCLUDE (scored_at) FROM scored_tweets ORDER BY tweet_id, created_at";
/// Every dead letter but `rejected_at`.
const REJECTED: &str = "SELECT * EXCLUDE (rejected_at) FROM rejected ORDER BY file, line";
/// The windows, averages to 9 digits (sums may add up in another order on a cluster).
const WINDOWS: &str = "SELECT window_start, window_end, n, n_unscored, round(avg_score, 9) AS avg, min_score, max_score, \
                       n_negative, n_positive FROM windows ORDER BY window_start";
const BY_SOURCE: &str =
    "SELECT window_start, source, n, round(avg_score, 9) AS avg, n_negative FROM windows_by_source ORDER BY 1, 2";
/// What drove each window (lift comes from integer counts: exact on a cluster too).
const TERMS: &str = "SELECT window_start, term, kind, n, round(avg_score, 9) AS avg, round(share_negative, 9) AS neg, \
                     lift, neg_lift FROM window_terms ORDER BY window_start, lift DESC, term";

/// Four hourly files of the sample, and a file with two bad records and a good one.
fn input_with_bad_records(dir: &Path) -> String {
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    for h in ["00", "01", "02", "03"] {
        let from = Path::new(&sample_tweets()).join(format!("2025/02/10/{h}"));
        assert!(Command::new("cp").args(["-r", &s(&from), &s(&input.join(h))]).status().unwrap().success());
    }
    add_bad_file(&input);
    s(&input)
}

/// Two bad records and a good one in `bad.ndjson`.
fn add_bad_file(input: &Path) {
    std::fs::write(
        input.join("bad.ndjson"),
        concat!(
            "{\"tweet_id\": \"b1\", \"created_at\": \"2025-02-10T01:02:03Z\", \"text\": \"good day at the park\", \"source\": \"web\"}\n",
            "{\"tweet_id\": \"b2\", \"created_at\": \"not a time\", \"text\": \"x\", \"source\": \"web\"}\n",
            "this is not json\n",
        ),
    )
    .unwrap();
}

/// Scored rows, rejected rows and file names of `b` equal `a`'s.
fn assert_same_scores(a: &str, b: &str) {
    let rows = sql_csv(a, SCORED);
    assert!(rows.lines().count() > 800, "{}", rows.lines().count());
    assert_eq!(sql_csv(b, SCORED), rows, "scored rows");
    let rejected = sql_csv(a, REJECTED);
    assert_eq!(rejected.lines().count(), 3, "{rejected}");
    assert_eq!(sql_csv(b, REJECTED), rejected, "_rejected rows");
    if !a.contains("://") && !b.contains("://") {
        let names = |r: &str| files_below(&Path::new(r).join("scored"));
        assert_eq!(names(b), names(a), "deterministic file names");
    }
}

fn assert_same_windows(a: &str, b: &str) {
    let w = sql_csv(a, WINDOWS);
    assert!(w.lines().count() > 30, "{w}");
    assert_eq!(sql_csv(b, WINDOWS), w);
    assert_eq!(sql_csv(b, BY_SOURCE), sql_csv(a, BY_SOURCE));
    let t = sql_csv(a, TERMS);
    assert!(t.lines().count() > 30, "{t}");
    assert_eq!(sql_csv(b, TERMS), t, "window_terms");
}

/// No staged input is left behind (hidden directory of `score --cluster`).
fn assert_no_staging_left(root: &str) {
    let staged = files_below(&Path::new(root).join("_cluster_staging"));
    assert!(staged.is_empty(), "{staged:?}");
}

#[test]
fn standalone_cluster_scores_and_aggregates_like_one_process() {
    let d = tmp();
    let input = input_with_bad_records(d.path());
    let (a, b) = (s(&d.path().join("a")), s(&d.path().join("b")));
    let lexicon = ["--scorer", "lexicon"];
    let score = |out: &str, extra: &[&str]| {
        let mut args = vec!["score", "--input", &input, "--out", out];
        args.extend(lexicon);
        args.extend(extra);
        ok(&args)
    };
    let one = score(&a, &[]);
    let on_cluster = score(&b, &["--cluster", "standalone"]);
    assert_eq!(on_cluster, one, "same summary");
    assert!(one.contains("rejected          2"), "{one}");
    assert_same_scores(&a, &b);
    assert_no_staging_left(&b);
    // a re-run replaces its files
    score(&b, &["--cluster", "standalone"]);
    assert_same_scores(&a, &b);

    let agg = |out: &str, extra: &[&str]| {
        let mut args = vec!["aggregate", "--out", out, "--window", "10m", "--slide", "5m"];
        args.extend(extra);
        ok(&args)
    };
    assert_eq!(agg(&b, &["--cluster", "standalone"]), agg(&a, &[]));
    assert_same_windows(&a, &b);
    // ad-hoc SQL with the scorer's UDFs
    let q = "SELECT count(*) AS n, round(sum(sentiment(text)), 9) AS s FROM scored_tweets";
    let cluster_sql =
        ok(&["sql", "--data", &b, "--format", "csv", "--cluster", "standalone", "--scorer", "lexicon", "-c", q]);
    assert_eq!(cluster_sql, ok(&["sql", "--data", &a, "--format", "csv", "--scorer", "lexicon", "-c", q]));
}

/// The objects below an s3:// location.
fn objects_below(url: &str) -> Vec<String> {
    use sentiflow_jobs::io::store::{Location, StoreRegistry, list_below};
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let loc = Location::parse(url).unwrap();
        let store = StoreRegistry::default().store(&loc.store_url).unwrap();
        list_below(store.as_ref(), &loc, &loc.path).await.unwrap().into_iter().map(|m| m.location.to_string()).collect()
    })
}

/// Free TCP ports on 127.0.0.1.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    listeners.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port} within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A scheduler and executor processes on 127.0.0.1, stopped on drop; their logs in `logs`.
struct Cluster {
    url: String,
    scheduler: Child,
    executors: Vec<Child>,
    /// `--metrics-addr` ports: the scheduler's, then each executor's.
    metrics: Vec<u16>,
}

impl Cluster {
    fn start(logs: &Path, executors: usize, scorer: &[&str]) -> Self {
        let ports = free_ports(1 + 2 * executors);
        let bin = env!("CARGO_BIN_EXE_sentiflow");
        let log = |name: &str| std::fs::File::create(logs.join(name)).unwrap();
        let metrics: Vec<u16> = (0..=executors).map(|_| crate::stream::free_port()).collect();
        let scheduler = Command::new(bin)
            .args(["cluster", "scheduler", "--bind", &format!("127.0.0.1:{}", ports[0]), "--executor-timeout-s", "6"])
            .args(["--metrics-addr", &metrics[0].to_string()])
            .args(scorer)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log("scheduler.log"))
            .spawn()
            .unwrap();
        wait_for_port(ports[0], "the scheduler");
        let executors = (0..executors)
            .map(|k| {
                let (flight, grpc) = (ports[1 + 2 * k], ports[2 + 2 * k]);
                let child = Command::new(bin)
                    .args(["cluster", "executor", "--scheduler", &format!("127.0.0.1:{}", ports[0])])
                    .args(["--bind", &format!("127.0.0.1:{flight}"), "--grpc-port", &grpc.to_string()])
                    .args(["--concurrency", "1", "--heartbeat-s", "1", "--onnx-threads", "1"])
                    .args(["--metrics-addr", &metrics[1 + k].to_string()])
                    .args(scorer)
                    .env("RUST_LOG", "info")
                    .stdout(Stdio::null())
                    .stderr(log(&format!("executor-{k}.log")))
                    .spawn()
                    .unwrap();
                wait_for_port(grpc, "an executor");
                child
            })
            .collect();
        // registration follows the listening port
        std::thread::sleep(Duration::from_millis(500));
        Cluster { url: format!("df://127.0.0.1:{}", ports[0]), scheduler, executors, metrics }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in self.executors.iter_mut().chain([&mut self.scheduler]) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn log_tail(logs: &Path, name: &str) -> String {
    let log = std::fs::read_to_string(logs.join(name)).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Tasks the executors' logs say they ran.
fn tasks_run(logs: &Path, executor: usize) -> usize {
    let log = std::fs::read_to_string(logs.join(format!("executor-{executor}.log"))).unwrap_or_default();
    log.matches("Finished task").count()
}

#[test]
fn a_cluster_of_processes_scores_local_and_s3_files_and_survives_a_lost_executor() {
    let d = tmp();
    let logs = d.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    // the shipped ONNX model on every executor, loaded once each
    let cluster = Cluster::start(&logs, 2, &[]);
    // files of 1,000 rows: each is staged as two slices, two tasks, one per executor
    let input = d.path().join("in");
    generate_into(&s(&input), 3000, 17, "2025-02-10T00:00:00Z", Some("3h"));
    add_bad_file(&input);
    let input = s(&input);
    let (a, b) = (s(&d.path().join("a")), s(&d.path().join("b")));
    let onnx = ["--onnx-threads", "1"];
    let score = |input: &str, out: &str, extra: &[&str]| {
        let mut args = vec!["score", "--input", input, "--out", out];
        args.extend(onnx);
        args.extend(extra);
        ok(&args)
    };
    let on = ["--cluster", cluster.url.as_str()];
    assert_eq!(score(&input, &b, &on), score(&input, &a, &[]), "same summary");
    assert_same_scores(&a, &b);
    assert_no_staging_left(&b);
    let tasks = (tasks_run(&logs, 0), tasks_run(&logs, 1));
    assert!(tasks.0 > 0 && tasks.1 > 0, "both executors ran tasks: {tasks:?}; {}", log_tail(&logs, "executor-1.log"));
    // --metrics-addr on the roles: the executors' ONNX scorer counted the texts they scored
    let mut texts = 0.0;
    for (k, port) in cluster.metrics.iter().enumerate() {
        let (code, body) = crate::stream::http_get(*port, "/metrics").expect("the role serves /metrics");
        assert_eq!(code, 200);
        let (m, _) = crate::stream::parse_openmetrics(&body);
        assert!(m.get("process_resident_memory_bytes").is_some_and(|v| *v > 0.0), "{k}: {m:?}");
        assert_eq!(crate::stream::http_get(*port, "/healthz").map(|r| r.0), Some(200));
        if k > 0 {
            let t = m.get("sentiflow_scorer_texts_total").copied().unwrap_or(0.0);
            assert!(t > 0.0, "executor {k} scored texts: {m:?}");
            texts += t;
        }
    }
    // 3,000 rows; those in languages the model does not read never reach it
    assert!((2000.0..=3000.0).contains(&texts), "the executors scored the rows: {texts}");
    let agg = |out: &str, extra: &[&str]| {
        let mut args = vec!["aggregate", "--out", out, "--window", "10m", "--slide", "5m"];
        args.extend(extra);
        ok(&args)
    };
    assert_eq!(agg(&b, &on), agg(&a, &[]));
    assert_same_windows(&a, &b);

    // a job whose scorer is not the executors' is refused before it writes anything
    let c = s(&d.path().join("c"));
    let out = crate::common::sentiflow(&[
        "score",
        "--scorer",
        "lexicon",
        "--input",
        &input,
        "--out",
        &c,
        "--cluster",
        &cluster.url,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("the executors score with"), "{err}");
    assert!(!Path::new(&c).join("scored").exists());

    // S3: input, output and the staged rows in the bucket; every executor reads them
    if let Some(root) = crate::s3::s3_root("cluster") {
        let s3_input = format!("{root}/in");
        generate_into(&s3_input, 600, 18, "2025-02-11T00:00:00Z", Some("3h"));
        let (sa, sb) = (s(&d.path().join("s3-a")), format!("{root}/b"));
        assert_eq!(score(&s3_input, &sb, &on), score(&s3_input, &sa, &[]));
        assert_eq!(sql_csv(&sb, SCORED), sql_csv(&sa, SCORED));
        assert_eq!(agg(&sb, &on), agg(&sa, &[]));
        assert_eq!(sql_csv(&sb, WINDOWS), sql_csv(&sa, WINDOWS));
        let staged = objects_below(&format!("{sb}/_cluster_staging"));
        assert!(staged.is_empty(), "{staged:?}");
    }

    // an executor killed during a job: its tasks run again on the other, the output is the same
    let big = s(&d.path().join("big"));
    generate_into(&big, 6000, 19, "2025-02-12T00:00:00Z", Some("6h"));
    let (ka, kb) = (s(&d.path().join("k-a")), s(&d.path().join("k-b")));
    score(&big, &ka, &[]);
    let job = Command::new(env!("CARGO_BIN_EXE_sentiflow"))
        .args(["score", "--input", &big, "--out", &kb, "--onnx-threads", "1", "--cluster", &cluster.url])
        .env("SENTIFLOW_NO_PROGRESS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let scored_dir = Path::new(&kb).join("scored");
    let deadline = Instant::now() + Duration::from_secs(120);
    while files_below(&scored_dir).len() < 2 {
        assert!(Instant::now() < deadline, "no file scored within 120 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut cluster = cluster;
    let mut lost = cluster.executors.remove(1);
    lost.kill().unwrap();
    lost.wait().unwrap();
    let out = job.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the job survives the lost executor: {err}");
    assert_eq!(sql_csv(&kb, SCORED), sql_csv(&ka, SCORED));
    assert_no_staging_left(&kb);
    // the loss was noticed mid-job: the scheduler moved tasks, or the job ran a query again
    let scheduler = std::fs::read_to_string(logs.join("scheduler.log")).unwrap_or_default();
    let moved: Vec<&str> = scheduler.lines().filter(|l| l.contains("lost Executor")).collect();
    assert!(!moved.is_empty() || err.contains("running it again"), "{err}\n{}", log_tail(&logs, "scheduler.log"));
    eprintln!("job with a lost executor: {moved:#?}\n{err}");
}
