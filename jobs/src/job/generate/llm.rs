//! `sentiflow generate --llm`: posts written by a chat model about a topic,
//! in batches, with varied tone and openings (the prompt asks for it) and a
//! diversity check that drops near-duplicates. If the model cannot be
//! reached the job fails; it never invents fallback text.

use std::collections::HashSet;

use crate::job::generate::{GenerateArgs, Tweet, draw_user, snowflake_id};
use crate::rng::Rng;
use crate::{Error, Result};

use crate::llm::{GENERATE_PROMPT, LlmClient};

/// Posts asked for per request.
const PER_REQUEST: usize = 10;
/// Rounds in a row without a new post before giving up.
const MAX_BARREN_ROUNDS: usize = 5;
/// Two posts sharing more than this share of their word trigrams are near-duplicates.
const MAX_SIMILARITY: f64 = 0.6;

/// Cleans one line of the model's answer into a post, or None for a non-post.
pub fn clean_line(line: &str) -> Option<String> {
    let mut s = line.trim();
    // "1.", "2)", "- ", "* ", "•"
    let digits = s.chars().take_while(char::is_ascii_digit).count();
    if digits > 0 && s[digits..].starts_with(['.', ')', ':']) {
        s = s[digits + 1..].trim_start();
    }
    s = s.trim_start_matches(['-', '*', '•']).trim();
    let s = s.trim_matches(|c| c == '"' || c == '\u{201c}' || c == '\u{201d}').trim();
    let words = s.split_whitespace().count();
    if words < 3 || s.len() > 400 || s.ends_with(':') {
        return None;
    }
    Some(s.to_string())
}

fn shingles(s: &str) -> HashSet<String> {
    let words: Vec<String> = s
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric() && c != '#' && c != '@' && c != '$')
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    if words.len() < 3 {
        return words.into_iter().collect();
    }
    words.windows(3).map(|w| w.join(" ")).collect()
}

/// Keeps posts that are not near-duplicates of an earlier one (Jaccard
/// similarity of word trigrams above [`MAX_SIMILARITY`]).
#[derive(Default)]
pub struct Diversity {
    kept: Vec<HashSet<String>>,
    pub dropped: usize,
}

impl Diversity {
    pub fn admit(&mut self, post: &str) -> bool {
        let sh = shingles(post);
        let near = self.kept.iter().any(|k| {
            let inter = k.intersection(&sh).count() as f64;
            let union = k.union(&sh).count().max(1) as f64;
            inter / union > MAX_SIMILARITY
        });
        if near {
            self.dropped += 1;
            return false;
        }
        self.kept.push(sh);
        true
    }
}

/// Asks the model for `n` distinct posts about `topic`.
pub async fn posts(client: &LlmClient, topic: &str, n: usize) -> Result<(Vec<String>, usize)> {
    let mut out = Vec::with_capacity(n);
    let mut diversity = Diversity::default();
    let mut barren = 0;
    while out.len() < n {
        let want = PER_REQUEST.min(n - out.len()).max(3);
        let prompt = GENERATE_PROMPT.replace("{n}", &want.to_string()).replace("{topic}", topic);
        // ~60 tokens a post; a warm temperature for variety
        let answer = client.ask(prompt, (want * 70) as u32, 0.9).await.map_err(|reason| Error::Llm {
            base_url: client.opts.base_url.clone(),
            model: client.opts.model.clone(),
            reason,
        })?;
        let before = out.len();
        for post in answer.text.lines().filter_map(clean_line) {
            if out.len() < n && diversity.admit(&post) {
                out.push(post);
            }
        }
        barren = if out.len() == before { barren + 1 } else { 0 };
        if barren >= MAX_BARREN_ROUNDS {
            return Err(Error::Llm {
                base_url: client.opts.base_url.clone(),
                model: client.opts.model.clone(),
                reason: format!(
                    "{MAX_BARREN_ROUNDS} answers in a row gave no new post ({} kept of {n}, {} near-duplicates dropped); try another model or topic",
                    out.len(),
                    diversity.dropped
                ),
            });
        }
    }
    Ok((out, diversity.dropped))
}

/// Turns posts into tweets: event times spread over the span in order,
/// sources and users drawn from the seeded PRNG, no ground truth.
pub fn as_tweets(posts: Vec<String>, args: &GenerateArgs) -> Vec<Tweet> {
    let mut rng = Rng::new(args.seed);
    let n = posts.len().max(1) as f64;
    let span = args.span.num_microseconds().unwrap_or(0).max(1) as f64;
    posts
        .into_iter()
        .enumerate()
        .map(|(i, text)| {
            let created_at = args.start.timestamp_micros() + (((i as f64 + rng.f64()) / n) * span) as i64;
            let source = rng.pick(&args.sources).clone();
            let user_id = draw_user(&mut rng);
            Tweet {
                tweet_id: snowflake_id(created_at, i as u64),
                created_at,
                text,
                source,
                user_id,
                lang: "en".into(),
                ingested_at: created_at + 200_000 + (rng.f64() * 2_000_000.0) as i64,
                truth_label: "",
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_cleaned_and_near_duplicates_dropped() {
        assert_eq!(
            clean_line("1. Bitcoin is pumping today, love it! 🚀").as_deref(),
            Some("Bitcoin is pumping today, love it! 🚀")
        );
        assert_eq!(clean_line("- \"Worried about ETH fees again\"").as_deref(), Some("Worried about ETH fees again"));
        assert_eq!(clean_line("Here are 10 posts:"), None);
        assert_eq!(clean_line(""), None);
        let mut d = Diversity::default();
        assert!(d.admit("Bitcoin just broke 90k and I am thrilled about it"));
        assert!(!d.admit("Bitcoin just broke 90k and I am thrilled about it!!"));
        assert!(d.admit("Another exchange hack, crypto feels like a scam today"));
        assert_eq!(d.dropped, 1);
    }
}
