//! `sentiflow eval`: a scorer's accuracy, macro-F1, confusion matrix and
//! throughput on a labelled data set, scored through the SQL UDFs.
//!
//! Data: `.tsv` (header row, tab-separated, no quoting: GLUE's SST-2),
//! `.csv`, `.jsonl`/`.ndjson`, `.parquet`, or a `.txt` file of one text per
//! line with `--labels-file` holding one label per line (TweetEval). Gold
//! labels are names (`negative`, `pos`, …) or class indices; an index means
//! `--label-names[i]` when given, else the model's `id2label[i]`. Rows whose
//! gold class the scorer cannot predict (neutral, for a 2-class model) are
//! counted as skipped, not scored. Binary data (no neutral gold label) is
//! judged by P(positive) > P(negative) — for the lexicon, score > 0 — whatever
//! the model's classes, so a 3-class model is measured on SST-2 as a 2-class
//! one would be.
//!
//! Every row is scored whatever its language (eval measures the model, so the
//! language check of the scoring UDFs is off here).
//!
//! Rows are paired with their gold labels by a `row_id` column, never by
//! position: DataFusion may return the partitions of a scan in any order.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float32Array, Float64Array, RecordBatch, StringArray, StructArray, UInt64Array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::datatypes::{Float32Type, UInt64Type};
use datafusion::prelude::{CsvReadOptions, ParquetReadOptions};
use sentiflow_udfs::Label;

use crate::context::JobContext;
use crate::{Error, Result, sql};

#[derive(Debug, Clone)]
pub struct EvalArgs {
    pub data: PathBuf,
    pub labels_file: Option<PathBuf>,
    pub text_col: String,
    pub label_col: String,
    /// Names for integer gold labels, by index.
    pub label_names: Option<Vec<String>>,
    /// Score at most this many rows (0 = all).
    pub limit: usize,
    /// Score the data this many times and report the fastest pass (benchmarks).
    pub repeat: usize,
}

/// One scored row.
#[derive(Debug, Clone)]
pub struct Prediction {
    pub gold: Label,
    pub predicted: Option<Label>,
    /// Per-label probabilities, for classifiers.
    pub probs: Option<Vec<f32>>,
}

#[derive(Debug, Clone)]
pub struct EvalReport {
    pub scorer: String,
    pub data: String,
    pub rows: usize,
    /// Rows counted in accuracy (gold class one the scorer can predict, text scorable).
    pub evaluated: usize,
    pub skipped: Vec<(String, usize)>,
    pub unscorable: usize,
    pub accuracy: f64,
    pub macro_f1: f64,
    /// Recall of each class of the matrix, in `classes` order (NaN for a class with no gold rows).
    pub recall: Vec<f64>,
    /// Mean of `recall` over the classes with gold rows (TweetEval's official metric).
    pub macro_recall: f64,
    /// True when the data has no neutral gold label: judged by P(positive) > P(negative).
    pub binary: bool,
    /// Classes of the matrix, in order.
    pub classes: Vec<Label>,
    /// confusion[gold][predicted]
    pub confusion: Vec<Vec<usize>>,
    pub wall_s: f64,
    pub cpu_s: f64,
    /// Model labels (classifiers), the order of `Prediction::probs`.
    pub model_labels: Option<Vec<String>>,
    pub predictions: Vec<Prediction>,
    /// The scorer's own counters after the run (see `Scorer::stats`).
    pub scorer_stats: Vec<(&'static str, f64)>,
}

impl EvalReport {
    pub fn per_second(&self) -> f64 {
        self.rows as f64 / self.wall_s.max(1e-9)
    }
    pub fn per_cpu_second(&self) -> f64 {
        self.rows as f64 / self.cpu_s.max(1e-9)
    }
}

/// CPU time (user + system) this process has used, in seconds (Linux).
pub fn process_cpu_seconds() -> f64 {
    // fields 14 and 15 of /proc/self/stat, in USER_HZ (100 on Linux) ticks,
    // counted after the parenthesised command name
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return f64::NAN };
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return f64::NAN };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (tick(11) + tick(12)) / 100.0
}

/// Peak resident memory of this process so far, in bytes (Linux VmHWM).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn data_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::InputFile { what: "eval data", path: path.display().to_string(), reason: reason.into() }
}

/// Reads (text, gold label string) pairs.
async fn read_pairs(jc: &JobContext, a: &EvalArgs) -> Result<Vec<(String, String)>> {
    let path = &a.data;
    let io = |p: &Path, source| Error::Io { path: p.display().to_string(), source };
    // a text file may open with a byte-order mark (Excel, Notepad): not part of the first field
    let read_text = |p: &Path| -> Result<String> {
        let s = std::fs::read_to_string(p).map_err(|e| io(p, e))?;
        Ok(s.strip_prefix('\u{feff}').map(str::to_string).unwrap_or(s))
    };
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    if let Some(lf) = &a.labels_file {
        let (texts, labels) = (read_text(path)?, read_text(lf)?);
        let (t, l): (Vec<&str>, Vec<&str>) = (texts.lines().collect(), labels.lines().collect());
        if t.len() != l.len() {
            return Err(data_err(path, format!("{} texts but {} labels in {}", t.len(), l.len(), lf.display())));
        }
        return Ok(t.into_iter().zip(l).map(|(t, l)| (t.to_string(), l.to_string())).collect());
    }
    if ext == "tsv" {
        let text = read_text(path)?;
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap_or("").split('\t').collect();
        let col = |name: &str| {
            header.iter().position(|h| h.trim() == name).ok_or_else(|| {
                data_err(path, format!("no column {name:?} in the header {header:?} (use --text-col/--label-col)"))
            })
        };
        let (ti, li) = (col(&a.text_col)?, col(&a.label_col)?);
        return lines
            .enumerate()
            .filter(|(_, l)| !l.is_empty())
            .map(|(n, line)| {
                let f: Vec<&str> = line.split('\t').collect();
                match (f.get(ti), f.get(li)) {
                    (Some(t), Some(l)) => Ok((t.to_string(), l.trim().to_string())),
                    _ => {
                        Err(data_err(path, format!("line {} has {} fields, expected {}", n + 2, f.len(), header.len())))
                    }
                }
            })
            .collect();
    }
    if matches!(ext.as_str(), "jsonl" | "ndjson" | "json") {
        let text = read_text(path)?;
        let field = |v: &serde_json::Value, name: &str, line: usize| -> Result<String> {
            match v.get(name) {
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(serde_json::Value::Number(n)) => Ok(n.to_string()),
                _ => Err(data_err(
                    path,
                    format!("line {line}: no string or number field {name:?} (use --text-col/--label-col)"),
                )),
            }
        };
        return text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(n, line)| {
                let v: serde_json::Value =
                    serde_json::from_str(line).map_err(|e| data_err(path, format!("line {}: not JSON: {e}", n + 1)))?;
                Ok((field(&v, &a.text_col, n + 1)?, field(&v, &a.label_col, n + 1)?))
            })
            .collect();
    }
    let p = path.to_str().ok_or_else(|| data_err(path, "path is not UTF-8"))?;
    let df = match ext.as_str() {
        // a quoted text may hold line breaks (RFC 4180)
        "csv" => jc.ctx.read_csv(p, CsvReadOptions::new().newlines_in_values(true)).await,
        "parquet" => jc.ctx.read_parquet(p, ParquetReadOptions::default()).await,
        _ => {
            return Err(data_err(path, "unknown format: use .tsv, .csv, .jsonl, .parquet, or .txt with --labels-file"));
        }
    }
    .map_err(|source| Error::Sql { name: format!("eval data {p}"), source })?;
    let batches = df.collect().await.map_err(Error::query)?;
    let mut out = Vec::new();
    for b in &batches {
        let col = |name: &str| -> Result<ArrayRef> {
            let c = b.column_by_name(name).ok_or_else(|| {
                data_err(
                    path,
                    format!(
                        "no column {name:?} (columns: {:?}; use --text-col/--label-col)",
                        b.schema().fields().iter().map(|f| f.name()).collect::<Vec<_>>()
                    ),
                )
            })?;
            cast(c, &DataType::Utf8).map_err(|e| Error::arrow(format!("column {name}"), e))
        };
        let (t, l) = (col(&a.text_col)?, col(&a.label_col)?);
        let (t, l) = (t.as_string::<i32>(), l.as_string::<i32>());
        for i in 0..b.num_rows() {
            let text = if t.is_valid(i) { t.value(i).to_string() } else { String::new() };
            out.push((text, l.value(i).to_string()));
        }
    }
    Ok(out)
}

/// Scores the data set through the SQL UDFs and compares with the gold labels.
pub async fn run(jc: &JobContext, scorer: crate::JobScorer, args: EvalArgs) -> Result<EvalReport> {
    let mut pairs = read_pairs(jc, &args).await?;
    if args.limit > 0 {
        pairs.truncate(args.limit);
    }
    if pairs.is_empty() {
        return Err(data_err(&args.data, "no rows"));
    }
    // eval measures the model on every row: no language check
    let scorer = match scorer {
        crate::JobScorer::Local(s) => crate::JobScorer::Local(Arc::new(sentiflow_udfs::AnyLanguage(s))),
        other => other,
    };
    jc.select_scorer(&scorer);
    let model_labels = scorer.labels();
    let gold = gold_labels(&args, &pairs, model_labels.as_ref())?;
    let binary = !gold.contains(&Label::Neutral);
    let (batches, wall_s, cpu_s) = score_timed(jc, &scorer, &args, &pairs, model_labels.is_some()).await?;
    let scored = collect_answers(&batches, pairs.len(), model_labels.as_ref(), binary)?;
    let predictions: Vec<Prediction> =
        gold.into_iter().zip(scored).map(|(gold, (predicted, probs))| Prediction { gold, predicted, probs }).collect();
    let m = Metrics::of(&predictions, model_labels.as_ref(), binary);
    Ok(EvalReport {
        scorer: scorer.id().to_string(),
        data: args.data.display().to_string(),
        rows: pairs.len(),
        evaluated: m.evaluated,
        skipped: m.skipped,
        unscorable: m.unscorable,
        accuracy: m.correct as f64 / (m.evaluated as f64).max(1.0),
        macro_f1: m.macro_f1,
        recall: m.recall,
        macro_recall: m.macro_recall,
        binary,
        classes: m.classes,
        confusion: m.confusion,
        wall_s,
        cpu_s,
        model_labels,
        predictions,
        scorer_stats: scorer.stats(),
    })
}

/// The gold labels as sentiment classes: names, or indices read through
/// `--label-names` (else the model's `id2label`).
fn gold_labels(args: &EvalArgs, pairs: &[(String, String)], model_labels: Option<&Vec<String>>) -> Result<Vec<Label>> {
    let names = args.label_names.clone().or_else(|| model_labels.cloned());
    // 0/1 gold labels read through a 3-class model's id2label would make every 1 neutral
    if args.label_names.is_none()
        && model_labels.is_some_and(|l| l.len() > 2)
        && pairs.iter().all(|(_, l)| matches!(l.trim(), "0" | "1"))
    {
        return Err(data_err(
            &args.data,
            "gold labels are 0/1 but the model has 3 classes (id2label would read 1 as neutral): \
             say what they mean with --label-names negative,positive (or negative,neutral,positive)",
        ));
    }
    pairs
        .iter()
        .map(|(_, l)| {
            // as every reader of the labels: spaces and a byte-order mark around a label are not part of it
            let l = Label::bare(l).to_string();
            let name = match (l.parse::<usize>(), &names) {
                (Ok(i), Some(n)) => n.get(i).cloned().unwrap_or_else(|| l.clone()),
                _ => l.clone(),
            };
            Label::from_name(&name).ok_or(name)
        })
        .collect::<std::result::Result<_, String>>()
        .map_err(|bad| {
            data_err(
                &args.data,
                format!("gold label {bad:?} is not a sentiment class (map indices with --label-names negative,neutral,positive)"),
            )
        })
}

/// Runs the eval query `--repeat` times over the texts, each a new run of the
/// scorer; returns the last answers and the fastest run's wall and CPU seconds.
async fn score_timed(
    jc: &JobContext,
    scorer: &crate::JobScorer,
    args: &EvalArgs,
    pairs: &[(String, String)],
    classifier: bool,
) -> Result<(Vec<RecordBatch>, f64, f64)> {
    let ids = UInt64Array::from_iter_values(0..pairs.len() as u64);
    let texts = StringArray::from_iter_values(pairs.iter().map(|(t, _)| t.as_str()));
    let schema = Arc::new(Schema::new(vec![
        Field::new("row_id", DataType::UInt64, false),
        Field::new("text", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(ids), Arc::new(texts)])
        .map_err(|e| Error::arrow("eval texts", e))?;
    crate::tables::register_batches(jc, "eval_texts", schema, vec![vec![batch]])?;
    let name = if classifier { "eval_probs" } else { "eval_labels" };
    let (mut batches, mut wall_s, mut cpu_s) = (Vec::new(), f64::INFINITY, f64::INFINITY);
    for _ in 0..args.repeat.max(1) {
        // every pass scores every text: nothing reused from the pass before
        scorer.start_run();
        let (cpu0, t0) = (process_cpu_seconds(), Instant::now());
        let b = crate::io::diagnose::collect(sql::query(&jc.ctx, name, vec![]).await?).await?;
        let (w, c) = (t0.elapsed().as_secs_f64(), process_cpu_seconds() - cpu0);
        if w < wall_s {
            (wall_s, cpu_s) = (w, c);
        }
        batches = b;
    }
    Ok((batches, wall_s, cpu_s))
}

/// A row's answer: the predicted class and, for a classifier, its probabilities.
type Answer = (Option<Label>, Option<Vec<f32>>);

/// Every row's answer, placed by `row_id`; each row must answer exactly once.
fn collect_answers(
    batches: &[RecordBatch],
    n: usize,
    model_labels: Option<&Vec<String>>,
    binary: bool,
) -> Result<Vec<Answer>> {
    let model_classes: Option<Vec<Option<Label>>> =
        model_labels.map(|l| l.iter().map(|n| Label::from_name(n)).collect());
    let mut scored: Vec<Option<Answer>> = vec![None; n];
    for b in batches {
        let rows: &UInt64Array = b.column(0).as_primitive::<UInt64Type>();
        let st: &StructArray = b.column(1).as_struct();
        // classifiers: one probability column per label; the lexicon: its label and score
        let probs_cols: Vec<&Float32Array> = match &model_classes {
            Some(c) => (0..c.len()).map(|k| st.column(k).as_primitive::<Float32Type>()).collect(),
            None => Vec::new(),
        };
        let label_col = st.column_by_name("label").and_then(|c| c.as_string_opt::<i32>());
        let score_col = st.column_by_name("score").and_then(|c| c.as_any().downcast_ref::<Float64Array>());
        for i in 0..b.num_rows() {
            let answer = match &model_classes {
                Some(classes) => {
                    let probs = st.is_valid(i).then(|| probs_cols.iter().map(|c| c.value(i)).collect::<Vec<f32>>());
                    let predicted = probs.as_ref().and_then(|p| predicted_class(classes, p, binary));
                    (predicted, probs)
                }
                None => {
                    let predicted = match (label_col, score_col) {
                        (Some(l), Some(sc)) if l.is_valid(i) => {
                            if binary {
                                Some(if sc.value(i) > 0.0 { Label::Positive } else { Label::Negative })
                            } else {
                                Label::from_name(l.value(i))
                            }
                        }
                        _ => None,
                    };
                    (predicted, None)
                }
            };
            let row = rows.value(i) as usize;
            match scored.get_mut(row) {
                Some(slot @ None) => *slot = Some(answer),
                _ => return Err(Error::Internal(format!("eval: row {row} answered twice or out of range"))),
            }
        }
    }
    let missing = scored.iter().filter(|s| s.is_none()).count();
    if missing > 0 {
        return Err(Error::Internal(format!("eval: {missing} of {n} rows came back without an answer")));
    }
    Ok(scored.into_iter().flatten().collect())
}

/// Confusion matrix, recall, macro-recall and macro-F1 over the classes the
/// scorer can predict (neutral left out on binary data).
struct Metrics {
    classes: Vec<Label>,
    confusion: Vec<Vec<usize>>,
    evaluated: usize,
    correct: usize,
    unscorable: usize,
    skipped: Vec<(String, usize)>,
    recall: Vec<f64>,
    macro_recall: f64,
    macro_f1: f64,
}

impl Metrics {
    fn of(predictions: &[Prediction], model_labels: Option<&Vec<String>>, binary: bool) -> Metrics {
        // the classes the scorer can predict
        let predictable: Vec<Label> = match model_labels {
            Some(l) => l.iter().filter_map(|n| Label::from_name(n)).collect(),
            None => vec![Label::Negative, Label::Neutral, Label::Positive],
        };
        let classes: Vec<Label> = [Label::Negative, Label::Neutral, Label::Positive]
            .into_iter()
            .filter(|c| predictable.contains(c) && !(binary && *c == Label::Neutral))
            .collect();
        let idx = |l: Label| classes.iter().position(|c| *c == l);
        let mut confusion = vec![vec![0usize; classes.len()]; classes.len()];
        let (mut evaluated, mut correct, mut unscorable) = (0, 0, 0);
        let mut skipped: Vec<(String, usize)> = Vec::new();
        for p in predictions {
            let g = p.gold;
            let Some(gi) = idx(g) else {
                match skipped.iter_mut().find(|(n, _)| n == g.as_str()) {
                    Some((_, c)) => *c += 1,
                    None => skipped.push((g.as_str().to_string(), 1)),
                }
                continue;
            };
            let Some(pi) = p.predicted.and_then(idx) else {
                unscorable += 1;
                continue;
            };
            evaluated += 1;
            correct += usize::from(gi == pi);
            confusion[gi][pi] += 1;
        }
        // recall per class, and their mean over the gold classes present
        let recall: Vec<f64> = confusion
            .iter()
            .enumerate()
            .map(|(k, row)| {
                let n: usize = row.iter().sum();
                if n == 0 { f64::NAN } else { row[k] as f64 / n as f64 }
            })
            .collect();
        let present: Vec<f64> = recall.iter().copied().filter(|r| !r.is_nan()).collect();
        let macro_recall = present.iter().sum::<f64>() / (present.len() as f64).max(1.0);
        // macro-F1 over the gold classes present
        let mut f1s = Vec::new();
        for k in 0..classes.len() {
            let tp = confusion[k][k] as f64;
            let gold_k: usize = confusion[k].iter().sum();
            if gold_k == 0 {
                continue;
            }
            let pred_k: usize = confusion.iter().map(|r| r[k]).sum();
            let (p, r) = (tp / (pred_k as f64).max(1.0), tp / gold_k as f64);
            f1s.push(if p + r > 0.0 { 2.0 * p * r / (p + r) } else { 0.0 });
        }
        let macro_f1 = f1s.iter().sum::<f64>() / (f1s.len() as f64).max(1.0);
        Metrics { classes, confusion, evaluated, correct, unscorable, skipped, recall, macro_recall, macro_f1 }
    }
}

/// The class a probability vector predicts (`classes`: the model's labels as
/// sentiment classes, in probability order): the most probable one, or on
/// binary data P(positive) > P(negative) (neutral, if the model has it, never wins).
fn predicted_class(classes: &[Option<Label>], probs: &[f32], binary: bool) -> Option<Label> {
    if binary {
        let p = |want: Label| classes.iter().position(|c| *c == Some(want)).map(|k| probs[k]);
        let (pos, neg) = (p(Label::Positive)?, p(Label::Negative)?);
        return Some(if pos > neg { Label::Positive } else { Label::Negative });
    }
    let best = probs.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(k, _)| k)?;
    classes[best]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_data_is_judged_by_positive_over_negative() {
        let labels = [Some(Label::Negative), Some(Label::Neutral), Some(Label::Positive)];
        // neutral is the most probable, but on binary data only pos vs neg counts
        assert_eq!(predicted_class(&labels, &[0.2, 0.5, 0.3], true), Some(Label::Positive));
        assert_eq!(predicted_class(&labels, &[0.3, 0.5, 0.2], true), Some(Label::Negative));
        assert_eq!(predicted_class(&labels, &[0.2, 0.5, 0.3], false), Some(Label::Neutral));
        let two = [Some(Label::Negative), Some(Label::Positive)];
        assert_eq!(predicted_class(&two, &[0.6, 0.4], true), Some(Label::Negative));
    }

    #[test]
    fn cpu_seconds_grow_with_work() {
        let a = process_cpu_seconds();
        let mut x = 0u64;
        let t = Instant::now();
        while t.elapsed().as_millis() < 150 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let b = process_cpu_seconds();
        assert!(b - a >= 0.05, "{a} -> {b}");
    }
}
