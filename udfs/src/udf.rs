//! DataFusion scalar UDFs over a [`Scorer`].

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Builder, StringBuilder, StructArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::{DataFusionError, Result as DfResult, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

use crate::{Outcome, SharedScorer};

/// The struct `score_sentiment` returns.
pub fn score_struct_type() -> DataType {
    DataType::Struct(Fields::from(vec![
        Field::new("score", DataType::Float64, true),
        Field::new("label", DataType::Utf8, true),
        Field::new("error", DataType::Utf8, true),
    ]))
}

/// Registers `sentiment_<name>(text) -> DOUBLE` for the scorer and, when
/// `selected`, also `score_sentiment(text) -> STRUCT` bound to it.
pub fn register_scorer_udfs(ctx: &SessionContext, scorer: SharedScorer, selected: bool) {
    ctx.register_udf(ScalarUDF::new_from_impl(ScorerFloatUdf::new(scorer.clone())));
    if selected {
        ctx.register_udf(ScalarUDF::new_from_impl(ScoreSentimentUdf::new(scorer)));
    }
}

/// Runs the scorer over a text argument, whichever string type it arrives as.
fn score_arg(scorer: &SharedScorer, args: &ScalarFunctionArgs) -> DfResult<Vec<Outcome>> {
    let [arg] = args.args.as_slice() else {
        return exec_err!("sentiment functions take exactly one text argument");
    };
    let array: ArrayRef = arg.to_array(args.number_rows)?;
    let texts: Vec<Option<&str>> = match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().iter().collect(),
        DataType::LargeUtf8 => array.as_string::<i64>().iter().collect(),
        DataType::Utf8View => array.as_string_view().iter().collect(),
        DataType::Null => vec![None; array.len()],
        other => return exec_err!("sentiment functions take text, got {other}"),
    };
    scorer
        .score_batch(&texts)
        .map_err(|e| DataFusionError::External(Box::new(e)))
}

fn scorer_eq(a: &SharedScorer, b: &SharedScorer) -> bool {
    a.id() == b.id() && Arc::ptr_eq(a, b)
}

/// `sentiment_<name>(text) -> DOUBLE`: the score in [-1, 1], NULL when unscorable.
#[derive(Debug)]
pub struct ScorerFloatUdf {
    scorer: SharedScorer,
    name: String,
    signature: Signature,
}

impl ScorerFloatUdf {
    pub fn new(scorer: SharedScorer) -> Self {
        let name = format!("sentiment_{}", scorer.name());
        Self { scorer, name, signature: Signature::string(1, Volatility::Immutable) }
    }
}

impl PartialEq for ScorerFloatUdf {
    fn eq(&self, other: &Self) -> bool {
        scorer_eq(&self.scorer, &other.scorer)
    }
}
impl Eq for ScorerFloatUdf {}
impl Hash for ScorerFloatUdf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.scorer.id().hash(state);
    }
}

impl ScalarUDFImpl for ScorerFloatUdf {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let outcomes = score_arg(&self.scorer, &args)?;
        let mut b = Float64Builder::with_capacity(outcomes.len());
        for o in &outcomes {
            match o {
                Outcome::Scored { score, .. } => b.append_value(*score),
                Outcome::Unscorable(_) => b.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(b.finish())))
    }
}

/// `score_sentiment(text) -> STRUCT<score, label, error>` bound to the selected scorer.
#[derive(Debug)]
pub struct ScoreSentimentUdf {
    scorer: SharedScorer,
    signature: Signature,
}

impl ScoreSentimentUdf {
    pub fn new(scorer: SharedScorer) -> Self {
        Self { scorer, signature: Signature::string(1, Volatility::Immutable) }
    }
}

impl PartialEq for ScoreSentimentUdf {
    fn eq(&self, other: &Self) -> bool {
        scorer_eq(&self.scorer, &other.scorer)
    }
}
impl Eq for ScoreSentimentUdf {}
impl Hash for ScoreSentimentUdf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        "score_sentiment".hash(state);
        self.scorer.id().hash(state);
    }
}

impl ScalarUDFImpl for ScoreSentimentUdf {
    fn name(&self) -> &str {
        "score_sentiment"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(score_struct_type())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let outcomes = score_arg(&self.scorer, &args)?;
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
        let DataType::Struct(fields) = score_struct_type() else {
            unreachable!("score_struct_type is a struct")
        };
        let arrays: Vec<ArrayRef> =
            vec![Arc::new(scores.finish()), Arc::new(labels.finish()), Arc::new(errors.finish())];
        Ok(ColumnarValue::Array(Arc::new(StructArray::try_new(fields, arrays, None)?)))
    }
}
