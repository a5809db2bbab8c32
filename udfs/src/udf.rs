//! DataFusion scalar UDFs over a [`Scorer`].
//!
//! | function | returns | bound to |
//! |---|---|---|
//! | `sentiment_<name>(text)` | DOUBLE score in [-1, 1] | that scorer (`sentiment_lexicon`, `sentiment_onnx`) |
//! | `sentiment(text)` | DOUBLE score in [-1, 1] | the selected scorer |
//! | `sentiment_label(text)` | VARCHAR `negative`/`neutral`/`positive` | the selected scorer |
//! | `sentiment_probs(text)` | STRUCT of one FLOAT per model label | the selected scorer, when it is a classifier |
//! | `score_sentiment(text)` | STRUCT<score, label, error, scorer, fallback_reason> | the selected scorer (what `sql/score.sql` calls) |
//!
//! Every function also takes the record's language as an optional second
//! argument (`score_sentiment(text, lang)`, as `sql/score.sql` calls it).
//!
//! One NULL rule for every scorer, local or LLM, kept by [`ScoreResults`]:
//! a NULL text gives NULL from every function (`score_sentiment` returns a
//! NULL struct); an unscorable text gives a NULL score and label and its
//! reason in `score_sentiment(text).error`, never a made-up score. Empty and
//! content-free texts are the scorers' own to refuse ([`crate::text::unreadable`]);
//! here, before a scorer sees a text, the same for every output, a text in a
//! language the scorer does not read ([`crate::Scorer::languages`]) is made
//! unscorable with the language and the model named (see [`crate::text`]).
//!
//! `score_sentiment`'s `scorer` names the fallback scorer on the rows it
//! answered (`--fallback`), and is NULL on the rest: those are the selected
//! scorer's, which `sql/score.sql` names once (no id copied into every row);
//! `fallback_reason` is why a row went to the fallback (NULL otherwise).

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float32Builder, Float64Builder, StringBuilder, StructArray};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::{DataFusionError, Result as DfResult, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use datafusion::prelude::SessionContext;

use crate::text::{LanguageGate, unreadable};
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
        Field::new("scorer", DataType::Utf8, true),
        Field::new("fallback_reason", DataType::Utf8, true),
    ])
}

/// Which column a scoring UDF returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreColumn {
    Score,
    Label,
    /// `STRUCT<score, label, error>`.
    Struct,
}

/// The one result builder of every scoring UDF (this crate's and the LLM's):
/// one row per input text, with the NULL rule of the module doc.
pub struct ScoreResults {
    scores: Float64Builder,
    labels: StringBuilder,
    errors: StringBuilder,
    /// The fallback scorer's id on the rows it answered; NULL elsewhere.
    scorers: StringBuilder,
    reasons: StringBuilder,
    present: Vec<bool>,
}

impl ScoreResults {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            scores: Float64Builder::with_capacity(n),
            labels: StringBuilder::with_capacity(n, n * 8),
            errors: StringBuilder::new(),
            scorers: StringBuilder::new(),
            reasons: StringBuilder::new(),
            present: Vec::with_capacity(n),
        }
    }

    /// A NULL text: NULL everywhere, the struct included.
    pub fn push_null(&mut self) {
        self.scores.append_null();
        self.labels.append_null();
        self.errors.append_null();
        self.scorers.append_null();
        self.reasons.append_null();
        self.present.push(false);
    }

    pub fn push_scored(&mut self, score: f64, label: &str) {
        self.scores.append_value(score);
        self.labels.append_value(label);
        self.errors.append_null();
        self.scorers.append_null();
        self.reasons.append_null();
        self.present.push(true);
    }

    /// A text that cannot be scored: NULL score and label, the reason in `error`.
    pub fn push_unscorable(&mut self, reason: &str) {
        self.scores.append_null();
        self.labels.append_null();
        self.errors.append_value(reason);
        self.scorers.append_null();
        self.reasons.append_null();
        self.present.push(true);
    }

    /// A local scorer's answer for a text (`None`: the text was NULL).
    pub fn push_outcome(&mut self, text_present: bool, outcome: &Outcome) {
        match (text_present, outcome) {
            (false, _) => self.push_null(),
            (true, Outcome::Scored { score, label }) => self.push_scored(*score, label.as_str()),
            (true, Outcome::Unscorable(reason)) => self.push_unscorable(reason),
        }
    }

    /// A row the selected scorer refused (`why`) and the fallback scorer `scorer`
    /// answered: a score and label, or the reason it could not.
    pub fn push_routed(&mut self, answer: Result<(f64, &str), &str>, scorer: &str, why: &str) {
        match answer {
            Ok((score, label)) => {
                self.scores.append_value(score);
                self.labels.append_value(label);
                self.errors.append_null();
            }
            Err(reason) => {
                self.scores.append_null();
                self.labels.append_null();
                self.errors.append_value(reason);
            }
        }
        self.scorers.append_value(scorer);
        self.reasons.append_value(why);
        self.present.push(true);
    }

    pub fn finish(mut self, column: ScoreColumn) -> DfResult<ArrayRef> {
        Ok(match column {
            ScoreColumn::Score => Arc::new(self.scores.finish()),
            ScoreColumn::Label => Arc::new(self.labels.finish()),
            ScoreColumn::Struct => Arc::new(StructArray::try_new(
                score_struct_fields(),
                vec![
                    Arc::new(self.scores.finish()),
                    Arc::new(self.labels.finish()),
                    Arc::new(self.errors.finish()),
                    Arc::new(self.scorers.finish()),
                    Arc::new(self.reasons.finish()),
                ],
                Some(NullBuffer::from(self.present)),
            )?),
        })
    }
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

/// A scorer behind the language check: what every scoring UDF asks, and
/// what a fallback routes on.
#[derive(Debug, Clone)]
pub struct GatedScorer {
    scorer: SharedScorer,
    gate: Option<LanguageGate>,
}

impl GatedScorer {
    pub fn new(scorer: SharedScorer) -> Self {
        let gate = scorer.languages().map(|l| LanguageGate::new(&l, scorer.id()));
        Self { scorer, gate }
    }

    pub fn scorer(&self) -> &SharedScorer {
        &self.scorer
    }

    /// Why a text is not handed to the scorer, if it is not: a language the
    /// scorer does not read. Unreadable texts go on, for the scorer's own reason.
    fn refusal(&self, text: Option<&str>, lang: Option<&str>) -> Option<String> {
        let text = text.filter(|t| unreadable(t).is_none())?;
        self.gate.as_ref()?.check(text, lang)
    }

    /// The texts the scorer is handed (the refused ones as NULL), the
    /// refusals, and whether each text was refused.
    #[allow(clippy::type_complexity)]
    fn gate<'a>(
        &self,
        texts: &[Option<&'a str>],
        langs: &[Option<&str>],
    ) -> (Vec<Option<&'a str>>, Vec<Option<String>>, Vec<bool>) {
        let refused: Vec<Option<String>> = texts.iter().zip(langs).map(|(t, l)| self.refusal(*t, *l)).collect();
        let mask: Vec<bool> = refused.iter().map(Option::is_some).collect();
        let handed = texts.iter().zip(&mask).map(|(t, r)| if *r { None } else { *t }).collect();
        (handed, refused, mask)
    }

    /// One outcome per text (`langs`: the records' language, or `None`s). A
    /// text in a language the scorer does not read is `Unscorable` with the
    /// language reason, and its flag in the second vector is set: a fallback
    /// scorer takes exactly those.
    pub fn outcomes(&self, texts: &[Option<&str>], langs: &[Option<&str>]) -> crate::Result<(Vec<Outcome>, Vec<bool>)> {
        let (handed, refused, mask) = self.gate(texts, langs);
        let mut outcomes = self.scorer.score_batch(&handed)?;
        for (o, r) in outcomes.iter_mut().zip(refused) {
            if let Some(reason) = r {
                *o = Outcome::Unscorable(reason);
            }
        }
        Ok((outcomes, mask))
    }

    /// A classifier's probabilities, NULL for refused texts.
    fn probabilities(
        &self,
        texts: &[Option<&str>],
        langs: &[Option<&str>],
    ) -> Option<crate::Result<Vec<Option<Vec<f32>>>>> {
        let (handed, _, _) = self.gate(texts, langs);
        self.scorer.probabilities(&handed)
    }
}

/// A scalar UDF over a scorer.
#[derive(Debug)]
pub struct ScorerUdf {
    scorer: SharedScorer,
    name: String,
    output: Output,
    signature: Signature,
    gated: GatedScorer,
}

impl ScorerUdf {
    fn new(scorer: SharedScorer, name: String, output: Output) -> Self {
        let signature =
            Signature::one_of(vec![TypeSignature::String(1), TypeSignature::String(2)], Volatility::Immutable);
        Self { gated: GatedScorer::new(scorer.clone()), scorer, name, output, signature }
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

/// The text argument and the optional language argument, whichever string
/// type they arrive as.
pub fn text_args(args: &ScalarFunctionArgs) -> DfResult<(ArrayRef, Option<ArrayRef>)> {
    match args.args.as_slice() {
        [text] => Ok((text.to_array(args.number_rows)?, None)),
        [text, lang] => Ok((text.to_array(args.number_rows)?, Some(lang.to_array(args.number_rows)?))),
        _ => exec_err!("sentiment functions take a text and optionally its language"),
    }
}

/// The texts and languages of [`text_args`]' arrays (no language argument: `None`s).
#[allow(clippy::type_complexity)]
pub fn texts_and_langs<'a>(
    text: &'a ArrayRef,
    lang: Option<&'a ArrayRef>,
) -> DfResult<(Vec<Option<&'a str>>, Vec<Option<&'a str>>)> {
    let texts = texts_of(text)?;
    let langs = match lang {
        Some(a) => texts_of(a)?,
        None => vec![None; texts.len()],
    };
    Ok((texts, langs))
}

pub fn texts_of(array: &ArrayRef) -> DfResult<Vec<Option<&str>>> {
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
        let (array, lang_array) = text_args(&args)?;
        let (texts, langs) = texts_and_langs(&array, lang_array.as_ref())?;
        if let Output::Probs(labels) = &self.output {
            let Some(probs) = self.gated.probabilities(&texts, &langs) else {
                return exec_err!("scorer {} has no class probabilities", self.scorer.id());
            };
            let probs = probs.map_err(external)?;
            return probs_array(labels, &probs);
        }
        let (outcomes, _) = self.gated.outcomes(&texts, &langs).map_err(external)?;
        let mut results = ScoreResults::with_capacity(outcomes.len());
        for (o, present) in outcomes.iter().zip(array_present(&array)) {
            results.push_outcome(present, o);
        }
        let out = results.finish(match self.output {
            Output::Score => ScoreColumn::Score,
            Output::Label => ScoreColumn::Label,
            _ => ScoreColumn::Struct,
        })?;
        Ok(ColumnarValue::Array(out))
    }
}

/// Which rows of the text argument are not NULL.
pub fn array_present(array: &ArrayRef) -> Vec<bool> {
    (0..array.len()).map(|i| array.is_valid(i)).collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Float64Array, StringArray};

    /// The NULL rule every scoring UDF shares (the LLM's uses the same builder).
    #[test]
    fn one_null_rule() {
        let again = || {
            let mut r = ScoreResults::with_capacity(3);
            r.push_null();
            r.push_scored(0.5, "positive");
            r.push_unscorable("text is empty");
            r
        };
        let st = again().finish(ScoreColumn::Struct).unwrap();
        let st = st.as_struct();
        assert!(st.is_null(0), "NULL text: a NULL struct");
        assert!(st.is_valid(1) && st.is_valid(2));
        let err = st.column(2).as_any().downcast_ref::<StringArray>().unwrap();
        assert!(err.is_null(1));
        assert_eq!(err.value(2), "text is empty");
        let score = again().finish(ScoreColumn::Score).unwrap();
        let score = score.as_any().downcast_ref::<Float64Array>().unwrap();
        assert!(score.is_null(0) && score.value(1) == 0.5 && score.is_null(2));
        let label = again().finish(ScoreColumn::Label).unwrap();
        let label = label.as_any().downcast_ref::<StringArray>().unwrap();
        assert!(label.is_null(0) && label.value(1) == "positive" && label.is_null(2));
    }
}

/// `sentiflow_scorer()`: the id of the scorer this process bound the UDFs to.
/// Volatile, so a cluster evaluates it on an executor, not while planning:
/// a client checks with it that the executors run the scorer it names.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ScorerIdUdf {
    id: String,
    signature: Signature,
}

/// Name of [`ScorerIdUdf`].
pub const SCORER_ID_UDF: &str = "sentiflow_scorer";

impl ScorerIdUdf {
    pub fn udf(id: impl Into<String>) -> ScalarUDF {
        ScalarUDF::new_from_impl(Self { id: id.into(), signature: Signature::nullary(Volatility::Volatile) })
    }
}

impl ScalarUDFImpl for ScorerIdUdf {
    fn name(&self) -> &str {
        SCORER_ID_UDF
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let mut b = StringBuilder::new();
        for _ in 0..args.number_rows {
            b.append_value(&self.id);
        }
        Ok(ColumnarValue::Array(Arc::new(b.finish())))
    }
}
