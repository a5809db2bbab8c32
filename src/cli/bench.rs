//! `sentiflow bench`: the peer benchmark contract.

use anyhow::Result;
use clap::ValueEnum;
use sentiflow_jobs::JobContext;
use sentiflow_jobs::job::bench;
use sentiflow_jobs::job::bench::BenchTask;

#[derive(clap::Args, Debug)]
pub(crate) struct BenchCli {
    #[arg(long)]
    input: String,
    #[arg(long)]
    out: String,
    #[arg(long, value_enum)]
    task: BenchTaskCli,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub(crate) enum BenchTaskCli {
    Scan,
    Window,
}

pub(crate) async fn run(jc: &JobContext, b: BenchCli) -> Result<()> {
    let task = match b.task {
        BenchTaskCli::Scan => BenchTask::Scan,
        BenchTaskCli::Window => BenchTask::Window,
    };
    let r = bench::run(jc, &b.input, &b.out, task).await?;
    let mut j = serde_json::json!({
        "engine": "sentiflow",
        "version": env!("CARGO_PKG_VERSION"),
        "task": r.task,
        "query_s": r.query_s,
    });
    if let Some(c) = r.count {
        j["count"] = c.into();
    }
    if let Some(a) = r.avg {
        j["avg"] = a.into();
    }
    if let Some(w) = r.windows_rows {
        j["windows_rows"] = w.into();
    }
    if let Some(w) = r.by_source_rows {
        j["by_source_rows"] = w.into();
    }
    println!("RESULT {j}");
    Ok(())
}
