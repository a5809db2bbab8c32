//! The scorer options every scoring command takes (`--scorer`, `--model`, ONNX
//! and LLM settings), mapped to the jobs' scorer in one place.

use std::path::PathBuf;

use anyhow::Result;
use clap::ValueEnum;

use sentiflow_jobs::io::retry::RetryPolicy;
use sentiflow_jobs::llm::{Budget, LlmClient, LlmOptions, Prices};
use sentiflow_jobs::scorer::{LlmCache, LlmChoice, LlmFallback, ScorerChoice, llm_client};
use sentiflow_jobs::{JobContext, JobScorer, ScorerKind, default_model_dir};
use sentiflow_udfs::{Device, OnnxOptions};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScorerCli {
    /// Transformer classifier in ONNX (default: the shipped sentiment-minilm model).
    Onnx,
    /// VADER lexicon: rule-based baseline.
    Lexicon,
    /// A chat model (OpenAI or any OpenAI-compatible server) asked for a -10..10 score.
    Llm,
}

/// What scores the texts the local model does not read.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FallbackCli {
    /// Nothing: they get a NULL score and the language as the reason.
    None,
    /// The chat model of the --llm-* options (its cache and budget apply).
    Llm,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum DeviceCli {
    Cpu,
    /// CUDA execution provider (needs onnxruntime-gpu's library and a GPU).
    Cuda,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ScorerArgs {
    /// Sentiment scorer.
    #[arg(long, value_enum, default_value_t = ScorerCli::Onnx)]
    pub scorer: ScorerCli,
    /// ONNX model directory (model.onnx or model_quantized.onnx, tokenizer.json, config.json);
    /// default: the shipped sample_data/models/sentiment-minilm.
    #[arg(long, env = "SENTIFLOW_MODEL")]
    pub model: Option<PathBuf>,
    /// ONNX Runtime library (default: $ORT_DYLIB_PATH, beside the binary, or where
    /// scripts/setup-ort.sh puts it).
    #[arg(long)]
    pub ort_lib: Option<PathBuf>,
    /// Where the ONNX model runs.
    #[arg(long, value_enum, default_value_t = DeviceCli::Cpu)]
    pub device: DeviceCli,
    /// ONNX Runtime intra-op threads per session (0 = 1 with automatic sessions, else all cores).
    #[arg(long, default_value_t = 0, env = "SENTIFLOW_ONNX_THREADS")]
    pub onnx_threads: usize,
    /// ONNX sessions run side by side on separate batches (0 = one per --onnx-threads cores).
    #[arg(long, default_value_t = 0, env = "SENTIFLOW_ONNX_SESSIONS")]
    pub onnx_sessions: usize,
    /// Texts per ONNX session run (texts are sorted by length into batches of this size).
    #[arg(long, default_value_t = sentiflow_udfs::onnx::DEFAULT_BATCH_SIZE)]
    pub onnx_batch: usize,
    /// Score texts in every language. By default a text in a language the model does not read
    /// (its config.json `languages`; English for the lexicon) gets a NULL score and the reason:
    /// the record's `lang` field, else a confident detection, decides.
    #[arg(long, conflicts_with = "fallback")]
    pub any_language: bool,
    /// Where the texts the model refuses because of their language go: `llm` asks the chat
    /// model of the --llm-* options for them (and only them); every row's `scorer` column
    /// names who scored it.
    #[arg(long, value_enum, default_value_t = FallbackCli::None)]
    pub fallback: FallbackCli,
    #[command(flatten)]
    pub llm: LlmArgs,
}

/// The chat model behind `--scorer llm` and `generate --llm`.
#[derive(clap::Args, Debug, Clone)]
pub struct LlmArgs {
    /// OpenAI or any OpenAI-compatible server (llama.cpp, vLLM, Ollama: http://HOST:PORT/v1).
    #[arg(long, env = "SENTIFLOW_LLM_BASE_URL", default_value = "https://api.openai.com/v1")]
    pub llm_base_url: String,
    #[arg(long, env = "SENTIFLOW_LLM_MODEL", default_value = "gpt-4o-mini")]
    pub llm_model: String,
    /// Read the API key from this AWS Secrets Manager secret (plain, or JSON with api_key);
    /// otherwise from OPENAI_API_KEY or SENTIFLOW_LLM_API_KEY. Never logged.
    #[arg(long, env = "SENTIFLOW_LLM_API_KEY_SECRET")]
    pub api_key_secret: Option<String>,
    /// Per-request timeout.
    #[arg(long, default_value = "30s", value_parser = sentiflow_jobs::timeexpr::parse_duration)]
    pub llm_timeout: chrono::Duration,
    /// Retries of 429/5xx/timeouts (full-jitter backoff, Retry-After honoured).
    #[arg(long, default_value_t = 6)]
    pub llm_max_retries: u32,
    /// Requests in flight at most.
    #[arg(long, default_value_t = 8)]
    pub llm_concurrency: usize,
    /// Requests per minute at most.
    #[arg(long)]
    pub llm_rpm: Option<u32>,
    /// Tokens per minute at most (estimated from the prompt length plus --llm-max-tokens).
    #[arg(long)]
    pub llm_tpm: Option<u32>,
    /// Answer length cap for scoring (max_tokens).
    #[arg(long, default_value_t = 8)]
    pub llm_max_tokens: u32,
    /// Answer cache directory (local or s3://); default: <out>/_cache/llm for score, run and stream.
    #[arg(long)]
    pub llm_cache: Option<String>,
    /// Ask the model even for texts whose answer is cached.
    #[arg(long)]
    pub no_llm_cache: bool,
    /// USD per million prompt tokens for the cost estimate (default: list price of known models, else 0).
    #[arg(long)]
    pub llm_price_in: Option<f64>,
    /// USD per million completion tokens.
    #[arg(long)]
    pub llm_price_out: Option<f64>,
    /// Requests (retries included) the run may make at most; texts past it get a NULL score
    /// and "budget exhausted" as the reason, and a later run asks them.
    #[arg(long)]
    pub llm_max_requests: Option<u64>,
    /// Estimated USD (from --llm-price-in/--llm-price-out) the run may spend at most; the same
    /// rule as --llm-max-requests (requests in flight when it is reached still finish).
    #[arg(long)]
    pub llm_max_cost: Option<f64>,
}

impl LlmArgs {
    /// The chat model these options name (the API key is loaded when it is built).
    pub fn choice(&self) -> LlmChoice {
        let known = Prices::for_model(&self.llm_model);
        LlmChoice {
            options: LlmOptions {
                base_url: self.llm_base_url.clone(),
                model: self.llm_model.clone(),
                api_key: None,
                timeout: self.llm_timeout.to_std().unwrap_or(std::time::Duration::from_secs(30)),
                retry: RetryPolicy { max_retries: self.llm_max_retries, ..Default::default() },
                concurrency: self.llm_concurrency.max(1),
                requests_per_minute: self.llm_rpm,
                tokens_per_minute: self.llm_tpm,
                max_tokens: self.llm_max_tokens.max(1),
                cache: None,
                prices: Prices {
                    input_per_m: self.llm_price_in.unwrap_or(known.input_per_m),
                    output_per_m: self.llm_price_out.unwrap_or(known.output_per_m),
                },
                budget: Budget { max_requests: self.llm_max_requests, max_cost_usd: self.llm_max_cost },
            },
            api_key_secret: self.api_key_secret.clone(),
        }
    }

    pub async fn client(&self) -> Result<LlmClient> {
        Ok(llm_client(&self.choice()).await?)
    }
}

impl ScorerArgs {
    /// The scorer these options choose; `sentiflow_jobs::scorer` builds it.
    pub fn choice(&self) -> ScorerChoice {
        let kind = match self.scorer {
            ScorerCli::Lexicon => ScorerKind::Lexicon,
            ScorerCli::Onnx | ScorerCli::Llm => ScorerKind::Onnx(OnnxOptions {
                model_dir: self.model.clone().unwrap_or_else(default_model_dir),
                ort_lib: self.ort_lib.clone(),
                device: match self.device {
                    DeviceCli::Cpu => Device::Cpu,
                    DeviceCli::Cuda => Device::Cuda,
                },
                threads: self.onnx_threads,
                sessions: self.onnx_sessions,
                batch_size: self.onnx_batch.max(1),
            }),
        };
        let cache = match (&self.llm.llm_cache, self.llm.no_llm_cache) {
            (_, true) => LlmCache::Off,
            (Some(d), false) => LlmCache::Dir(d.clone()),
            (None, false) => LlmCache::Default,
        };
        if self.scorer == ScorerCli::Llm {
            return ScorerChoice::Llm { llm: self.llm.choice(), cache };
        }
        let fallback = match self.fallback {
            FallbackCli::None => None,
            FallbackCli::Llm => Some(LlmFallback { llm: self.llm.choice(), cache }),
        };
        ScorerChoice::Local { kind, any_language: self.any_language, fallback }
    }

    /// Loads the chosen scorer; `out_root` is the job's data root (the LLM's default answer cache).
    pub async fn build(&self, jc: &JobContext, out_root: Option<&str>) -> Result<JobScorer> {
        if self.scorer == ScorerCli::Llm && self.fallback == FallbackCli::Llm {
            anyhow::bail!(
                "--fallback llm takes the texts a local model refuses; --scorer llm already scores every text: drop --fallback"
            );
        }
        Ok(self.choice().build(&jc.stores, out_root).await?)
    }
}
