//! The context every job runs in: a DataFusion session whose runtime builds
//! object stores on demand, with the scoring UDFs registered.

use std::sync::Arc;

use datafusion::execution::SessionState;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use std::path::PathBuf;

use sentiflow_udfs::{LexiconScorer, register_scorer_udfs};

use crate::scorer::JobScorer;

use crate::io::store::{Location, StoreRegistry, list_files};
use crate::{Error, Result};

/// The project's shipped model, relative to a checkout.
pub const DEFAULT_MODEL: &str = "sample_data/models/sentiment-minilm";

/// Where the shipped model is when `--model` is not given: `./sample_data/…`
/// (a checkout), `<exe>/../share/sentiflow/models/sentiment-minilm` (the
/// container image), then the checkout this binary was built from.
pub fn default_model_dir() -> PathBuf {
    let mut candidates = vec![PathBuf::from(DEFAULT_MODEL)];
    if let Ok(exe) = std::env::current_exe()
        && let Some(d) = exe.parent()
    {
        candidates.push(d.join("../share/sentiflow/models/sentiment-minilm"));
    }
    candidates.push(PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../")).join(DEFAULT_MODEL));
    candidates.iter().find(|p| p.join("config.json").is_file()).cloned().unwrap_or_else(|| PathBuf::from(DEFAULT_MODEL))
}

/// Attempts at a query on a cluster ([`JobContext::collect`]).
pub const CLUSTER_ATTEMPTS: u32 = 3;
/// Wait before the n-th retry: n times this (the scheduler notices a lost executor meanwhile).
pub const CLUSTER_RETRY_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// What [`JobContext::collect`] returns.
#[derive(Debug)]
pub struct Collected {
    pub schema: datafusion::arrow::datatypes::SchemaRef,
    pub batches: Vec<datafusion::arrow::array::RecordBatch>,
}

/// Session settings.
#[derive(Debug, Clone, Default)]
pub struct ContextOptions {
    /// Worker threads for query execution (DataFusion target partitions); 0 = all cores.
    pub threads: usize,
}

/// What every job gets: the session and the object stores behind it.
#[derive(Clone)]
pub struct JobContext {
    /// Where the jobs' queries run: this process, or a Ballista cluster ([`JobContext::distributed`]).
    pub ctx: SessionContext,
    pub stores: Arc<StoreRegistry>,
    /// A session in this process over the same stores: for tables held in
    /// memory (a cluster cannot read them). The same session as `ctx` unless distributed.
    local: SessionContext,
    distributed: bool,
}

/// The session settings every role shares (client, scheduler, executor),
/// applied on top of `config` (a Ballista client starts from Ballista's).
pub fn configure(mut config: SessionConfig, opts: &ContextOptions) -> SessionConfig {
    config = config.with_information_schema(true);
    // DataFusion 55's leaf-expression pushdown rewrites
    // `get_field(s, 'score'), get_field(s, 'label')` over `score_sentiment(text) AS s`
    // into one score_sentiment() call per field: it ran the ONNX model three times
    // per row in sql/score.sql (measured: 2,502 texts scored for 834 rows).
    config.options_mut().optimizer.enable_leaf_expression_pushdown = false;
    if opts.threads > 0 {
        config = config.with_target_partitions(opts.threads);
    }
    config
}

/// The runtime every role shares: object stores built on demand from URLs
/// (local paths, s3:// with the AWS settings of the environment).
///
/// DataFusion's list-files cache is off: by default it keeps a table path's
/// listing for ever, so a long-running process (`stream`'s emitter summing the
/// term panes its workers keep adding, the `sql` REPL, an executor) would not
/// see files written after its first listing. Found by the stream test: the
/// emitter's window_terms counted only the files of its first emission's listing.
pub fn runtime(stores: Arc<StoreRegistry>) -> Result<Arc<datafusion::execution::runtime_env::RuntimeEnv>> {
    RuntimeEnvBuilder::new()
        .with_object_list_cache_limit(0)
        .with_object_store_registry(stores)
        .build_arc()
        .map_err(|source| Error::Sql { name: "session".into(), source })
}

/// One function builds the session for every role: sentiflow's settings on
/// `config`, its object stores, and the scoring UDFs bound to `scorer`
/// (the lexicon when `None`, as every job starts).
pub fn session_state(
    config: SessionConfig,
    stores: Arc<StoreRegistry>,
    scorer: Option<&JobScorer>,
) -> Result<SessionState> {
    Ok(session(config, stores, scorer)?.state())
}

/// [`session_state`] as a session of this process.
fn session(config: SessionConfig, stores: Arc<StoreRegistry>, scorer: Option<&JobScorer>) -> Result<SessionContext> {
    let ctx = SessionContext::new_with_config_rt(config, runtime(stores)?).enable_url_table();
    register_udfs(&ctx, scorer);
    Ok(ctx)
}

/// sentiflow's UDFs on a session: `sentiment_lexicon()`, and the scoring
/// functions bound to `scorer` when given.
pub fn register_udfs(ctx: &SessionContext, scorer: Option<&JobScorer>) {
    register_scorer_udfs(ctx, Arc::new(LexiconScorer::new()), false);
    ctx.register_udf(sentiflow_udfs::TermsUdf::udf());
    if let Some(s) = scorer {
        select(ctx, s);
    }
}

fn select(ctx: &SessionContext, scorer: &JobScorer) {
    match scorer {
        JobScorer::Local(s) => register_scorer_udfs(ctx, s.clone(), true),
        JobScorer::Llm(l) => crate::llm::udf::register_llm_udfs(ctx, l.clone()),
        JobScorer::Fallback(f) => crate::llm::fallback::register_fallback_udfs(ctx, f.clone()),
    }
    ctx.register_udf(sentiflow_udfs::ScorerIdUdf::udf(scorer.id()));
}

impl JobContext {
    pub fn new(opts: ContextOptions) -> Result<Self> {
        let stores = Arc::new(StoreRegistry::default());
        let ctx = session(configure(SessionConfig::new(), &opts), stores.clone(), None)?;
        Ok(Self { local: ctx.clone(), ctx, stores, distributed: false })
    }

    /// Jobs whose queries run on a cluster: `ctx` is a client session of it
    /// (built from [`session_state`] over these stores); tables held in memory
    /// stay in this process's session.
    pub fn distributed(&self, ctx: SessionContext) -> Self {
        Self { ctx, stores: self.stores.clone(), local: self.local.clone(), distributed: true }
    }

    /// Whether the queries run on a cluster (tables must then be files every executor can read).
    pub fn is_distributed(&self) -> bool {
        self.distributed
    }

    /// The same stores with queries in this process: for small tables held in memory.
    pub fn local(&self) -> Self {
        Self { ctx: self.local.clone(), stores: self.stores.clone(), local: self.local.clone(), distributed: false }
    }

    /// Runs `sql/<name>.sql` to completion: its schema and rows. On a cluster an attempt that
    /// fails while running (an executor lost mid-job, its shuffle or result
    /// files gone with it) is run again, up to [`CLUSTER_ATTEMPTS`] times: the
    /// queries only read, and a job writes nothing before this returns.
    pub async fn collect(&self, name: &str, params: Vec<(&str, datafusion::common::ScalarValue)>) -> Result<Collected> {
        let what = format!("sql/{name}.sql");
        self.collect_retrying(&what, CLUSTER_RETRY_WAIT, || crate::sql::query(&self.ctx, name, params.clone())).await
    }

    /// [`JobContext::collect`] of the query `plan` builds; `wait` × the attempt before each retry.
    async fn collect_retrying<F, Fut>(&self, what: &str, wait: std::time::Duration, plan: F) -> Result<Collected>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<datafusion::dataframe::DataFrame>>,
    {
        let mut attempt = 1;
        loop {
            let df = plan().await?;
            let schema = Arc::new(df.schema().as_arrow().clone());
            let scope = crate::io::diagnose::QueryScope::of(&df);
            match df.collect().await {
                Ok(batches) => return Ok(Collected { schema, batches }),
                Err(e) if self.distributed && attempt < CLUSTER_ATTEMPTS => {
                    let wait = wait * attempt;
                    tracing::warn!(query = what, attempt, error = %e, wait_s = wait.as_secs_f64(), "cluster query failed: running it again");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) if self.distributed => {
                    let reason = crate::error::chain(&Error::query(e));
                    return Err(Error::Cluster { query: what.to_string(), attempts: attempt, reason });
                }
                Err(e) => return Err(scope.error(e).await),
            }
        }
    }

    /// Whether a location holds any (visible) file.
    pub async fn has_files(&self, loc: &Location) -> Result<bool> {
        let store = self.stores.store(&loc.store_url)?;
        Ok(!list_files(store.as_ref(), loc).await?.is_empty())
    }

    /// Binds `sentiment()`, `sentiment_label()`, `sentiment_probs()` and
    /// `score_sentiment()` to the scorer a job selected.
    pub fn select_scorer(&self, scorer: &JobScorer) {
        select(&self.ctx, scorer);
        if self.distributed {
            select(&self.local, scorer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    use datafusion::arrow::datatypes::DataType;
    use datafusion::logical_expr::{
        ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
    };

    /// `flaky()`: fails its first `failures` calls (as a task on a lost executor would), then returns 1.
    #[derive(Debug, PartialEq, Eq, Hash)]
    struct Flaky {
        failures: u32,
        signature: Signature,
    }

    static CALLS: AtomicU32 = AtomicU32::new(0);

    impl ScalarUDFImpl for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }
        fn signature(&self) -> &Signature {
            &self.signature
        }
        fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
            Ok(DataType::Int64)
        }
        fn invoke_with_args(&self, _: ScalarFunctionArgs) -> datafusion::common::Result<ColumnarValue> {
            if CALLS.fetch_add(1, Ordering::SeqCst) < self.failures {
                return datafusion::common::exec_err!("executor lost");
            }
            Ok(ColumnarValue::Scalar(datafusion::common::ScalarValue::Int64(Some(1))))
        }
    }

    async fn run(jc: &JobContext, failures: u32) -> Result<Collected> {
        CALLS.store(0, Ordering::SeqCst);
        let udf = Flaky { failures, signature: Signature::nullary(Volatility::Volatile) };
        jc.ctx.register_udf(ScalarUDF::new_from_impl(udf));
        let wait = std::time::Duration::from_millis(1);
        jc.collect_retrying("flaky", wait, || async { jc.ctx.sql("SELECT flaky() AS x").await.map_err(Error::query) })
            .await
    }

    #[tokio::test]
    async fn cluster_queries_are_run_again_and_then_fail_with_the_fix() {
        let local = JobContext::new(ContextOptions::default()).unwrap();
        // in one process a failure is final
        assert!(matches!(run(&local, 1).await, Err(Error::Query { .. })));
        assert_eq!(CALLS.load(Ordering::SeqCst), 1);
        // on a cluster: run again until it succeeds, within the attempts
        let cluster = local.distributed(SessionContext::new());
        let rows = run(&cluster, CLUSTER_ATTEMPTS - 1).await.unwrap();
        assert_eq!(rows.batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
        assert_eq!(rows.schema.field(0).name(), "x");
        assert_eq!(CALLS.load(Ordering::SeqCst), CLUSTER_ATTEMPTS);
        // then an error that says what failed, how often, and what to do
        let e = run(&cluster, CLUSTER_ATTEMPTS).await.unwrap_err().to_string();
        assert!(e.contains(&format!("flaky failed on the cluster {CLUSTER_ATTEMPTS} times")), "{e}");
        assert!(e.contains("executor lost") && e.contains("run the job again"), "{e}");
    }

    /// A table re-registered over a directory sees the files written since its
    /// last query (DataFusion's list-files cache would keep the first listing).
    #[tokio::test]
    async fn a_listing_sees_files_written_after_it() {
        use datafusion::arrow::array::{Int64Array, RecordBatch};
        use datafusion::arrow::datatypes::{Field, Schema};
        let dir = std::env::temp_dir().join(format!("sentiflow-listing-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let loc = Location::parse(&dir.display().to_string()).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
        let jc = JobContext::new(ContextOptions::default()).unwrap();
        let mut counts = Vec::new();
        for i in 0..3 {
            let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![i]))]).unwrap();
            let path = loc.path.clone().join(format!("f{i}.parquet"));
            let store = jc.stores.store(&loc.store_url).unwrap();
            crate::io::write::write_file(store.as_ref(), &loc, &path, &batch).await.unwrap();
            crate::tables::register_parquet_files(&jc, "t", schema.clone(), Vec::new(), &loc).unwrap();
            let b = jc.ctx.sql("SELECT count(*) AS n FROM t").await.unwrap().collect().await.unwrap();
            counts.push(b[0].column(0).as_any().downcast_ref::<Int64Array>().unwrap().value(0));
        }
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(counts, [1, 2, 3]);
    }
}
