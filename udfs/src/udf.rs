//! DataFusion scalar UDFs over a [`Scorer`].
//!
//! | function | returns | bound to |
//! |---|---|---|
//! | `sentiment_<name>(text)` | DOUBLE score in [-1, 1] | that scorer (`sentiment_lexicon`, `sentiment_onnx`) |
//! | `sentiment(text)` | DOUBLE score in [-1, 1] | the selected scorer |
//! | `sentiment_label(text)` | VARCHAR `negative`/`neutral`/`positive` | the selected scorer |
//! | `sentiment_probs(text)` | STRUCT of one FLOAT per model label | the selected scorer, when it is a classifier |
//! | `score_sentiment(text)` | STRUCT<score, label, error> | the selected scorer (what `sql/score.sql` calls) |
//!
//! NULL in gives NULL out; an unscorable text gives NULL (and its reason in
//! `score_sentiment(text).error`), never a made-up score.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float32Builder, Float64Builder, StringBuilder, StructArray,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::{DataFusionError, Result as DfResult, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

use crate::{Outcome, SharedScorer};

/// The struct `score_sentiment` returns.
pub fn score_struct_type() -> DataType {
    DataType::Struct(score_struct_fields())
}

fn score_struct_fields() -> Fields {
    Fields::from(vec![
        Field::new("score", DataType::Float64, true),
        Field::new("label", DataType::Utf8, true),
        Field::new("error", DataType::Utf8, true),
    ])
}

/// Registers `sentiment_<name>(text)` for the scorer and, when `selected`,
/// also `sentiment`, `sentiment_label`, `score_sentiment` and (for a
/// classifier) `sentiment_probs` bound to it.
pub fn register_scorer_udfs(ctx: &SessionContext, scorer: SharedScorer, selected: bool) {
    let named = format!("sentiment_{}", scorer.name());
    ctx.register_udf(ScorerUdf::new(scorer.clone(), named, Output::Score).udf());
    if !selected {
        return;
    }
    ctx.register_udf(ScorerUdf::new(scorer.clone(), "sentiment".into(), Output::Score).udf());
    ctx.register_udf(ScorerUdf::new(scorer.clone(), "sentiment_label".into(), Output::Label).udf());
    ctx.register_udf(ScorerUdf::new(scorer.clone(), "score_sentiment".into(), Output::Struct).udf());
    if let Some(labels) = scorer.labels() {
        ctx.register_udf(ScorerUdf::new(scorer, "sentiment_probs".into(), Output::Probs(labels)).udf());
    } else {
        ctx.deregister_udf("sentiment_probs");
    }
}

/// What a scorer UDF returns.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Output {
    Score,
    Label,
    Struct,
    /// One Float32 field per label, in the model's order.
    Probs(Vec<String>),
}

/// A scalar UDF over a scorer.
#[derive(Debug)]
pub struct ScorerUdf {
    scorer: SharedScorer,
    name: String,
    output: Output,
    signature: Signature,
}

impl ScorerUdf {
    fn new(scorer: SharedScorer, name: String, output: Output) -> Self {
        Self { scorer, name, output, signature: Signature::string(1, Volatility::Immutable) }
    }

    fn udf(self) -> ScalarUDF {
        ScalarUDF::new_from_impl(self)
    }
}

impl PartialEq for ScorerUdf {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.output == other.output && Arc::ptr_eq(&self.scorer, &other.scorer)
    }
}
impl Eq for ScorerUdf {}
impl Hash for ScorerUdf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.output.hash(state);
        self.scorer.id().hash(state);
    }
}

/// The text argument, whichever string type it arrives as.
fn text_arg(args: &ScalarFunctionArgs) -> DfResult<ArrayRef> {
    let [arg] = args.args.as_slice() else {
        return exec_err!("sentiment functions take exactly one text argument");
    };
    arg.to_array(args.number_rows)
}

fn texts_of(array: &ArrayRef) -> DfResult<Vec<Option<&str>>> {
    Ok(match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().iter().collect(),
        DataType::LargeUtf8 => array.as_string::<i64>().iter().collect(),
        DataType::Utf8View => array.as_string_view().iter().collect(),
        DataType::Null => vec![None; array.len()],
        other => return exec_err!("sentiment functions take text, got {other}"),
    })
}

fn external(e: crate::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

impl ScalarUDFImpl for ScorerUdf {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(match &self.output {
            Output::Score => DataType::Float64,
            Output::Label => DataType::Utf8,
            Output::Struct => score_struct_type(),
            Output::Probs(labels) => DataType::Struct(probs_fields(labels)),
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let array = text_arg(&args)?;
        let texts = texts_of(&array)?;
        if let Output::Probs(labels) = &self.output {
            let Some(probs) = self.scorer.probabilities(&texts) else {
                return exec_err!("scorer {} has no class probabilities", self.scorer.id());
            };
            let probs = probs.map_err(external)?;
            return probs_array(labels, &probs);
        }
        let outcomes = self.scorer.score_batch(&texts).map_err(external)?;
        let n = outcomes.len();
        let mut scores = Float64Builder::with_capacity(n);
        let mut labels = StringBuilder::with_capacity(n, n * 8);
        let mut errors = StringBuilder::new();
        for o in &outcomes {
            match o {
                Outcome::Scored { score, label } => {
                    scores.append_value(*score);
                    labels.append_value(label.as_str());
                    errors.append_null();
                }
                Outcome::Unscorable(reason) => {
                    scores.append_null();
                    labels.append_null();
                    errors.append_value(reason);
                }
            }
        }
        let out: ArrayRef = match self.output {
            Output::Score => Arc::new(scores.finish()),
            Output::Label => Arc::new(labels.finish()),
            _ => Arc::new(StructArray::try_new(
                score_struct_fields(),
                vec![Arc::new(scores.finish()), Arc::new(labels.finish()), Arc::new(errors.finish())],
                None,
            )?),
        };
        Ok(ColumnarValue::Array(out))
    }
}

fn probs_fields(labels: &[String]) -> Fields {
    labels.iter().map(|l| Field::new(l.to_lowercase(), DataType::Float32, true)).collect()
}

/// A struct array of per-label probabilities; NULL rows where the text was.
fn probs_array(labels: &[String], probs: &[Option<Vec<f32>>]) -> DfResult<ColumnarValue> {
    let columns: Vec<ArrayRef> = (0..labels.len())
        .map(|c| {
            let mut b = Float32Builder::with_capacity(probs.len());
            for p in probs {
                b.append_option(p.as_ref().map(|p| p[c]));
            }
            Arc::new(b.finish()) as ArrayRef
        })
        .collect();
    let nulls = NullBuffer::from(probs.iter().map(Option::is_some).collect::<Vec<_>>());
    Ok(ColumnarValue::Array(Arc::new(StructArray::try_new(probs_fields(labels), columns, Some(nulls))?)))
}
