//! The ONNX scorer: the shipped model against the Python reference pipeline, its accuracy,
//! the SQL functions, a 3-class model, and the errors a user meets.
//! Needs ONNX Runtime (scripts/setup-ort.sh, which scripts/test.sh sources).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::Float32Type;
use datafusion::arrow::datatypes::Float64Type;
use sentiflow_jobs::job::score::{self, ScoreArgs};
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

/// `sentiflow eval` and the Python reference on one labelled set: the same label for
/// every row, probabilities within 1e-4. Returns eval's JSON summary and its predictions.
fn rust_equals_python(data: &[&str], py_data: &[&str]) -> (serde_json::Value, Vec<serde_json::Value>) {
    let d = tmp();
    let (rs, py) = (d.path().join("rust.jsonl"), d.path().join("python.jsonl"));
    let mut args = vec!["eval"];
    args.extend_from_slice(data);
    args.extend_from_slice(&["--predictions", rs.to_str().unwrap(), "--onnx-batch", "32", "--json"]);
    let out = ok(&args);
    let summary: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let o = std::process::Command::new(python())
        .args(["scripts/onnx_reference.py", "--model", &s(&model()), "--sort", "--batch", "32"])
        .args(py_data)
        .args(["--predictions", &s(&py)])
        .current_dir(repo())
        .output()
        .expect("python runs (install it with scripts/setup-ort.sh)");
    assert!(o.status.success(), "python reference failed: {}", String::from_utf8_lossy(&o.stderr));
    let (r, p) = (read_jsonl(&rs), read_jsonl(&py));
    assert_eq!(r.len(), p.len());
    let mut max_diff = 0f64;
    for (a, b) in r.iter().zip(&p) {
        assert_eq!(a["predicted"], b["predicted"], "row {}: rust {a} python {b}", a["row"]);
        assert_eq!(a["gold"], b["gold"]);
        for (x, y) in a["probs"].as_array().unwrap().iter().zip(b["probs"].as_array().unwrap()) {
            max_diff = max_diff.max((x.as_f64().unwrap() - y.as_f64().unwrap()).abs());
        }
    }
    assert!(max_diff < 1e-4, "probabilities differ by up to {max_diff}");
    (summary, r)
}

/// `sentiflow eval`'s predictions with every text run alone (`--onnx-batch 1`: one text per
/// `session.run`, padded to nothing but its own length).
fn predictions_alone(data: &[&str]) -> Vec<serde_json::Value> {
    let d = tmp();
    let path = d.path().join("alone.jsonl");
    let mut args = vec!["eval"];
    args.extend_from_slice(data);
    args.extend_from_slice(&["--predictions", path.to_str().unwrap(), "--onnx-batch", "1", "--json"]);
    ok(&args);
    read_jsonl(&path)
}

#[test]
fn rust_predictions_equal_the_python_reference_on_the_validation_sets() {
    // SST-2 dev: binary data, judged by P(positive) > P(negative)
    let dev = s(&shared_data().join("sst2/dev.tsv"));
    let names = ["--label-names", "negative,positive"];
    let (j, _) = rust_equals_python(
        &[&["--data", dev.as_str()][..], &names].concat(),
        &[&["--data", dev.as_str()][..], &names].concat(),
    );
    assert_eq!(
        (j["rows"].as_u64(), j["evaluated"].as_u64(), j["binary"].as_bool()),
        (Some(872), Some(872), Some(true))
    );
    // below the shipped model's measured figure (0.8956 on the AVX-512 VNNI EPYC it was measured on;
    // ONNX Runtime's int8 kernels differ by instruction set, and an earlier model lost 0.6 points on
    // an AVX2-only EPYC; the 0.90 is not reached, see the model card), so a broken
    // tokenizer, padding or label order fails here, and so does the same model quantized without
    // the first token's own scales (0.8773)
    let acc = j["accuracy"].as_f64().unwrap();
    assert!(acc >= 0.88, "SST-2 dev accuracy {acc} below the shipped model's 0.8956");

    // TweetEval validation: 3 classes, macro-averaged recall (the benchmark's metric)
    let te = shared_data().join("tweet_eval_sentiment");
    let (text, labels) = (s(&te.join("val_text.txt")), s(&te.join("val_labels.txt")));
    let args =
        ["--data", text.as_str(), "--labels-file", labels.as_str(), "--label-names", "negative,neutral,positive"];
    let (j, batched) = rust_equals_python(&args, &args);
    // every tweet gets the same bits alone as in its batch of 32 (padded to its longest text):
    // the rule the packed layout relies on, checked on the whole set
    let alone = predictions_alone(&args);
    assert_eq!(alone.len(), batched.len());
    for (a, b) in alone.iter().zip(&batched) {
        assert_eq!(a["probs"], b["probs"], "row {}: alone {a}, in a batch {b}", a["row"]);
    }
    assert_eq!(
        (j["rows"].as_u64(), j["evaluated"].as_u64(), j["binary"].as_bool()),
        (Some(2000), Some(2000), Some(false))
    );
    let mr = j["macro_recall"].as_f64().unwrap();
    // 0.7318 where it was measured (int8 kernels differ by CPU, as above; the model before it,
    // distilled into this one, had 0.7092-0.7120 and fails here)
    assert!(mr >= 0.715, "TweetEval macro recall {mr} below the shipped model's 0.7318");
    let recall = j["recall"].as_object().unwrap();
    let mean = recall.values().map(|v| v.as_f64().unwrap()).sum::<f64>() / 3.0;
    assert!((mean - mr).abs() < 1e-12 && recall.contains_key("neutral"), "{recall:?}");
    let total: u64 = j["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 2000);
}

#[test]
fn eval_names_bad_gold_labels() {
    let d = tmp();
    let f = d.path().join("bad.tsv");
    std::fs::write(&f, "text\tlabel\nfine\tmaybe\n").unwrap();
    let (code, err) = fails(&["eval", "--data", &s(&f)]);
    assert_eq!(code, 2);
    assert!(err.contains("\"maybe\"") && err.contains("--label-names"), "{err}");
    // 0/1 labels with a 3-class model are ambiguous: the error says how to name them
    std::fs::write(&f, "text\tlabel\ngreat\t1\nawful\t0\n").unwrap();
    let (code, err) = fails(&["eval", "--data", &s(&f)]);
    assert_eq!(code, 2);
    assert!(err.contains("--label-names negative,positive"), "{err}");
}

/// Issue 24 #13: a gold label is a class name, not any word that starts like one.
#[test]
fn eval_refuses_words_that_only_start_like_a_class() {
    let d = tmp();
    let f = d.path().join("prefix.tsv");
    for word in ["possibly", "negligible", "neutralized"] {
        std::fs::write(&f, format!("text\tlabel\nfine\tneutral\nhmm\t{word}\n")).unwrap();
        let (code, err) = fails(&["eval", "--data", &s(&f)]);
        assert_eq!(code, 2, "{word}: {err}");
        assert!(err.contains(&format!("{word:?}")) && err.contains("not a sentiment class"), "{word}: {err}");
    }
    // the short names stay classes
    std::fs::write(&f, "text\tlabel\nI love it\tPOS\nawful\tneg\nit is a chair\tneu\n").unwrap();
    let j: serde_json::Value = serde_json::from_str(ok(&["eval", "--data", &s(&f), "--json"]).trim()).unwrap();
    assert_eq!((j["rows"].as_u64(), j["evaluated"].as_u64()), (Some(3), Some(3)), "{j}");
}

/// Issue 24 #17: a labels file (TweetEval's layout) that opens with a byte-order
/// mark or has spaces after a label reads every label, as the TSV path does.
#[test]
fn eval_labels_file_with_a_bom_and_trailing_spaces() {
    let d = tmp();
    let (texts, labels) = (d.path().join("texts.txt"), d.path().join("labels.txt"));
    std::fs::write(&texts, "\u{feff}I love it\nawful day\nit is a chair\n").unwrap();
    std::fs::write(&labels, "\u{feff}2 \n0\t\n1  \r\n").unwrap();
    let out = ok(&[
        "eval",
        "--data",
        &s(&texts),
        "--labels-file",
        &s(&labels),
        "--label-names",
        "negative,neutral,positive",
        "--json",
    ]);
    let j: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!((j["rows"].as_u64(), j["evaluated"].as_u64()), (Some(3), Some(3)), "{j}");
    // a TSV whose header opens with a byte-order mark finds its first column
    let f = d.path().join("bom.tsv");
    std::fs::write(&f, "\u{feff}text\tlabel\nI love it\tpositive \n").unwrap();
    let j: serde_json::Value = serde_json::from_str(ok(&["eval", "--data", &s(&f), "--json"]).trim()).unwrap();
    assert_eq!(j["evaluated"].as_u64(), Some(1), "{j}");
}

/// Issue 24 #10: a valid CSV whose quoted texts span lines is read as its records.
#[test]
fn eval_reads_a_csv_with_multi_line_quoted_texts() {
    let d = tmp();
    let f = d.path().join("multi.csv");
    std::fs::write(
        &f,
        "text,label\n\"I love it,\nreally\",positive\n\"awful\r\n\n\"\"bad\"\" day\",negative\nit is a chair,neutral\n",
    )
    .unwrap();
    let out = ok(&["eval", "--data", &s(&f), "--json"]);
    let j: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!((j["rows"].as_u64(), j["evaluated"].as_u64()), (Some(3), Some(3)), "{j}");
}

#[test]
fn a_two_class_model_skips_neutral_gold_rows_and_judges_binary_data() {
    let tiny2 = s(&repo().join("tests/fixtures/tiny-2class"));
    let te = shared_data().join("tweet_eval_sentiment");
    let out = ok(&[
        "eval",
        "--model",
        &tiny2,
        "--data",
        &s(&te.join("val_text.txt")),
        "--labels-file",
        &s(&te.join("val_labels.txt")),
        "--label-names",
        "negative,neutral,positive",
        "--json",
    ]);
    let j: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let labels = std::fs::read_to_string(te.join("val_labels.txt")).unwrap();
    let neutral = labels.lines().filter(|l| l.trim() == "1").count();
    assert_eq!((j["rows"].as_u64(), j["binary"].as_bool()), (Some(2000), Some(false)));
    assert_eq!(j["skipped"][0]["label"], "neutral");
    assert_eq!(j["skipped"][0]["rows"].as_u64().unwrap() as usize, neutral);
    assert_eq!(j["evaluated"].as_u64().unwrap() as usize, 2000 - neutral);
    assert_eq!(j["classes"], serde_json::json!(["negative", "positive"]));
    // binary data: every row is evaluated
    let dev = s(&shared_data().join("sst2/dev.tsv"));
    let out = ok(&["eval", "--model", &tiny2, "--data", &dev, "--json"]);
    let j: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!((j["evaluated"].as_u64(), j["binary"].as_bool()), (Some(872), Some(true)));
}

/// TweetEval train's first `n` rows as a JSONL file.
fn tweeteval_jsonl(path: &std::path::Path, skip: usize, n: usize) {
    let te = shared_data().join("tweet_eval_sentiment");
    let texts = std::fs::read_to_string(te.join("train_text.txt")).unwrap();
    let labels = std::fs::read_to_string(te.join("train_labels.txt")).unwrap();
    let names = ["negative", "neutral", "positive"];
    let body: String = texts
        .lines()
        .zip(labels.lines())
        .skip(skip)
        .take(n)
        .map(|(t, l)| {
            format!("{}\n", serde_json::json!({"text": t, "label": names[l.trim().parse::<usize>().unwrap()]}))
        })
        .collect();
    std::fs::write(path, body).unwrap();
}

#[test]
fn eval_of_a_large_file_equals_the_same_file_in_pieces() {
    // eval once paired rows by position, and DataFusion returns the partitions of a scan of
    // more than one record batch (8,192 rows) in any order: past 8,192 rows every figure was wrong
    let d = tmp();
    let whole = d.path().join("whole.jsonl");
    tweeteval_jsonl(&whole, 0, 20_500);
    let pieces: Vec<_> = (0..3)
        .map(|k| {
            let p = d.path().join(format!("piece{k}.jsonl"));
            tweeteval_jsonl(&p, k * 7_000, if k == 2 { 6_500 } else { 7_000 });
            p
        })
        .collect();
    let tiny = s(&repo().join("tests/fixtures/tiny-3class"));
    for scorer in [&["--model", tiny.as_str()][..], &["--scorer", "lexicon"][..]] {
        let eval = |data: &std::path::Path, pred: &std::path::Path| {
            let mut args =
                vec!["eval", "--data", data.to_str().unwrap(), "--predictions", pred.to_str().unwrap(), "--json"];
            args.extend_from_slice(scorer);
            serde_json::from_str::<serde_json::Value>(ok(&args).trim()).unwrap()
        };
        let w = eval(&whole, &d.path().join("whole.pred"));
        let mut rows = Vec::new();
        let mut confusion = vec![vec![0u64; 3]; 3];
        for (k, p) in pieces.iter().enumerate() {
            let j = eval(p, &d.path().join(format!("p{k}.pred")));
            for (g, row) in j["confusion"].as_array().unwrap().iter().enumerate() {
                for (q, v) in row.as_array().unwrap().iter().enumerate() {
                    confusion[g][q] += v.as_u64().unwrap();
                }
            }
            rows.extend(read_jsonl(&d.path().join(format!("p{k}.pred"))));
        }
        let whole_rows = read_jsonl(&d.path().join("whole.pred"));
        assert_eq!((whole_rows.len(), rows.len()), (20_500, 20_500), "{scorer:?}");
        for (a, b) in whole_rows.iter().zip(&rows) {
            assert_eq!((&a["gold"], &a["predicted"]), (&b["gold"], &b["predicted"]), "{scorer:?} row {}", a["row"]);
        }
        let wc: Vec<Vec<u64>> = w["confusion"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect())
            .collect();
        assert_eq!(wc, confusion, "{scorer:?}");
    }
}

/// `dir`'s model loads with `layout`, and a text gets the same bits alone as in batches of
/// several sizes, in any order, among other texts.
fn same_bits_alone_and_in_any_batch(dir: PathBuf, layout: sentiflow_udfs::Layout, n: usize) {
    // a fresh scorer for every comparison: a scorer reuses what it ran before (the next test)
    let fresh = |batch: usize| {
        let mut o = OnnxOptions::new(&dir);
        o.batch_size = batch;
        let scorer = sentiflow_udfs::OnnxScorer::load(o).expect("model loads");
        assert_eq!(scorer.layout(), layout, "{}", dir.display());
        scorer
    };
    let texts: Vec<String> = std::fs::read_to_string(shared_data().join("tweet_eval_sentiment/val_text.txt"))
        .unwrap()
        .lines()
        .take(n)
        .map(str::to_string)
        .collect();
    let all: Vec<Option<&str>> = texts.iter().map(|t| Some(t.as_str())).collect();
    let bits = |p: &Option<Vec<f32>>| p.as_ref().unwrap().iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    let together: Vec<Vec<u32>> = fresh(8).predict(&all).unwrap().iter().map(bits).collect();
    // reversed, in batches of 32 and of 3
    let mut rev = all.clone();
    rev.reverse();
    for batch in [32, 3] {
        let reversed: Vec<Vec<u32>> = fresh(batch).predict(&rev).unwrap().iter().rev().map(bits).collect();
        assert_eq!(together, reversed, "reversed, batches of {batch}");
    }
    // interleaved with other texts
    let mixed: Vec<Option<&str>> =
        all.iter().step_by(3).copied().chain([Some("other words entirely, quite long ones")]).collect();
    let m = fresh(8).predict(&mixed).unwrap();
    for (k, p) in m.iter().take(mixed.len() - 1).enumerate() {
        assert_eq!(bits(p), together[k * 3], "text {} in another batch", k * 3);
    }
    // alone, one call per text
    let alone = fresh(8);
    for (i, t) in all.iter().enumerate().take(40) {
        assert_eq!(bits(&alone.predict(&[*t]).unwrap()[0]), together[i], "text {i} alone");
    }
    assert_eq!(alone.stats().texts_reused, 0, "40 distinct texts");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_text_scores_the_same_bits_alone_in_any_batch_and_any_order() {
    // the shipped model: rows independent of their batch-mates and padding, so batches are
    // packed in length order (what an ONNX Runtime upgrade could break: then this fails)
    same_bits_alone_and_in_any_batch(model(), sentiflow_udfs::Layout::Packed, 150);
    // a model whose pooling (ReduceSum) sums in an order set by the batch's shape: the load-time
    // probe sees it, and fixed batch shapes keep its bits equal too
    same_bits_alone_and_in_any_batch(repo().join("tests/fixtures/tiny-3class"), sentiflow_udfs::Layout::Fixed, 150);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_duplicated_text_is_run_once_and_gets_the_bits_it_gets_alone() {
    let fresh = || sentiflow_udfs::OnnxScorer::load(OnnxOptions::new(model())).expect("model loads");
    let bits = |p: &Option<Vec<f32>>| p.as_ref().unwrap().iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    let (a, b) = ("@alice Exchange halted withdrawals again https://t.co/abc", "Bitcoin to the moon today!");
    // the same text after normalisation (another mention, another URL), and one that is not
    let (a2, a3) = ("@bob Exchange halted withdrawals again https://t.co/xyz", "Exchange halted withdrawals again");
    // another text that the (uncased) tokenizer reads as the same tokens: the same model input
    let a4 = "@carol EXCHANGE  halted withdrawals AGAIN http://t.co/q";
    let (a_alone, b_alone) =
        (bits(&fresh().predict(&[Some(a)]).unwrap()[0]), bits(&fresh().predict(&[Some(b)]).unwrap()[0]));
    let one = fresh();
    let batch = [Some(a), Some(b), Some(a2), None, Some(a), Some(""), Some(a4)];
    let p = one.predict(&batch).unwrap();
    assert_eq!(
        (bits(&p[0]), bits(&p[1]), bits(&p[2]), bits(&p[4]), bits(&p[6])),
        (a_alone.clone(), b_alone.clone(), a_alone.clone(), a_alone.clone(), a_alone.clone())
    );
    assert!(p[3].is_none() && p[5].is_none(), "no score for a NULL or an empty text");
    let s = one.stats();
    assert_eq!((s.texts, s.texts_reused), (5, 3), "{s:?}: 5 readable texts, 3 of them copies");
    assert_eq!(bits(&fresh().predict(&[Some(a4)]).unwrap()[0]), a_alone, "a4 alone: a's bits");
    let runs = s.runs;
    // later in the run: a copy takes the earlier result and runs nothing
    let p = one.predict(&[Some(b), Some(a)]).unwrap();
    assert_eq!((bits(&p[0]), bits(&p[1])), (b_alone, a_alone.clone()));
    let s = one.stats();
    assert_eq!((s.texts, s.texts_reused, s.runs), (7, 5, runs), "{s:?}");
    // without the mention it is another model input: run, not reused
    let p = one.predict(&[Some(a3)]).unwrap();
    let s = one.stats();
    assert_eq!((bits(&p[0]), s.texts_reused), (bits(&fresh().predict(&[Some(a3)]).unwrap()[0]), 5), "{s:?}");
}

#[test]
fn other_languages_get_no_score_but_a_reason_unless_asked() {
    let d = tmp();
    let input = d.path().join("in.ndjson");
    let rec = |id: u32, text: &str, lang: Option<&str>| {
        let mut v = serde_json::json!({"tweet_id": id.to_string(), "created_at": "2025-02-10T00:00:00Z", "text": text, "source": "twitter"});
        if let Some(l) = lang {
            v["lang"] = serde_json::json!(l);
        }
        format!("{v}\n")
    };
    let body = [
        rec(1, "¡bitcoin está subiendo! Muy feliz con mi inversión 💎", Some("es")),
        rec(2, "bitcoinが上がっている！最高", None),
        rec(3, "Bitcoin is going up, very happy with my investment", Some("en")),
        rec(4, "Does anyone know when the next Bitcoin halving is?", None),
        rec(5, "\u{200b}\u{200b}\u{200b}", Some("en")),
    ]
    .concat();
    std::fs::write(&input, body).unwrap();
    let out = d.path().join("out");
    let summary = ok(&["score", "--input", &s(&input), "--out", &s(&out)]);
    assert!(
        summary.contains("unscorable        3") && summary.contains("2 in a language the model does not read"),
        "{summary}"
    );
    let q = |root: &std::path::Path| {
        ok(&[
            "sql",
            "--data",
            &s(root),
            "--format",
            "json",
            "-c",
            "SELECT tweet_id, sentiment_score, sentiment_label, score_error FROM scored_tweets ORDER BY tweet_id",
        ])
    };
    // a JSON array; NULL columns are left out of an object, so they read as null
    let rows: Vec<serde_json::Value> = serde_json::from_str(q(&out).trim()).unwrap();
    assert_eq!(rows.len(), 5, "non-English rows stay in the output: {rows:?}");
    let err = |i: usize| rows[i]["score_error"].as_str().unwrap_or("").to_string();
    assert!(
        rows[0]["sentiment_score"].is_null()
            && err(0).starts_with("language es (lang field) is not read by onnx:sentiment-minilm@"),
        "{:?}",
        rows[0]
    );
    assert!(err(0).contains("reads en") && err(0).contains("--any-language"), "{}", err(0));
    assert!(rows[1]["sentiment_score"].is_null() && err(1).starts_with("language ja (detected)"), "{:?}", rows[1]);
    assert!(rows[2]["sentiment_score"].as_f64().unwrap() > 0.3, "{:?}", rows[2]);
    assert_eq!(rows[3]["sentiment_label"], "neutral", "{:?}", rows[3]);
    assert!(rows[4]["sentiment_score"].is_null() && err(4).contains("no letters, digits"), "{:?}", rows[4]);

    // --any-language scores them all (the content-free text still has nothing to score)
    let out2 = d.path().join("out2");
    let summary = ok(&["score", "--input", &s(&input), "--out", &s(&out2), "--any-language"]);
    assert!(summary.contains("unscorable        1") && summary.contains("0 in a language"), "{summary}");
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
    assert_eq!(
        probs.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>(),
        ["negative", "neutral", "positive"]
    );
    let (neg, neu, pos) = (
        probs.column(0).as_primitive::<Float32Type>(),
        probs.column(1).as_primitive::<Float32Type>(),
        probs.column(2).as_primitive::<Float32Type>(),
    );
    assert!(score.value(0) > 0.5 && label.value(0) == "positive", "{}", render(std::slice::from_ref(b)));
    assert!(score.value(1) < -0.5 && label.value(1) == "negative");
    for i in 0..2 {
        assert!((neg.value(i) + neu.value(i) + pos.value(i) - 1.0).abs() < 1e-5);
        assert!((score.value(i) - (f64::from(pos.value(i)) - f64::from(neg.value(i)))).abs() < 1e-6);
        assert_eq!(score.value(i), b.column(4).as_primitive::<Float64Type>().value(i));
    }
    // NULL in, NULL out; an empty text is unscorable, with its reason, never 0.0
    for i in 2..4 {
        assert!(score.is_null(i) && label.is_null(i) && probs.is_null(i), "row {i}");
    }
    // one NULL rule for every scoring UDF: a NULL text gives a NULL struct
    let st = b.column(5).as_struct();
    let err = st.column_by_name("error").unwrap().as_string::<i32>();
    assert!(st.is_null(2) && st.is_valid(3));
    assert_eq!(err.value(3), "text is empty");
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
        assert_eq!(
            p.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>(),
            ["positive", "negative", "neutral"]
        );
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
    let (code, err) =
        fails(&["score", "--input", &raw, "--out", &s(d.path()), "--ort-lib", "/nonexistent/libonnxruntime.so"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("/nonexistent/libonnxruntime.so")
            && err.contains("scripts/setup-ort.sh")
            && err.contains("--scorer lexicon"),
        "{err}"
    );
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
            out: s(d.path()),
            format: None,
            max_text_bytes: 1 << 20,
            chunk_bytes: sentiflow_jobs::io::read::DEFAULT_CHUNK_BYTES,
        },
    )
    .await
    .unwrap();
    assert_eq!(r.rows_scored, 5000);
    assert_eq!(counting.0.load(Ordering::Relaxed), 5000);
}
