//! `sentiflow score`: raw tweets in, scored Parquet out.

use super::DEFAULT_OUT;
use super::expand_location;
use super::scorer::ScorerArgs;
use anyhow::Result;
use clap::ValueEnum;
use sentiflow_jobs::JobContext;
use sentiflow_jobs::io::read::Format;
use sentiflow_jobs::io::read::{DEFAULT_CHUNK_BYTES, DEFAULT_MAX_TEXT_BYTES};
use sentiflow_jobs::io::store::Location;
use sentiflow_jobs::job::score;
use sentiflow_jobs::job::score::ScoreArgs;
use sentiflow_jobs::llm::LlmSummary;
use sentiflow_jobs::scorer::RowsByScorer;

#[derive(clap::Args, Debug)]
pub(crate) struct ScoreCli {
    /// Raw tweets: a file, a directory or a glob, local or s3://; time templates like
    /// dt={now-1h|%Y-%m-%d} are expanded.
    #[arg(long, value_parser = expand_location)]
    input: String,
    /// Data root: writes scored/ and _rejected/ below it.
    #[arg(long, default_value = DEFAULT_OUT, value_parser = expand_location)]
    out: String,
    /// Input format (default: from each file's name; no extension = NDJSON).
    #[arg(long, value_enum)]
    format: Option<InFormat>,
    /// Longer texts are rejected to _rejected/ instead of scored.
    #[arg(long, default_value_t = DEFAULT_MAX_TEXT_BYTES)]
    max_text_bytes: usize,
    /// A file is read, scored and written in chunks of about this much text, so memory is
    /// bounded by the chunk, not the file; a file larger than one chunk writes one file per
    /// chunk and partition.
    #[arg(long, default_value_t = (DEFAULT_CHUNK_BYTES >> 20) as u64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    chunk_mib: u64,
    #[command(flatten)]
    scorer: ScorerArgs,
    #[command(flatten)]
    cluster: super::cluster::ClusterArg,
    /// The summary's figures as a CloudWatch EMF line on stdout too (ECS/Batch: metrics with no agent).
    #[arg(long, value_enum)]
    metrics: Option<super::MetricsFormat>,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub(crate) enum InFormat {
    Ndjson,
    Csv,
    Parquet,
}

pub(crate) async fn run(jc: &JobContext, s: ScoreCli) -> Result<()> {
    let out = Location::parse(&s.out)?;
    let started = std::time::Instant::now();
    let scorer = s.scorer.build(jc, Some(&s.out)).await?;
    let jc = &s.cluster.context(jc, Some(&scorer)).await?;
    let r = score::run(
        jc,
        scorer,
        ScoreArgs {
            input: s.input,
            out: out.display.clone(),
            format: s.format.map(|f| match f {
                InFormat::Ndjson => Format::Ndjson,
                InFormat::Csv => Format::Csv,
                InFormat::Parquet => Format::Parquet,
            }),
            max_text_bytes: s.max_text_bytes,
            chunk_bytes: (s.chunk_mib as usize) << 20,
        },
    )
    .await?;
    print_score(&r);
    super::print_emf(s.metrics, "score", &score_figures(&r, started.elapsed()));
    Ok(())
}

/// Scored rows per scorer, and what the fallback did (printed when a fallback ran or
/// rows of several scorers were counted).
pub fn print_by_scorer(b: &RowsByScorer, left_other_language: usize) {
    if b.scored.len() < 2 && b.fallback == 0 {
        return;
    }
    let each: Vec<String> = b.scored.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!("scored by         {}", each.join(", "));
    let failed: usize = b.fallback_failed.values().sum();
    let why: Vec<String> = b.fallback_failed.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    println!(
        "fallback          {} rows the model does not read: {} scored, {} not{}{}",
        b.fallback,
        b.fallback - failed,
        failed,
        if why.is_empty() { String::new() } else { format!(" ({})", why.join("; ")) },
        if left_other_language > 0 { format!("; {left_other_language} left unscored") } else { String::new() }
    );
}

/// A score run's figures for EMF (the summary's, by name and unit).
pub fn score_figures(r: &score::ScoreReport, took: std::time::Duration) -> Vec<(&'static str, f64, &'static str)> {
    let mut v = vec![
        ("RecordsRead", r.rows_read as f64, "Count"),
        ("RowsScored", r.rows_scored as f64, "Count"),
        ("RowsUnscorable", r.rows_unscorable as f64, "Count"),
        ("RowsOtherLanguage", r.rows_other_language as f64, "Count"),
        ("RowsRejected", r.rows_rejected as f64, "Count"),
        ("FilesRejected", r.files_rejected as f64, "Count"),
        ("RowsFallback", r.by_scorer.fallback as f64, "Count"),
        ("ScoreSeconds", took.as_secs_f64(), "Seconds"),
    ];
    if let Some(l) = &r.llm {
        v.extend([
            ("LlmRequests", l.requests as f64, "Count"),
            ("LlmFailures", l.failures as f64, "Count"),
            ("LlmCostUsd", l.cost_usd, "None"),
        ]);
    }
    v
}

fn print_score(r: &score::ScoreReport) {
    println!("scorer            {}", r.scorer);
    println!(
        "input files       {}{}",
        r.files,
        if r.empty_files.is_empty() { String::new() } else { format!(" ({} empty)", r.empty_files.len()) }
    );
    if let Some(first) = r.hidden_entries.first() {
        println!(
            "hidden, not read  {} (names starting with _ or .; first: {})",
            r.hidden_entries.len(),
            super::printable(first, true)
        );
    }
    println!("records read      {}", r.rows_read);
    println!("scored            {}", r.rows_scored);
    println!(
        "unscorable        {} (NULL score, reason in score_error; {} in a language the model does not read)",
        r.rows_unscorable, r.rows_other_language
    );
    print_by_scorer(&r.by_scorer, r.rows_other_language);
    println!("rejected          {} (see _rejected/job=score/)", r.rows_rejected);
    if r.files_rejected > 0 {
        println!(
            "files rejected    {} (unreadable, not a regular file, corrupt or lacking a column; see _rejected/job=score/)",
            r.files_rejected
        );
    }
    if r.output_files_skipped > 0 {
        println!("not input         {} files of the output's own tables below --input", r.output_files_skipped);
    }
    if r.stale_files_removed > 0 {
        println!("stale removed     {} files of earlier runs whose rows moved or were rejected", r.stale_files_removed);
    }
    if !r.extra_fields.is_empty() {
        // field names come from the data: shown escaped, as sql shows texts
        let names: Vec<String> = r.extra_fields.iter().map(|f| super::printable(f, true)).collect();
        println!("ignored fields    {}", names.join(", "));
    }
    println!("partitions        {}  files {}", r.partitions.len(), r.output_files);
    if let Some(l) = &r.llm {
        print_llm(l);
    }
}

/// The LLM client's requests, cache hits, failures, tokens and cost.
pub fn print_llm(l: &LlmSummary) {
    println!(
        "llm               {} requests, {} cache hits, {} deduplicated, {} retries ({} throttled), {} failures{}",
        l.requests,
        l.cache_hits,
        l.deduplicated,
        l.retries,
        l.throttled,
        l.failures,
        if l.over_budget > 0 { format!(" ({} over budget)", l.over_budget) } else { String::new() }
    );
    println!(
        "llm tokens        {} prompt + {} completion, estimated cost ${:.4}",
        l.prompt_tokens, l.completion_tokens, l.cost_usd
    );
}
