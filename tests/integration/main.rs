//! The one integration test binary: each module tests a job through the real
//! `sentiflow` binary and checks its output with independent code.

mod bad_input;
mod cli;
#[cfg(feature = "cluster")]
mod cluster;
mod common;
mod infra;
mod kinesis;
mod llm;
mod onnx;
mod pipeline;
mod rejected;
mod report;
mod s3;
mod s3_faults;
mod stream;
mod terms;
mod windows;
