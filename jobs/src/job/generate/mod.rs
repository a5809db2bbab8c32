//! `sentiflow generate`: a seeded, deterministic synthetic tweet generator.
//!
//! Posts about a topic in positive, negative, neutral and mixed phrasing, with
//! hashtags, @mentions, URLs, emoji, typos, shouting and some non-English
//! text, each with its ground-truth polarity (`truth_label`). The share of
//! negative posts drifts over time (a slow cycle plus a sell-off in the middle
//! of the span) so windows have something to show, and two planted events give
//! them something to explain (see [`EVENTS`]): the sell-off is an exchange hack
//! (`#hack`, `$BTC`, "withdrawals halted"), and a shorter positive burst is an
//! ETF approval (`#etf`, "etf approved"). The same arguments always
//! give byte-identical output: the PRNG is our own SplitMix64, not a crate
//! whose streams may change between versions.

pub mod llm;

use std::io::Write;
use std::sync::Arc;

use chrono::{DateTime, Datelike, Timelike, Utc};
use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use datafusion::parquet::arrow::ArrowWriter;
use object_store::path::Path;

use crate::io::kinesis::{Entry, FirehoseProducer, KinesisProducer, StreamUrl};
use crate::io::store::{Location, StoreRegistry, put, stable_hash};
use crate::io::write::parquet_props;
use crate::progress::Progress;
use crate::rng::Rng;
use crate::schema::Table;
use crate::{Error, Result};

/// Output format of the generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Newline-delimited JSON in Firehose's layout `YYYY/MM/DD/HH/<name>`.
    Ndjson,
    /// Parquet, Hive-partitioned `dt=YYYY-MM-DD/hour=HH/`.
    Parquet,
}

#[derive(Debug, Clone)]
pub struct GenerateArgs {
    pub rows: u64,
    pub seed: u64,
    pub start: DateTime<Utc>,
    pub span: chrono::Duration,
    pub sources: Vec<String>,
    pub topic: String,
    pub to: String,
    pub format: OutputFormat,
    pub gzip: bool,
    /// At most this many rows per output file (files are also cut at each hour).
    pub max_rows_per_file: usize,
    /// Stream sinks: records per second (None: as fast as the stream takes them).
    pub rate: Option<f64>,
    /// Stream sinks: retries of throttled or failed puts.
    pub retry: crate::io::retry::RetryPolicy,
}

impl Default for GenerateArgs {
    /// The embedded default: the sample data set in `sample_data/tweets`.
    fn default() -> Self {
        Self {
            rows: 5_000,
            seed: 42,
            start: DateTime::parse_from_rfc3339("2025-02-10T00:00:00Z")
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default(),
            span: chrono::Duration::hours(24),
            sources: DEFAULT_SOURCES.iter().map(|s| s.to_string()).collect(),
            topic: "bitcoin".into(),
            to: "raw".into(),
            format: OutputFormat::Ndjson,
            gzip: false,
            max_rows_per_file: 100_000,
            rate: None,
            retry: crate::io::retry::RetryPolicy::default(),
        }
    }
}

pub const DEFAULT_SOURCES: &[&str] = &["twitter", "reddit", "stocktwits", "telegram"];

#[derive(Debug, Clone, Default)]
pub struct GenerateReport {
    pub rows: u64,
    pub files: usize,
    pub bytes: u64,
    pub to: String,
    pub negative: u64,
    pub neutral: u64,
    pub positive: u64,
    /// Posts without ground truth (written by an LLM).
    pub unlabelled: u64,
    /// Stream sinks: what the producer did (requests, retries, throttles).
    pub producer: Option<crate::io::kinesis::ProducerStats>,
}

/// One generated post.
#[derive(Debug, Clone, PartialEq)]
pub struct Tweet {
    pub tweet_id: String,
    pub created_at: i64,
    pub text: String,
    pub source: String,
    pub user_id: String,
    pub lang: String,
    pub ingested_at: i64,
    pub truth_label: &'static str,
}

/// A Twitter-style snowflake id: milliseconds since Twitter's 2010 epoch, then a 22-bit sequence.
pub(crate) fn snowflake_id(created_at_us: i64, seq: u64) -> String {
    ((((created_at_us / 1000 - 1_288_834_974_657).max(0) as u64) << 22) | (seq & 0x3f_ffff)).to_string()
}

/// A user id `uNNNNN` from the PRNG: a few heavy posters, a long tail.
pub(crate) fn draw_user(rng: &mut Rng) -> String {
    format!("u{:05}", (rng.f64().powi(3) * 5000.0) as u64)
}

const POSITIVE: &[&str] = &[
    "{topic} just broke {price} and I'm loving it",
    "Bullish on {topic}! This rally is amazing",
    "Best decision I ever made was buying {topic}",
    "{topic} adoption keeps growing, great news for everyone",
    "So happy I held my {ticker} through the dip. Feeling great",
    "Huge win today, {topic} up {pct}%",
    "{topic} is the future of money, excited to see what's next",
    "Love how strong the {topic} community is",
    "Wow, {topic} looks really healthy this week. Good times",
    "Finally bought my first {ticker}, thrilled to be part of this",
];
const NEGATIVE: &[&str] = &[
    "{topic} is crashing again, this is a disaster",
    "Lost so much money on {ticker} today. Terrible",
    "I hate how volatile {topic} is, worst investment ever",
    "Another exchange hack. {topic} feels like a scam",
    "{topic} down {pct}%... panic everywhere",
    "Regulators are going to kill {topic}, awful news",
    "So disappointed with {topic}, sold everything at a loss",
    "The fees on {topic} are ridiculous and the network is slow. Sad",
    "Ugh, {topic} dumped overnight. I'm so angry",
    "{topic} holders getting wrecked, this is painful to watch",
];
const NEUTRAL: &[&str] = &[
    "{topic} is trading at {price} right now",
    "What's the block height of {topic} today?",
    "Reading the {topic} whitepaper this weekend",
    "{ticker} volume on exchanges: {n}k trades in the last hour",
    "New {topic} ETF filing listed for {weekday}",
    "Does anyone know when the next {topic} halving is?",
    "Moving my {ticker} to a hardware wallet",
    "{topic} open interest update for {weekday}",
    "Podcast episode on {topic} mining is out",
];
/// Mixed phrasing: the clause after "but" carries the polarity.
const MIXED: &[(&str, &str)] = &[
    ("{topic} tech is brilliant but the price action is painful", "negative"),
    ("Lost some money on {ticker} but still excited about the future", "positive"),
    ("Fees are awful but {topic} keeps getting stronger", "positive"),
    ("Love the idea of {topic} but this crash is brutal", "negative"),
    ("Great conference on {topic} but the market is a disaster", "negative"),
    ("Bad week for {ticker} but I'm confident and happy holding", "positive"),
];
/// (lang, label, text)
const FOREIGN: &[(&str, &str, &str)] = &[
    ("es", "positive", "¡{topic} está subiendo! Muy feliz con mi inversión"),
    ("es", "negative", "{topic} se está desplomando, qué desastre"),
    ("es", "neutral", "{topic} cotiza a {price} hoy"),
    ("pt", "positive", "{topic} subindo muito, estou feliz demais"),
    ("pt", "negative", "Perdi muito dinheiro com {topic}, que tristeza"),
    ("de", "positive", "{topic} steigt weiter, super Nachrichten"),
    ("de", "negative", "{topic} stürzt ab, schrecklich"),
    ("fr", "positive", "{topic} monte encore, génial"),
    ("fr", "negative", "{topic} s'effondre, c'est horrible"),
    ("ja", "positive", "{topic}が上がっている！最高"),
    ("ja", "negative", "{topic}暴落、最悪"),
];
/// A planted event: from `start` to `end` (fractions of the span) the share of
/// negative posts moves by `shift`, and a plain post of a label that `templates`
/// has (label, text) is written from them with probability `share`.
pub struct Event {
    pub name: &'static str,
    pub start: f64,
    pub end: f64,
    pub shift: f64,
    pub share: f64,
    pub templates: &'static [(&'static str, &'static str)],
}

/// The exchange in the hack story: a made-up name.
const EXCHANGE: &str = "CoinVault";

/// The planted events, documented in README ("The sample tells a story"): the
/// default `run`'s window_terms name their terms in their windows.
pub const EVENTS: &[Event] = &[
    Event {
        name: "exchange hack",
        start: 0.55,
        end: 0.65,
        shift: 0.35,
        share: 0.8,
        templates: &[
            ("negative", "{exchange} hacked, withdrawals halted. {topic} dumping #hack"),
            ("negative", "Withdrawals halted on {exchange} after the hack, can't get my {ticker} out #hack"),
            ("negative", "{exchange} says withdrawals halted until further notice, {topic} panic #hack"),
            ("negative", "Hackers drained {exchange}, {ticker} crashing and withdrawals halted #hack"),
            ("negative", "Still no withdrawals from {exchange}. This hack is a disaster for {topic} #hack"),
            ("neutral", "{exchange} withdrawals halted, incident report expected {weekday} #hack"),
            ("neutral", "Reading the {exchange} hack timeline, withdrawals halted since this morning #hack"),
        ],
    },
    Event {
        name: "ETF approval",
        start: 0.25,
        end: 0.29,
        shift: -0.2,
        share: 0.8,
        templates: &[
            ("positive", "Spot {topic} ETF approved! Huge day for {ticker} #ETF"),
            ("positive", "ETF approved, {topic} ripping higher, so happy #ETF"),
            ("positive", "The {topic} ETF approval is finally here, amazing news #ETF"),
            ("positive", "Inflows into the new {topic} ETF look incredible, ETF approved at last #ETF"),
            ("neutral", "Spot {topic} ETF approved, trading starts {weekday} #ETF"),
            ("neutral", "ETF approved: {ticker} volume at {n}k trades in the last hour #ETF"),
        ],
    },
];

/// The event running at a fraction `f` of the span, if any.
fn event_at(f: f64) -> Option<&'static Event> {
    EVENTS.iter().find(|e| (e.start..e.end).contains(&f))
}

const EMOJI_POS: &[&str] = &["🚀", "🙌", "😍", "💎", "📈", "🔥"];
const EMOJI_NEG: &[&str] = &["😡", "😭", "📉", "💀", "🤬", "😞"];
const EMOJI_NEU: &[&str] = &["🤔", "👀", "📊"];
const MENTIONS: &[&str] = &["@satoshi_fan", "@cryptodaily", "@whale_alert", "@coindesk", "@hodl_queen", "@mkt_watch"];
const TAGS: &[&str] = &["#crypto", "#HODL", "#blockchain", "#trading", "#DeFi", "#markets"];
const WEEKDAYS: &[&str] = &["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"];
const SOURCE_WEIGHTS: &[f64] = &[0.55, 0.2, 0.15, 0.1];

fn ticker(topic: &str) -> String {
    match topic.to_ascii_lowercase().as_str() {
        "bitcoin" => "$BTC".into(),
        "ethereum" => "$ETH".into(),
        "solana" => "$SOL".into(),
        t => format!("${}", t.chars().filter(|c| c.is_alphanumeric()).take(4).collect::<String>().to_uppercase()),
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// The generator: an iterator of tweets.
pub struct Generator {
    rng: Rng,
    /// Draws of the planted events only, so posts outside them do not change with them.
    events: Rng,
    args: GenerateArgs,
    i: u64,
    topic_cap: String,
    ticker: String,
    hashtag: String,
    source_cdf: Vec<f64>,
}

impl Generator {
    pub fn new(args: GenerateArgs) -> Self {
        let weights: Vec<f64> =
            (0..args.sources.len()).map(|i| SOURCE_WEIGHTS.get(i).copied().unwrap_or(0.1)).collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let source_cdf = weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect();
        let hashtag = format!("#{}", args.topic.split_whitespace().map(capitalize).collect::<String>());
        Self {
            rng: Rng::new(args.seed),
            events: Rng::new(args.seed ^ 0x005E_ED0F_E7E7_u64),
            topic_cap: capitalize(&args.topic),
            ticker: ticker(&args.topic),
            hashtag,
            source_cdf,
            i: 0,
            args,
        }
    }

    /// Probability of a negative post at a fraction `f` of the span: a slow
    /// cycle, moved by a planted event (the sell-off from 55 % to 65 % of the
    /// span, the ETF burst from 25 % to 29 %).
    fn p_negative(f: f64) -> f64 {
        let base = 0.28 + 0.10 * (f * std::f64::consts::TAU * 3.0).sin();
        (base + event_at(f).map_or(0.0, |e| e.shift)).clamp(0.02, 0.98)
    }

    /// A plain post of `label` at fraction `f`: the event's story when one is
    /// running (drawn from the event generator), else `template` as drawn.
    fn story(&mut self, f: f64, label: &str, template: &'static str) -> &'static str {
        let Some(e) = event_at(f) else { return template };
        let own: Vec<&'static str> = e.templates.iter().filter(|t| t.0 == label).map(|t| t.1).collect();
        if own.is_empty() || !self.events.chance(e.share) {
            return template;
        }
        let t: &&'static str = self.events.pick(&own);
        t
    }

    fn fill(&mut self, template: &str) -> String {
        let topic = if self.rng.chance(0.5) { self.topic_cap.clone() } else { self.args.topic.clone() };
        let price = format!("${}k", 40 + self.rng.below(80));
        let pct = format!("{}", 2 + self.rng.below(25));
        let n = format!("{}", 10 + self.rng.below(900));
        let weekday = *self.rng.pick(WEEKDAYS);
        template
            .replace("{topic}", &topic)
            .replace("{ticker}", &self.ticker)
            .replace("{price}", &price)
            .replace("{pct}", &pct)
            .replace("{n}", &n)
            .replace("{weekday}", weekday)
            .replace("{exchange}", EXCHANGE)
    }

    fn typo(&mut self, s: String) -> String {
        let mut chars: Vec<char> = s.chars().collect();
        let letters: Vec<usize> = (0..chars.len().saturating_sub(1))
            .filter(|&i| chars[i].is_ascii_lowercase() && chars[i + 1].is_ascii_lowercase())
            .collect();
        if letters.is_empty() {
            return s;
        }
        let i = *self.rng.pick(&letters);
        if self.rng.chance(0.5) {
            chars.swap(i, i + 1);
        } else {
            chars.remove(i);
        }
        chars.into_iter().collect()
    }

    fn next_tweet(&mut self) -> Tweet {
        let i = self.i;
        self.i += 1;
        let n = self.args.rows.max(1);
        let span_us = self.args.span.num_microseconds().unwrap_or(0).max(1);
        // stratified times: sorted, uniform, O(1) memory
        let frac = (i as f64 + self.rng.f64()) / n as f64;
        let created_at = self.args.start.timestamp_micros() + (frac * span_us as f64) as i64;
        let ingest_lag = 200_000 + (self.rng.f64().powi(3) * 5_000_000.0) as i64;

        let p_neg = Self::p_negative(frac);
        let r = self.rng.f64();
        let (mut text, label, lang): (String, &'static str, &'static str) = if self.rng.chance(0.08) {
            let (lang, label, t) = *self.rng.pick(FOREIGN);
            (self.fill(t), label, lang)
        } else if r < p_neg * 0.85 {
            let t = *self.rng.pick(NEGATIVE);
            let t = self.story(frac, "negative", t);
            (self.fill(t), "negative", "en")
        } else if r < p_neg {
            let candidates: Vec<&(&str, &str)> = MIXED.iter().filter(|m| m.1 == "negative").collect();
            let (t, _) = **self.rng.pick(&candidates);
            (self.fill(t), "negative", "en")
        } else if r < p_neg + 0.05 {
            let candidates: Vec<&(&str, &str)> = MIXED.iter().filter(|m| m.1 == "positive").collect();
            let (t, _) = **self.rng.pick(&candidates);
            (self.fill(t), "positive", "en")
        } else if r < p_neg + 0.35 {
            let t = *self.rng.pick(NEUTRAL);
            let t = self.story(frac, "neutral", t);
            (self.fill(t), "neutral", "en")
        } else {
            let t = *self.rng.pick(POSITIVE);
            let t = self.story(frac, "positive", t);
            (self.fill(t), "positive", "en")
        };
        if lang == "en" && self.rng.chance(0.10) {
            text = self.typo(text);
        }
        if lang == "en" && label != "neutral" && self.rng.chance(0.05) {
            text = text.to_uppercase();
        }
        if label != "neutral" && self.rng.chance(0.3) {
            text.push_str(if self.rng.chance(0.5) { "!!" } else { "!" });
        }
        let emoji = match label {
            "positive" => EMOJI_POS,
            "negative" => EMOJI_NEG,
            _ => EMOJI_NEU,
        };
        if self.rng.chance(0.45) {
            text.push(' ');
            text.push_str(self.rng.pick::<&str>(emoji));
        }
        if self.rng.chance(0.25) {
            text = format!("{} {text}", *self.rng.pick(MENTIONS));
        }
        if self.rng.chance(0.6) {
            text.push(' ');
            text.push_str(&self.hashtag);
        }
        if self.rng.chance(0.3) {
            text.push(' ');
            text.push_str(self.rng.pick::<&str>(TAGS));
        }
        if self.rng.chance(0.2) {
            let code: String = (0..10).map(|_| (b'a' + self.rng.below(26) as u8) as char).collect();
            text.push_str(&format!(" https://t.co/{code}"));
        }
        let r = self.rng.f64();
        let source_idx = self.source_cdf.iter().position(|c| r < *c).unwrap_or(self.source_cdf.len().saturating_sub(1));
        let source = self.args.sources.get(source_idx).cloned().unwrap_or_else(|| "unknown".into());
        let user_id = draw_user(&mut self.rng);
        Tweet {
            tweet_id: snowflake_id(created_at, i),
            created_at,
            text,
            source,
            user_id,
            lang: lang.to_string(),
            ingested_at: created_at + ingest_lag,
            truth_label: label,
        }
    }
}

impl Iterator for Generator {
    type Item = Tweet;
    fn next(&mut self) -> Option<Tweet> {
        (self.i < self.args.rows).then(|| self.next_tweet())
    }
}

fn rfc3339_micros(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

impl Tweet {
    /// The NDJSON form of the record (what producers put on Kinesis/Firehose).
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "tweet_id": self.tweet_id,
            "created_at": rfc3339_micros(self.created_at),
            "text": self.text,
            "source": self.source,
            "user_id": self.user_id,
            "lang": self.lang,
            "ingested_at": rfc3339_micros(self.ingested_at),
            // LLM-written posts have no ground truth: the field is left out
            "truth_label": (!self.truth_label.is_empty()).then_some(self.truth_label),
        })
        .to_string()
    }
}

/// Builds a raw-schema batch from tweets.
pub fn tweets_batch(tweets: &[Tweet]) -> Result<RecordBatch> {
    let s =
        |f: fn(&Tweet) -> &str| -> ArrayRef { Arc::new(tweets.iter().map(|t| Some(f(t))).collect::<StringArray>()) };
    let ts = |f: fn(&Tweet) -> i64| -> ArrayRef {
        Arc::new(TimestampMicrosecondArray::from(tweets.iter().map(f).collect::<Vec<_>>()).with_timezone("UTC"))
    };
    let cols = vec![
        s(|t| &t.tweet_id),
        ts(|t| t.created_at),
        s(|t| &t.text),
        s(|t| &t.source),
        s(|t| &t.user_id),
        s(|t| &t.lang),
        ts(|t| t.ingested_at),
        Arc::new(tweets.iter().map(|t| (!t.truth_label.is_empty()).then_some(t.truth_label)).collect::<StringArray>()),
    ];
    RecordBatch::try_new(Table::Raw.schema(), cols).map_err(|e| Error::arrow("generated tweets", e))
}

fn hour_of(us: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_micros(us - us.rem_euclid(3_600_000_000)).unwrap_or_default()
}

/// Where a file of the bucket starting at `hour` goes, relative to the output root.
fn file_path(root: &Path, args: &GenerateArgs, hour: DateTime<Utc>, part: usize) -> Path {
    let tag = format!("{:08x}", stable_hash(&format!("{}-{}-{}", args.seed, args.rows, args.topic)) as u32);
    let (dirs, name) = match args.format {
        OutputFormat::Ndjson => (
            vec![
                format!("{:04}", hour.year()),
                format!("{:02}", hour.month()),
                format!("{:02}", hour.day()),
                format!("{:02}", hour.hour()),
            ],
            format!(
                "sentiflow-1-{}-{tag}-{part:04}{}",
                hour.format("%Y-%m-%d-%H-%M-%S"),
                if args.gzip { ".gz" } else { "" }
            ),
        ),
        OutputFormat::Parquet => (
            vec![format!("dt={}", hour.format("%Y-%m-%d")), format!("hour={:02}", hour.hour())],
            format!("part-{tag}-{part:04}.parquet"),
        ),
    };
    let mut p = root.clone();
    for d in dirs {
        p = p.join(d);
    }
    p.join(name)
}

fn encode(args: &GenerateArgs, tweets: &[Tweet]) -> Result<Vec<u8>> {
    match args.format {
        OutputFormat::Ndjson => {
            let mut body = Vec::with_capacity(tweets.len() * 256);
            for t in tweets {
                body.extend_from_slice(t.to_json().as_bytes());
                body.push(b'\n');
            }
            if !args.gzip {
                return Ok(body);
            }
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(&body)
                .and_then(|_| gz.finish())
                .map_err(|source| Error::Io { path: "gzip buffer".into(), source })
        }
        OutputFormat::Parquet => {
            let batch = tweets_batch(tweets)?;
            let mut buf = Vec::new();
            let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(parquet_props()))
                .map_err(|source| Error::ParquetWrite { location: "generated tweets".into(), source })?;
            w.write(&batch)
                .and_then(|_| w.close().map(|_| ()))
                .map_err(|source| Error::ParquetWrite { location: "generated tweets".into(), source })?;
            Ok(buf)
        }
    }
}

impl GenerateReport {
    fn count(&mut self, t: &Tweet) {
        match t.truth_label {
            "negative" => self.negative += 1,
            "positive" => self.positive += 1,
            "neutral" => self.neutral += 1,
            _ => self.unlabelled += 1,
        }
        self.rows += 1;
    }
}

/// Runs the generator into files (local or S3) or onto a stream
/// (`kinesis://STREAM`, `firehose://DELIVERY_STREAM`).
pub async fn run(stores: &StoreRegistry, args: GenerateArgs) -> Result<GenerateReport> {
    let tweets = Generator::new(args.clone());
    write_tweets(stores, args, tweets).await
}

/// Writes tweets (time-ordered) to the sink `args.to` names: files or a stream.
pub async fn write_tweets(
    stores: &StoreRegistry,
    args: GenerateArgs,
    tweets: impl Iterator<Item = Tweet>,
) -> Result<GenerateReport> {
    if args.sources.is_empty() || args.sources.iter().any(|s| s.trim().is_empty()) {
        return Err(Error::Option {
            option: "--sources",
            reason: format!(
                "needs non-empty names (got {:?}); every record's source is required",
                args.sources.join(",")
            ),
        });
    }
    let in_range = |t: DateTime<Utc>| crate::schema::event_time_in_range(t.timestamp_micros());
    if !in_range(args.start) || !args.start.checked_add_signed(args.span).is_some_and(in_range) {
        return Err(Error::Option {
            option: "--start",
            reason: format!(
                "{} with --span {} leaves the supported time range 1900-01-01..2200-01-01",
                args.start.to_rfc3339(),
                args.span
            ),
        });
    }
    if args.span <= chrono::Duration::zero() {
        return Err(Error::Option { option: "--span", reason: "must be positive".into() });
    }
    if let Some(stream) = StreamUrl::parse(&args.to) {
        return run_stream(stream?, args, tweets).await;
    }
    let loc = Location::parse(&args.to)?;
    let store = stores.store(&loc.store_url)?;
    let mut report = GenerateReport { to: loc.display.clone(), ..Default::default() };
    let progress = Progress::rows("generate", args.rows);
    let mut bucket: Vec<Tweet> = Vec::new();
    let mut bucket_hour: Option<DateTime<Utc>> = None;
    let mut part = 0usize;

    async fn flush(
        store: &dyn object_store::ObjectStore,
        loc: &Location,
        args: &GenerateArgs,
        hour: DateTime<Utc>,
        part: usize,
        tweets: &mut Vec<Tweet>,
        report: &mut GenerateReport,
    ) -> Result<()> {
        if tweets.is_empty() {
            return Ok(());
        }
        let body = encode(args, tweets)?;
        report.bytes += body.len() as u64;
        report.files += 1;
        put(store, loc, &file_path(&loc.path, args, hour, part), body).await?;
        tweets.clear();
        Ok(())
    }

    for t in tweets {
        let h = hour_of(t.created_at);
        if bucket_hour != Some(h) || bucket.len() >= args.max_rows_per_file {
            if let Some(bh) = bucket_hour {
                flush(store.as_ref(), &loc, &args, bh, part, &mut bucket, &mut report).await?;
            }
            part = if bucket_hour == Some(h) { part + 1 } else { 0 };
            bucket_hour = Some(h);
        }
        report.count(&t);
        bucket.push(t);
        if report.rows.is_multiple_of(4096) {
            progress.set(report.rows);
        }
    }
    if let Some(bh) = bucket_hour {
        flush(store.as_ref(), &loc, &args, bh, part, &mut bucket, &mut report).await?;
    }
    progress.finish(report.rows);
    tracing::info!(rows = report.rows, files = report.files, bytes = report.bytes, to = %report.to, "generated tweets");
    Ok(report)
}

/// Records per producer call: one PutRecords/PutRecordBatch holds at most 500.
const STREAM_CHUNK: usize = 500;

/// Puts the tweets on a Kinesis stream (partition key = tweet id) or a
/// Firehose delivery stream (one NDJSON line per record), paced by `rate`.
async fn run_stream(
    stream: StreamUrl,
    args: GenerateArgs,
    tweets: impl Iterator<Item = Tweet>,
) -> Result<GenerateReport> {
    if args.rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
        return Err(Error::Option { option: "--rate", reason: "must be positive".into() });
    }
    enum Producer {
        Kinesis(KinesisProducer),
        Firehose(FirehoseProducer),
    }
    let mut producer = match &stream {
        StreamUrl::Kinesis(n) => Producer::Kinesis(KinesisProducer::new(n, args.retry).await),
        StreamUrl::Firehose(n) => Producer::Firehose(FirehoseProducer::new(n, args.retry).await),
    };
    let mut report = GenerateReport { to: stream.to_string(), ..Default::default() };
    let progress = Progress::rows("generate", args.rows);
    let started = std::time::Instant::now();
    // with a rate, send small chunks often (about 10 per second) so the feed is steady
    let chunk = args.rate.map(|r| ((r / 10.0).ceil() as usize).clamp(1, STREAM_CHUNK)).unwrap_or(STREAM_CHUNK);
    let mut tweets = tweets.peekable();
    while tweets.peek().is_some() {
        let mut entries = Vec::with_capacity(chunk);
        for t in tweets.by_ref().take(chunk) {
            report.count(&t);
            let mut data = t.to_json().into_bytes();
            if matches!(stream, StreamUrl::Firehose(_)) {
                data.push(b'\n');
            }
            report.bytes += data.len() as u64;
            entries.push(Entry { key: t.tweet_id.clone(), data });
        }
        if let Some(rate) = args.rate {
            // pace: the records sent so far are due at rows / rate seconds
            let due = std::time::Duration::from_secs_f64((report.rows - entries.len() as u64) as f64 / rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
        match &mut producer {
            Producer::Kinesis(p) => p.send(entries).await?,
            Producer::Firehose(p) => p.send(entries).await?,
        }
        progress.set(report.rows);
    }
    progress.finish(report.rows);
    let stats = match producer {
        Producer::Kinesis(p) => p.stats,
        Producer::Firehose(p) => p.stats,
    };
    report.files = 0;
    tracing::info!(rows = report.rows, requests = stats.requests, retries = stats.retries, throttled = stats.throttled, to = %report.to, "generated tweets onto a stream");
    report.producer = Some(stats);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_varied() {
        let args = GenerateArgs { rows: 2000, ..Default::default() };
        let a: Vec<Tweet> = Generator::new(args.clone()).collect();
        let b: Vec<Tweet> = Generator::new(args.clone()).collect();
        assert_eq!(a, b);
        let c: Vec<Tweet> = Generator::new(GenerateArgs { seed: 7, ..args.clone() }).collect();
        assert_ne!(a, c);
        // time-ordered, inside the span
        assert!(a.windows(2).all(|w| w[0].created_at <= w[1].created_at));
        let end = args.start.timestamp_micros() + args.span.num_microseconds().unwrap();
        assert!(a.iter().all(|t| t.created_at >= args.start.timestamp_micros() && t.created_at < end));
        // every ingredient shows up
        let has = |f: &dyn Fn(&Tweet) -> bool| a.iter().filter(|t| f(t)).count();
        assert!(has(&|t| t.text.contains('#')) > 500);
        assert!(has(&|t| t.text.contains('@')) > 200);
        assert!(has(&|t| t.text.contains("https://t.co/")) > 200);
        assert!(has(&|t| t.lang != "en") > 50);
        assert!(has(&|t| t.text.contains(" but ")) > 50);
        for l in ["negative", "neutral", "positive"] {
            assert!(has(&|t| t.truth_label == l) > 300, "{l}");
        }
        let ids: std::collections::HashSet<_> = a.iter().map(|t| &t.tweet_id).collect();
        assert_eq!(ids.len(), a.len(), "tweet ids are unique");
    }

    #[test]
    fn planted_events_carry_their_terms_and_only_theirs() {
        let args = GenerateArgs { rows: 20_000, ..Default::default() };
        let (start, span) = (args.start.timestamp_micros(), args.span.num_microseconds().unwrap() as f64);
        let all: Vec<Tweet> = Generator::new(args).collect();
        let n = all.len() as f64;
        let during =
            |t: &Tweet, e: &Event| (e.start - 1e-6..e.end + 1e-6).contains(&((t.created_at - start) as f64 / span));
        for (e, (tag, label)) in EVENTS.iter().zip([("#hack", "positive"), ("#ETF", "negative")]) {
            let with_tag: Vec<&Tweet> = all.iter().filter(|t| t.text.contains(tag)).collect();
            assert!(with_tag.len() as f64 > n * (e.end - e.start) * 0.3, "{}: {}", e.name, with_tag.len());
            assert!(with_tag.iter().all(|t| t.truth_label != label), "no {} post is {label}", e.name);
            assert!(with_tag.iter().all(|t| during(t, e)), "{} posts only while it runs", e.name);
        }
        assert!(all.iter().any(|t| t.text.contains("withdrawals halted")));
        assert!(all.iter().any(|t| t.text.contains("ETF approved")));
    }

    #[test]
    fn sell_off_raises_negative_share() {
        let args = GenerateArgs { rows: 20_000, ..Default::default() };
        let all: Vec<Tweet> = Generator::new(args).collect();
        let share = |ts: &[Tweet]| ts.iter().filter(|t| t.truth_label == "negative").count() as f64 / ts.len() as f64;
        let mid = &all[11_000..13_000];
        assert!(share(mid) > share(&all) + 0.15, "{} vs {}", share(mid), share(&all));
    }
}
