//! Choosing and building every scorer a job can run: the local models
//! (ONNX classifier, VADER lexicon) as sync UDFs, or a chat model (LLM) as
//! async UDFs with its API key and answer cache. The CLI only maps its
//! options to a [`ScorerChoice`]; this module loads what the choice names.

use std::sync::Arc;

use sentiflow_udfs::{AnyLanguage, LexiconScorer, OnnxOptions, OnnxScorer, SharedScorer};

use crate::Result;
use crate::context::JobContext;
use crate::io::store::Location;
use crate::llm::cache::{AnswerCache, default_dir};
use crate::llm::udf::LlmScorer;
use crate::llm::{LlmClient, LlmOptions, SCORE_PROMPT_VERSION, load_api_key};

/// Which scorer a job uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScorerKind {
    /// VADER lexicon (rule-based baseline).
    Lexicon,
    /// A transformer classifier exported to ONNX (the default: the shipped model).
    Onnx(OnnxOptions),
}

impl ScorerKind {
    /// Loads the scorer (for ONNX: the runtime library, the model, the tokenizer).
    pub fn build(self) -> Result<SharedScorer> {
        Ok(match self {
            ScorerKind::Lexicon => Arc::new(LexiconScorer::new()),
            ScorerKind::Onnx(opts) => Arc::new(OnnxScorer::load(opts)?),
        })
    }
}

/// The scorer a job runs: a local model (sync UDFs) or an LLM (async UDFs
/// that call a server).
#[derive(Debug, Clone)]
pub enum JobScorer {
    Local(SharedScorer),
    Llm(Arc<crate::llm::udf::LlmScorer>),
}

impl From<SharedScorer> for JobScorer {
    fn from(s: SharedScorer) -> Self {
        JobScorer::Local(s)
    }
}

impl JobScorer {
    /// Model and version, for the `scorer` column.
    pub fn id(&self) -> String {
        match self {
            JobScorer::Local(s) => s.id().to_string(),
            JobScorer::Llm(l) => l.id().to_string(),
        }
    }

    /// A classifier's label names (None for lexicon and LLM scorers).
    pub fn labels(&self) -> Option<Vec<String>> {
        match self {
            JobScorer::Local(s) => s.labels(),
            JobScorer::Llm(_) => None,
        }
    }

    /// A local scorer's counters (texts, time in inference); the LLM's, as figures.
    pub fn stats(&self) -> Vec<(&'static str, f64)> {
        match self {
            JobScorer::Local(s) => s.stats(),
            JobScorer::Llm(l) => {
                let m = l.client.summary();
                vec![
                    ("requests", m.requests as f64),
                    ("cache_hits", m.cache_hits as f64),
                    ("retries", m.retries as f64),
                    ("failures", m.failures as f64),
                    ("prompt_tokens", m.prompt_tokens as f64),
                    ("completion_tokens", m.completion_tokens as f64),
                    ("cost_usd", m.cost_usd),
                ]
            }
        }
    }

    /// What the LLM client did so far (None for local scorers).
    pub fn llm_summary(&self) -> Option<crate::llm::LlmSummary> {
        match self {
            JobScorer::Local(_) => None,
            JobScorer::Llm(l) => Some(l.client.summary()),
        }
    }
}

/// Where an LLM scorer keeps its answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LlmCache {
    /// `<out>/_cache/llm` of the job's output root, when it has one.
    Default,
    /// This directory (local or s3://).
    Dir(String),
    /// No cache: every text is asked.
    Off,
}

/// A chat model: its options (the API key is loaded by [`llm_client`]) and
/// the AWS Secrets Manager secret that holds the key, if any.
#[derive(Debug, Clone)]
pub struct LlmChoice {
    pub options: LlmOptions,
    pub api_key_secret: Option<String>,
}

/// Builds the LLM client: the API key from the secret, else from the environment.
pub async fn llm_client(choice: &LlmChoice) -> Result<LlmClient> {
    let mut options = choice.options.clone();
    options.api_key = load_api_key(choice.api_key_secret.as_deref()).await?;
    LlmClient::new(options)
}

/// Which scorer a job runs, as the user chose it.
#[derive(Debug, Clone)]
pub enum ScorerChoice {
    /// A local model; `any_language` scores texts in languages it does not read.
    Local {
        kind: ScorerKind,
        any_language: bool,
    },
    Llm {
        llm: LlmChoice,
        cache: LlmCache,
    },
}

impl ScorerChoice {
    /// Loads the scorer. `out_root` is the job's data root (for the default
    /// LLM answer cache); `None` for jobs without one (`sql`, `eval`).
    pub async fn build(&self, jc: &JobContext, out_root: Option<&str>) -> Result<JobScorer> {
        match self {
            ScorerChoice::Local { kind, any_language } => {
                let scorer = kind.clone().build()?;
                Ok(JobScorer::Local(if *any_language { Arc::new(AnyLanguage(scorer)) } else { scorer }))
            }
            ScorerChoice::Llm { llm, cache } => {
                let client = llm_client(llm).await?;
                let dir = match cache {
                    LlmCache::Off => None,
                    LlmCache::Dir(d) => Some(d.clone()),
                    LlmCache::Default => out_root.map(Location::parse).transpose()?.map(|l| default_dir(&l)),
                };
                let cache = match dir {
                    Some(d) => Some(AnswerCache::open(&jc.stores, &d, &llm.options.model, SCORE_PROMPT_VERSION)?),
                    None => None,
                };
                Ok(JobScorer::Llm(Arc::new(LlmScorer::new(client, cache))))
            }
        }
    }
}
