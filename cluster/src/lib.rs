//! sentiflow on Apache DataFusion Ballista: the scheduler, the executors and
//! the clients (`score`, `aggregate`, `sql` with `--cluster`) all build their
//! session with [`sentiflow_jobs::context::session_state`]: sentiflow's
//! settings, its object stores (local paths and s3://, built on demand) and
//! the scoring UDFs bound to the scorer each process was started with.
//!
//! Ballista ships logical plans from the client to the scheduler and physical
//! plans from the scheduler to the executors; each side resolves UDFs by name
//! in its own registry, so the scorer must be registered in all three roles.
//! The executors run the model; the client and the scheduler only plan with it.

use std::net::SocketAddr;
use std::sync::Arc;

use ballista::prelude::{SessionConfigExt, SessionContextExt};
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use datafusion::error::DataFusionError;
use datafusion::prelude::{SessionConfig, SessionContext};
use sentiflow_jobs::context::{ContextOptions, configure, register_udfs, runtime, session_state};
use sentiflow_jobs::io::store::StoreRegistry;
use sentiflow_jobs::{JobContext, JobScorer};

/// What can go wrong starting or reaching a cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--cluster {url}: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot reach the Ballista scheduler at {url}: {source}")]
    Connect { url: String, source: DataFusionError },
    #[error("Ballista {role} failed: {reason}")]
    Role { role: &'static str, reason: String },
    #[error(transparent)]
    Job(#[from] sentiflow_jobs::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// `--cluster` value that starts a scheduler and an executor inside this process.
pub const STANDALONE: &str = "standalone";
/// Scheme of a scheduler address: `df://HOST:PORT`.
pub const SCHEME: &str = "df://";
/// Ballista's default scheduler port.
pub const DEFAULT_SCHEDULER_PORT: u16 = 50050;

/// The session config every role starts from: Ballista's, with sentiflow's settings.
fn config(opts: &ContextOptions) -> SessionConfig {
    configure(SessionConfig::new_with_ballista(), opts)
}

fn df_error(e: sentiflow_jobs::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// A job context whose queries run on the cluster `url` (`df://HOST:PORT`
/// or `standalone`); the scorer's UDFs are registered on the client (to plan)
/// and, for `standalone`, on the in-process executor.
pub async fn connect(
    jc: &JobContext,
    url: &str,
    scorer: Option<&JobScorer>,
    opts: &ContextOptions,
) -> Result<JobContext> {
    // the LLM's client, answer cache and budget live in one process
    let refusal = match scorer {
        Some(JobScorer::Llm(_)) => Some(
            "the LLM scorer does not run on a cluster yet (its client, cache and budget \
             live in one process): use --scorer lexicon or onnx, or drop --cluster",
        ),
        Some(JobScorer::Fallback(_)) => Some(
            "--fallback llm does not run on a cluster yet (the LLM's client, cache \
             and budget live in one process): drop --cluster to score every language in this process, or drop \
             --fallback to score on the cluster with the model alone",
        ),
        _ => None,
    };
    if let Some(reason) = refusal {
        return Err(Error::Url { url: url.into(), reason: reason.into() });
    }
    let state = session_state(config(opts), jc.stores.clone(), scorer)?;
    let ctx = if url == STANDALONE {
        SessionContext::standalone_with_state(state)
            .await
            .map_err(|source| Error::Connect { url: url.into(), source })?
    } else {
        let addr = scheduler_address(url)?;
        SessionContext::remote_with_state(&format!("df://{addr}"), state)
            .await
            .map_err(|source| Error::Connect { url: url.into(), source })?
    };
    let cluster = jc.distributed(ctx);
    // upgrading the state for Ballista replaced its function list: register sentiflow's again
    register_udfs(&cluster.ctx, scorer);
    if let Some(s) = scorer {
        check_executor_scorer(&cluster, url, &s.id()).await?;
    }
    Ok(cluster)
}

/// The executors score with their own scorer (resolved by name): one that
/// runs another scorer than the client names would write rows labelled with
/// the wrong scorer, so the client asks an executor first.
async fn check_executor_scorer(cluster: &JobContext, url: &str, want: &str) -> Result<()> {
    let connect = |source| Error::Connect { url: url.into(), source };
    let sql = format!("SELECT {}() AS scorer", sentiflow_udfs::SCORER_ID_UDF);
    let batches = cluster.ctx.sql(&sql).await.map_err(connect)?.collect().await.map_err(connect)?;
    let got = batches
        .first()
        .filter(|b| b.num_rows() > 0)
        .and_then(|b| {
            b.column(0).as_any().downcast_ref::<datafusion::arrow::array::StringArray>().map(|a| a.value(0).to_string())
        })
        .unwrap_or_default();
    if got != want {
        return Err(Error::Url {
            url: url.into(),
            reason: format!(
                "the executors score with {got:?} but this job asked for {want:?}: start `sentiflow cluster executor` \
                 (and the scheduler) with the job's scorer options (--scorer, --model, --any-language), or give the job theirs"
            ),
        });
    }
    Ok(())
}

/// `df://HOST:PORT` (port defaults to 50050) → `HOST:PORT`.
pub fn scheduler_address(url: &str) -> Result<String> {
    let bad = |reason: &str| Error::Url { url: url.into(), reason: reason.into() };
    let rest =
        url.strip_prefix(SCHEME).ok_or_else(|| bad("use df://HOST:PORT (a Ballista scheduler) or standalone"))?;
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') {
        return Err(bad("use df://HOST:PORT (a Ballista scheduler) or standalone"));
    }
    match rest.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => {
            port.parse::<u16>().map_err(|_| bad("the port is not a number"))?;
            Ok(rest.to_string())
        }
        Some(_) => Err(bad("no host")),
        None => Ok(format!("{rest}:{DEFAULT_SCHEDULER_PORT}")),
    }
}

/// Settings of `sentiflow cluster scheduler`.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    pub bind: SocketAddr,
    /// The host executors and clients reach this scheduler at.
    pub external_host: String,
    /// Executors silent for this long are dead and their tasks run elsewhere.
    pub executor_timeout_s: u64,
    pub context: ContextOptions,
}

/// Runs a scheduler until the process ends. `scorer`: the UDFs it plans with.
pub async fn run_scheduler(opts: SchedulerOptions, scorer: JobScorer) -> Result<()> {
    let stores = Arc::new(StoreRegistry::default());
    let context = opts.context.clone();
    let mut config = SchedulerConfig {
        bind_host: opts.bind.ip().to_string(),
        bind_port: opts.bind.port(),
        external_host: opts.external_host.clone(),
        executor_timeout_seconds: opts.executor_timeout_s,
        expire_dead_executor_interval_seconds: opts.executor_timeout_s.clamp(1, 15),
        no_executors_grace_period_seconds: opts.executor_timeout_s,
        ..Default::default()
    };
    config = config.with_override_config_producer(Arc::new(move || self::config(&context)));
    config = config.with_override_session_builder(Arc::new(move |cfg: SessionConfig| {
        session_state(cfg, stores.clone(), Some(&scorer)).map_err(df_error)
    }));
    let role = |reason: String| Error::Role { role: "scheduler", reason };
    let cluster = BallistaCluster::new_from_config(&config).await.map_err(|e| role(e.to_string()))?;
    tracing::info!(bind = %opts.bind, "Ballista scheduler listening");
    start_server(cluster, opts.bind, Arc::new(config)).await.map_err(|e| role(e.to_string()))
}

/// Settings of `sentiflow cluster executor`.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler, `HOST:PORT`.
    pub scheduler: String,
    /// Flight (shuffle) address; the gRPC port is `grpc_port`.
    pub bind: SocketAddr,
    pub grpc_port: u16,
    /// The host the scheduler and other executors reach this one at.
    pub external_host: Option<String>,
    /// Tasks at a time.
    pub concurrency: usize,
    pub heartbeat_s: u64,
    /// Shuffle files (a temporary directory when `None`).
    pub work_dir: Option<String>,
    pub context: ContextOptions,
}

/// Runs an executor with `scorer` until the process ends; it loads the model once.
pub async fn run_executor(opts: ExecutorOptions, scorer: JobScorer) -> Result<()> {
    let bad = |reason: String| Error::Url { url: opts.scheduler.clone(), reason };
    let (host, port) = opts.scheduler.rsplit_once(':').ok_or_else(|| bad("use --scheduler HOST:PORT".into()))?;
    let port: u16 = port.parse().map_err(|_| bad("the port is not a number".into()))?;
    let stores = Arc::new(StoreRegistry::default());
    let state = session_state(config(&opts.context), stores.clone(), Some(&scorer))?;
    let context = opts.context.clone();
    let config = ExecutorProcessConfig {
        bind_host: opts.bind.ip().to_string(),
        port: opts.bind.port(),
        grpc_port: opts.grpc_port,
        external_host: opts.external_host.clone(),
        scheduler_host: host.to_string(),
        scheduler_port: port,
        scheduler_connect_timeout_seconds: 30,
        vcores: opts.concurrency.max(1),
        work_dir: opts.work_dir.clone(),
        executor_heartbeat_interval_seconds: opts.heartbeat_s.max(1),
        print_thread_info: false,
        override_function_registry: Some(Arc::new(BallistaFunctionRegistry::from(&state))),
        override_runtime_producer: Some(Arc::new(move |_: &SessionConfig| runtime(stores.clone()).map_err(df_error))),
        override_config_producer: Some(Arc::new(move || self::config(&context))),
        ..Default::default()
    };
    tracing::info!(bind = %opts.bind, scheduler = %opts.scheduler, concurrency = config.vcores, "Ballista executor starting");
    start_executor_process(Arc::new(config)).await.map_err(|e| Error::Role { role: "executor", reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_addresses() {
        assert_eq!(scheduler_address("df://127.0.0.1:50050").unwrap(), "127.0.0.1:50050");
        assert_eq!(scheduler_address("df://sched.local").unwrap(), "sched.local:50050");
        assert!(scheduler_address("http://x:1").is_err());
        assert!(scheduler_address("df://x:y").is_err());
        assert!(scheduler_address("df://:1").is_err());
    }
}
