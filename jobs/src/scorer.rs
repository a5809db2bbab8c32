//! Choosing and building every scorer a job can run: the local models
//! (ONNX classifier, VADER lexicon) as sync UDFs, or a chat model (LLM) as
//! async UDFs with its API key and answer cache. The CLI only maps its
//! options to a [`ScorerChoice`]; this module loads what the choice names.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};

use sentiflow_udfs::{AnyLanguage, LexiconScorer, OnnxOptions, OnnxScorer, SharedScorer};

use crate::Result;
use crate::io::store::{Location, StoreRegistry};
use crate::llm::cache::{AnswerCache, default_dir};
use crate::llm::fallback::FallbackScorer;
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
    /// A local model, and the LLM for the texts it does not read (`--fallback llm`).
    Fallback(Arc<FallbackScorer>),
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
            JobScorer::Fallback(f) => f.id().to_string(),
        }
    }

    /// The fallback scorer's id, when there is one.
    pub fn fallback_id(&self) -> Option<String> {
        match self {
            JobScorer::Fallback(f) => Some(f.llm.id().to_string()),
            _ => None,
        }
    }

    /// A classifier's label names (None for lexicon and LLM scorers).
    pub fn labels(&self) -> Option<Vec<String>> {
        match self {
            JobScorer::Local(s) => s.labels(),
            JobScorer::Fallback(f) => f.primary.scorer().labels(),
            JobScorer::Llm(_) => None,
        }
    }

    /// A new run for the local scorer: it forgets the results it kept for copies
    /// of texts ([`sentiflow_udfs::Scorer::start_run`]). The LLM's answer cache stays.
    pub fn start_run(&self) {
        match self {
            JobScorer::Local(s) => s.start_run(),
            JobScorer::Llm(_) => {}
            JobScorer::Fallback(f) => f.primary.scorer().start_run(),
        }
    }

    /// A local scorer's counters (texts, time in inference); the LLM's, as figures.
    pub fn stats(&self) -> Vec<(&'static str, f64)> {
        match self {
            JobScorer::Local(s) => s.stats(),
            JobScorer::Llm(l) => llm_figures(&l.client.summary()),
            JobScorer::Fallback(f) => {
                let mut v = f.primary.scorer().stats();
                v.extend(llm_figures(&f.llm.client.summary()).into_iter().map(|(k, x)| (fallback_key(k), x)));
                v
            }
        }
    }

    /// What the LLM client did so far (None for local scorers).
    pub fn llm_summary(&self) -> Option<crate::llm::LlmSummary> {
        match self {
            JobScorer::Local(_) => None,
            JobScorer::Llm(l) => Some(l.client.summary()),
            JobScorer::Fallback(f) => Some(f.llm.client.summary()),
        }
    }
}

fn llm_figures(m: &crate::llm::LlmSummary) -> Vec<(&'static str, f64)> {
    vec![
        ("requests", m.requests as f64),
        ("cache_hits", m.cache_hits as f64),
        ("retries", m.retries as f64),
        ("failures", m.failures as f64),
        ("over_budget", m.over_budget as f64),
        ("prompt_tokens", m.prompt_tokens as f64),
        ("completion_tokens", m.completion_tokens as f64),
        ("cost_usd", m.cost_usd),
    ]
}

/// A fallback LLM figure's name beside the local scorer's.
fn fallback_key(k: &'static str) -> &'static str {
    match k {
        "requests" => "llm_requests",
        "cache_hits" => "llm_cache_hits",
        "retries" => "llm_retries",
        "failures" => "llm_failures",
        "over_budget" => "llm_over_budget",
        "prompt_tokens" => "llm_prompt_tokens",
        "completion_tokens" => "llm_completion_tokens",
        "cost_usd" => "llm_cost_usd",
        other => other,
    }
}

/// Scored rows per scorer, and what the fallback did: counted from the rows
/// `sql/score.sql` returns (its `scorer`, `sentiment_score`, `score_error` and
/// `fallback_reason` columns), so the summary says what the table holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowsByScorer {
    /// Rows with a score, per scorer id.
    pub scored: std::collections::BTreeMap<String, usize>,
    /// Rows with a NULL score, per reason class ([`crate::metrics::reason_class`]).
    pub unscorable: std::collections::BTreeMap<&'static str, usize>,
    /// Rows the model handed to the fallback.
    pub fallback: usize,
    /// Of those, rows the fallback could not score, per reason (its first clause).
    pub fallback_failed: std::collections::BTreeMap<String, usize>,
}

impl RowsByScorer {
    pub fn add(&mut self, b: &RecordBatch) {
        let col = |n: &str| b.column_by_name(n).and_then(|c| c.as_string_opt::<i32>().cloned());
        let (Some(scorer), Some(score)) = (col("scorer"), b.column_by_name("sentiment_score")) else { return };
        let (errors, routed) = (col("score_error"), col("fallback_reason"));
        for i in 0..b.num_rows() {
            if score.is_valid(i) && scorer.is_valid(i) {
                *self.scored.entry(scorer.value(i).to_string()).or_default() += 1;
            } else if score.is_null(i) {
                let why = errors.as_ref().filter(|e| e.is_valid(i)).map(|e| e.value(i)).unwrap_or("");
                *self.unscorable.entry(crate::metrics::reason_class(why)).or_default() += 1;
            }
            if routed.as_ref().is_some_and(|r| r.is_valid(i)) {
                self.fallback += 1;
                if score.is_null(i) {
                    let why = errors.as_ref().filter(|e| e.is_valid(i)).map(|e| e.value(i)).unwrap_or("no reason");
                    *self.fallback_failed.entry(reason_class(why)).or_default() += 1;
                }
            }
        }
    }

    /// Rows of another summary added to these.
    pub fn merge(&mut self, o: &RowsByScorer) {
        for (k, v) in &o.scored {
            *self.scored.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.unscorable {
            *self.unscorable.entry(k).or_default() += v;
        }
        self.fallback += o.fallback;
        for (k, v) in &o.fallback_failed {
            *self.fallback_failed.entry(k.clone()).or_default() += v;
        }
    }
}

/// A reason's first two clauses (`llm: HTTP 500: The server…` → `llm: HTTP 500`), so
/// the summary groups the same failure once.
fn reason_class(reason: &str) -> String {
    reason.splitn(3, ": ").take(2).collect::<Vec<_>>().join(": ")
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

/// The LLM a local scorer hands the texts it does not read (`--fallback llm`).
#[derive(Debug, Clone)]
pub struct LlmFallback {
    pub llm: LlmChoice,
    pub cache: LlmCache,
}

/// Which scorer a job runs, as the user chose it.
#[derive(Debug, Clone)]
pub enum ScorerChoice {
    /// A local model; `any_language` scores texts in languages it does not read;
    /// `fallback` asks an LLM for those instead.
    Local {
        kind: ScorerKind,
        any_language: bool,
        fallback: Option<LlmFallback>,
    },
    Llm {
        llm: LlmChoice,
        cache: LlmCache,
    },
}

impl ScorerChoice {
    /// Loads the scorer. `stores` are the job's object stores (the LLM answer
    /// cache lives in one); `out_root` is the job's data root (for the default
    /// LLM answer cache), `None` for jobs without one (`sql`, `eval`).
    pub async fn build(&self, stores: &StoreRegistry, out_root: Option<&str>) -> Result<JobScorer> {
        match self {
            ScorerChoice::Local { kind, any_language, fallback } => {
                let scorer = kind.clone().build()?;
                crate::metrics::metrics().watch_scorer(scorer.clone());
                match fallback {
                    // --any-language reads every text: nothing would be left for the fallback
                    Some(_) if *any_language => Err(crate::Error::Option {
                        option: "--fallback",
                        reason: "--any-language makes the model score every language, so no text is left \
                                 for the fallback: use one of the two"
                            .into(),
                    }),
                    Some(f) => {
                        let llm = llm_scorer(stores, &f.llm, &f.cache, out_root).await?;
                        Ok(JobScorer::Fallback(Arc::new(FallbackScorer::new(scorer, llm))))
                    }
                    None => Ok(JobScorer::Local(if *any_language { Arc::new(AnyLanguage(scorer)) } else { scorer })),
                }
            }
            ScorerChoice::Llm { llm, cache } => Ok(JobScorer::Llm(llm_scorer(stores, llm, cache, out_root).await?)),
        }
    }
}

/// The LLM scorer: its client and answer cache.
async fn llm_scorer(
    stores: &StoreRegistry,
    llm: &LlmChoice,
    cache: &LlmCache,
    out_root: Option<&str>,
) -> Result<Arc<LlmScorer>> {
    let client = llm_client(llm).await?;
    crate::metrics::metrics().watch_llm(client.stats.clone(), client.opts.prices, client.opts.budget);
    let dir = match cache {
        LlmCache::Off => None,
        LlmCache::Dir(d) => Some(d.clone()),
        LlmCache::Default => out_root.map(Location::parse).transpose()?.map(|l| default_dir(&l)),
    };
    let cache = match dir {
        Some(d) => Some(AnswerCache::open(stores, &d, &llm.options.model, SCORE_PROMPT_VERSION)?),
        None => None,
    };
    Ok(Arc::new(LlmScorer::new(client, cache)))
}
