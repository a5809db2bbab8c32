//! The commands: each module is one `sentiflow` subcommand's job.

pub mod aggregate;
pub mod alerts;
pub mod bench;
pub mod compact;
pub mod compare;
pub mod eval;
pub mod generate;
pub mod ingest;
pub mod pipeline;
pub mod report;
pub mod score;
pub mod stream;
