//! `sentiflow run`: generate → score → aggregate on the embedded default.

use std::time::{Duration, Instant};

use crate::Result;
use crate::context::JobContext;
use crate::io::read::{DEFAULT_CHUNK_BYTES, DEFAULT_MAX_TEXT_BYTES};
use crate::io::store::Location;
use crate::job::aggregate::{self, AggregateArgs, AggregateReport, WindowSpec};
use crate::job::generate::{self, GenerateArgs, GenerateReport};
use crate::job::report::{self, ReportArgs, ReportSummary};
use crate::job::score::{self, ScoreArgs, ScoreReport};
use crate::schema::Table;

#[derive(Debug, Clone)]
pub struct RunArgs {
    /// Output root: raw/, scored/, windows/, windows_by_source/, window_terms/, _rejected/.
    pub out: String,
    /// Read raw tweets from here instead of generating the sample data set.
    pub input: Option<String>,
    pub generate: GenerateArgs,
    pub spec: WindowSpec,
    pub terms: crate::window::TermSpec,
}

#[derive(Debug, Clone)]
pub struct RunReport {
    pub out: String,
    pub generate: Option<(GenerateReport, Duration)>,
    pub score: (ScoreReport, Duration),
    pub aggregate: (AggregateReport, Duration),
    pub report: (ReportSummary, Duration),
}

pub async fn run(jc: &JobContext, scorer: crate::JobScorer, args: RunArgs) -> Result<RunReport> {
    let out = Location::parse(&args.out)?;
    let raw = out.child(Table::Raw.dir());
    let generated = match &args.input {
        Some(_) => None,
        None => {
            let t = Instant::now();
            let g =
                generate::run(&jc.stores, GenerateArgs { to: raw.display.clone(), ..args.generate.clone() }).await?;
            Some((g, t.elapsed()))
        }
    };
    let t = Instant::now();
    let score = score::run(
        jc,
        scorer,
        ScoreArgs {
            input: args.input.clone().unwrap_or_else(|| raw.display.clone()),
            out: out.display.clone(),
            format: None,
            max_text_bytes: DEFAULT_MAX_TEXT_BYTES,
            chunk_bytes: DEFAULT_CHUNK_BYTES,
        },
    )
    .await?;
    let score = (score, t.elapsed());
    let t = Instant::now();
    let agg = aggregate::run(
        jc,
        AggregateArgs {
            input: out.child(Table::Scored.dir()).display,
            out: out.display.clone(),
            spec: args.spec,
            terms: args.terms,
            from: None,
            to: None,
        },
    )
    .await?;
    let agg = (agg, t.elapsed());
    let t = Instant::now();
    let rep = report::run(
        jc,
        ReportArgs {
            data: out.display.clone(),
            from: None,
            to: None,
            out: out.child("report.html").display,
            png: None,
        },
    )
    .await?;
    Ok(RunReport { out: out.display, generate: generated, score, aggregate: agg, report: (rep, t.elapsed()) })
}
