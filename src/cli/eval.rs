//! `sentiflow eval`: a scorer's accuracy, recall, F1, confusion matrix and throughput on labelled data.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use sentiflow_jobs::JobContext;
use sentiflow_jobs::job::eval::{self, EvalArgs, EvalReport};

use super::scorer::ScorerArgs;

#[derive(clap::Args, Debug)]
pub struct EvalCli {
    /// Labelled data: .tsv (header, no quoting), .csv, .jsonl, .parquet, or .txt (one text a
    /// line) with --labels-file.
    #[arg(long)]
    data: PathBuf,
    /// One gold label a line, beside a .txt --data (TweetEval's layout).
    #[arg(long)]
    labels_file: Option<PathBuf>,
    #[arg(long, default_value = "text")]
    text_col: String,
    #[arg(long, default_value = "label")]
    label_col: String,
    /// Names of integer gold labels by index, e.g. negative,neutral,positive
    /// (default: the model's id2label).
    #[arg(long, value_delimiter = ',')]
    label_names: Option<Vec<String>>,
    /// Score only the first N rows (0 = all).
    #[arg(long, default_value_t = 0)]
    limit: usize,
    /// Score the data N times and report the fastest pass (for benchmarks).
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Write one JSON line per row (gold, predicted, probs) here.
    #[arg(long)]
    predictions: Option<PathBuf>,
    /// Print the figures as one JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    scorer: ScorerArgs,
}

pub(crate) async fn run(jc: &JobContext, a: EvalCli) -> Result<()> {
    let scorer = a.scorer.build(jc, None).await?;
    let r = eval::run(
        jc,
        scorer,
        EvalArgs {
            data: a.data,
            labels_file: a.labels_file,
            text_col: a.text_col,
            label_col: a.label_col,
            label_names: a.label_names,
            limit: a.limit,
            repeat: a.repeat,
        },
    )
    .await?;
    if let Some(p) = &a.predictions {
        write_predictions(p, &r).with_context(|| format!("cannot write {}", p.display()))?;
    }
    if a.json {
        println!("{}", summary_json(&r, &a.scorer));
    } else {
        print_eval(&r);
    }
    Ok(())
}

fn write_predictions(path: &PathBuf, r: &EvalReport) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    for (i, p) in r.predictions.iter().enumerate() {
        let j = serde_json::json!({
            "row": i,
            "gold": p.gold.as_str(),
            "predicted": p.predicted.map(|l| l.as_str()),
            "probs": p.probs,
        });
        writeln!(w, "{j}")?;
    }
    w.flush()
}

fn summary_json(r: &EvalReport, s: &ScorerArgs) -> serde_json::Value {
    serde_json::json!({
        "scorer": r.scorer,
        "data": r.data,
        "rows": r.rows,
        "evaluated": r.evaluated,
        "unscorable": r.unscorable,
        "skipped": r.skipped.iter().map(|(k, n)| serde_json::json!({"label": k, "rows": n})).collect::<Vec<_>>(),
        "accuracy": r.accuracy,
        "macro_f1": r.macro_f1,
        "macro_recall": r.macro_recall,
        "recall": r.classes.iter().zip(&r.recall).map(|(c, v)| (c.as_str().to_string(), if v.is_nan() { serde_json::Value::Null } else { serde_json::json!(v) })).collect::<serde_json::Map<_, _>>(),
        "binary": r.binary,
        "classes": r.classes.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        "confusion": r.confusion,
        "wall_s": r.wall_s,
        "cpu_s": r.cpu_s,
        "sentences_per_s": r.per_second(),
        "sentences_per_cpu_s": r.per_cpu_second(),
        "peak_rss_bytes": eval::peak_rss_bytes(),
        "onnx_threads": s.onnx_threads,
        "onnx_batch": s.onnx_batch,
        "onnx_sessions": s.onnx_sessions,
        "scorer_stats": r.scorer_stats.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
    })
}

fn print_eval(r: &EvalReport) {
    println!("scorer        {}", r.scorer);
    println!("data          {} ({} rows)", r.data, r.rows);
    for (label, n) in &r.skipped {
        println!("skipped       {n} rows labelled {label} (not a class of this scorer)");
    }
    if r.unscorable > 0 {
        println!("unscorable    {} (NULL score: empty or content-free text)", r.unscorable);
    }
    if r.binary {
        println!("decision      P(positive) > P(negative) (the data has no neutral label)");
    }
    println!("accuracy      {:.4}  ({} rows)", r.accuracy, r.evaluated);
    println!("macro-recall  {:.4}", r.macro_recall);
    let recalls: Vec<String> = r
        .classes
        .iter()
        .zip(&r.recall)
        .map(|(c, v)| if v.is_nan() { format!("{} -", c.as_str()) } else { format!("{} {v:.4}", c.as_str()) })
        .collect();
    println!("recall        {}", recalls.join(", "));
    println!("macro-F1      {:.4}", r.macro_f1);
    println!(
        "throughput    {:.1} sentences/s, {:.1} per CPU-second ({:.2} s wall, {:.2} CPU-s)",
        r.per_second(),
        r.per_cpu_second(),
        r.wall_s,
        r.cpu_s
    );
    if !r.scorer_stats.is_empty() {
        let s: Vec<String> = r.scorer_stats.iter().map(|(k, v)| format!("{k} {v:.3}")).collect();
        println!("scorer stats  {}", s.join(", "));
    }
    println!();
    let names: Vec<&str> = r.classes.iter().map(|c| c.as_str()).collect();
    print!("{:>16}", "gold \\ predicted");
    for n in &names {
        print!(" {n:>9}");
    }
    println!();
    for (g, row) in names.iter().zip(&r.confusion) {
        print!("{g:>16}");
        for v in row {
            print!(" {v:>9}");
        }
        println!();
    }
}
