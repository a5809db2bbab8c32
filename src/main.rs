//! The `sentiflow` binary: parses the command line, sets up tracing, signals
//! and the runtime, and hands the command to [`cli::dispatch`].

mod cli;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use sentiflow_jobs::{ContextOptions, JobContext};

#[derive(Parser, Debug)]
#[command(name = "sentiflow", version, about = "Sentiment dataflow jobs on Apache DataFusion")]
struct Cli {
    /// Query worker threads (0 = all cores).
    #[arg(long, global = true, default_value_t = 0, env = "SENTIFLOW_THREADS")]
    threads: usize,
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    cmd: cli::Command,
}

fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "warn,sentiflow=info,sentiflow_jobs=info,sentiflow_udfs=info",
        _ => "info,sentiflow=debug,sentiflow_jobs=debug,sentiflow_udfs=debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}

async fn dispatch(cli: Cli) -> Result<()> {
    let jc = JobContext::new(ContextOptions { threads: cli.threads }).context("cannot start the query engine")?;
    cli::dispatch(&jc, cli.cmd).await
}

/// Stack of the thread that plans queries: DataFusion's planner and optimizer
/// recurse over the expression tree, and a WHERE with a few hundred `OR`s
/// overflows the default 8 MiB in a debug build. Pages are only committed
/// when touched, so a large reservation costs nothing for ordinary queries.
const PLANNER_STACK_BYTES: usize = 512 << 20;
/// Stack of the runtime's worker threads, which evaluate the expressions.
const WORKER_STACK_BYTES: usize = 64 << 20;

fn main() -> ExitCode {
    // `sentiflow eval … | head`: a closed pipe ends the process quietly, as
    // for other command-line tools, instead of a panic in println!
    // SAFETY: called before any thread starts; SIG_DFL is a valid disposition.
    #[allow(unsafe_code)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let main = std::thread::Builder::new().name("sentiflow".into()).stack_size(PLANNER_STACK_BYTES).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .thread_stack_size(WORKER_STACK_BYTES)
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: cannot start the async runtime: {e}");
                return ExitCode::from(2);
            }
        };
        match runtime.block_on(dispatch(cli)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {}", one_line(&e));
                ExitCode::from(2)
            }
        }
    });
    match main.map(|h| h.join()) {
        Ok(Ok(code)) => code,
        Ok(Err(_)) => ExitCode::from(101), // a panic, already printed
        Err(e) => {
            eprintln!("error: cannot start the main thread: {e}");
            ExitCode::from(2)
        }
    }
}

/// The error chain as `{:#}` prints it, on one line: whitespace collapsed, and
/// a cause skipped when its parent's message already quotes it (DataFusion
/// and object_store errors embed their sources).
pub(crate) fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let msg = cause.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
        if parts.last().is_some_and(|p| p.contains(&msg)) {
            continue;
        }
        parts.push(msg);
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_print_on_one_line_without_repeats() {
        let inner = std::io::Error::other("disk\nfull");
        let e = anyhow::Error::new(inner).context("write x failed: disk full").context("job failed");
        assert_eq!(one_line(&e), "job failed: write x failed: disk full");
    }
}
