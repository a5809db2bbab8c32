//! The one integration test binary: each module tests a job through the real
//! `sentiflow` binary and checks its output with independent code.

mod common;
mod bad_input;
mod cli;
mod infra;
mod kinesis;
mod llm;
mod onnx;
mod pipeline;
mod report;
mod rejected;
mod s3;
mod stream;
mod windows;
