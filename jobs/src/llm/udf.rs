//! The LLM scorer as async DataFusion UDFs (`AsyncScalarUDFImpl`: the
//! requests run on the query's runtime, never `block_on`):
//!
//! | function | returns |
//! |---|---|
//! | `sentiment_llm(text)` | DOUBLE, the model's -10..10 score |
//! | `sentiment(text)` | DOUBLE in [-1, 1] (score / 10), like the other scorers |
//! | `sentiment_label(text)` | `negative` (< -1), `neutral`, `positive` (> 1) |
//! | `score_sentiment(text)` | STRUCT<score, label, error>, what `sql/score.sql` calls |
//!
//! A text that gets no usable answer after the retries is NULL with the
//! reason in `error`; never 0.0. Identical texts in a batch are asked once,
//! and answers are cached (see [`super::cache`]).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result as DfResult, exec_err};
use datafusion::logical_expr::async_udf::{AsyncScalarUDF, AsyncScalarUDFImpl};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use sentiflow_udfs::{ScoreColumn, ScoreResults};

use super::cache::{AnswerCache, Cached, text_key};
use super::{BUDGET_REASON, LlmClient, SCORE_PROMPT, SCORE_PROMPT_VERSION, parse_score};

/// The LLM scorer: a client, the prompt and the answer cache.
pub struct LlmScorer {
    pub client: LlmClient,
    cache: Option<AnswerCache>,
    id: String,
}

impl std::fmt::Debug for LlmScorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmScorer").field("id", &self.id).finish()
    }
}

/// What one text got: its -10..10 score, or why it has none.
pub type Outcome = std::result::Result<f64, String>;

/// Label of a -10..10 score.
pub fn label_of(score: f64) -> &'static str {
    if score < -1.0 {
        "negative"
    } else if score > 1.0 {
        "positive"
    } else {
        "neutral"
    }
}

impl LlmScorer {
    pub fn new(client: LlmClient, cache: Option<AnswerCache>) -> Self {
        let id = format!("llm:{}@{}", client.opts.model, SCORE_PROMPT_VERSION);
        Self { client, cache, id }
    }

    /// Written to the `scorer` column: model and prompt version.
    pub fn id(&self) -> &str {
        &self.id
    }

    async fn score_one(&self, text: &str) -> Outcome {
        let key = text_key(text);
        if let Some(c) = &self.cache {
            match c.get(&key).await {
                Ok(Some(hit)) => {
                    self.client.stats.cache_hits.fetch_add(1, Relaxed);
                    return Ok(hit.score);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "LLM cache unreadable; asking the model"),
            }
        }
        let turns = super::prompt_messages(SCORE_PROMPT, &text.replace('\n', " "));
        let outcome = match self.client.chat(turns, self.client.opts.max_tokens, 0.0).await {
            Ok(a) => parse_score(&a.text).map(|s| (s, a.text)),
            Err(e) => Err(e),
        };
        match outcome {
            Ok((score, answer)) => {
                if let Some(c) = &self.cache
                    && let Err(e) = c.put(&key, &Cached { score, answer }).await
                {
                    tracing::warn!(error = %e, "LLM answer not cached");
                }
                Ok(score)
            }
            Err(reason) => {
                self.client.stats.failures.fetch_add(1, Relaxed);
                if reason.starts_with(BUDGET_REASON) {
                    // said once: every later text gets the same reason
                    if self.client.stats.over_budget.fetch_add(1, Relaxed) == 0 {
                        tracing::warn!(reason = %reason, "LLM budget spent: the remaining texts get no score");
                    }
                } else {
                    tracing::warn!(reason = %reason, "text not scored by the LLM");
                }
                Err(format!("llm: {reason}"))
            }
        }
    }

    /// Scores a column of texts: NULL → NULL (no error), empty → error, identical texts asked once.
    pub async fn score_texts(&self, texts: &[Option<&str>]) -> Vec<Option<Outcome>> {
        let mut unique: HashMap<&str, usize> = HashMap::new();
        let mut order: Vec<&str> = Vec::new();
        for t in texts.iter().flatten() {
            if t.trim().is_empty() {
                continue;
            }
            if unique.contains_key(t) {
                self.client.stats.deduplicated.fetch_add(1, Relaxed);
            } else {
                unique.insert(t, order.len());
                order.push(t);
            }
        }
        let width = self.client.opts.concurrency.max(1);
        let mut results: Vec<Option<Outcome>> = vec![None; order.len()];
        let owned: Vec<(usize, String)> = order.iter().map(|t| t.to_string()).enumerate().collect();
        let mut stream = futures::stream::iter(owned)
            .map(|(i, t): (usize, String)| async move { (i, self.score_one(&t).await) })
            .buffer_unordered(width);
        while let Some((i, r)) = stream.next().await {
            results[i] = Some(r);
        }
        texts
            .iter()
            .map(|t| match t {
                None => None,
                Some(t) if t.trim().is_empty() => Some(Err("text is empty".to_string())),
                Some(t) => results[unique[t]].clone(),
            })
            .collect()
    }
}

/// What a UDF returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Output {
    Raw,
    Normalized,
    Label,
    Struct,
}

/// One of the LLM UDFs.
#[derive(Debug)]
pub struct LlmUdf {
    scorer: Arc<LlmScorer>,
    name: String,
    output: Output,
    signature: Signature,
}

impl PartialEq for LlmUdf {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name && self.output == o.output && Arc::ptr_eq(&self.scorer, &o.scorer)
    }
}
impl Eq for LlmUdf {}
impl Hash for LlmUdf {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.name.hash(h);
        self.output.hash(h);
        self.scorer.id.hash(h);
    }
}

impl ScalarUDFImpl for LlmUdf {
    fn name(&self) -> &str {
        &self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(match self.output {
            Output::Raw | Output::Normalized => DataType::Float64,
            Output::Label => DataType::Utf8,
            Output::Struct => sentiflow_udfs::score_struct_type(),
        })
    }
    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        exec_err!("{} is async: DataFusion calls invoke_async_with_args", self.name)
    }
}

#[async_trait::async_trait]
impl AsyncScalarUDFImpl for LlmUdf {
    fn ideal_batch_size(&self) -> Option<usize> {
        Some(256)
    }

    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        // an optional second argument (the record's language) is accepted, as the
        // local scorers' UDFs take it, and not used: a chat model reads any language
        let arr = match &args.args[..] {
            [a] | [a, _] => a.clone().into_array(n)?,
            _ => return exec_err!("{} takes a text and optionally its language", self.name),
        };
        let arr = cast(&arr, &DataType::Utf8)?;
        let s = arr.as_any().downcast_ref::<datafusion::arrow::array::StringArray>().ok_or_else(|| {
            datafusion::error::DataFusionError::Execution(format!("{}: text column is not a string", self.name))
        })?;
        let texts: Vec<Option<&str>> = s.iter().collect();
        let outcomes = self.scorer.score_texts(&texts).await;
        // the same builder and NULL rule as the local scorers' UDFs
        let div = if self.output == Output::Raw { 1.0 } else { 10.0 };
        let mut results = ScoreResults::with_capacity(n);
        for o in &outcomes {
            match o {
                None => results.push_null(),
                Some(Ok(v)) => results.push_scored(v / div, label_of(*v)),
                Some(Err(e)) => results.push_unscorable(e),
            }
        }
        let out = results.finish(match self.output {
            Output::Raw | Output::Normalized => ScoreColumn::Score,
            Output::Label => ScoreColumn::Label,
            Output::Struct => ScoreColumn::Struct,
        })?;
        Ok(ColumnarValue::Array(out))
    }
}

/// Registers `sentiment_llm`, and binds `sentiment`, `sentiment_label` and
/// `score_sentiment` to the LLM (there are no per-class probabilities).
pub fn register_llm_udfs(ctx: &SessionContext, scorer: Arc<LlmScorer>) {
    for (name, output) in [
        ("sentiment_llm", Output::Raw),
        ("sentiment", Output::Normalized),
        ("sentiment_label", Output::Label),
        ("score_sentiment", Output::Struct),
    ] {
        let udf = LlmUdf {
            scorer: scorer.clone(),
            name: name.into(),
            output,
            signature: Signature::one_of(
                vec![TypeSignature::String(1), TypeSignature::String(2)],
                Volatility::Volatile,
            ),
        };
        ctx.register_udf(AsyncScalarUDF::new(Arc::new(udf)).into_scalar_udf());
    }
    ctx.deregister_udf("sentiment_probs");
}
