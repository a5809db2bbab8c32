//! The one term extractor: what a tweet is about, as the `window_terms`
//! table counts it, and `terms(text)` in SQL.
//!
//! A tweet's terms are its hashtags (`#hack`), cashtags (`$btc`), words and
//! word bigrams (`withdrawals halted`), each once per tweet, in order of first
//! appearance:
//!
//! * the text goes through the model's normalisation first
//!   ([`crate::text::normalize_tweet`]): URLs and @mentions are dropped;
//! * everything is case-folded (Unicode lower case);
//! * a hashtag is `#` then letters, digits or `_` with at least one letter; a
//!   cashtag is `$` then 1–[`MAX_CASHTAG_LETTERS`] ASCII letters (`$100` is no
//!   cashtag); a word is a run of letters and digits, with inner apostrophes
//!   (`don't`);
//! * words that are numbers (no letter), one character long, or on the shipped
//!   stopword lists ([`STOPWORD_LANGUAGES`]) are dropped; a bigram is two kept
//!   words that stood next to each other with nothing but spaces between them;
//! * bounded per tweet: only the first [`MAX_SCAN_BYTES`] bytes of a text are
//!   read, terms longer than [`MAX_TERM_BYTES`] are dropped, and at most
//!   [`MAX_TERMS_PER_TWEET`] distinct terms are kept, so a tweet with 10,000
//!   hashtags or a 1 MB text costs a bounded time and memory.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, ListBuilder, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{Result as DfResult, exec_err};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};

use crate::text::normalize_tweet;

/// Name of the SQL function.
pub const TERMS_UDF: &str = "terms";
/// Bytes of a text read for terms (cut at a character boundary).
pub const MAX_SCAN_BYTES: usize = 4096;
/// Distinct terms kept per tweet, the first ones in the text.
pub const MAX_TERMS_PER_TWEET: usize = 48;
/// Longer terms (a bigram counts as one) are dropped.
pub const MAX_TERM_BYTES: usize = 64;
/// Letters of a cashtag (`$BTC`, `$DOGE`); `$` + more letters is not one.
pub const MAX_CASHTAG_LETTERS: usize = 6;
/// The languages whose stopwords are dropped: the sample's languages.
pub const STOPWORD_LANGUAGES: &[&str] = &["en", "es", "pt", "de", "fr"];

/// The kind of a term, as the `kind` column names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TermKind {
    Hashtag,
    Cashtag,
    Word,
    Bigram,
}

impl TermKind {
    /// The kind of a term [`extract`] returned (from its shape: `#`, `$`, a space).
    pub fn of(term: &str) -> TermKind {
        if term.starts_with('#') {
            TermKind::Hashtag
        } else if term.starts_with('$') {
            TermKind::Cashtag
        } else if term.contains(' ') {
            TermKind::Bigram
        } else {
            TermKind::Word
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TermKind::Hashtag => "hashtag",
            TermKind::Cashtag => "cashtag",
            TermKind::Word => "word",
            TermKind::Bigram => "bigram",
        }
    }
}

const EN: &str = "a about above after again against all am an and any are aren't as at be because been before being \
below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down during each \
few for from further had hadn't has hasn't have haven't having he he's her here here's hers herself him himself his \
how how's i i'm i've i'd i'll if in into is isn't it it's its itself just let's me more most my myself no nor not of \
off on once only or other ought our ours ourselves out over own same she she's should shouldn't so some such than \
that that's the their theirs them themselves then there there's these they they're they've this those through to \
too under until up very was wasn't we we're we've were weren't what what's when when's where where's which while \
who who's whom why why's will with won't would wouldn't you you're you've your yours yourself yourselves rt amp via \
im dont cant ive get got gonna just now also still even really";
const ES: &str = "de la que el en y a los se del las un por con no una su para es al lo como más pero sus le ya o \
este sí porque esta entre cuando muy sin sobre también me hasta hay donde quien desde todo nos durante todos uno \
les ni contra otros ese eso ante ellos e esto mí antes algunos qué unos yo otro otras otra él tanto esa estos mucho \
quienes nada muchos cual poco ella estar estas algunas algo nosotros mi mis tú te ti tu tus ellas";
const PT: &str = "de a o que e do da em um para é com não uma os no se na por mais as dos como mas foi ao ele das \
tem à seu sua ou ser quando muito há nos já está eu também só pelo pela até isso ela entre era depois sem mesmo aos \
ter seus quem nas me esse eles estão você tinha foram essa num nem suas meu às minha têm numa pelos elas havia seja \
qual será nós tenho lhe deles essas esses pelas este fosse dele tu te vocês vos lhes meus minhas";
const DE: &str = "der die und in den von zu das mit sich des auf für ist im dem nicht ein eine als auch es an \
werden aus er hat dass sie nach wird bei einer um am sind noch wie einem über einen so zum war haben nur oder aber \
vor zur bis mehr durch man sein wurde sei ich du wir ihr mein dein kein keine jetzt schon sehr hier";
const FR: &str = "le la les de des du un une et à au aux en dans sur pour par avec ce ces cet cette qui que quoi \
ne pas plus ou où est sont été être avoir a ai as ont il elle ils elles on nous vous je tu me te se lui leur leurs \
mon ma mes ton ta tes son sa ses notre nos votre vos y c'est j'ai mais si très tout tous toute toutes";

static STOPWORDS: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| [EN, ES, PT, DE, FR].iter().flat_map(|l| l.split_whitespace()).collect());

/// Whether a case-folded word is on the shipped stopword lists.
pub fn is_stopword(word: &str) -> bool {
    STOPWORDS.contains(word)
}

/// One token of the scan: a tag or a word, and whether only spaces stood
/// between it and the token before it (a bigram needs that).
enum Token {
    Tag(String),
    Word { word: String, adjacent: bool },
    Break,
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric()
}

/// The terms of a text, distinct, in order of first appearance (see the module doc).
pub fn extract(text: &str) -> Vec<String> {
    let mut end = text.len().min(MAX_SCAN_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let normalized = normalize_tweet(&text[..end]);
    let mut out: Vec<String> = Vec::new();
    // at most MAX_TERMS_PER_TWEET terms: a scan of them is cheaper than hashing a copy of each
    let push = |t: String, out: &mut Vec<String>| {
        if out.len() < MAX_TERMS_PER_TWEET && t.len() <= MAX_TERM_BYTES && !out.contains(&t) {
            out.push(t);
        }
    };
    let mut prev: Option<String> = None;
    for token in tokens(&normalized) {
        if out.len() >= MAX_TERMS_PER_TWEET {
            break;
        }
        match token {
            Token::Tag(t) => {
                push(t, &mut out);
                prev = None;
            }
            Token::Word { word, adjacent } => {
                if !keep_word(&word) {
                    prev = None;
                    continue;
                }
                if let (Some(p), true) = (&prev, adjacent) {
                    let bigram = format!("{p} {word}");
                    push(word.clone(), &mut out);
                    push(bigram, &mut out);
                } else {
                    push(word.clone(), &mut out);
                }
                prev = Some(word);
            }
            Token::Break => prev = None,
        }
    }
    out
}

fn keep_word(w: &str) -> bool {
    w.chars().count() > 1 && w.chars().any(char::is_alphabetic) && !is_stopword(w)
}

/// Splits a normalised text into tags, words and breaks (punctuation, emoji, the
/// `@user`/`http` placeholders of dropped mentions and URLs).
fn tokens(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut adjacent) = (0, false);
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let run_end = |from: usize, ok: &dyn Fn(char) -> bool| {
            let mut j = from;
            while j < chars.len() && ok(chars[j]) {
                j += 1;
            }
            j
        };
        if c == '#' || c == '$' {
            let j = run_end(i + 1, &|c| c.is_alphanumeric() || c == '_');
            let body: String = chars[i + 1..j].iter().collect::<String>().to_lowercase();
            let tag = match c {
                '#' => body.chars().any(char::is_alphabetic),
                _ => (1..=MAX_CASHTAG_LETTERS).contains(&body.len()) && body.chars().all(|c| c.is_ascii_alphabetic()),
            };
            out.push(if tag { Token::Tag(format!("{c}{body}")) } else { Token::Break });
            i = j.max(i + 1);
            adjacent = false;
            continue;
        }
        if c == '@' {
            // a dropped mention (`@user`) and what it was glued to
            let j = run_end(i + 1, &|c| is_word_char(c) || c == '_');
            out.push(Token::Break);
            i = j;
            adjacent = false;
            continue;
        }
        if is_word_char(c) {
            let mut j = i;
            while j < chars.len()
                && (is_word_char(chars[j])
                    || (matches!(chars[j], '\'' | '’') && j + 1 < chars.len() && is_word_char(chars[j + 1]) && j > i))
            {
                j += 1;
            }
            let word: String = chars[i..j].iter().collect::<String>().to_lowercase().replace('’', "'");
            if word == "http" {
                // a dropped URL
                out.push(Token::Break);
                adjacent = false;
            } else {
                out.push(Token::Word { word, adjacent });
                adjacent = true;
            }
            i = j;
            continue;
        }
        // punctuation, emoji, symbols: a break between words
        out.push(Token::Break);
        adjacent = false;
        i += 1;
    }
    out
}

/// `terms(text) -> LIST<VARCHAR>`: [`extract`] per row; NULL for a NULL text.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TermsUdf {
    signature: Signature,
}

impl TermsUdf {
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(Self {
            signature: Signature::uniform(
                1,
                vec![DataType::Utf8, DataType::LargeUtf8, DataType::Utf8View],
                Volatility::Immutable,
            ),
        })
    }
}

/// The type `terms` returns.
pub fn terms_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

impl ScalarUDFImpl for TermsUdf {
    fn name(&self) -> &str {
        TERMS_UDF
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(terms_type())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [text] = args.args.as_slice() else {
            return exec_err!("terms takes one text");
        };
        let array = text.to_array(args.number_rows)?;
        let texts = crate::udf::texts_of(&array)?;
        let mut b = ListBuilder::new(StringBuilder::new());
        for t in texts {
            match t {
                Some(t) => {
                    for term in extract(t) {
                        b.values().append_value(term);
                    }
                    b.append(true);
                }
                None => b.append(false),
            }
        }
        let out: ArrayRef = Arc::new(b.finish());
        debug_assert_eq!(out.len(), args.number_rows);
        Ok(ColumnarValue::Array(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashtags_cashtags_words_and_bigrams() {
        let t = extract("Exchange HACKED!! Withdrawals halted on @binance #Hack $BTC https://t.co/x 100 $100 a");
        assert_eq!(
            t,
            ["exchange", "hacked", "exchange hacked", "withdrawals", "halted", "withdrawals halted", "#hack", "$btc"]
        );
        assert_eq!(TermKind::of("#hack"), TermKind::Hashtag);
        assert_eq!(TermKind::of("$btc"), TermKind::Cashtag);
        assert_eq!(TermKind::of("withdrawals halted"), TermKind::Bigram);
        assert_eq!(TermKind::of("halted"), TermKind::Word);
    }

    #[test]
    fn stopwords_numbers_and_duplicates_are_dropped() {
        assert_eq!(extract("the the THE price is 42 and it's up up"), ["price"]);
        assert_eq!(extract("el precio de bitcoin"), ["precio", "bitcoin"]);
        assert_eq!(extract("don't sell, hodl"), ["sell", "hodl"]);
        assert!(extract("🚀🚀🚀 🔥").is_empty());
        assert!(extract("").is_empty());
        assert_eq!(extract("#1 #2024 #web3"), ["#web3"]);
    }

    #[test]
    fn bounded_per_tweet() {
        let many: String = (0..10_000).map(|i| format!("#tag{i} ")).collect();
        let t = extract(&many);
        assert_eq!(t.len(), MAX_TERMS_PER_TWEET);
        assert_eq!(t[0], "#tag0");
        let huge = "word ".repeat(200_000) + "#late";
        let t = extract(&huge);
        assert_eq!(t, ["word", "word word"]);
        let long = "x".repeat(100);
        assert!(extract(&long).is_empty());
        // a cut inside a multi-byte character is moved back to a boundary
        let t = extract(&("é".repeat(3000)));
        assert!(t.is_empty(), "one 2048-char word is over the term limit");
    }

    #[test]
    fn other_scripts_give_words() {
        let t = extract("ビットコイン 暴落 Bitcoin");
        assert_eq!(t, ["ビットコイン", "暴落", "ビットコイン 暴落", "bitcoin", "暴落 bitcoin"]);
    }
}
