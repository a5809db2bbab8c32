//! `--fallback llm`: the selected local scorer scores every text it reads;
//! the texts it refuses because of their language go to the LLM scorer, in
//! the same query. `score_sentiment`, `sentiment` and `sentiment_label` are
//! bound to one async UDF that routes: the local model runs on the whole
//! batch, and only its language refusals are asked of the LLM (none asked: no
//! request, no wait). Each row's `scorer` names who answered and
//! `fallback_reason` why it went to the fallback.
//!
//! The LLM's answers keep its rules: -10..10 divided by 10, its labels from
//! [`super::udf::label_of`], NULL and the reason when it gives no usable
//! answer (down, timed out, over budget), never a made-up score.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result as DfResult, exec_err};
use datafusion::logical_expr::async_udf::{AsyncScalarUDF, AsyncScalarUDFImpl};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use datafusion::prelude::SessionContext;
use sentiflow_udfs::{
    GatedScorer, Outcome, ScoreColumn, ScoreResults, SharedScorer, array_present, register_scorer_udfs, text_args,
    texts_and_langs,
};

use super::udf::{LlmScorer, label_of};

/// A local scorer with the LLM scorer for the texts it does not read.
#[derive(Debug)]
pub struct FallbackScorer {
    pub primary: GatedScorer,
    pub llm: Arc<LlmScorer>,
}

impl FallbackScorer {
    pub fn new(primary: SharedScorer, llm: Arc<LlmScorer>) -> Self {
        Self { primary: GatedScorer::new(primary), llm }
    }

    /// The local scorer's id (the run's scorer; the fallback's rows name the LLM).
    pub fn id(&self) -> &str {
        self.primary.scorer().id()
    }
}

/// Which column a routing UDF returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Output {
    Score,
    Label,
    Struct,
}

#[derive(Debug)]
struct FallbackUdf {
    scorer: Arc<FallbackScorer>,
    name: &'static str,
    output: Output,
    signature: Signature,
}

impl PartialEq for FallbackUdf {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name && Arc::ptr_eq(&self.scorer, &o.scorer)
    }
}
impl Eq for FallbackUdf {}
impl Hash for FallbackUdf {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.name.hash(h);
        self.scorer.id().hash(h);
    }
}

impl ScalarUDFImpl for FallbackUdf {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(match self.output {
            Output::Score => DataType::Float64,
            Output::Label => DataType::Utf8,
            Output::Struct => sentiflow_udfs::score_struct_type(),
        })
    }
    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        exec_err!("{} is async: DataFusion calls invoke_async_with_args", self.name)
    }
}

#[async_trait::async_trait]
impl AsyncScalarUDFImpl for FallbackUdf {
    // the whole batch: the local model batches it itself, the LLM only sees the refused rows
    fn ideal_batch_size(&self) -> Option<usize> {
        None
    }

    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let (array, lang_array) = text_args(&args)?;
        let (texts, langs) = texts_and_langs(&array, lang_array.as_ref())?;
        let primary = &self.scorer.primary;
        // on this task, as DataFusion runs the local scorer's own (sync) UDFs
        let (outcomes, refused) =
            primary.outcomes(&texts, &langs).map_err(|e| DataFusionError::External(Box::new(e)))?;
        let asked: Vec<Option<&str>> = texts.iter().zip(&refused).filter(|(_, r)| **r).map(|(t, _)| *t).collect();
        let mut answers =
            if asked.is_empty() { Vec::new() } else { self.scorer.llm.score_texts(&asked).await }.into_iter();
        let llm_id = self.scorer.llm.id();
        let mut results = ScoreResults::with_capacity(texts.len());
        for ((o, present), r) in outcomes.iter().zip(array_present(&array)).zip(&refused) {
            match (r, o) {
                (true, Outcome::Unscorable(why)) => match answers.next().flatten() {
                    Some(Ok(v)) => results.push_routed(Ok((v / 10.0, label_of(v))), llm_id, why),
                    Some(Err(e)) => results.push_routed(Err(&e), llm_id, why),
                    None => results.push_null(),
                },
                _ => results.push_outcome(present, o),
            }
        }
        let out = results.finish(match self.output {
            Output::Score => ScoreColumn::Score,
            Output::Label => ScoreColumn::Label,
            Output::Struct => ScoreColumn::Struct,
        })?;
        Ok(ColumnarValue::Array(out))
    }
}

/// Registers the local scorer's UDFs (`sentiment_<name>`, `sentiment_probs`)
/// and binds `sentiment`, `sentiment_label` and `score_sentiment` to the
/// routing UDF; `sentiment_llm` asks the LLM alone.
pub fn register_fallback_udfs(ctx: &SessionContext, scorer: Arc<FallbackScorer>) {
    super::udf::register_llm_udfs(ctx, scorer.llm.clone());
    register_scorer_udfs(ctx, scorer.primary.scorer().clone(), true);
    for (name, output) in
        [("sentiment", Output::Score), ("sentiment_label", Output::Label), ("score_sentiment", Output::Struct)]
    {
        let udf = FallbackUdf {
            scorer: scorer.clone(),
            name,
            output,
            signature: Signature::one_of(
                vec![TypeSignature::String(1), TypeSignature::String(2)],
                Volatility::Volatile,
            ),
        };
        ctx.register_udf(AsyncScalarUDF::new(Arc::new(udf)).into_scalar_udf());
    }
}
