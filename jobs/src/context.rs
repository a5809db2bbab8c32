//! The context every job runs in: a DataFusion session whose runtime builds
//! object stores on demand, with the scoring UDFs registered.

use std::sync::Arc;

use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use sentiflow_udfs::{LexiconScorer, SharedScorer, register_scorer_udfs};

use crate::store::{Location, StoreRegistry, list_files};
use crate::{Error, Result};

/// Which scorer a job uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScorerKind {
    /// VADER lexicon (rule-based baseline).
    #[default]
    Lexicon,
}

impl ScorerKind {
    pub fn build(self) -> SharedScorer {
        match self {
            ScorerKind::Lexicon => Arc::new(LexiconScorer::new()),
        }
    }
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
        if opts.threads > 0 {
            config = config.with_target_partitions(opts.threads);
        }
        let ctx = SessionContext::new_with_config_rt(config, runtime).enable_url_table();
        register_scorer_udfs(&ctx, ScorerKind::Lexicon.build(), false);
        Ok(Self { ctx, stores })
    }

    /// Whether a location holds any (visible) file.
    pub async fn has_files(&self, loc: &Location) -> Result<bool> {
        let store = self.stores.store(&loc.store_url)?;
        Ok(!list_files(store.as_ref(), loc).await?.is_empty())
    }

    /// Binds `score_sentiment()` to the scorer a job selected.
    pub fn select_scorer(&self, scorer: SharedScorer) {
        register_scorer_udfs(&self.ctx, scorer, true);
    }
}
