//! The LLM scorer and tweet generator: OpenAI or any OpenAI-compatible
//! server through async-openai, safe to run on a budget.
//!
//! One [`LlmClient`] owns the HTTP transport (an async-openai client whose
//! tower service retries 429/5xx/timeouts with full-jitter backoff and
//! honours `Retry-After`), a concurrency cap, a requests-/tokens-per-minute
//! limiter and the counters the job summary prints. The key is never logged.

pub mod cache;
pub mod fallback;
pub mod limiter;
pub mod udf;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use async_openai::types::chat::{
    ChatCompletionRequestMessage, ChatCompletionRequestUserMessage, CreateChatCompletionRequest,
};

use crate::io::retry::{Jitter, RetryPolicy};
use crate::{Error, Result};
use limiter::RateLimiter;

/// The scoring prompt: chat turns (`### system|user|assistant` sections), the
/// few-shot examples as user/assistant pairs; `{text}` is the post. Its
/// version is part of every cache key and of the `scorer` column.
pub const SCORE_PROMPT: &str = include_str!("../../prompts/score-v2.txt");
pub const SCORE_PROMPT_VERSION: &str = "score-v2";

/// A chat turn's author.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
}

/// Splits a prompt template into chat turns and puts `text` in.
pub fn prompt_messages(template: &str, text: &str) -> Vec<(Role, String)> {
    let mut out: Vec<(Role, String)> = Vec::new();
    for line in template.lines() {
        let role = match line.trim() {
            "### system" => Some(Role::System),
            "### user" => Some(Role::User),
            "### assistant" => Some(Role::Assistant),
            _ => None,
        };
        match (role, out.last_mut()) {
            (Some(r), _) => out.push((r, String::new())),
            (None, Some((_, body))) => {
                if !body.is_empty() {
                    body.push('\n');
                }
                body.push_str(line);
            }
            // text before any marker: a user turn
            (None, None) => out.push((Role::User, line.to_string())),
        }
    }
    for (_, body) in &mut out {
        *body = body.trim().replace("{text}", text);
    }
    out
}
/// The generator prompt.
pub const GENERATE_PROMPT: &str = include_str!("../../prompts/generate-v1.txt");

/// An API key: kept out of Debug output and logs.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(k: impl Into<String>) -> Self {
        ApiKey(k.into())
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// USD per million tokens, for the cost estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prices {
    pub input_per_m: f64,
    pub output_per_m: f64,
}

impl Prices {
    /// Known list prices (USD per million tokens); unknown models cost 0
    /// unless `--llm-price-in/--llm-price-out` say otherwise.
    pub fn for_model(model: &str) -> Prices {
        let (i, o) = match model {
            m if m.starts_with("gpt-4o-mini") => (0.15, 0.60),
            m if m.starts_with("gpt-4o") => (2.50, 10.00),
            m if m.starts_with("gpt-4.1-nano") => (0.10, 0.40),
            m if m.starts_with("gpt-4.1-mini") => (0.40, 1.60),
            m if m.starts_with("gpt-4.1") => (2.00, 8.00),
            _ => (0.0, 0.0),
        };
        Prices { input_per_m: i, output_per_m: o }
    }
}

#[derive(Debug, Clone)]
pub struct LlmOptions {
    /// OpenAI or any OpenAI-compatible server, e.g. `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    pub model: String,
    pub api_key: Option<ApiKey>,
    /// Per request (connect + answer).
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// Requests in flight at most.
    pub concurrency: usize,
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u32>,
    /// Answer length cap (`max_tokens`, which OpenAI-compatible servers honour).
    pub max_tokens: u32,
    /// Where answers are cached (a directory, local or s3://); None disables the cache.
    pub cache: Option<String>,
    pub prices: Prices,
    /// The run's budget: requests and estimated cost at most.
    pub budget: Budget,
}

/// What a run may spend on the model: HTTP requests (retries included) and
/// estimated USD. Checked before every request: once spent, a text gets
/// [`BUDGET_REASON`] without a request. The cost is known after an answer, so
/// requests already in flight (at most `--llm-concurrency`) may pass it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Budget {
    pub max_requests: Option<u64>,
    pub max_cost_usd: Option<f64>,
}

/// Start of the reason a text gets when the budget is spent.
pub const BUDGET_REASON: &str = "budget exhausted";

impl Budget {
    /// Takes one request from the budget, or says why not.
    fn take(&self, stats: &LlmStats, prices: Prices) -> std::result::Result<(), String> {
        if let Some(max) = self.max_cost_usd {
            let spent = stats.summary(prices).cost_usd;
            if spent >= max {
                return Err(format!("{BUDGET_REASON}: estimated cost ${spent:.4} reached --llm-max-cost {max}"));
            }
        }
        match self.max_requests {
            Some(max) => stats
                .requests
                .fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1))
                .map(|_| ())
                .map_err(|_| format!("{BUDGET_REASON}: {max} requests made (--llm-max-requests)")),
            None => {
                stats.requests.fetch_add(1, Relaxed);
                Ok(())
            }
        }
    }
}

impl Default for LlmOptions {
    fn default() -> Self {
        Self {
            base_url: "https://api.openai.com/v1".into(),
            model: "gpt-4o-mini".into(),
            api_key: None,
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            concurrency: 8,
            requests_per_minute: None,
            tokens_per_minute: None,
            max_tokens: 8,
            cache: None,
            prices: Prices::for_model("gpt-4o-mini"),
            budget: Budget::default(),
        }
    }
}

/// What the client did; printed by the job summary.
#[derive(Debug, Default)]
pub struct LlmStats {
    /// HTTP requests sent (retries included).
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub throttled: AtomicU64,
    /// Texts that got no score after the retries (or an unusable answer).
    pub failures: AtomicU64,
    pub cache_hits: AtomicU64,
    /// Of the failures: texts not asked because the budget was spent.
    pub over_budget: AtomicU64,
    /// Texts that repeated one earlier in the same batch (asked once).
    pub deduplicated: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub completion_tokens: AtomicU64,
}

/// A snapshot of [`LlmStats`] with the cost estimate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LlmSummary {
    pub requests: u64,
    pub retries: u64,
    pub throttled: u64,
    pub failures: u64,
    pub cache_hits: u64,
    pub over_budget: u64,
    pub deduplicated: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
}

impl LlmStats {
    pub fn summary(&self, prices: Prices) -> LlmSummary {
        let p = self.prompt_tokens.load(Relaxed);
        let c = self.completion_tokens.load(Relaxed);
        LlmSummary {
            requests: self.requests.load(Relaxed),
            retries: self.retries.load(Relaxed),
            throttled: self.throttled.load(Relaxed),
            failures: self.failures.load(Relaxed),
            cache_hits: self.cache_hits.load(Relaxed),
            over_budget: self.over_budget.load(Relaxed),
            deduplicated: self.deduplicated.load(Relaxed),
            prompt_tokens: p,
            completion_tokens: c,
            cost_usd: p as f64 / 1e6 * prices.input_per_m + c as f64 / 1e6 * prices.output_per_m,
        }
    }
}

/// An answer and its token counts.
#[derive(Debug, Clone)]
pub struct Answer {
    pub text: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// The client every LLM call goes through.
pub struct LlmClient {
    client: async_openai::Client<OpenAIConfig>,
    pub opts: LlmOptions,
    limiter: RateLimiter,
    slots: tokio::sync::Semaphore,
    pub stats: Arc<LlmStats>,
}

impl std::fmt::Debug for LlmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmClient").field("base_url", &self.opts.base_url).field("model", &self.opts.model).finish()
    }
}

/// Seconds (or an HTTP date) from `Retry-After`, or milliseconds from `retry-after-ms`.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    if let Some(ms) =
        headers.get("retry-after-ms").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<f64>().ok())
    {
        return Some(Duration::from_secs_f64(ms.max(0.0) / 1000.0));
    }
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().to_string();
    if let Ok(s) = v.parse::<f64>() {
        return Some(Duration::from_secs_f64(s.max(0.0)));
    }
    let when = chrono::DateTime::parse_from_rfc2822(&v).ok()?;
    (when.with_timezone(&chrono::Utc) - chrono::Utc::now()).to_std().ok()
}

impl LlmClient {
    pub fn new(opts: LlmOptions) -> Result<Self> {
        if opts.base_url.trim().is_empty() || opts.model.trim().is_empty() {
            return Err(Error::Option { option: "--llm-base-url/--llm-model", reason: "must not be empty".into() });
        }
        let key = match &opts.api_key {
            Some(k) => k.0.clone(),
            // OpenAI itself needs a key; local OpenAI-compatible servers usually do not
            None if opts.base_url.contains("api.openai.com") => {
                return Err(Error::Option {
                    option: "--api-key-secret",
                    reason: "no API key for api.openai.com: set OPENAI_API_KEY (or SENTIFLOW_LLM_API_KEY) or pass --api-key-secret ARN".into(),
                });
            }
            None => "none".into(),
        };
        let http = reqwest::Client::builder()
            .timeout(opts.timeout)
            .connect_timeout(opts.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| Error::Option {
                option: "--llm-base-url",
                reason: format!("cannot build the HTTP client: {e}"),
            })?;
        let stats = Arc::new(LlmStats::default());
        let (policy, jitter, st) = (opts.retry, Arc::new(Jitter::default()), stats.clone());
        let (budget, prices) = (opts.budget, opts.prices);
        // the transport: every attempt counted against the budget, 429/5xx/timeouts/connection errors retried
        let service = tower::service_fn(move |factory: HttpRequestFactory| {
            let (http, jitter, st) = (http.clone(), jitter.clone(), st.clone());
            async move {
                let mut retry = 0u32;
                loop {
                    budget.take(&st, prices).map_err(OpenAIError::InvalidArgument)?;
                    let request = factory.build().await?;
                    let (wait, last) = match http.execute(request).await {
                        Ok(resp) => {
                            let s = resp.status().as_u16();
                            if !(s == 429 || (500..600).contains(&s)) || retry >= policy.max_retries {
                                return Ok::<_, OpenAIError>(resp);
                            }
                            if s == 429 {
                                st.throttled.fetch_add(1, Relaxed);
                            }
                            (retry_after(resp.headers()).map(|d| policy.server_delay(d)), Ok(resp))
                        }
                        Err(e)
                            if (e.is_timeout() || e.is_connect() || e.is_request()) && retry < policy.max_retries =>
                        {
                            (None, Err(OpenAIError::Reqwest(e)))
                        }
                        Err(e) => return Err(OpenAIError::Reqwest(e)),
                    };
                    retry += 1;
                    st.retries.fetch_add(1, Relaxed);
                    let d = wait.unwrap_or_else(|| jitter.delay(&policy, retry));
                    let why = match &last {
                        Ok(r) => format!("HTTP {}", r.status().as_u16()),
                        Err(e) => e.to_string(),
                    };
                    tracing::debug!(retry, delay_ms = d.as_millis() as u64, reason = %why, "retrying LLM request");
                    tokio::time::sleep(d).await;
                }
            }
        });
        let config = OpenAIConfig::new().with_api_base(opts.base_url.trim_end_matches('/')).with_api_key(key);
        let client = async_openai::Client::with_config(config).with_http_service(service);
        Ok(Self {
            client,
            limiter: RateLimiter::new(opts.requests_per_minute, opts.tokens_per_minute),
            slots: tokio::sync::Semaphore::new(opts.concurrency.max(1)),
            opts,
            stats,
        })
    }

    /// One chat completion with a single user message.
    pub async fn ask(&self, prompt: String, max_tokens: u32, temperature: f32) -> std::result::Result<Answer, String> {
        self.chat(vec![(Role::User, prompt)], max_tokens, temperature).await
    }

    /// One chat completion.
    pub async fn chat(
        &self,
        turns: Vec<(Role, String)>,
        max_tokens: u32,
        temperature: f32,
    ) -> std::result::Result<Answer, String> {
        use async_openai::types::chat::{ChatCompletionRequestAssistantMessage, ChatCompletionRequestSystemMessage};
        // rough token estimate for the per-minute budget: ~4 characters a token
        let estimate = (turns.iter().map(|(_, t)| t.len()).sum::<usize>() / 4) as u32 + max_tokens;
        let messages = turns
            .into_iter()
            .map(|(role, text)| match role {
                Role::System => ChatCompletionRequestMessage::System(ChatCompletionRequestSystemMessage::from(text)),
                Role::User => ChatCompletionRequestMessage::User(ChatCompletionRequestUserMessage::from(text)),
                Role::Assistant => {
                    ChatCompletionRequestMessage::Assistant(ChatCompletionRequestAssistantMessage::from(text))
                }
            })
            .collect();
        self.limiter.acquire(estimate).await;
        let _slot = self.slots.acquire().await.map_err(|e| e.to_string())?;
        #[allow(deprecated)]
        let request = CreateChatCompletionRequest {
            model: self.opts.model.clone(),
            messages,
            temperature: Some(temperature),
            max_tokens: Some(max_tokens),
            ..Default::default()
        };
        let resp = self.client.chat().create(request).await.map_err(|e| match e {
            OpenAIError::ApiError(a) => format!("HTTP {}: {}", a.status_code.as_u16(), a.api_error.message),
            OpenAIError::Reqwest(r) if r.is_timeout() => format!("timed out after {:?}", self.opts.timeout),
            OpenAIError::JSONDeserialize(_, body) => {
                format!("the server's answer is not a chat completion: {}", excerpt(&body, 200))
            }
            // the transport's budget refusal, however the client wraps it
            other => {
                let m = other.to_string();
                m.find(BUDGET_REASON).map(|i| m[i..].to_string()).unwrap_or(m)
            }
        })?;
        if let Some(u) = &resp.usage {
            self.stats.prompt_tokens.fetch_add(u.prompt_tokens as u64, Relaxed);
            self.stats.completion_tokens.fetch_add(u.completion_tokens as u64, Relaxed);
        }
        let text = resp
            .choices
            .first()
            .and_then(|c| c.message.content.clone())
            .ok_or_else(|| "the answer has no message content".to_string())?;
        Ok(Answer {
            text,
            prompt_tokens: resp.usage.as_ref().map(|u| u.prompt_tokens as u64).unwrap_or(0),
            completion_tokens: resp.usage.as_ref().map(|u| u.completion_tokens as u64).unwrap_or(0),
        })
    }

    pub fn summary(&self) -> LlmSummary {
        self.stats.summary(self.opts.prices)
    }
}

/// The first `n` characters of `s`, on one line.
pub fn excerpt(s: &str, n: usize) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() <= n { one } else { format!("{}…", one.chars().take(n).collect::<String>()) }
}

/// The score in an answer: its first number, which must lie in -10..10
/// (not clamped: a 15 is a wrong answer, not a very positive one).
pub fn parse_score(answer: &str) -> std::result::Result<f64, String> {
    let s = answer.replace('\u{2212}', "-");
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let starts_number = b[i].is_ascii_digit()
            || ((b[i] == b'-' || b[i] == b'+') && b.get(i + 1).is_some_and(|c| c.is_ascii_digit() || *c == b'.'))
            || (b[i] == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit));
        if starts_number {
            let mut j = i + 1;
            while j < b.len()
                && (b[j].is_ascii_digit() || (b[j] == b'.' && b.get(j + 1).is_some_and(u8::is_ascii_digit)))
            {
                j += 1;
            }
            let v: f64 = s[i..j].parse().map_err(|_| format!("unparsable number {:?} in the answer", &s[i..j]))?;
            if !(-10.0..=10.0).contains(&v) {
                return Err(format!("answer {v} is outside -10..10: {:?}", excerpt(answer, 80)));
            }
            return Ok(v);
        }
        i += 1;
    }
    Err(format!("the answer has no number: {:?}", excerpt(answer, 80)))
}

/// Loads the API key: from AWS Secrets Manager when an ARN is given (the
/// secret string itself, or its `api_key`/`OPENAI_API_KEY` field when JSON),
/// else from `OPENAI_API_KEY` / `SENTIFLOW_LLM_API_KEY`.
pub async fn load_api_key(secret_arn: Option<&str>) -> Result<Option<ApiKey>> {
    if let Some(arn) = secret_arn {
        let client = aws_sdk_secretsmanager::Client::new(&crate::io::aws::sdk_config().await);
        let out = client.get_secret_value().secret_id(arn).send().await.map_err(|e| Error::Secret {
            secret: arn.to_string(),
            reason: crate::io::aws::classify(&e).message().to_string(),
        })?;
        let s = out.secret_string().ok_or_else(|| Error::Secret {
            secret: arn.to_string(),
            reason: "the secret has no string value".into(),
        })?;
        let key = match serde_json::from_str::<serde_json::Value>(s) {
            Ok(serde_json::Value::Object(m)) => m
                .get("api_key")
                .or_else(|| m.get("OPENAI_API_KEY"))
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .ok_or_else(|| Error::Secret {
                    secret: arn.to_string(),
                    reason: "JSON secret without an api_key field".into(),
                })?,
            _ => s.trim().to_string(),
        };
        return Ok(Some(ApiKey(key)));
    }
    Ok(std::env::var("SENTIFLOW_LLM_API_KEY")
        .or_else(|_| std::env::var("OPENAI_API_KEY"))
        .ok()
        .filter(|k| !k.trim().is_empty())
        .map(ApiKey))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_are_parsed_not_clamped() {
        assert_eq!(parse_score("7.5"), Ok(7.5));
        assert_eq!(parse_score(" Score: -3"), Ok(-3.0));
        assert_eq!(parse_score("\u{2212}2.25 (somewhat negative)"), Ok(-2.25));
        assert_eq!(parse_score("+10"), Ok(10.0));
        assert_eq!(parse_score(".5"), Ok(0.5));
        assert_eq!(parse_score("I'd say 4/10"), Ok(4.0));
        assert!(parse_score("15").unwrap_err().contains("outside -10..10"));
        assert!(parse_score("-10.5").unwrap_err().contains("outside"));
        assert!(parse_score("very positive!").unwrap_err().contains("no number"));
        assert!(parse_score("").is_err());
    }

    #[test]
    fn prompt_turns() {
        let m = prompt_messages(SCORE_PROMPT, "hello\nworld");
        assert_eq!(m[0].0, Role::System);
        assert_eq!(m.last().unwrap(), &(Role::User, "hello\nworld".to_string()));
        assert!(m.len() >= 4 && m.len().is_multiple_of(2), "system, pairs of examples, the post");
        assert!(m[1..m.len() - 1].chunks(2).all(|p| p[0].0 == Role::User && p[1].0 == Role::Assistant));
        assert_eq!(prompt_messages("just {text}", "x"), vec![(Role::User, "just x".to_string())]);
    }

    #[test]
    fn retry_after_forms() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", "150".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(150)));
        let mut h = reqwest::header::HeaderMap::new();
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        h.insert("retry-after", later.parse().unwrap());
        assert!(retry_after(&h).is_some_and(|d| d > Duration::from_secs(20) && d <= Duration::from_secs(30)));
    }

    #[test]
    fn keys_are_not_printed() {
        let o = LlmOptions { api_key: Some(ApiKey::new("sk-secret")), ..Default::default() };
        assert!(!format!("{o:?}").contains("sk-secret"));
        assert_eq!(Prices::for_model("gpt-4o-mini-2024-07-18").input_per_m, 0.15);
        assert_eq!(Prices::for_model("qwen2.5"), Prices { input_per_m: 0.0, output_per_m: 0.0 });
    }
}
