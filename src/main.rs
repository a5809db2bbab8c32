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
    // colours only on a terminal: a log file or a pipe gets plain text
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi)
        .init();
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
    end_by_sigpipe_on_closed_stdout();
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

/// `sentiflow eval … | head`: a closed stdout ends the process by SIGPIPE,
/// quietly, as for other command-line tools. SIGPIPE itself stays ignored (as
/// Rust sets it): a peer that closes a socket (an executor killed, an S3 or
/// Kinesis connection dropped) is an error to handle, never the end of the
/// process. A write to stdout that fails so (println!'s panic, or a
/// [`Stdout`] writer's error) re-raises the signal with its default action.
fn end_by_sigpipe_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let p = info.payload();
        let msg = p.downcast_ref::<String>().map(String::as_str).or_else(|| p.downcast_ref::<&str>().copied());
        if msg.is_some_and(|m| m.starts_with("failed printing to stdout") && m.contains("Broken pipe")) {
            end_by_sigpipe();
        }
        default(info)
    }));
}

/// Standard output for writers that wrap I/O errors (CSV, JSON): a closed
/// pipe ends the process as println! does ([`end_by_sigpipe_on_closed_stdout`]).
pub(crate) struct Stdout<W>(pub W);

impl<W: std::io::Write> std::io::Write for Stdout<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf).inspect_err(end_if_broken_pipe)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush().inspect_err(end_if_broken_pipe)
    }
}

fn end_if_broken_pipe(e: &std::io::Error) {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        end_by_sigpipe()
    }
}

fn end_by_sigpipe() -> ! {
    // SAFETY: SIG_DFL is a valid disposition, and raise() only signals this process.
    #[allow(unsafe_code)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    std::process::exit(141)
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
