//! `sentiflow run`: generate → score → aggregate → report on the sample.

use super::DEFAULT_OUT;
use super::WindowCli;
use super::scorer::ScorerArgs;
use super::secs;
use anyhow::Result;
use sentiflow_jobs::JobContext;
use sentiflow_jobs::job::aggregate::WindowSpec;
use sentiflow_jobs::job::aggregate::fmt_duration;
use sentiflow_jobs::job::generate::GenerateArgs;
use sentiflow_jobs::job::pipeline;
use sentiflow_jobs::job::pipeline::RunArgs;

#[derive(clap::Args, Debug)]
pub(crate) struct RunCli {
    /// Output root (local or s3://).
    #[arg(long, default_value = DEFAULT_OUT)]
    out: String,
    /// Score these raw tweets instead of generating the sample data set.
    #[arg(long)]
    input: Option<String>,
    #[command(flatten)]
    window: WindowCli,
    #[command(flatten)]
    terms: super::TermCli,
    #[command(flatten)]
    scorer: ScorerArgs,
    /// The summary's figures as a CloudWatch EMF line on stdout too.
    #[arg(long, value_enum)]
    metrics: Option<super::MetricsFormat>,
}

pub(crate) async fn run(jc: &JobContext, r: RunCli) -> Result<()> {
    let spec = WindowSpec::new(r.window.window, r.window.slide)?;
    let rep = pipeline::run(
        jc,
        r.scorer.build(jc, Some(&r.out)).await?,
        RunArgs {
            out: r.out,
            input: r.input,
            generate: GenerateArgs::default(),
            spec,
            terms: r.terms.spec(sentiflow_jobs::window::Background::Whole),
        },
    )
    .await?;
    print_run(&rep, spec);
    let (s, st) = &rep.score;
    let (a, at) = &rep.aggregate;
    let mut figures = super::score::score_figures(s, *st);
    figures.extend([
        ("Windows", a.windows as f64, "Count"),
        ("WindowTerms", a.window_terms as f64, "Count"),
        ("AggregateSeconds", at.as_secs_f64(), "Seconds"),
    ]);
    super::print_emf(r.metrics, "run", &figures);
    Ok(())
}

fn print_run(r: &pipeline::RunReport, spec: WindowSpec) {
    let (s, st) = &r.score;
    let (a, at) = &r.aggregate;
    println!("sentiflow run → {}   scorer {}", r.out, s.scorer);
    println!();
    println!("{:<10} {:<22} {:>9} {:>9}  {:>7}  detail", "step", "output", "rows", "files", "time");
    if let Some((g, gt)) = &r.generate {
        println!(
            "{:<10} {:<22} {:>9} {:>9}  {:>7}  {} neg / {} neu / {} pos (ground truth)",
            "generate",
            "raw/",
            g.rows,
            g.files,
            secs(*gt),
            g.negative,
            g.neutral,
            g.positive
        );
    }
    println!(
        "{:<10} {:<22} {:>9} {:>9}  {:>7}  {} unscorable ({} other language), {} partitions",
        "score",
        "scored/",
        s.rows_scored + s.rows_unscorable,
        s.output_files,
        secs(*st),
        s.rows_unscorable,
        s.rows_other_language,
        s.partitions.len()
    );
    super::score::print_by_scorer(&s.by_scorer, s.rows_other_language);
    println!(
        "{:<10} {:<22} {:>9} {:>9}  {:>7}  records that failed validation",
        "", "_rejected/", s.rows_rejected, "", ""
    );
    println!(
        "{:<10} {:<22} {:>9} {:>9}  {:>7}  {} windows, slide {}",
        "aggregate",
        "windows/",
        a.windows,
        "",
        secs(*at),
        fmt_duration(spec.window),
        fmt_duration(spec.slide)
    );
    println!("{:<10} {:<22} {:>9}", "", "windows_by_source/", a.windows_by_source);
    println!(
        "{:<10} {:<22} {:>9} {:>9}  {:>7}  top terms per window by lift",
        "", "window_terms/", a.window_terms, "", ""
    );
    let (rep, rt) = &r.report;
    println!(
        "{:<10} {:<22} {:>9} {:>9}  {:>7}  {} KiB, open it in a browser",
        "report",
        "report.html",
        "",
        1,
        secs(*rt),
        rep.bytes / 1024
    );
    println!();
    println!("report:    {}", rep.out);
    println!("query it:  sentiflow sql --data {} -c \"SELECT * FROM windows ORDER BY window_start LIMIT 10\"", r.out);
}
