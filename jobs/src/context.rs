//! The context every job runs in: a DataFusion session whose runtime builds
//! object stores on demand, with the scoring UDFs registered.

use std::sync::Arc;

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

/// Session settings.
#[derive(Debug, Clone, Default)]
pub struct ContextOptions {
    /// Worker threads for query execution (DataFusion target partitions); 0 = all cores.
    pub threads: usize,
}

/// What every job gets: the session and the object stores behind it.
#[derive(Clone)]
pub struct JobContext {
    pub ctx: SessionContext,
    pub stores: Arc<StoreRegistry>,
}

impl JobContext {
    pub fn new(opts: ContextOptions) -> Result<Self> {
        let stores = Arc::new(StoreRegistry::default());
        let runtime = RuntimeEnvBuilder::new()
            .with_object_store_registry(stores.clone())
            .build_arc()
            .map_err(|source| Error::Sql { name: "session".into(), source })?;
        let mut config = SessionConfig::new().with_information_schema(true);
        // DataFusion 55's leaf-expression pushdown rewrites
        // `get_field(s, 'score'), get_field(s, 'label')` over `score_sentiment(text) AS s`
        // into one score_sentiment() call per field: it ran the ONNX model three times
        // per row in sql/score.sql (measured: 2,502 texts scored for 834 rows).
        config.options_mut().optimizer.enable_leaf_expression_pushdown = false;
        if opts.threads > 0 {
            config = config.with_target_partitions(opts.threads);
        }
        let ctx = SessionContext::new_with_config_rt(config, runtime).enable_url_table();
        register_scorer_udfs(&ctx, Arc::new(LexiconScorer::new()), false);
        Ok(Self { ctx, stores })
    }

    /// Whether a location holds any (visible) file.
    pub async fn has_files(&self, loc: &Location) -> Result<bool> {
        let store = self.stores.store(&loc.store_url)?;
        Ok(!list_files(store.as_ref(), loc).await?.is_empty())
    }

    /// Binds `sentiment()`, `sentiment_label()`, `sentiment_probs()` and
    /// `score_sentiment()` to the scorer a job selected.
    pub fn select_scorer(&self, scorer: &JobScorer) {
        match scorer {
            JobScorer::Local(s) => register_scorer_udfs(&self.ctx, s.clone(), true),
            JobScorer::Llm(l) => crate::llm::udf::register_llm_udfs(&self.ctx, l.clone()),
        }
    }
}
