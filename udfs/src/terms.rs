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

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, ListBuilder, StringViewBuilder};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{Result as DfResult, exec_err};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};

use crate::text::replace_urls;

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

static STOPWORDS: LazyLock<rustc_hash::FxHashSet<&'static str>> =
    LazyLock::new(|| [EN, ES, PT, DE, FR].iter().flat_map(|l| l.split_whitespace()).collect());

/// Bytes of a word packed into one integer key: a stopword is at most this long.
const STOPWORD_KEY_BYTES: usize = 16;

/// Slots of [`STOPWORD_TABLE`]: a power of two, about four per stopword.
const STOPWORD_SLOTS: usize = 2048;

/// The stopwords as packed keys ([`stopword_key`]) in an open-addressed table
/// (linear probing, 0 = empty: no word has key 0): a lookup is a multiply and
/// mostly one probe, where a hash set of strings hashed every byte.
static STOPWORD_TABLE: LazyLock<Vec<u128>> = LazyLock::new(|| {
    let mut table = vec![0u128; STOPWORD_SLOTS];
    for w in STOPWORDS.iter() {
        let key = stopword_key(w.as_bytes()).expect("a stopword is at most 16 bytes");
        let mut i = stopword_slot(key);
        while table[i] != 0 && table[i] != key {
            i = (i + 1) % STOPWORD_SLOTS;
        }
        table[i] = key;
    }
    assert!(STOPWORDS.len() * 2 < STOPWORD_SLOTS, "the stopword table is at most half full");
    table
});

/// The first slot of a key in [`STOPWORD_TABLE`] (Fibonacci hashing).
#[inline]
fn stopword_slot(key: u128) -> usize {
    let folded = (key as u64) ^ ((key >> 64) as u64).rotate_left(29);
    (folded.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - STOPWORD_SLOTS.trailing_zeros())) as usize
}

/// A word of at most [`STOPWORD_KEY_BYTES`] bytes as an integer (its bytes,
/// zero-padded: no word holds a zero byte, so two words never share a key).
#[inline]
fn stopword_key(word: &[u8]) -> Option<u128> {
    // shifts, not a copy into a buffer: a copy of a variable length is a call to memcpy
    (word.len() <= STOPWORD_KEY_BYTES).then(|| word.iter().rev().fold(0u128, |k, &b| (k << 8) | u128::from(b)))
}

/// Whether a case-folded word is on the shipped stopword lists.
pub fn is_stopword(word: &str) -> bool {
    let Some(key) = stopword_key(word.as_bytes()) else {
        return false;
    };
    let table = &*STOPWORD_TABLE;
    let mut i = stopword_slot(key);
    loop {
        match table[i] {
            0 => return false,
            k if k == key => return true,
            _ => i = (i + 1) % STOPWORD_SLOTS,
        }
    }
}

/// The terms of a text, distinct, in order of first appearance (see the module doc).
pub fn extract(text: &str) -> Vec<String> {
    let mut x = Extractor::default();
    x.run(text);
    x.terms().map(str::to_owned).collect()
}

/// [`extract`] without an allocation per term: one pass over the normalised
/// text, the terms kept as ranges of one reused buffer. Reuse one per batch.
#[derive(Default)]
pub struct Extractor {
    /// the case-folded words and tags read so far, and the bigrams built from them
    arena: String,
    /// the terms: ranges of `arena`
    terms: Vec<(usize, usize)>,
    /// a bit per kept term ([`term_filter_hash`]): most new terms are told from
    /// the kept ones without comparing bytes
    seen: u64,
}

/// A cheap hash of a term for [`Extractor`]'s duplicate filter: its length and
/// first and last bytes.
#[inline]
fn term_filter_hash(term: &[u8]) -> u32 {
    let (first, last) = (term.first().copied().unwrap_or(0), term.last().copied().unwrap_or(0));
    let key = ((term.len() as u32) << 16) | (u32::from(first) << 8) | u32::from(last);
    // Fibonacci hashing: the top 6 bits of the product
    key.wrapping_mul(0x9e37_79b9) >> 26
}

/// The character at byte `i` of `s` and its length in bytes.
#[inline]
fn char_at(s: &str, i: usize) -> (char, usize) {
    let b = s.as_bytes()[i];
    if b < 0x80 {
        (b as char, 1)
    } else {
        let c = s[i..].chars().next().unwrap_or('\u{fffd}');
        (c, c.len_utf8())
    }
}

/// The end of the run of characters from byte `from` of `s` that `ok` accepts.
#[inline]
fn run_end(s: &str, from: usize, ok: impl Fn(char) -> bool) -> usize {
    let mut j = from;
    while j < s.len() {
        let (c, len) = char_at(s, j);
        if !ok(c) {
            break;
        }
        j += len;
    }
    j
}

/// The end of the word starting at byte `i` (a word character): word characters
/// and inner apostrophes (`'` or `’` followed by a word character); and whether
/// the word is ASCII.
fn word_end(s: &str, i: usize) -> (usize, bool) {
    let b = s.as_bytes();
    // ASCII letters and digits, the common case, a byte at a time
    let mut j = i;
    while j < b.len() && b[j].is_ascii_alphanumeric() {
        j += 1;
    }
    if j == b.len() || (b[j].is_ascii() && b[j] != b'\'') {
        return (j, true);
    }
    let ascii_to = j;
    while j < s.len() {
        let (c, len) = char_at(s, j);
        let inner_apostrophe =
            || matches!(c, '\'' | '’') && j > i && j + len < s.len() && is_word_char(char_at(s, j + len).0);
        if !(is_word_char(c) || inner_apostrophe()) {
            break;
        }
        j += len;
    }
    (j, s.as_bytes()[ascii_to..j].is_ascii())
}

impl Extractor {
    /// The terms of the last [`Extractor::run`].
    pub fn terms(&self) -> impl Iterator<Item = &str> {
        self.terms.iter().map(|&(a, b)| &self.arena[a..b])
    }

    /// Appends `text` case-folded (`’` read as `'`) to the arena; its range.
    fn push_folded(&mut self, text: &str) -> (usize, usize) {
        self.push_folded_known(text, text.is_ascii())
    }

    /// [`Extractor::push_folded`] of a text known to be ASCII or not.
    #[inline]
    fn push_folded_known(&mut self, text: &str, ascii: bool) -> (usize, usize) {
        let start = self.arena.len();
        if ascii {
            // a byte at a time: words are short, a copy of a variable length is a call to memcpy
            self.arena.extend(text.bytes().map(|b| char::from(b.to_ascii_lowercase())));
        } else {
            // str::to_lowercase, not per char: a final sigma depends on its neighbours
            self.arena.extend(text.to_lowercase().chars().map(|c| if c == '’' { '\'' } else { c }));
        }
        (start, self.arena.len())
    }

    /// Keeps the term at `range` of the arena unless it is too long, a duplicate or one too many.
    fn keep(&mut self, (a, b): (usize, usize)) {
        let bytes = self.arena.as_bytes();
        let term = &bytes[a..b];
        if self.terms.len() >= MAX_TERMS_PER_TWEET || term.len() > MAX_TERM_BYTES {
            return;
        }
        // a term whose bit in `seen` is clear is new; else compare with the terms kept
        let bit = 1u64 << term_filter_hash(term);
        let same = |&(x, y): &(usize, usize)| &bytes[x..y] == term;
        if self.seen & bit == 0 || !self.terms.iter().any(same) {
            self.seen |= bit;
            self.terms.push((a, b));
        }
    }

    /// Reads the terms of `text` (see the module doc).
    pub fn run(&mut self, text: &str) {
        self.arena.clear();
        self.terms.clear();
        self.seen = 0;
        let mut end = text.len().min(MAX_SCAN_BYTES);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        // What the scan reads is the model's normalisation, less the mentions: a mention
        // `@user…` is skipped whole by the scan below, as the `@user` it would become.
        let s = replace_urls(&text[..end]);
        let s = &*s;
        // the last kept word, if only spaces stand between it and the next token
        let mut prev: Option<(usize, usize)> = None;
        let mut adjacent = false;
        let mut i = 0;
        while i < s.len() && self.terms.len() < MAX_TERMS_PER_TWEET {
            let (c, len) = char_at(s, i);
            if c.is_whitespace() {
                i += len;
                continue;
            }
            if c == '#' || c == '$' {
                let j = run_end(s, i + len, |c| c.is_alphanumeric() || c == '_');
                let mark = self.arena.len();
                self.arena.push(c);
                let (b0, b1) = self.push_folded(&s[i + len..j]);
                let body = &self.arena[b0..b1];
                let tag = match c {
                    '#' => body.chars().any(char::is_alphabetic),
                    _ => {
                        (1..=MAX_CASHTAG_LETTERS).contains(&body.len()) && body.bytes().all(|b| b.is_ascii_alphabetic())
                    }
                };
                if tag {
                    self.keep((mark, b1));
                } else {
                    self.arena.truncate(mark);
                }
                (prev, adjacent) = (None, false);
                i = j;
                continue;
            }
            if c == '@' {
                // a dropped mention (`@user`) and what it was glued to
                i = run_end(s, i + len, |c| is_word_char(c) || c == '_');
                (prev, adjacent) = (None, false);
                continue;
            }
            if is_word_char(c) {
                let (j, ascii) = word_end(s, i);
                let word = self.push_folded_known(&s[i..j], ascii);
                let w = &self.arena[word.0..word.1];
                i = j;
                if w == "http" {
                    // a dropped URL: a break
                    self.arena.truncate(word.0);
                    (prev, adjacent) = (None, false);
                    continue;
                }
                let was_adjacent = std::mem::replace(&mut adjacent, true);
                if !keep_word(w, ascii) {
                    self.arena.truncate(word.0);
                    prev = None;
                    continue;
                }
                self.keep(word);
                if let (Some(p), true) = (prev, was_adjacent) {
                    let start = self.arena.len();
                    self.arena.extend_from_within(p.0..p.1);
                    self.arena.push(' ');
                    self.arena.extend_from_within(word.0..word.1);
                    self.keep((start, self.arena.len()));
                }
                prev = Some(word);
                continue;
            }
            // punctuation, emoji, symbols: a break between words
            (prev, adjacent) = (None, false);
            i += len;
        }
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric()
}

fn keep_word(w: &str, ascii: bool) -> bool {
    let (long_enough, has_letter) = if ascii {
        (w.len() > 1, w.bytes().any(|b| b.is_ascii_alphabetic()))
    } else {
        (w.chars().nth(1).is_some(), w.chars().any(char::is_alphabetic))
    };
    long_enough && has_letter && !is_stopword(w)
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

/// The type `terms` returns: a list of string views (most terms are short
/// enough to sit in the view itself, which makes grouping by them cheaper).
pub fn terms_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8View, true)))
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
        let mut b = ListBuilder::with_capacity(StringViewBuilder::with_capacity(texts.len() * 8), texts.len())
            .with_field(Arc::new(Field::new("item", DataType::Utf8View, true)));
        let mut x = Extractor::default();
        for t in texts {
            match t {
                Some(t) => {
                    x.run(t);
                    for term in x.terms() {
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

    /// The first, simple extractor, kept as the fast one's oracle.
    mod reference {
        use super::super::*;
        use crate::text::normalize_tweet;

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

        /// The extractor as first written, one String per token: the fast one must equal it.
        fn reference_extract(text: &str) -> Vec<String> {
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
            w.chars().count() > 1 && w.chars().any(char::is_alphabetic) && !STOPWORDS.contains(w)
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
                        _ => {
                            (1..=MAX_CASHTAG_LETTERS).contains(&body.len())
                                && body.chars().all(|c| c.is_ascii_alphabetic())
                        }
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
                            || (matches!(chars[j], '\'' | '’')
                                && j + 1 < chars.len()
                                && is_word_char(chars[j + 1])
                                && j > i))
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

        pub(super) fn extract(text: &str) -> Vec<String> {
            reference_extract(text)
        }
    }

    #[test]
    fn fast_extractor_equals_the_reference() {
        // the sample's texts and their edge cases, plus generated strings of the characters that matter
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../sample_data/tweets/2025/02/10");
        let mut sample = String::new();
        for hour in std::fs::read_dir(dir).expect("the sample") {
            for file in std::fs::read_dir(hour.expect("an hour").path()).expect("an hour") {
                sample += &std::fs::read_to_string(file.expect("a file").path()).expect("a file");
            }
        }
        let mut texts: Vec<String> = sample
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v.get("text").and_then(|t| t.as_str()).map(str::to_owned))
            .collect();
        assert!(texts.len() > 1000, "the sample has texts");
        let pieces = [
            "a",
            "Bé",
            "ΟΔΟΣ",
            "don't",
            "it’s",
            "’x",
            "x’",
            "'",
            "#",
            "#Tag",
            "#1",
            "$",
            "$BTC",
            "$toolong",
            "$é",
            "@",
            "@bob",
            "@é",
            "http://x.y",
            "HTTPS://a",
            "http",
            "hhttps://q",
            " ",
            "  ",
            "\t",
            "\n",
            ",",
            "!",
            "🚀",
            "日本",
            "42",
            "the",
            "Exchange",
            "halted",
            "_",
            "x_y",
            "İ",
            "ß",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let mut t = String::new();
            for _ in 0..(seed % 12) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                t.push_str(pieces[(seed % pieces.len() as u64) as usize]);
            }
            texts.push(t);
        }
        texts.push("#tag ".repeat(5000));
        texts.push("é".repeat(5000));
        texts.push("word ".repeat(2000) + "#late");
        let mut x = Extractor::default();
        for t in &texts {
            x.run(t);
            let fast: Vec<&str> = x.terms().collect();
            assert_eq!(fast, reference::extract(t), "terms of {t:?}");
        }
    }

    #[test]
    fn stopword_keys_equal_the_lists() {
        for w in STOPWORDS.iter() {
            assert!(is_stopword(w), "{w}");
        }
        for w in ["exchange", "halted", "yourselves1", "themselvesandmore", "tambien", "dont'", "", "d", "ourselves ok"]
        {
            assert_eq!(is_stopword(w), STOPWORDS.contains(w), "{w}");
        }
    }

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
