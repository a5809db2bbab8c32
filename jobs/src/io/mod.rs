//! Shared I/O of the jobs: where data lives and how it moves.

pub mod aws;
pub mod checkpoint;
pub mod diagnose;
pub mod kinesis;
pub mod lock;
pub mod patient;
pub mod read;
pub mod retry;
pub mod store;
pub mod write;
