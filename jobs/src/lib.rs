//! sentiflow jobs: generate, score and aggregate tweets with DataFusion.
//!
//! The layout is the architecture (see ARCHITECTURE.md):
//! - [`job`]: one module per command (`score`, `aggregate`, `stream`, …), each
//!   an `async fn run(…) -> Result<Report>` that the binary calls;
//! - [`io`]: what the jobs read and write through: object stores, the
//!   validating record reader, Parquet writers, Kinesis/Firehose producers and
//!   the shard reader, checkpoints and leases, retries;
//! - the shared core beside them: the [`schema`] module (single source of
//!   truth for every table), [`sql`] (the `sql/*.sql` files), [`tables`]
//!   (registering tables), [`context`] (the session), [`scorer`] (choosing
//!   and building every scorer), [`llm`] (the chat-model client and UDFs).
//!
//! Dependencies point one way: `job` → `io` → core; nothing in `io` or the
//! core imports a job.

pub mod context;
mod error;
#[doc(hidden)]
pub mod fuzzcheck;
pub mod io;
pub mod job;
pub mod llm;
pub mod metrics;
mod progress;
pub mod rng;
pub mod schema;
pub mod scorer;
pub mod sql;
pub mod tables;
pub mod timeexpr;
pub mod window;

pub use context::{ContextOptions, DEFAULT_MODEL, JobContext, default_model_dir};
pub use error::{Error, Result};
pub use scorer::{JobScorer, ScorerChoice, ScorerKind};
