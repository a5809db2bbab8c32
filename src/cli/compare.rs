//! `sentiflow compare`: how two scorers agree.

use super::expand_location;
use anyhow::Result;
use sentiflow_jobs::JobContext;

#[derive(clap::Args, Debug)]
pub(crate) struct CompareCli {
    /// A data root with scored/ (e.g. scored by --scorer onnx).
    #[arg(long, value_parser = expand_location)]
    a: String,
    /// Another data root with scored/ of the same tweets (e.g. --scorer llm).
    #[arg(long, value_parser = expand_location)]
    b: String,
}

pub(crate) async fn run(jc: &JobContext, c: CompareCli) -> Result<()> {
    let r = sentiflow_jobs::job::compare::run(jc, sentiflow_jobs::job::compare::CompareArgs { a: c.a, b: c.b }).await?;
    println!("a                {}", r.a_scorer);
    println!("b                {}", r.b_scorer);
    println!("tweets           {} in both, {} scored by both", r.joined, r.both_scored);
    println!("sign agreement   {:.4} ({} tweets both scored non-zero)", r.sign_agreement, r.sign_pairs);
    println!("label agreement  {:.4}", r.label_agreement);
    println!("spearman         {:.4}", r.spearman);
    if let Some((a, b, n)) = r.truth {
        println!("truth (pos/neg)  a {a:.4}, b {b:.4} on {n} tweets labelled positive or negative");
    }
    Ok(())
}
