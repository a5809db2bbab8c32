//! The ONNX scorer: the shipped model against the Python reference pipeline, its accuracy,
//! the SQL functions, a 3-class model, and the errors a user meets.
//! Needs ONNX Runtime (scripts/setup-ort.sh, which scripts/test.sh sources).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::Float32Type;
use datafusion::arrow::datatypes::Float64Type;
use sentiflow_jobs::score::{self, ScoreArgs};
use sentiflow_jobs::{ContextOptions, JobContext, ScorerKind};
use sentiflow_udfs::{Label, OnnxOptions, Outcome, Scorer};

use crate::common::*;

fn shared_data() -> PathBuf {
    repo().join("../shared/data")
}

fn model() -> PathBuf {
    repo().join("sample_data/models/sentiment-minilm")
}

/// The Python of scripts/setup-ort.sh's venv (onnxruntime + tokenizers + numpy).
fn python() -> String {
    std::env::var("SENTIFLOW_PYTHON").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_default();
        format!("{home}/.cache/sentiflow/tools/venv/bin/python")
    })
}

fn read_jsonl(p: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn rust_predictions_equal_the_python_reference_on_all_of_sst2_dev() {
    let d = tmp();
    let dev = shared_data().join("sst2/dev.tsv");
    let (rs, py) = (d.path().join("rust.jsonl"), d.path().join("python.jsonl"));
    let out = ok(&["eval", "--data", &s(&dev), "--predictions", &s(&rs), "--onnx-batch", "32", "--json"]);
    let summary: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    // the same batches as the Rust scorer: length-sorted, 32 a run (with int8 dynamic
    // quantization, a text's activations are quantized together with its batch)
    let o = std::process::Command::new(python())
        .args(["scripts/onnx_reference.py", "--model", &s(&model()), "--data", &s(&dev), "--sort", "--batch", "32"])
        .args(["--predictions", &s(&py)])
        .current_dir(repo())
        .output()
        .expect("python runs (install it with scripts/setup-ort.sh)");
    assert!(o.status.success(), "python reference failed: {}", String::from_utf8_lossy(&o.stderr));
    let (r, p) = (read_jsonl(&rs), read_jsonl(&py));
    assert_eq!((r.len(), p.len()), (872, 872));
    let mut max_diff = 0f64;
    for (a, b) in r.iter().zip(&p) {
        assert_eq!(a["predicted"], b["predicted"], "row {}: rust {a} python {b}", a["row"]);
        assert_eq!(a["gold"], b["gold"]);
        for (x, y) in a["probs"].as_array().unwrap().iter().zip(b["probs"].as_array().unwrap()) {
            max_diff = max_diff.max((x.as_f64().unwrap() - y.as_f64().unwrap()).abs());
        }
    }
    assert!(max_diff < 1e-4, "probabilities differ by up to {max_diff}");
    // and the shipped int8 model keeps its measured accuracy (0.8945; the 0.90 target is
    // not reached yet, see the model card), so a broken tokenizer, padding or label order fails here
    let acc = summary["accuracy"].as_f64().unwrap();
    assert!(acc >= 0.89, "SST-2 dev accuracy {acc} below the shipped model's 0.8945");
    assert_eq!(summary["evaluated"], 872);
}

#[test]
fn eval_skips_classes_the_model_cannot_predict() {
    let te = shared_data().join("tweet_eval_sentiment");
    let out = ok(&[
        "eval", "--data", &s(&te.join("val_text.txt")), "--labels-file", &s(&te.join("val_labels.txt")),
        "--label-names", "negative,neutral,positive", "--json",
    ]);
    let j: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let labels = std::fs::read_to_string(te.join("val_labels.txt")).unwrap();
    let neutral = labels.lines().filter(|l| l.trim() == "1").count();
    assert_eq!(j["rows"], 2000);
    assert_eq!(j["skipped"][0]["label"], "neutral");
    assert_eq!(j["skipped"][0]["rows"].as_u64().unwrap() as usize, neutral);
    assert_eq!(j["evaluated"].as_u64().unwrap() as usize, 2000 - neutral);
    let acc = j["accuracy"].as_f64().unwrap();
    assert!(acc > 0.77, "TweetEval pos/neg accuracy {acc} (the shipped model: 0.7798)");
    // the confusion matrix adds up
    let total: u64 = j["confusion"].as_array().unwrap().iter().flat_map(|r| r.as_array().unwrap()).map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(total as usize, 2000 - neutral);

    // a gold label that is no sentiment class is an error naming the fix
    let d = tmp();
    let f = d.path().join("bad.tsv");
    std::fs::write(&f, "text\tlabel\nfine\tmaybe\n").unwrap();
    let (code, err) = fails(&["eval", "--data", &s(&f)]);
    assert_eq!(code, 2);
    assert!(err.contains("\"maybe\"") && err.contains("--label-names"), "{err}");
}

async fn onnx_context(dir: PathBuf) -> JobContext {
    let jc = JobContext::new(ContextOptions::default()).unwrap();
    let scorer = ScorerKind::Onnx(OnnxOptions::new(dir)).build().expect("model loads");
    jc.select_scorer(&scorer.into());
    jc
}

#[tokio::test(flavor = "multi_thread")]
async fn sql_functions_score_label_and_probabilities() {
    let jc = onnx_context(model()).await;
    let b = jc
        .ctx
        .sql(
            "SELECT t, sentiment(t) AS s, sentiment_label(t) AS l, sentiment_probs(t) AS p, sentiment_onnx(t) AS s2,
                    score_sentiment(t) AS st
             FROM (VALUES ('What a wonderful, lovely day. I love it!'), ('This is awful, I hate it and want a refund.'),
                          (NULL), ('   ')) AS v(t)",
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let b = &b[0];
    let score = b.column(1).as_primitive::<Float64Type>();
    let label = b.column(2).as_string::<i32>();
    let probs = b.column(3).as_struct();
    assert_eq!(probs.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>(), ["negative", "positive"]);
    let (neg, pos) = (probs.column(0).as_primitive::<Float32Type>(), probs.column(1).as_primitive::<Float32Type>());
    assert!(score.value(0) > 0.5 && label.value(0) == "positive", "{}", render(std::slice::from_ref(b)));
    assert!(score.value(1) < -0.5 && label.value(1) == "negative");
    for i in 0..2 {
        assert!((neg.value(i) + pos.value(i) - 1.0).abs() < 1e-5);
        assert!((score.value(i) - (f64::from(pos.value(i)) - f64::from(neg.value(i)))).abs() < 1e-6);
        assert_eq!(score.value(i), b.column(4).as_primitive::<Float64Type>().value(i));
    }
    // NULL in, NULL out; an empty text is unscorable, with its reason, never 0.0
    for i in 2..4 {
        assert!(score.is_null(i) && label.is_null(i) && probs.is_null(i), "row {i}");
    }
    let st = b.column(5).as_struct();
    let err = st.column_by_name("error").unwrap().as_string::<i32>();
    assert_eq!((err.value(2), err.value(3)), ("text is null", "text is empty"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_three_class_model_with_its_own_label_order_and_no_type_ids() {
    let dir = repo().join("tests/fixtures/tiny-3class");
    let jc = onnx_context(dir.clone()).await;
    let expected = read_jsonl(&dir.join("expected.jsonl"));
    for e in &expected {
        let b = jc
            .ctx
            .sql("SELECT sentiment_probs($1) AS p, sentiment($1) AS s, sentiment_label($1) AS l")
            .await
            .unwrap()
            .with_param_values(vec![datafusion::common::ScalarValue::Utf8(Some(e["text"].as_str().unwrap().into()))])
            .unwrap()
            .collect()
            .await
            .unwrap();
        let p = b[0].column(0).as_struct();
        // struct fields in id2label order: positive, negative, neutral
        assert_eq!(p.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>(), ["positive", "negative", "neutral"]);
        let want: Vec<f64> = e["probs"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let got: Vec<f64> = (0..3).map(|c| f64::from(p.column(c).as_primitive::<Float32Type>().value(0))).collect();
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5, "{}: got {got:?} want {want:?}", e["text"]);
        }
        let score = b[0].column(1).as_primitive::<Float64Type>().value(0);
        assert!((score - (want[0] - want[1])).abs() < 1e-5, "score = P(positive) - P(negative)");
        let best = ["positive", "negative", "neutral"][(0..3).max_by(|&a, &b| want[a].total_cmp(&want[b])).unwrap()];
        assert_eq!(b[0].column(2).as_string::<i32>().value(0), best);
    }
}

#[test]
fn missing_or_broken_runtime_and_model_errors_name_the_fix() {
    let d = tmp();
    let raw = sample_tweets();
    let (code, err) = fails(&["score", "--input", &raw, "--out", &s(d.path()), "--ort-lib", "/nonexistent/libonnxruntime.so"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/libonnxruntime.so") && err.contains("scripts/setup-ort.sh") && err.contains("--scorer lexicon"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");

    let not_a_lib = d.path().join("libonnxruntime.so");
    std::fs::write(&not_a_lib, "not a library").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sentiflow"))
        .args(["sql", "-c", "SELECT 1"])
        .env("ORT_DYLIB_PATH", &not_a_lib)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot load onnx runtime from") && err.contains("onnxruntime==1.31.1"), "{err}");

    // the CPU wheel has no CUDA execution provider: --device cuda says so, it does not fall back
    let (code, err) = fails(&["sql", "--device", "cuda", "-c", "SELECT 1"]);
    assert_eq!(code, 2);
    assert!(err.contains("cuda execution provider unavailable") && err.contains("--device cpu"), "{err}");

    let (code, err) = fails(&["sql", "--model", &s(d.path()), "-c", "SELECT 1"]);
    assert_eq!(code, 2);
    assert!(err.contains("config.json"), "{err}");
    // the lexicon needs no runtime at all
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sentiflow"))
        .args(["sql", "--scorer", "lexicon", "--data", &s(d.path()), "-c", "SELECT sentiment('good') > 0 AS ok"])
        .env("ORT_DYLIB_PATH", &not_a_lib)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("true"));
}

/// Counts the texts it is asked to score.
#[derive(Debug, Default)]
struct Counting(AtomicUsize);

impl Scorer for Counting {
    fn name(&self) -> &str {
        "counting"
    }
    fn id(&self) -> &str {
        "counting/1"
    }
    fn score_batch(&self, texts: &[Option<&str>]) -> sentiflow_udfs::Result<Vec<Outcome>> {
        self.0.fetch_add(texts.len(), Ordering::Relaxed);
        Ok(texts.iter().map(|_| Outcome::Scored { score: 0.5, label: Label::Positive }).collect())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_score_job_runs_the_scorer_once_per_row() {
    // DataFusion 55's leaf-expression pushdown once turned sql/score.sql's three
    // get_field(s, …) into three model runs per row
    let d = tmp();
    let jc = JobContext::new(ContextOptions::default()).unwrap();
    let counting = Arc::new(Counting::default());
    let r = score::run(
        &jc,
        sentiflow_jobs::JobScorer::Local(counting.clone()),
        ScoreArgs {
            input: sample_tweets(),
            output: s(&d.path().join("scored")),
            rejected: s(&d.path().join("_rejected")),
            format: None,
            max_text_bytes: 1 << 20,
        },
    )
    .await
    .unwrap();
    assert_eq!(r.rows_scored, 5000);
    assert_eq!(counting.0.load(Ordering::Relaxed), 5000);
}
