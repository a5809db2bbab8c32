//! `--cluster` (score, aggregate, sql) and, with the `cluster` feature,
//! `sentiflow cluster scheduler|executor`: Apache DataFusion Ballista.

use anyhow::Result;
use sentiflow_jobs::{JobContext, JobScorer};

/// The `--cluster` option of the commands that can run their queries on Ballista.
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct ClusterArg {
    /// Run the queries on a Ballista cluster: df://HOST:PORT (a `sentiflow cluster scheduler`),
    /// or `standalone` (a scheduler and an executor in this process). Needs a build with
    /// `--features cluster`.
    #[arg(long, env = "SENTIFLOW_CLUSTER")]
    pub cluster: Option<String>,
}

impl ClusterArg {
    /// `jc` itself, or a context whose queries run on the cluster.
    pub(crate) async fn context(&self, jc: &JobContext, scorer: Option<&JobScorer>) -> Result<JobContext> {
        let Some(url) = &self.cluster else { return Ok(jc.clone()) };
        connect(jc, url, scorer).await
    }
}

#[cfg(feature = "cluster")]
async fn connect(jc: &JobContext, url: &str, scorer: Option<&JobScorer>) -> Result<JobContext> {
    let cluster = sentiflow_cluster::connect(jc, url, scorer, &context_options(jc)).await?;
    tracing::info!(cluster = %url, "queries run on the Ballista cluster");
    Ok(cluster)
}

#[cfg(not(feature = "cluster"))]
async fn connect(_: &JobContext, url: &str, _: Option<&JobScorer>) -> Result<JobContext> {
    anyhow::bail!(
        "--cluster {url}: this sentiflow was built without Ballista; build it with `cargo build --features cluster` \
         (or drop --cluster to run in this process)"
    )
}

/// The session settings of this process (`--threads`), for the cluster's sessions.
#[cfg(feature = "cluster")]
fn context_options(jc: &JobContext) -> sentiflow_jobs::ContextOptions {
    sentiflow_jobs::ContextOptions { threads: jc.ctx.state().config().target_partitions() }
}

#[cfg(feature = "cluster")]
pub(crate) use roles::{ClusterCli, run};

#[cfg(feature = "cluster")]
mod roles {
    use std::net::SocketAddr;

    use anyhow::Result;
    use clap::Subcommand;
    use sentiflow_cluster::{ExecutorOptions, SchedulerOptions};
    use sentiflow_jobs::JobContext;

    use crate::cli::ServeMetricsCli;
    use crate::cli::scorer::ScorerArgs;

    #[derive(clap::Args, Debug)]
    pub(crate) struct ClusterCli {
        #[command(subcommand)]
        role: Role,
    }

    #[derive(Subcommand, Debug)]
    enum Role {
        /// A Ballista scheduler: plans the jobs of `--cluster df://HOST:PORT` clients.
        Scheduler {
            #[arg(long, default_value = "0.0.0.0:50050")]
            bind: SocketAddr,
            /// The host executors and clients reach this scheduler at.
            #[arg(long, default_value = "localhost")]
            external_host: String,
            /// An executor silent this long is dead: its tasks run again elsewhere.
            #[arg(long, default_value_t = 60)]
            executor_timeout_s: u64,
            /// The scorer it plans with (the executors run theirs): same options as the executors'.
            #[command(flatten)]
            scorer: ScorerArgs,
            #[command(flatten)]
            serve: ServeMetricsCli,
        },
        /// A Ballista executor: runs tasks with the scorer it loaded once.
        Executor {
            /// The scheduler, HOST:PORT.
            #[arg(long, default_value = "localhost:50050")]
            scheduler: String,
            /// Flight (shuffle data) address.
            #[arg(long, default_value = "0.0.0.0:50051")]
            bind: SocketAddr,
            /// gRPC port (task control).
            #[arg(long, default_value_t = 50052)]
            grpc_port: u16,
            /// The host the scheduler and other executors reach this one at (default: --bind's
            /// address, or the one the scheduler sees when bound to 0.0.0.0).
            #[arg(long)]
            external_host: Option<String>,
            /// Tasks at a time (default: all cores).
            #[arg(long, default_value_t = 0)]
            concurrency: usize,
            /// Seconds between heartbeats to the scheduler.
            #[arg(long, default_value_t = 10)]
            heartbeat_s: u64,
            /// Shuffle files (default: a temporary directory).
            #[arg(long)]
            work_dir: Option<String>,
            #[command(flatten)]
            scorer: ScorerArgs,
            #[command(flatten)]
            serve: ServeMetricsCli,
        },
    }

    pub(crate) async fn run(jc: &JobContext, c: ClusterCli) -> Result<()> {
        let context = super::context_options(jc);
        match c.role {
            Role::Scheduler { bind, external_host, executor_timeout_s, scorer, serve } => {
                let scorer = scorer.build(jc, None).await?;
                serve.start().await?;
                let opts = SchedulerOptions { bind, external_host, executor_timeout_s, context };
                sentiflow_cluster::run_scheduler(opts, scorer).await?;
            }
            Role::Executor {
                scheduler,
                bind,
                grpc_port,
                external_host,
                concurrency,
                heartbeat_s,
                work_dir,
                scorer,
                serve,
            } => {
                let scorer = scorer.build(jc, None).await?;
                serve.start().await?;
                let concurrency = match concurrency {
                    0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
                    n => n,
                };
                // bound to every interface (a container): the scheduler takes the address it sees
                let external_host =
                    external_host.or_else(|| (!bind.ip().is_unspecified()).then(|| bind.ip().to_string()));
                let opts = ExecutorOptions {
                    scheduler,
                    bind,
                    grpc_port,
                    external_host,
                    concurrency,
                    heartbeat_s,
                    work_dir,
                    context,
                };
                sentiflow_cluster::run_executor(opts, scorer).await?;
            }
        }
        Ok(())
    }
}
