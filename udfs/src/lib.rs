//! Sentiment scoring UDFs for DataFusion.
//!
//! Every scorer implements [`Scorer`]: it turns a batch of texts into one
//! [`Outcome`] per text, either a score in [-1, 1] with a label, or an error
//! reason (never a made-up score). Two kinds of UDF are built on top:
//!
//! * a plain function per scorer for ad-hoc SQL, e.g. `sentiment_lexicon(text)
//!   -> DOUBLE` (NULL when the text is unscorable);
//! * `score_sentiment(text) -> STRUCT<score DOUBLE, label VARCHAR, error VARCHAR>`,
//!   bound to the scorer a job selected. `sql/score.sql` calls it, so every
//!   scorer plugs into the same SQL by name.

mod lexicon;
pub mod onnx;
pub mod terms;
pub mod text;
mod udf;

pub use lexicon::LexiconScorer;
pub use onnx::{Device, Layout, OnnxOptions, OnnxScorer, OnnxStats};
pub use terms::{TERMS_UDF, TermKind, TermsUdf};
pub use udf::{
    GatedScorer, SCORER_ID_UDF, ScoreColumn, ScoreResults, ScorerIdUdf, ScorerUdf, array_present, register_scorer_udfs,
    score_struct_type, text_args, texts_and_langs, texts_of,
};

use std::fmt::Debug;
use std::sync::Arc;

/// Errors of the scoring crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("scorer {scorer} failed")]
    Scorer {
        scorer: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("onnx runtime library not found (looked at {looked}); {fix}")]
    RuntimeMissing { looked: String, fix: &'static str },
    #[error("cannot load onnx runtime from {path}: {reason}; {fix}")]
    RuntimeLoad { path: String, reason: String, fix: &'static str },
    #[error("onnx model {path}: {reason}")]
    Model { path: String, reason: String },
    #[error(
        "cuda execution provider unavailable: {reason}; it needs the onnxruntime-gpu library \
         (pip install onnxruntime-gpu, ORT_DYLIB_PATH at its libonnxruntime.so) and a GPU; or use --device cpu"
    )]
    Cuda { reason: String },
    #[error("onnx inference failed: {reason}")]
    Inference { reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Sentiment label, the same three classes for every scorer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Label {
    Negative,
    Neutral,
    Positive,
}

impl Label {
    /// The class a label name means: `negative`/`neg`, `neutral`/`neu`,
    /// `positive`/`pos`, in any case, surrounding spaces and a byte-order mark
    /// ignored; `None` for any other name (`possibly`, `negligible` and
    /// `neutralized` are not classes, whatever they start with).
    pub fn from_name(name: &str) -> Option<Label> {
        match Label::bare(name).to_ascii_lowercase().as_str() {
            "negative" | "neg" => Some(Label::Negative),
            "neutral" | "neu" => Some(Label::Neutral),
            "positive" | "pos" => Some(Label::Positive),
            _ => None,
        }
    }

    /// A label as written, without surrounding spaces or a byte-order mark.
    pub fn bare(name: &str) -> &str {
        name.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}')
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Label::Negative => "negative",
            Label::Neutral => "neutral",
            Label::Positive => "positive",
        }
    }
}

/// What a scorer says about one text.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Scored {
        score: f64,
        label: Label,
    },
    /// The text could not be scored; the reason is stored in `score_error`.
    Unscorable(String),
}

/// A sentiment model usable from SQL.
pub trait Scorer: Debug + Send + Sync {
    /// Short name used in UDF names (`sentiment_<name>`) and on the CLI.
    fn name(&self) -> &str;
    /// Model and version, written to the `scorer` column of scored rows.
    fn id(&self) -> &str;
    /// Scores a batch. `None` texts (SQL NULL) must yield an `Unscorable` outcome.
    fn score_batch(&self, texts: &[Option<&str>]) -> Result<Vec<Outcome>>;
    /// Counters since the scorer was loaded (e.g. texts, time in inference), for job summaries.
    fn stats(&self) -> Vec<(&'static str, f64)> {
        Vec::new()
    }
    /// A classifier's label names, in the order of [`Scorer::probabilities`].
    fn labels(&self) -> Option<Vec<String>> {
        None
    }
    /// A classifier's per-label probabilities (`None` inside for NULL/empty
    /// texts); `None` for scorers that are not classifiers.
    fn probabilities(&self, _texts: &[Option<&str>]) -> Option<Result<Vec<Option<Vec<f32>>>>> {
        None
    }
    /// The languages the scorer reads (BCP 47 primary subtags, e.g. `en`);
    /// `None` = any. The scoring UDFs give a text in another language a NULL
    /// score and the reason (see [`text::LanguageGate`]).
    fn languages(&self) -> Option<Vec<String>> {
        None
    }
    /// Forgets the results a scorer keeps for copies of texts it already scored
    /// ([`OnnxScorer`] reuses them within a run): the next texts are a new run,
    /// as each pass of `eval --repeat` is.
    fn start_run(&self) {}
}

/// A scorer with its language check switched off (`--any-language`): every
/// text is scored, whatever its language. Everything else is the inner scorer's.
#[derive(Debug)]
pub struct AnyLanguage(pub SharedScorer);

impl Scorer for AnyLanguage {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn id(&self) -> &str {
        self.0.id()
    }
    fn score_batch(&self, texts: &[Option<&str>]) -> Result<Vec<Outcome>> {
        self.0.score_batch(texts)
    }
    fn stats(&self) -> Vec<(&'static str, f64)> {
        self.0.stats()
    }
    fn labels(&self) -> Option<Vec<String>> {
        self.0.labels()
    }
    fn probabilities(&self, texts: &[Option<&str>]) -> Option<Result<Vec<Option<Vec<f32>>>>> {
        self.0.probabilities(texts)
    }
    fn languages(&self) -> Option<Vec<String>> {
        None
    }
    fn start_run(&self) {
        self.0.start_run()
    }
}

pub type SharedScorer = Arc<dyn Scorer>;

/// FNV-1a, 64 bit: a hash that stays the same across runs, machines and
/// versions (output file names, the model id in the `scorer` column).
pub fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names() {
        assert_eq!(Label::from_name("Negative"), Some(Label::Negative));
        assert_eq!(Label::from_name(" pos"), Some(Label::Positive));
        assert_eq!(Label::from_name("neutral"), Some(Label::Neutral));
        assert_eq!(Label::from_name("2"), None);
        assert_eq!(Label::from_name("\u{feff}NEG "), Some(Label::Negative));
        for not_a_class in ["possibly", "negligible", "neutralized", "posh", "neg.", ""] {
            assert_eq!(Label::from_name(not_a_class), None, "{not_a_class}");
        }
    }
}
