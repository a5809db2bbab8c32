//! The LLM scorer and generator against an HTTP-level OpenAI test double:
//! 429 with Retry-After, 500s, timeouts, garbage and out-of-range answers,
//! a body that is not JSON; the cache, deduplication and the concurrency cap.

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::Float64Type;
use sentiflow_jobs::schema::Table;

use crate::common::*;
use crate::kinesis::read_request;

#[derive(Default)]
pub(crate) struct Seen {
    /// post text -> times of the requests for it
    pub(crate) asked: HashMap<String, Vec<Instant>>,
    in_flight: usize,
    max_in_flight: usize,
    auth: Vec<String>,
}

/// The post a scoring request asks about: its last turn.
fn post_of(prompt: &str) -> String {
    prompt.trim().to_string()
}

fn completion(content: &str) -> String {
    serde_json::json!({
        "id": "chatcmpl-test", "object": "chat.completion", "created": 1, "model": "test-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 3, "total_tokens": 103}
    })
    .to_string()
}

fn respond(w: &mut TcpStream, status: u16, extra: &str, body: &str) -> std::io::Result<()> {
    write!(
        w,
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\n\r\n{body}",
        body.len()
    )
}

pub(crate) fn start_fake_openai() -> (String, Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s2 = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let seen = s2.clone();
            std::thread::spawn(move || {
                let mut w = conn.try_clone().unwrap();
                let mut r = BufReader::new(conn);
                while let Ok(Some((_line, headers, body))) = read_request(&mut r) {
                    let req: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    // the post is the last turn (after the system message and the few-shot examples)
                    let last = req["messages"].as_array().map(|m| m.len()).unwrap_or(1).saturating_sub(1);
                    let prompt = req["messages"][last]["content"].as_str().unwrap_or("").to_string();
                    let auth =
                        headers.iter().find(|(k, _)| k == "authorization").map(|(_, v)| v.clone()).unwrap_or_default();
                    if prompt.starts_with("Write ") {
                        seen.lock().unwrap().auth.push(auth);
                        let n: usize = prompt.split_whitespace().nth(1).and_then(|x| x.parse().ok()).unwrap_or(10);
                        let k = seen.lock().unwrap().asked.entry("gen".into()).or_default().len();
                        seen.lock().unwrap().asked.get_mut("gen").unwrap().push(Instant::now());
                        // one near-duplicate per answer, the rest distinct
                        let mut lines = vec![format!("{}. Bitcoin feels unstoppable today, buying more #BTC", 1)];
                        lines.push("2. Bitcoin feels unstoppable today, buying more #BTC!".into());
                        for i in 2..n {
                            lines.push(format!(
                                "{}. Post number {i} of round {k} about {} with its own words {}",
                                i + 1,
                                "bitcoin",
                                i * 7 + k
                            ));
                        }
                        let _ = respond(&mut w, 200, "", &completion(&lines.join("\n")));
                        continue;
                    }
                    let post = post_of(&prompt);
                    let n = {
                        let mut s = seen.lock().unwrap();
                        s.auth.push(auth);
                        // abandoned (timed-out) requests stay in flight on this side: count the [slowish] ones only
                        if post.contains("[slowish]") {
                            s.in_flight += 1;
                            s.max_in_flight = s.max_in_flight.max(s.in_flight);
                        }
                        let v = s.asked.entry(post.clone()).or_default();
                        v.push(Instant::now());
                        v.len()
                    };
                    let res = if post.contains("[429]") && n == 1 {
                        respond(
                            &mut w,
                            429,
                            "retry-after: 1\r\n",
                            r#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
                        )
                    } else if (post.contains("[500]") && n <= 2) || post.contains("[always500]") {
                        respond(
                            &mut w,
                            500,
                            "",
                            r#"{"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}"#,
                        )
                    } else if post.contains("[slow]") {
                        std::thread::sleep(Duration::from_millis(2500));
                        respond(&mut w, 200, "", &completion("5"))
                    } else if post.contains("[notjson]") {
                        respond(&mut w, 200, "", "<html>proxy error</html>")
                    } else {
                        if post.contains("[slowish]") {
                            std::thread::sleep(Duration::from_millis(300));
                        }
                        let answer = if post.contains("[garbage]") {
                            "I really like this one!"
                        } else if post.contains("[range]") {
                            "15"
                        } else if post.contains("great") {
                            "7.5"
                        } else if post.contains("terrible") {
                            "Score: -6"
                        } else {
                            "0"
                        };
                        respond(&mut w, 200, "", &completion(answer))
                    };
                    if post.contains("[slowish]") {
                        seen.lock().unwrap().in_flight -= 1;
                    }
                    if res.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (url, seen)
}

fn run_with_key(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sentiflow"))
        .args(args)
        .env("SENTIFLOW_NO_PROGRESS", "1")
        .env("OPENAI_API_KEY", "sk-test-secret-key-0123")
        .env_remove("SENTIFLOW_LLM_API_KEY")
        .output()
        .unwrap()
}

const TEXTS: &[&str] = &[
    "what a great day for bitcoin",
    "what a great day for bitcoin",
    "this crash is terrible",
    "bitcoin trades sideways",
    "",
    "great news [429]",
    "terrible fees [500]",
    "down again [always500]",
    "hmm [slow]",
    "meh [garbage]",
    "wow [range]",
    "odd [notjson]",
    "a [slowish]",
    "b [slowish]",
    "c [slowish]",
    "d [slowish]",
];

#[test]
fn llm_scorer_retries_caches_and_never_makes_up_a_score() {
    let (url, seen) = start_fake_openai();
    let d = tmp();
    let input = d.path().join("in.json");
    let lines: Vec<String> = TEXTS
        .iter()
        .enumerate()
        .map(|(i, t)| serde_json::json!({"tweet_id": format!("t{i:02}"), "created_at": "2025-02-10T10:00:00Z", "text": t, "source": "x"}).to_string())
        .collect();
    std::fs::write(&input, lines.join("\n")).unwrap();
    let out = d.path().join("out");
    let args = [
        "score",
        "--scorer",
        "llm",
        "--input",
        &s(&input),
        "--out",
        &s(&out),
        "--llm-base-url",
        &url,
        "--llm-model",
        "test-model",
        "--llm-timeout",
        "1s",
        "--llm-max-retries",
        "3",
        "--llm-concurrency",
        "2",
        "--llm-price-in",
        "1",
        "--llm-price-out",
        "2",
    ];
    let o = run_with_key(&args);
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "{stderr}");
    assert!(!stdout.contains("sk-test") && !stderr.contains("sk-test"), "the key is never printed");
    assert!(seen.lock().unwrap().auth.iter().all(|a| a == "Bearer sk-test-secret-key-0123"), "the key is sent");

    let q =
        "SELECT tweet_id, sentiment_score, sentiment_label, score_error, scorer FROM scored_tweets ORDER BY tweet_id";
    let b = rt_query(&s(&out), q);
    let scores = b.column(1).as_primitive::<Float64Type>();
    let row = |id: &str| (0..b.num_rows()).find(|&r| b.column(0).as_string::<i32>().value(r) == id).unwrap();
    let val = |id: &str| {
        let r = row(id);
        (!scores.is_null(r)).then(|| scores.value(r))
    };
    let err = |id: &str| {
        let r = row(id);
        let e = b.column(3).as_string::<i32>();
        (!e.is_null(r)).then(|| e.value(r).to_string())
    };
    assert_eq!(val("t00"), Some(0.75));
    assert_eq!(val("t01"), Some(0.75));
    assert_eq!(val("t02"), Some(-0.6));
    assert_eq!(val("t03"), Some(0.0), "a real 0 is neutral, not an error");
    assert_eq!(b.column(2).as_string::<i32>().value(row("t02")), "negative");
    assert_eq!(b.column(4).as_string::<i32>().value(row("t00")), "llm:test-model@score-v2");
    assert_eq!(val("t05"), Some(0.75), "429 then success");
    assert_eq!(val("t06"), Some(-0.6), "500 twice then success");
    for (id, reason) in [
        ("t04", "text is empty"),
        ("t07", "HTTP 500"),
        ("t08", "timed out"),
        ("t09", "no number"),
        ("t10", "outside -10..10"),
        ("t11", "not a chat completion"),
    ] {
        assert_eq!(val(id), None, "{id} has no made-up score");
        assert!(err(id).is_some_and(|e| e.contains(reason)), "{id}: {:?} should say {reason}", err(id));
    }
    {
        let s = seen.lock().unwrap();
        assert_eq!(s.asked["what a great day for bitcoin"].len(), 1, "identical texts are asked once");
        let t = &s.asked["great news [429]"];
        assert_eq!(t.len(), 2);
        assert!(t[1] - t[0] >= Duration::from_millis(950), "Retry-After: 1 honoured: {:?}", t[1] - t[0]);
        assert_eq!(s.asked["terrible fees [500]"].len(), 3);
        assert_eq!(s.asked["down again [always500]"].len(), 4, "1 try + 3 retries");
        assert_eq!(s.asked["hmm [slow]"].len(), 4, "timeouts are retried");
        assert_eq!(s.asked["meh [garbage]"].len(), 1, "a garbage answer is not retried at temperature 0");
        assert!((1..=2).contains(&s.max_in_flight), "concurrency cap: {} in flight", s.max_in_flight);
    }
    assert!(stdout.contains("5 failures"), "{stdout}");
    assert!(stdout.contains("1 deduplicated"), "{stdout}");

    // re-scoring the same data: cached answers cost nothing, failures are asked again
    let before: usize = seen.lock().unwrap().asked.values().map(Vec::len).sum();
    let o = run_with_key(&args);
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success());
    let after: usize = seen.lock().unwrap().asked.values().map(Vec::len).sum();
    let (hits, cached_texts) = (crate::kinesis::figure_pub(&stdout, "cache"), 9);
    assert_eq!(hits, cached_texts, "{stdout}");
    assert!(after - before <= 3 * 4 + 3, "only the failed texts are asked again: {} requests", after - before);
    assert_eq!(seen.lock().unwrap().asked["what a great day for bitcoin"].len(), 1, "answered from the cache");
}

fn rt_query(root: &str, sql: &str) -> datafusion::arrow::array::RecordBatch {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let batches = rt.block_on(query(root, &[Table::Scored], sql));
    datafusion::arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
}

#[test]
fn llm_generator_drops_near_duplicates_and_fails_clearly_without_a_server() {
    let (url, _seen) = start_fake_openai();
    let d = tmp();
    let out = s(&d.path().join("raw"));
    let o = run_with_key(&[
        "generate",
        "--llm",
        "--rows",
        "20",
        "--topic",
        "bitcoin",
        "--to",
        &out,
        "--llm-base-url",
        &url,
        "--llm-model",
        "test-model",
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("generated 20 tweets (20 written by the LLM"), "{stdout}");
    assert!(crate::kinesis::figure_pub(&stdout, "near-duplicates") >= 1, "{stdout}");
    let files = files_below(d.path());
    assert!(!files.is_empty());
    // the posts are readable input for score
    let o2 = ok(&["score", "--scorer", "lexicon", "--input", &out, "--out", &s(d.path())]);
    assert!(o2.contains("scored            20"), "{o2}");
    // no server: a clear failure, no invented text
    let o = run_with_key(&[
        "generate",
        "--llm",
        "--rows",
        "5",
        "--to",
        &s(&d.path().join("none")),
        "--llm-base-url",
        "http://127.0.0.1:9/v1",
        "--llm-max-retries",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("http://127.0.0.1:9/v1") && err.contains("llm"), "{err}");
    assert!(!d.path().join("none").exists(), "nothing written");
}

#[test]
fn compare_reports_agreement_between_two_scorers() {
    let d = tmp();
    let root = |n: &str| s(&d.path().join(n));
    ok(&["generate", "--rows", "300", "--seed", "3", "--to", &root("raw")]);
    // every row scored (--any-language: the lexicon would leave the ~8 % non-English rows NULL)
    ok(&["score", "--scorer", "lexicon", "--any-language", "--input", &root("raw"), "--out", &root("lex")]);
    let same = ok(&["compare", "--a", &root("lex"), "--b", &root("lex")]);
    assert!(same.contains("spearman         1.0000") && same.contains("label agreement  1.0000"), "{same}");
    // an LLM that answers 7.5 for "great", -6 for "terrible", else 0 (the test double) against the lexicon
    let (url, _seen) = start_fake_openai();
    let o = run_with_key(&[
        "score",
        "--scorer",
        "llm",
        "--input",
        &root("raw"),
        "--out",
        &root("llm"),
        "--llm-base-url",
        &url,
        "--llm-model",
        "test-model",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = ok(&["compare", "--a", &root("lex"), "--b", &root("llm")]);
    assert!(out.contains("300 in both, 300 scored by both"), "{out}");
    let rho: f64 = out
        .lines()
        .find(|l| l.starts_with("spearman"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    assert!(rho > 0.0 && rho < 1.0, "{out}");
    let (code, err) = fails(&["compare", "--a", &root("lex"), "--b", &root("nothing")]);
    assert_eq!(code, 2);
    assert!(err.contains("nothing/scored"), "{err}");
}

#[test]
fn api_key_comes_from_secrets_manager() {
    let Ok(moto) = std::env::var("SENTIFLOW_TEST_MOTO") else {
        assert!(std::env::var_os("SENTIFLOW_SKIP_AWS").is_some(), "no moto server: run the tests with scripts/test.sh");
        eprintln!("SKIPPED api_key_comes_from_secrets_manager: SENTIFLOW_SKIP_AWS is set");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let (plain, json) = rt.block_on(async {
        let conf = aws_sdk_secretsmanager::config::Builder::from(&sentiflow_jobs::io::aws::sdk_config().await)
            .endpoint_url(&moto)
            .build();
        let c = aws_sdk_secretsmanager::Client::from_conf(conf);
        let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let a =
            c.create_secret().name(format!("plain-{n}")).secret_string("sk-from-secrets-manager").send().await.unwrap();
        let b = c
            .create_secret()
            .name(format!("json-{n}"))
            .secret_string(r#"{"api_key":"sk-in-json"}"#)
            .send()
            .await
            .unwrap();
        (a.arn().unwrap().to_string(), b.arn().unwrap().to_string())
    });
    let d = tmp();
    ok(&["generate", "--rows", "5", "--to", &s(&d.path().join("raw"))]);
    let score_with = |arn: &str, url: &str| {
        Command::new(env!("CARGO_BIN_EXE_sentiflow"))
            .args([
                "score",
                "--scorer",
                "llm",
                "--input",
                &s(&d.path().join("raw")),
                "--out",
                &s(&d.path().join("out")),
                "--llm-base-url",
                url,
                "--api-key-secret",
                arn,
                "--no-llm-cache",
            ])
            .env("SENTIFLOW_NO_PROGRESS", "1")
            .env("AWS_ENDPOINT_URL_SECRETS_MANAGER", &moto)
            .env_remove("OPENAI_API_KEY")
            .env_remove("SENTIFLOW_LLM_API_KEY")
            .output()
            .unwrap()
    };
    for (arn, key) in [(&plain, "sk-from-secrets-manager"), (&json, "sk-in-json")] {
        let (url, seen) = start_fake_openai();
        let o = score_with(arn, &url);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let printed = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert!(!printed.contains(key), "the key is never printed");
        let auth = seen.lock().unwrap().auth.clone();
        assert!(!auth.is_empty() && auth.iter().all(|a| a == &format!("Bearer {key}")), "{auth:?}");
    }
    let missing = "arn:aws:secretsmanager:us-east-1:000000000000:secret:missing-AbCdEf";
    let o = score_with(missing, "http://127.0.0.1:9/v1");
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("secret {missing} could not be read")), "{err}");
}

/// `--fallback llm`: the model scores what it reads, the LLM only the rows it
/// refuses because of their language; each row names its scorer; a failing or
/// spent LLM leaves NULL and the reason, never a stopped job.
#[test]
fn fallback_sends_only_the_rows_the_model_does_not_read_to_the_llm() {
    let (url, seen) = start_fake_openai();
    let d = tmp();
    let input = d.path().join("in.ndjson");
    let rec = |id: u32, text: &str, lang: Option<&str>| {
        let mut v = serde_json::json!({"tweet_id": format!("t{id}"), "created_at": "2025-02-10T00:00:00Z", "text": text, "source": "twitter"});
        if let Some(l) = lang {
            v["lang"] = serde_json::json!(l);
        }
        format!("{v}\n")
    };
    let routed = [
        "¡qué día tan great para bitcoin, muy feliz con mi inversión!",
        "un día terrible para bitcoin, todo se cae otra vez",
        "bitcoinが上がっている！最高",
        "caída total del mercado hoy [always500]",
    ];
    let body = [
        rec(1, "Bitcoin is going up, very happy with my investment", Some("en")),
        rec(2, routed[0], Some("es")),
        rec(3, routed[1], Some("es")),
        rec(4, routed[2], None),
        rec(5, routed[3], Some("es")),
        rec(6, "\u{200b}\u{200b}", Some("en")),
        rec(7, "Does anyone know when the next Bitcoin halving is?", None),
    ]
    .concat();
    std::fs::write(&input, body).unwrap();
    let llm = |out: &str, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> =
            ["score", "--input", &s(&input), "--out", out, "--fallback", "llm"].iter().map(|x| x.to_string()).collect();
        a.extend(["--llm-base-url", &url, "--llm-model", "test-model", "--llm-max-retries", "0"].map(String::from));
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    };
    let run = |args: &[String]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = run_with_key(&args);
        let (out, err) = (String::from_utf8_lossy(&o.stdout).to_string(), String::from_utf8_lossy(&o.stderr));
        assert!(o.status.success(), "{out}\n{err}");
        out
    };
    let requests = || seen.lock().unwrap().asked.values().map(Vec::len).sum::<usize>();
    let rows = |out: &str| {
        let q = "SELECT tweet_id, sentiment_score, sentiment_label, score_error, scorer, fallback_reason \
                 FROM scored_tweets ORDER BY tweet_id";
        let b = rt_query(out, q);
        (0..b.num_rows())
            .map(|r| {
                let st = |c: usize| {
                    let a = b.column(c).as_string::<i32>();
                    (!a.is_null(r)).then(|| a.value(r).to_string())
                };
                let sc = b.column(1).as_primitive::<Float64Type>();
                (st(0).unwrap(), (!sc.is_null(r)).then(|| sc.value(r)), st(2), st(3), st(4).unwrap(), st(5))
            })
            .collect::<Vec<_>>()
    };

    let out = s(&d.path().join("out"));
    let summary = run(&llm(&out, &[]));
    let got = rows(&out);
    assert_eq!(got.len(), 7);
    let onnx_id = got[0].4.clone();
    assert!(onnx_id.starts_with("onnx:sentiment-minilm@"), "{got:?}");
    for i in [0, 5, 6] {
        assert_eq!(got[i].4, onnx_id, "the model keeps what it reads: {:?}", got[i]);
        assert_eq!(got[i].5, None, "{:?}", got[i]);
    }
    assert!(got[0].1.is_some() && got[6].1.is_some(), "{got:?}");
    assert!(got[5].1.is_none() && got[5].3.as_deref().unwrap().contains("no letters"), "content-free: not routed");
    for r in &got[1..5] {
        assert_eq!(r.4, "llm:test-model@score-v2", "{r:?}");
        let why = r.5.as_deref().unwrap_or("");
        assert!(why.starts_with("language ") && why.contains("is not read by onnx:sentiment-minilm@"), "{why}");
    }
    assert_eq!((got[1].1, got[1].2.as_deref()), (Some(0.75), Some("positive")));
    assert_eq!((got[2].1, got[2].2.as_deref()), (Some(-0.6), Some("negative")));
    assert_eq!((got[3].1, got[3].2.as_deref()), (Some(0.0), Some("neutral")));
    assert!(got[4].1.is_none() && got[4].3.as_deref().unwrap().starts_with("llm: HTTP 500"), "{:?}", got[4]);
    {
        let s = seen.lock().unwrap();
        let mut asked: Vec<&str> = s.asked.keys().map(String::as_str).collect();
        asked.sort();
        let mut want = routed.to_vec();
        want.sort();
        assert_eq!(asked, want, "only the refused rows reach the LLM");
    }
    assert!(summary.contains(&format!("scored by         llm:test-model@score-v2 3, {onnx_id} 2")), "{summary}");
    assert!(
        summary.contains("fallback          4 rows the model does not read: 3 scored, 1 not (llm: HTTP 500: 1)"),
        "{summary}"
    );
    assert!(summary.contains("unscorable        2"), "{summary}");

    // a re-run asks only what has no answer yet
    let before = requests();
    let summary = run(&llm(&out, &[]));
    assert_eq!(requests() - before, 1, "only the failed text is asked again: {summary}");
    assert!(summary.contains("3 cache hits"), "{summary}");
    assert_eq!(rows(&out), got, "the same rows");

    // a spent budget: exactly one request, the other texts say why
    let out2 = s(&d.path().join("budget"));
    let before = requests();
    let summary = run(&llm(&out2, &["--no-llm-cache", "--llm-max-requests", "1", "--llm-concurrency", "1"]));
    assert_eq!(requests() - before, 1, "{summary}");
    let got2 = rows(&out2);
    let spent = got2.iter().filter(|r| r.3.as_deref().is_some_and(|e| e.starts_with("llm: budget exhausted"))).count();
    assert_eq!(spent, 3, "{got2:?}");
    assert!(summary.contains("(3 over budget)") && summary.contains("llm: budget exhausted: 3"), "{summary}");
    assert_eq!(got2[0].1, got[0].1, "the model's rows do not wait for the budget");

    // the LLM down: its rows get NULL and the reason, the job exits 0
    let out3 = s(&d.path().join("down"));
    let dead = ["--llm-base-url", "http://127.0.0.1:9/v1", "--no-llm-cache", "--llm-timeout", "2s"];
    let mut a = llm(&out3, &dead);
    let at = a.iter().position(|x| x == "--llm-base-url").unwrap();
    a.drain(at..at + 2);
    let summary = run(&a);
    let got3 = rows(&out3);
    for r in &got3[1..5] {
        assert!(r.1.is_none() && r.3.as_deref().unwrap().starts_with("llm: "), "{r:?}");
    }
    assert_eq!(got3[0].1, got[0].1);
    assert!(summary.contains("4 rows the model does not read: 0 scored, 4 not"), "{summary}");

    // refused where it cannot work, with the fix named
    let (_, err) = fails(&["score", "--input", &s(&input), "--out", &out, "--fallback", "llm", "--any-language"]);
    assert!(err.contains("--any-language") && err.contains("--fallback"), "{err}");
    let (_, err) = fails(&["score", "--input", &s(&input), "--out", &out, "--fallback", "llm", "--scorer", "llm"]);
    assert!(err.contains("drop --fallback"), "{err}");
    let a = llm(&out, &["--cluster", "standalone"]);
    let args: Vec<&str> = a.iter().map(String::as_str).collect();
    let o = run_with_key(&args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--fallback llm does not run on a cluster yet"), "{err}");
}
