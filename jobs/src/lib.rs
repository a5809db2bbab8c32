//! sentiflow jobs: generate, score and aggregate tweets with DataFusion.
//!
//! Each job is `async fn run(ctx, args) -> Result<Report>`; the binary only
//! parses arguments and dispatches.

pub mod aggregate;
pub mod alerts;
pub mod aws;
pub mod bench;
pub mod checkpoint;
pub mod compact;
pub mod compare;
pub mod context;
mod error;
pub mod eval;
#[doc(hidden)]
pub mod fuzzcheck;
pub mod generate;
pub mod ingest;
pub mod kinesis;
pub mod llm;
pub mod lock;
pub mod pipeline;
mod progress;
pub mod read;
pub mod report;
pub mod retry;
pub mod schema;
pub mod score;
pub mod sql;
pub mod store;
pub mod stream;
pub mod tables;
pub mod timeexpr;
pub mod write;

pub use context::{ContextOptions, DEFAULT_MODEL, JobContext, JobScorer, ScorerKind, default_model_dir};
pub use error::{Error, Result};
