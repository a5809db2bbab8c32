//! What every scorer's text goes through before a model sees it: the tweet
//! normalisation a model was trained with, the check that there is anything
//! to score, and the language check.
//!
//! The language rule: a model declares the languages it reads (`config.json`
//! `languages` for an ONNX model, English for the VADER lexicon). A text in
//! another language gets a NULL score and a reason naming the language and the
//! model, never a guess. The language is the record's `lang` field where it has
//! one (BCP 47, e.g. `en`, `es-MX`; `und` means unknown); otherwise it is
//! detected with `whatlang` — and only a confident detection counts: a text in
//! a non-Latin script (Japanese, Arabic, Cyrillic, …) for a Latin-script model,
//! or a Latin-script text of at least [`MIN_DETECT_LETTERS`] letters that
//! whatlang calls reliable. Short or mixed texts are given the benefit of the
//! doubt and scored.

use std::borrow::Cow;

use whatlang::{Lang, Script};

/// The normalisation named `tweet-v1` in a model's `config.json`
/// (`preprocess`): @mentions become `@user` and http(s) URLs become `http`,
/// TweetEval's convention. A mention is `@` followed by `[A-Za-z0-9_]+`; a URL
/// is `http://` or `https://` (any case) up to the next ASCII whitespace. The
/// training script (`scripts/train/train_sentiment_model.py`) and the Python
/// reference (`scripts/onnx_reference.py`) apply the same two rules.
pub const PREPROCESS_TWEET_V1: &str = "tweet-v1";

/// Fewer letters than this in a Latin-script text: too little for a detector to
/// tell English from its neighbours, so the text is scored.
pub const MIN_DETECT_LETTERS: usize = 20;

/// Prefix of every language reason in `score_error`, so that jobs can count them.
pub const LANGUAGE_REASON_PREFIX: &str = "language ";

/// The reason for a text with nothing to score.
pub const CONTENT_FREE_REASON: &str = "text has no letters, digits, emoji or symbols";

/// Why a text cannot be scored by any scorer, if it cannot: `text is empty`
/// (whitespace only) or [`CONTENT_FREE_REASON`]. Every local scorer asks this
/// first, so no scorer makes up a score for nothing.
pub fn unreadable(text: &str) -> Option<&'static str> {
    if text.trim().is_empty() {
        Some("text is empty")
    } else if is_content_free(text) {
        Some(CONTENT_FREE_REASON)
    } else {
        None
    }
}

fn is_ascii_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{0b}' | '\u{0c}')
}

/// `tweet-v1`: see [`PREPROCESS_TWEET_V1`]. URLs are replaced first, then
/// mentions, as the Python side's two `re.sub` calls do. A text with neither
/// comes back as it is, without a copy.
pub fn normalize_tweet(text: &str) -> Cow<'_, str> {
    match replace_urls(text) {
        Cow::Borrowed(t) => replace_mentions(t),
        Cow::Owned(t) => Cow::Owned(replace_mentions(&t).into_owned()),
    }
}

/// `out` so far with `text[copied..i]` and then `with` appended (the first
/// replacement allocates it).
fn push_replaced(out: &mut Option<String>, text: &str, copied: usize, i: usize, with: &str) {
    let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
    out.push_str(&text[copied..i]);
    out.push_str(with);
}

/// `text` after its last replacement: borrowed when there was none.
fn finish_replaced(out: Option<String>, text: &str, copied: usize) -> Cow<'_, str> {
    match out {
        None => Cow::Borrowed(text),
        Some(mut out) => {
            out.push_str(&text[copied..]);
            Cow::Owned(out)
        }
    }
}

/// The URLs of `text` replaced by `http`, as [`normalize_tweet`] does first.
pub(crate) fn replace_urls(text: &str) -> Cow<'_, str> {
    let b = text.as_bytes();
    let (mut out, mut i, mut copied) = (None, 0, 0);
    while i < b.len() {
        if b[i] | 0x20 != b'h' {
            i += 1;
            continue;
        }
        let rest = &b[i..];
        let scheme = [&b"http://"[..], b"https://"].iter().find_map(|p| {
            (rest.len() > p.len() && rest[..p.len()].eq_ignore_ascii_case(p) && !is_ascii_ws(rest[p.len()] as char))
                .then_some(p.len())
        });
        let Some(p) = scheme else {
            i += 1;
            continue;
        };
        push_replaced(&mut out, text, copied, i, "http");
        i += p;
        // a URL ends at ASCII whitespace (always a char boundary) or at the end
        while i < b.len() && !is_ascii_ws(b[i] as char) {
            i += 1;
        }
        copied = i;
    }
    finish_replaced(out, text, copied)
}

fn replace_mentions(text: &str) -> Cow<'_, str> {
    let b = text.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let (mut out, mut i, mut copied) = (None, 0, 0);
    while i < b.len() {
        if b[i] == b'@' && i + 1 < b.len() && word(b[i + 1]) {
            push_replaced(&mut out, text, copied, i, "@user");
            i += 1;
            while i < b.len() && word(b[i]) {
                i += 1;
            }
            copied = i;
        } else {
            i += 1;
        }
    }
    finish_replaced(out, text, copied)
}

/// Characters that carry nothing: whitespace, controls, and the invisible
/// format characters (zero-width spaces and joiners, bidi marks, variation
/// selectors, the byte-order mark, tags). Punctuation counts as content (`:)`).
fn is_empty_char(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(c as u32,
            0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F
            | 0x2000..=0x200F | 0x2028..=0x202F | 0x205F..=0x206F
            | 0x3000 | 0x3164 | 0xFE00..=0xFE0F | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFFB
            | 0xE0000..=0xE007F | 0xE0100..=0xE01EF)
}

/// True when a text has nothing a scorer could read: no letter, digit, emoji,
/// symbol or punctuation (`"\u{0}"`, three zero-width spaces).
pub fn is_content_free(text: &str) -> bool {
    text.chars().all(is_empty_char)
}

/// The primary language subtag of a BCP 47 tag, lower case (`es-MX` → `es`);
/// `None` for an empty tag or `und` (undetermined).
pub fn primary_subtag(tag: &str) -> Option<String> {
    let p = tag.trim().split(['-', '_']).next().unwrap_or("").to_ascii_lowercase();
    (!p.is_empty() && p != "und").then_some(p)
}

/// ISO 639-1 where one exists for the languages whatlang knows, else its ISO 639-3 code.
fn code_of(lang: Lang) -> &'static str {
    match lang {
        Lang::Eng => "en",
        Lang::Spa => "es",
        Lang::Por => "pt",
        Lang::Fra => "fr",
        Lang::Deu => "de",
        Lang::Ita => "it",
        Lang::Nld => "nl",
        Lang::Jpn => "ja",
        Lang::Cmn => "zh",
        Lang::Kor => "ko",
        Lang::Rus => "ru",
        Lang::Ukr => "uk",
        Lang::Ara => "ar",
        Lang::Hin => "hi",
        Lang::Tur => "tr",
        Lang::Pol => "pl",
        Lang::Swe => "sv",
        Lang::Dan => "da",
        Lang::Nob => "nb",
        Lang::Fin => "fi",
        Lang::Ind => "id",
        Lang::Vie => "vi",
        Lang::Tha => "th",
        Lang::Heb => "he",
        Lang::Ell => "el",
        Lang::Ces => "cs",
        Lang::Ron => "ro",
        Lang::Hun => "hu",
        Lang::Cat => "ca",
        Lang::Tgl => "tl",
        other => other.code(),
    }
}

fn is_latin(c: char) -> bool {
    (c as u32) < 0x0250 || matches!(c as u32, 0x1E00..=0x1EFF | 0xFF21..=0xFF3A | 0xFF41..=0xFF5A)
}

/// A language detected in a text, when the detection is confident enough to act on:
/// - mentions, URLs and hashtags are left out (they say little about the language);
/// - more letters in other scripts than in Latin: the language whatlang finds in
///   those letters (`bitcoinが上がっている` is Japanese);
/// - else a Latin-script text of at least [`MIN_DETECT_LETTERS`] letters that
///   whatlang calls reliable;
/// - else `None`: the text is given the benefit of the doubt.
pub fn detect_language(text: &str) -> Option<&'static str> {
    let is_url = |w: &str| w.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("http"));
    let cleaned: Vec<&str> =
        text.split(is_ascii_ws).filter(|w| !w.starts_with('@') && !w.starts_with('#') && !is_url(w)).collect();
    let cleaned = cleaned.join(" ");
    let (mut latin, mut other) = (0usize, 0usize);
    for c in cleaned.chars().filter(|c| c.is_alphabetic()) {
        if is_latin(c) {
            latin += 1;
        } else {
            other += 1;
        }
    }
    if other > latin {
        let foreign: String = cleaned.chars().filter(|c| !is_latin(*c)).collect();
        return whatlang::detect_lang(&foreign).map(code_of);
    }
    if latin < MIN_DETECT_LETTERS {
        return None;
    }
    let info = whatlang::detect(&cleaned)?;
    (info.script() == Script::Latin && info.is_reliable()).then(|| code_of(info.lang()))
}

/// What a model reads, and whether a text is in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LanguageGate {
    /// The model's languages (primary subtags, lower case).
    pub languages: Vec<String>,
    /// Named in the reason: the scorer's id.
    pub model: String,
}

impl LanguageGate {
    pub fn new(languages: &[String], model: &str) -> Self {
        Self { languages: languages.iter().filter_map(|l| primary_subtag(l)).collect(), model: model.to_string() }
    }

    /// `None` when the model reads the text; else the reason for `score_error`.
    /// `lang` is the record's field, when the table has one.
    pub fn check(&self, text: &str, lang: Option<&str>) -> Option<String> {
        let (code, how) = match lang.and_then(primary_subtag) {
            Some(code) => (code, "lang field"),
            None => (detect_language(text)?.to_string(), "detected"),
        };
        if self.languages.contains(&code) {
            return None;
        }
        Some(format!(
            "{LANGUAGE_REASON_PREFIX}{code} ({how}) is not read by {}, which reads {}; \
             --any-language scores it anyway",
            self.model,
            self.languages.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_and_urls_are_normalised() {
        assert_eq!(
            normalize_tweet("@hodl_queen Podcast out https://t.co/xY12 #Bitcoin"),
            "@user Podcast out http #Bitcoin"
        );
        assert_eq!(normalize_tweet("HTTP://A.b/c?d=1\tand @x_1, @ alone, a@b"), "http\tand @user, @ alone, a@user");
        assert_eq!(normalize_tweet("http:// nothing"), "http:// nothing");
        assert_eq!(normalize_tweet("¡mañana! @José"), "¡mañana! @useré");
        // URLs first, then mentions (as Python's two substitutions)
        assert_eq!(normalize_tweet("@bobhttp://x.y z"), "@user z");
        assert_eq!(normalize_tweet("hhttps://x"), "hhttp");
        assert_eq!(normalize_tweet("日本 https://例え.jp/パス 語"), "日本 http 語");
        assert_eq!(normalize_tweet(""), "");
    }

    #[test]
    fn content_free_texts() {
        for t in ["", "\u{0}", "\u{200b}\u{200b}\u{200b}", " \t\n", "\u{feff}", "\u{fe0f}", "\u{2060}\u{0}"] {
            assert!(is_content_free(t), "{t:?}");
        }
        for t in ["a", "7", "💎", "€", "+", "日", ":)", "..."] {
            assert!(!is_content_free(t), "{t:?}");
        }
    }

    #[test]
    fn subtags() {
        assert_eq!(primary_subtag("es-MX").as_deref(), Some("es"));
        assert_eq!(primary_subtag(" EN ").as_deref(), Some("en"));
        assert_eq!(primary_subtag("und"), None);
        assert_eq!(primary_subtag(""), None);
    }

    #[test]
    fn gate_uses_the_field_then_detection() {
        let g = LanguageGate::new(&["en".to_string()], "onnx:m@1");
        assert_eq!(g.check("anything at all", Some("en-GB")), None);
        let r = g.check("bitcoin is up", Some("es")).unwrap();
        assert!(r.starts_with("language es (lang field)") && r.contains("onnx:m@1") && r.contains("reads en"), "{r}");
        let r = g.check("bitcoinが上がっている！最高", None).unwrap();
        assert!(r.starts_with("language ja (detected)"), "{r}");
        let r = g.check("¡El bitcoin está subiendo! Muy feliz con mi inversión, de verdad", None).unwrap();
        assert!(r.starts_with("language es (detected)"), "{r}");
        // short or English texts are scored
        assert_eq!(g.check("lol ok", None), None);
        assert_eq!(g.check("Does anyone know when the next Bitcoin halving is?", None), None);
        assert_eq!(g.check("@user 🚀🚀 http", None), None);
        assert_eq!(g.check("todo bien", Some("und")), None);
    }
}
