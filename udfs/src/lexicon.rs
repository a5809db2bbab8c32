//! VADER lexicon scorer: the documented, rule-based baseline.
//!
//! VADER (Hutto & Gilbert, ICWSM 2014) is a lexicon of ~7,500 words, slang and
//! emoticons rated by humans, plus rules for negation, intensifiers, "but",
//! capitals and punctuation. We use the Rust port `vader_sentiment` 0.1.1
//! (MIT, the lexicon files are embedded in the crate). Its `compound` score is
//! already in [-1, 1]; labels use VADER's published thresholds (±0.05).
//! Measured on SST-2 dev by the data's curators: about 63 % accuracy, a
//! baseline, not a model to rely on.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::{Label, Outcome, Result, Scorer};

/// VADER's published threshold for the compound score.
pub const VADER_THRESHOLD: f64 = 0.05;

/// Texts longer than this are refused rather than scored: VADER's idiom and
/// booster checks build strings around every word, so a megabyte of junk costs
/// seconds and means nothing.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

pub struct LexiconScorer {
    analyzer: vader_sentiment::SentimentIntensityAnalyzer<'static>,
}

impl std::fmt::Debug for LexiconScorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LexiconScorer(vader)")
    }
}

impl Default for LexiconScorer {
    fn default() -> Self {
        Self::new()
    }
}

impl LexiconScorer {
    pub fn new() -> Self {
        Self { analyzer: vader_sentiment::SentimentIntensityAnalyzer::new() }
    }

    /// Scores one text.
    pub fn score(&self, text: Option<&str>) -> Outcome {
        let Some(text) = text else {
            return Outcome::Unscorable("text is null".into());
        };
        if let Some(reason) = crate::text::unreadable(text) {
            return Outcome::Unscorable(reason.into());
        }
        if text.len() > MAX_TEXT_BYTES {
            return Outcome::Unscorable(format!(
                "text is {} bytes, over the lexicon scorer's limit of {MAX_TEXT_BYTES}",
                text.len()
            ));
        }
        // The port indexes token windows directly; a panic there must not take
        // the job down, and must not become a score either.
        let compound = catch_unwind(AssertUnwindSafe(|| self.analyzer.polarity_scores(text).get("compound").copied()));
        match compound {
            Ok(Some(c)) if c.is_finite() => Outcome::Scored { score: c, label: label_for(c) },
            Ok(_) => Outcome::Unscorable("lexicon scorer returned no finite compound score".into()),
            Err(_) => Outcome::Unscorable("lexicon scorer panicked on this text".into()),
        }
    }
}

/// VADER's convention: compound ≥ 0.05 positive, ≤ −0.05 negative.
pub fn label_for(compound: f64) -> Label {
    if compound >= VADER_THRESHOLD {
        Label::Positive
    } else if compound <= -VADER_THRESHOLD {
        Label::Negative
    } else {
        Label::Neutral
    }
}

impl Scorer for LexiconScorer {
    fn name(&self) -> &str {
        "lexicon"
    }

    fn id(&self) -> &str {
        "vader-lexicon/vader_sentiment-0.1.1"
    }

    fn score_batch(&self, texts: &[Option<&str>]) -> Result<Vec<Outcome>> {
        Ok(texts.iter().map(|t| self.score(*t)).collect())
    }

    /// VADER's lexicon and rules are English.
    fn languages(&self) -> Option<Vec<String>> {
        Some(vec!["en".to_string()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(t: &str) -> f64 {
        match LexiconScorer::new().score(Some(t)) {
            Outcome::Scored { score, .. } => score,
            Outcome::Unscorable(r) => panic!("unscorable: {r}"),
        }
    }

    #[test]
    fn polarity_follows_the_text() {
        assert!(score("Bitcoin is great, I love it! 🚀") > 0.5);
        assert!(score("This crash is terrible, I hate losing money") < -0.5);
        assert!(score("The meeting is on Tuesday at noon in room 4").abs() < VADER_THRESHOLD);
        // negation flips the sign
        assert!(score("bitcoin is not good") < 0.0);
    }

    #[test]
    fn unscorable_texts_get_reasons_not_scores() {
        let s = LexiconScorer::new();
        assert_eq!(s.score(None), Outcome::Unscorable("text is null".into()));
        assert!(matches!(s.score(Some("   ")), Outcome::Unscorable(_)));
        let huge = "a".repeat(MAX_TEXT_BYTES + 1);
        match s.score(Some(&huge)) {
            Outcome::Unscorable(r) => assert!(r.contains("limit"), "{r}"),
            o => panic!("{o:?}"),
        }
    }
}
