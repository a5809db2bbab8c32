//! ONNX sentiment classifier: a Hugging Face sequence-classification model
//! exported to ONNX, run by ONNX Runtime through `ort`, tokenized by
//! `tokenizers`, with no download at any time.
//!
//! A model directory holds `model.onnx` (or `model_quantized.onnx`),
//! `tokenizer.json` and `config.json`, whose `id2label` decides the label
//! order (2-class negative/positive and 3-class negative/neutral/positive
//! models both work). The score is P(positive) − P(negative), in [-1, 1], as
//! Snowflake's SENTIMENT() defines it; the label is the most probable class.
//!
//! Text: `config.json` may name a `preprocess` (`tweet-v1`: mentions and URLs
//! normalised as in training, see [`crate::text`]) and the `languages` the
//! model reads, which the scoring UDFs enforce.
//!
//! Speed and determinism: each distinct model input (the token ids of a
//! normalised text) is run once per run — its copies (retweets, reposts, and
//! texts the uncased tokenizer reads the same: another case, spacing, accent)
//! take its probabilities, in the same batch or later (at most
//! [`MAX_REUSED_TEXTS`] kept) — which is exact because of the rule below.
//! Texts are tokenized once (no padding, truncation at the model's max length)
//! and sorted by token count; then one of two [`Layout`]s, chosen when the
//! model loads:
//! - [`Layout::Packed`], when a row's result does not depend on its batch-mates
//!   or on its padding (the shipped model: static int8 with fixed scales, mean
//!   pooling as a MatMul per row): batches of `batch_size` texts in length order,
//!   each padded to its longest text — what Python's length-sorted pipeline does
//!   — and cut where a batch would pass [`MAX_BATCH_TOKENS`] padded tokens.
//!   [`OnnxScorer::load`] checks the rule on probe texts (alone, and together
//!   padded wider) and a test checks it on whole data sets, so an ONNX Runtime
//!   upgrade that breaks it is caught.
//! - [`Layout::Fixed`], for any other model (one with dynamic quantization, or
//!   whose pooling sums in an order set by the batch's shape): texts grouped by
//!   width bucket (the token count rounded up to a multiple of [`WIDTH_STEP`]),
//!   every run exactly `batch_size` rows (a short batch filled with copies of its
//!   first text), so the shape a text is computed in depends on that text alone.
//!
//! Either way a text gets the same bits alone, in any batch and in any order.
//! Sessions are created once and
//! shared; with `sessions > 1` several run side by side, each taking the next
//! batch (on few cores, two 1-thread sessions keep the cores busier than one
//! 2-thread session, whose threads wait for each other inside every small
//! operator).
//!
//! ONNX Runtime is loaded at run time (`ort`'s `load-dynamic`): the library
//! that the PyPI `onnxruntime` wheel ships. [`find_runtime`] says where it
//! looked and how to install it when it is missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::Tensor;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::text::{PREPROCESS_TWEET_V1, normalize_tweet, unreadable};
use crate::{Error, Label, Outcome, Result, Scorer, stable_hash};

/// The ONNX Runtime version whose C API this build uses (`ort` feature `api-31`);
/// the library must be this version or newer.
pub const ORT_VERSION: &str = "1.31.1";

/// What to tell a user whose ONNX Runtime is missing or too old.
pub const ORT_FIX: &str = "install it with `bash scripts/setup-ort.sh` (the PyPI wheel onnxruntime==1.31.1, no other \
     download) or `pip install onnxruntime==1.31.1`, then set ORT_DYLIB_PATH to its \
     onnxruntime/capi/libonnxruntime.so.1.31.1 (or pass --ort-lib); or score with --scorer lexicon";

/// Where the ONNX model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Device {
    #[default]
    Cpu,
    /// CUDA execution provider (needs the onnxruntime-gpu build of the library).
    Cuda,
}

/// How to load and run the model.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OnnxOptions {
    pub model_dir: PathBuf,
    /// The ONNX Runtime library; `None` searches (see [`find_runtime`]).
    pub ort_lib: Option<PathBuf>,
    pub device: Device,
    /// Intra-op threads of each session; 0 = 1 when `sessions` is automatic,
    /// else ONNX Runtime's default (all cores).
    pub threads: usize,
    /// Sessions run side by side, each on its own batches; 0 = automatic:
    /// one per `threads` cores.
    pub sessions: usize,
    /// Texts per `session.run`.
    pub batch_size: usize,
}

impl OnnxOptions {
    pub fn new(model_dir: impl Into<PathBuf>) -> Self {
        Self {
            model_dir: model_dir.into(),
            ort_lib: None,
            device: Device::Cpu,
            threads: 0,
            sessions: 0,
            batch_size: DEFAULT_BATCH_SIZE,
        }
    }
}

/// The candidates for the ONNX Runtime library, in the order they are tried:
/// `ORT_DYLIB_PATH`; beside the executable (`./`, `../lib/`: the container
/// layout); what `scripts/setup-ort.sh` installs under
/// `$SENTIFLOW_TOOLS` (default `~/.cache/sentiflow/tools`).
fn runtime_candidates() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(d) = exe.parent()
    {
        dirs.push(d.to_path_buf());
        dirs.push(d.join("../lib"));
    }
    let tools = std::env::var_os("SENTIFLOW_TOOLS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/sentiflow/tools")));
    if let Some(t) = tools {
        dirs.push(t.join("onnxruntime"));
    }
    dirs.iter()
        .flat_map(|d| [d.join(format!("libonnxruntime.so.{ORT_VERSION}")), d.join("libonnxruntime.so")])
        .collect()
}

/// Finds the ONNX Runtime library: `explicit` (from `--ort-lib`), else
/// `ORT_DYLIB_PATH`, else the places in [`runtime_candidates`].
pub fn find_runtime(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(Error::RuntimeMissing { looked: p.display().to_string(), fix: ORT_FIX })
        };
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Error::RuntimeMissing { looked: format!("ORT_DYLIB_PATH={}", p.display()), fix: ORT_FIX })
        };
    }
    let candidates = runtime_candidates();
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| Error::RuntimeMissing {
        looked: candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
        fix: ORT_FIX,
    })
}

/// The process-wide ONNX Runtime environment, loaded once from the first
/// library path asked for.
fn environment(lib: &Path) -> Result<&'static ort::environment::Environment> {
    static ENV: OnceLock<std::result::Result<ort::environment::Environment, String>> = OnceLock::new();
    let env = ENV.get_or_init(|| {
        let builder = ort::init_from(lib).map_err(|e| e.to_string())?;
        builder.with_name("sentiflow").build().map_err(|e| e.to_string())
    });
    env.as_ref().map_err(|reason| Error::RuntimeLoad {
        path: lib.display().to_string(),
        reason: reason.clone(),
        fix: ORT_FIX,
    })
}

/// `config.json`: the parts the scorer reads.
#[derive(Debug, Clone)]
struct ModelConfig {
    /// Label names, by class index.
    labels: Vec<String>,
    max_length: usize,
    /// `languages`: what the model reads (BCP 47 primary subtags); `None` when
    /// the config does not say, and then no text is refused for its language.
    languages: Option<Vec<String>>,
    /// `preprocess`: the text normalisation the model was trained with.
    normalize: bool,
}

fn read_config(dir: &Path) -> Result<ModelConfig> {
    let path = dir.join("config.json");
    let bad = |reason: String| Error::Model { path: path.display().to_string(), reason };
    let text = std::fs::read_to_string(&path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let id2label = v
        .get("id2label")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad("no id2label object (which class index is which label)".into()))?;
    let mut by_index = BTreeMap::new();
    for (k, name) in id2label {
        let i: usize = k.parse().map_err(|_| bad(format!("id2label key {k:?} is not a class index")))?;
        let name = name.as_str().ok_or_else(|| bad(format!("id2label[{k}] is not a string")))?;
        by_index.insert(i, name.to_string());
    }
    let labels: Vec<String> = by_index.values().cloned().collect();
    if by_index.keys().copied().ne(0..labels.len()) || labels.len() < 2 {
        return Err(bad(format!("id2label must number 2 or more classes 0..n, got {:?}", by_index.keys())));
    }
    // the model's own limit: max_length (written by our training script), else
    // max_position_embeddings; BERT-style models stop at 512
    let max_length = ["max_length", "max_position_embeddings"]
        .iter()
        .find_map(|k| v.get(*k).and_then(|x| x.as_u64()))
        .unwrap_or(512)
        .min(512) as usize;
    let languages = match v.get("languages") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Array(a)) => Some(
            a.iter()
                .map(|l| {
                    l.as_str().map(str::to_string).ok_or_else(|| bad(format!("languages holds {l}, not a string")))
                })
                .collect::<Result<Vec<_>>>()?,
        ),
        Some(other) => return Err(bad(format!("languages must be a list like [\"en\"], got {other}"))),
    };
    let normalize = match v.get("preprocess").and_then(|p| p.as_str()) {
        None => false,
        Some(PREPROCESS_TWEET_V1) => true,
        Some(other) => {
            return Err(bad(format!(
                "preprocess {other:?} is unknown to this sentiflow (it knows {PREPROCESS_TWEET_V1:?})"
            )));
        }
    };
    Ok(ModelConfig { labels, max_length, languages, normalize })
}

/// Maps a model's label name onto the three sentiment classes.
/// Understands names like `negative`/`NEG`/`LABEL_0`; `LABEL_i` follows the
/// usual order (2 classes: negative, positive; 3: negative, neutral, positive).
fn classify_label(name: &str, index: usize, n: usize) -> Option<Label> {
    if let Some(label) = Label::from_name(name) {
        return Some(label);
    }
    if !name.to_ascii_lowercase().starts_with("label_") {
        return None;
    }
    match (n, index) {
        (2, 0) | (3, 0) => Some(Label::Negative),
        (2, 1) | (3, 2) => Some(Label::Positive),
        (3, 1) => Some(Label::Neutral),
        _ => None,
    }
}

/// Picks the model file of a directory.
fn model_file(dir: &Path) -> Result<PathBuf> {
    for name in ["model.onnx", "model_quantized.onnx", "onnx/model.onnx", "onnx/model_quantized.onnx"] {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(Error::Model {
        path: dir.display().to_string(),
        reason: "no model.onnx or model_quantized.onnx in it (a model directory holds the ONNX file, \
                 tokenizer.json and config.json)"
            .into(),
    })
}

/// Texts per `session.run` by default. In the [`Layout::Fixed`] layout every
/// run has exactly this many rows (a short batch is filled with copies), so a
/// small batch wastes little on small inputs (a Firehose file of a few rows per
/// width bucket). Measured on an AVX2 EPYC, 2 cores, fixed layout: 8 against 32
/// cost 0.27× the CPU-s on 400 generated tweets in 168 hourly files, 0.89× on
/// the sample's 24 files, and gave 1.16× the sentences per CPU-second on SST-2
/// dev's 872 sentences (same accuracy).
pub const DEFAULT_BATCH_SIZE: usize = 8;

/// Padded tokens (rows × width) per `session.run` at most in the
/// [`Layout::Packed`] layout, whatever the batch size: a larger run does the
/// same work per text, but its activations no longer fit the caches, so it
/// costs more CPU per text and more memory. Exact: a packed text's bits do not
/// depend on its batch. 512 = the default batch (8) × the shipped model's
/// maximum length (64), so the default is never cut. Measured on SST-2 dev
/// (AVX-512 VNNI EPYC, 2 cores, dev profile, 2 runs each): at `--onnx-batch
/// 128`, 203–211 sentences per CPU-second and 716–728 MiB peak RSS uncut;
/// 278–296 and 290 MiB cut at 512 (256 and 1024: 268–294 / 263 MiB and
/// 253–305 / 330–347 MiB); batches 8 and 32 the same within noise.
pub const MAX_BATCH_TOKENS: usize = 512;

/// Cuts `order` (sorted by `len`, ascending) into runs of at most `max_rows`
/// texts whose padded size (rows × the last, longest text's length) stays
/// within `max_tokens`; a text longer than `max_tokens` runs alone.
fn packed_chunks(order: &[usize], len: impl Fn(usize) -> usize, max_rows: usize, max_tokens: usize) -> Vec<&[usize]> {
    let mut chunks = Vec::new();
    let mut start = 0;
    for (i, &k) in order.iter().enumerate() {
        let rows = i - start + 1;
        if rows > 1 && (rows > max_rows || rows * len(k) > max_tokens) {
            chunks.push(&order[start..i]);
            start = i;
        }
    }
    if start < order.len() {
        chunks.push(&order[start..]);
    }
    chunks
}

/// How texts are put into `session.run` batches (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Batches of up to `batch_size` texts (and [`MAX_BATCH_TOKENS`] padded
    /// tokens) in length order, each padded to its longest text: for a model
    /// whose rows do not depend on their batch-mates or padding.
    Packed,
    /// Each text in a run of exactly `batch_size` rows of its own width bucket.
    Fixed,
}

/// Texts of different lengths that [`OnnxScorer::load`] runs alone and then
/// together, padded wider than any of them, to choose the [`Layout`].
const LAYOUT_PROBES: [&str; 3] = [
    "great",
    "the service was slow and the food was cold",
    "@user not sure what to make of the update, some of it works and some does not",
];

/// Padded widths are multiples of this many tokens (see [`OnnxScorer::width_of`]).
pub const WIDTH_STEP: usize = 8;

/// Class probabilities of one text, in the model's label order.
pub type Probs = Vec<f32>;

/// A loaded model: session, tokenizer and labels.
pub struct OnnxScorer {
    sessions: Vec<Mutex<Session>>,
    tokenizer: Tokenizer,
    labels: Vec<String>,
    classes: Vec<Label>,
    positive: usize,
    negative: usize,
    needs_type_ids: bool,
    output: String,
    batch_size: usize,
    layout: Layout,
    max_length: usize,
    languages: Option<Vec<String>>,
    normalize: bool,
    id: String,
    options: OnnxOptions,
    stats: [AtomicU64; 5],
    /// Probabilities of the model inputs (token ids) this scorer already ran,
    /// for the run's copies of them (retweets, reposts): at most [`MAX_REUSED_TEXTS`].
    seen: Mutex<rustc_hash::FxHashMap<Vec<u32>, Probs>>,
}

/// Distinct model inputs (token ids) whose probabilities a scorer keeps for
/// their copies later in the run (about 40 MB of ids and probabilities); when
/// it holds this many it starts again empty. Exact: an input's probabilities
/// are the same bits in any batch (see [`OnnxScorer::predict`]).
pub const MAX_REUSED_TEXTS: usize = 200_000;

/// Where the scorer's time went since it was loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OnnxStats {
    pub texts: u64,
    pub runs: u64,
    pub tokenize_s: f64,
    pub inference_s: f64,
    /// Of `texts`, those given the result of the same model input (token ids)
    /// run earlier in the run (in the same batch or before), not run again.
    pub texts_reused: u64,
}

impl std::fmt::Debug for OnnxScorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxScorer").field("id", &self.id).field("labels", &self.labels).finish()
    }
}

impl OnnxScorer {
    /// Loads the model directory: checks it, starts ONNX Runtime, builds the session.
    pub fn load(options: OnnxOptions) -> Result<Self> {
        let dir = &options.model_dir;
        if !dir.is_dir() {
            return Err(Error::Model {
                path: dir.display().to_string(),
                reason: "not a directory (pass --model DIR with model.onnx, tokenizer.json, config.json)".into(),
            });
        }
        let config = read_config(dir)?;
        let classes = sentiment_classes(dir, &config.labels)?;
        let find = |want: Label| classes.iter().position(|c| *c == want);
        let (Some(positive), Some(negative)) = (find(Label::Positive), find(Label::Negative)) else {
            return Err(Error::Model {
                path: dir.join("config.json").display().to_string(),
                reason: format!("id2label {:?} lacks a positive or a negative class", config.labels),
            });
        };

        let tokenizer = load_tokenizer(dir, config.max_length)?;

        let file = model_file(dir)?;
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        if options.sessions > cores {
            // each session holds its own copy of the model and its buffers
            return Err(Error::Model {
                path: dir.display().to_string(),
                reason: format!(
                    "--onnx-sessions {} is more than the {cores} cores here; sessions beyond one per core only add \
                     memory (each holds the model), so use at most {cores}, or 0 for automatic",
                    options.sessions
                ),
            });
        }
        let lib = find_runtime(options.ort_lib.as_deref())?;
        let env = environment(&lib)?;
        let model_err = |e: String| Error::Model { path: file.display().to_string(), reason: e };
        let (threads, n_sessions) = session_layout(options.threads, options.sessions);
        let mut builder = Session::builder(env)
            .map_err(|e| model_err(e.to_string()))?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| model_err(e.to_string()))?
            // no busy-waiting between runs: it burns CPU-seconds the rest of the job needs
            .with_intra_op_spinning(false)
            .map_err(|e| model_err(e.to_string()))?;
        if threads > 0 {
            builder = builder.with_intra_threads(threads).map_err(|e| model_err(e.to_string()))?;
        }
        if options.device == Device::Cuda {
            builder = builder
                .with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
                .map_err(|e| Error::Cuda { reason: e.to_string() })?;
        }
        let sessions = (0..n_sessions)
            .map(|_| builder.commit_from_file(&file).map(Mutex::new).map_err(|e| model_err(e.to_string())))
            .collect::<Result<Vec<_>>>()?;
        let session = sessions[0].lock().map_err(|_| model_err("session lock".into()))?;
        let input_names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        for need in ["input_ids", "attention_mask"] {
            if !input_names.contains(&need) {
                return Err(model_err(format!("the model has no {need} input (inputs: {input_names:?})")));
            }
        }
        let needs_type_ids = input_names.contains(&"token_type_ids");
        let output = session
            .outputs()
            .iter()
            .map(|o| o.name().to_string())
            .find(|n| n == "logits")
            .or_else(|| session.outputs().first().map(|o| o.name().to_string()))
            .ok_or_else(|| model_err("the model has no output".into()))?;
        drop(session);

        let bytes = std::fs::read(&file).map_err(|e| model_err(e.to_string()))?;
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
        let id = format!("onnx:{name}@{:016x}", stable_hash(&bytes));
        let mut scorer = Self {
            sessions,
            tokenizer,
            labels: config.labels,
            classes,
            positive,
            negative,
            needs_type_ids,
            output,
            batch_size: options.batch_size.max(1),
            layout: Layout::Fixed,
            max_length: config.max_length,
            languages: config.languages,
            normalize: config.normalize,
            id,
            options,
            stats: Default::default(),
            seen: Default::default(),
        };
        scorer.layout = scorer.choose_layout().unwrap_or_else(|e| {
            tracing::info!(error = %e, "the layout probe did not run: fixed batch shapes");
            Layout::Fixed
        });
        tracing::info!(model = %file.display(), runtime = %lib.display(), labels = ?scorer.labels,
            max_length = scorer.max_length, device = ?scorer.options.device, sessions = n_sessions,
            threads_per_session = threads, layout = ?scorer.layout, "onnx model loaded");
        Ok(scorer)
    }

    /// [`Layout::Packed`] if each probe text gets the same logits, bit for bit,
    /// alone at its own width as in one batch with the others padded wider than
    /// the longest; else [`Layout::Fixed`].
    fn choose_layout(&self) -> Result<Layout> {
        let encodings = self
            .tokenizer
            .encode_batch(LAYOUT_PROBES.to_vec(), true)
            .map_err(|e| Error::Inference { reason: format!("tokenizer: {e}") })?;
        let rows: Vec<&tokenizers::Encoding> = encodings.iter().collect();
        let longest = rows.iter().map(|e| e.get_ids().len()).max().unwrap_or(1);
        let mut session = self.sessions[0].lock().map_err(|_| Error::Inference { reason: "session lock".into() })?;
        // wider than the longest probe, within the model's max length
        let together = self.run_batch(&mut session, &rows, (longest + WIDTH_STEP).min(self.max_length.max(longest)))?;
        let n = self.labels.len();
        for (r, e) in rows.iter().enumerate() {
            let alone = self.run_batch(&mut session, &[e], e.get_ids().len())?;
            if alone.iter().map(|x| x.to_bits()).ne(together[r * n..(r + 1) * n].iter().map(|x| x.to_bits())) {
                tracing::info!(probe = r, "a row's logits depend on its batch or padding: fixed batch shapes");
                return Ok(Layout::Fixed);
            }
        }
        Ok(Layout::Packed)
    }

    /// The batch layout chosen when the model loaded.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    pub fn options(&self) -> &OnnxOptions {
        &self.options
    }

    /// Texts scored, session runs, the time spent tokenizing and in `session.run`, and texts reused.
    pub fn stats(&self) -> OnnxStats {
        let [texts, runs, tok, inf, reused] = &self.stats;
        OnnxStats {
            texts: texts.load(Ordering::Relaxed),
            runs: runs.load(Ordering::Relaxed),
            tokenize_s: tok.load(Ordering::Relaxed) as f64 / 1e9,
            inference_s: inf.load(Ordering::Relaxed) as f64 / 1e9,
            texts_reused: reused.load(Ordering::Relaxed),
        }
    }

    fn add_stat(&self, i: usize, v: u64) {
        self.stats[i].fetch_add(v, Ordering::Relaxed);
    }

    /// The padded width of a text of `tokens` tokens: the next multiple of
    /// [`WIDTH_STEP`], at most the model's max length. It depends on the text
    /// alone, never on its batch-mates.
    fn width_of(&self, tokens: usize) -> usize {
        tokens.max(1).div_ceil(WIDTH_STEP).saturating_mul(WIDTH_STEP).min(self.max_length.max(tokens)).max(1)
    }

    /// Class probabilities for each text; `None` for a NULL, empty or
    /// content-free text.
    ///
    /// Deterministic: a text's probabilities are the same bits alone, in any
    /// batch, in any order — in the [`Layout::Packed`] layout because the model's
    /// rows do not depend on their batch-mates or padding (checked at load), in
    /// the [`Layout::Fixed`] one because every `session.run` has the same shape
    /// for a given text: `batch_size` rows (a short batch is filled with copies
    /// of its first row, whose results are dropped) of the text's own width
    /// bucket ([`OnnxScorer::width_of`]). That is what makes reuse exact: a
    /// text whose token ids equal those of one already run takes its
    /// probabilities instead of running again.
    pub fn predict(&self, texts: &[Option<&str>]) -> Result<Vec<Option<Probs>>> {
        let mut out: Vec<Option<Probs>> = vec![None; texts.len()];
        let todo: Vec<(usize, std::borrow::Cow<'_, str>)> = texts
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.filter(|t| unreadable(t).is_none()).map(|t| (i, t)))
            .map(|(i, t)| (i, if self.normalize { normalize_tweet(t) } else { t.into() }))
            .collect();
        if todo.is_empty() {
            return Ok(out);
        }
        self.add_stat(0, todo.len() as u64);
        // each distinct model input once: the same tokens get the same bits, so a copy (the same
        // text, or one the tokenizer reads the same: another case, spacing or accent) takes the
        // result of the first, in this call or earlier in the run
        let t0 = Instant::now();
        let encodings = self
            .tokenizer
            .encode_batch(todo.iter().map(|(_, t)| t.as_ref()).collect::<Vec<&str>>(), true)
            .map_err(|e| Error::Inference { reason: format!("tokenizer: {e}") })?;
        self.add_stat(2, t0.elapsed().as_nanos() as u64);
        let mut distinct: rustc_hash::FxHashMap<&[u32], usize> = Default::default();
        let mut row_input: Vec<usize> = Vec::with_capacity(todo.len());
        let mut fresh: Vec<&tokenizers::Encoding> = Vec::new();
        let mut probs: Vec<Option<Probs>> = Vec::new();
        {
            let seen = self.seen.lock().map_err(|_| Error::Inference { reason: "an earlier run panicked".into() })?;
            for e in &encodings {
                let next = probs.len();
                let k = *distinct.entry(e.get_ids()).or_insert(next);
                if k == next {
                    let known = seen.get(e.get_ids()).cloned();
                    if known.is_none() {
                        fresh.push(e);
                    }
                    probs.push(known);
                }
                row_input.push(k);
            }
        }
        self.add_stat(4, (todo.len() - fresh.len()) as u64);
        let computed = self.run_encodings(&fresh)?;
        {
            let mut seen =
                self.seen.lock().map_err(|_| Error::Inference { reason: "an earlier run panicked".into() })?;
            if seen.len() + computed.len() > MAX_REUSED_TEXTS {
                seen.clear();
            }
            for (e, p) in fresh.iter().zip(&computed) {
                if seen.len() < MAX_REUSED_TEXTS {
                    seen.insert(e.get_ids().to_vec(), p.clone());
                }
            }
        }
        let mut computed = computed.into_iter();
        for p in probs.iter_mut().filter(|p| p.is_none()) {
            *p = computed.next();
        }
        for ((i, _), k) in todo.iter().zip(row_input) {
            out[*i] = probs[k].clone();
        }
        Ok(out)
    }

    /// Class probabilities of each tokenized text, in order.
    fn run_encodings(&self, encodings: &[&tokenizers::Encoding]) -> Result<Vec<Probs>> {
        if encodings.is_empty() {
            return Ok(Vec::new());
        }
        let mut order: Vec<usize> = (0..encodings.len()).collect();
        order.sort_by_key(|&k| encodings[k].get_ids().len());
        let chunks: Vec<&[usize]> = match self.layout {
            // length order, cut into batches of at most batch_size rows and MAX_BATCH_TOKENS cells
            Layout::Packed => {
                packed_chunks(&order, |k| encodings[k].get_ids().len(), self.batch_size, MAX_BATCH_TOKENS)
            }
            // grouped by width bucket (in length order inside); each bucket cut into batches of its own
            Layout::Fixed => order
                .chunk_by(|&a, &b| {
                    self.width_of(encodings[a].get_ids().len()) == self.width_of(encodings[b].get_ids().len())
                })
                .flat_map(|bucket| bucket.chunks(self.batch_size))
                .collect(),
        };
        let results: Vec<Result<Vec<(usize, Probs)>>> = if self.sessions.len() == 1 || chunks.len() == 1 {
            vec![self.run_chunks(0, &chunks, &AtomicUsize::new(0), encodings)]
        } else {
            // one worker per session; each takes the next batch until none is left
            let next = AtomicUsize::new(0);
            std::thread::scope(|scope| {
                let workers: Vec<_> = (0..self.sessions.len().min(chunks.len()))
                    .map(|w| {
                        let (chunks, next) = (&chunks, &next);
                        scope.spawn(move || self.run_chunks(w, chunks, next, encodings))
                    })
                    .collect();
                workers
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err(Error::Inference { reason: "a scoring thread panicked".into() }))
                    })
                    .collect()
            })
        };
        let mut out: Vec<Probs> = vec![Vec::new(); encodings.len()];
        for r in results {
            for (k, probs) in r? {
                out[k] = probs;
            }
        }
        Ok(out)
    }

    /// Runs batches `chunks[next..]` on session `w` until none is left.
    fn run_chunks(
        &self,
        w: usize,
        chunks: &[&[usize]],
        next: &AtomicUsize,
        encodings: &[&tokenizers::Encoding],
    ) -> Result<Vec<(usize, Probs)>> {
        let mut session =
            self.sessions[w].lock().map_err(|_| Error::Inference { reason: "an earlier run panicked".into() })?;
        let n_classes = self.labels.len();
        let mut out = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(chunk) = chunks.get(i) else { break };
            let mut rows: Vec<&tokenizers::Encoding> = chunk.iter().map(|&k| encodings[k]).collect();
            let width = match self.layout {
                Layout::Packed => rows.iter().map(|e| e.get_ids().len()).max().unwrap_or(1),
                Layout::Fixed => {
                    // always batch_size rows: a short batch is filled with copies of its first text
                    rows.resize(self.batch_size, rows[0]);
                    self.width_of(rows[0].get_ids().len())
                }
            };
            let t1 = Instant::now();
            let logits = self.run_batch(&mut session, &rows, width)?;
            self.add_stat(3, t1.elapsed().as_nanos() as u64);
            self.add_stat(1, 1);
            for (r, &k) in chunk.iter().enumerate() {
                out.push((k, softmax(&logits[r * n_classes..(r + 1) * n_classes])));
            }
        }
        Ok(out)
    }

    /// One `session.run` of `rows`, each padded to `width` tokens: the logits,
    /// row after row.
    fn run_batch(&self, session: &mut Session, rows: &[&tokenizers::Encoding], width: usize) -> Result<Vec<f32>> {
        let n_classes = self.labels.len();
        let n = rows.len();
        let width = width.max(1);
        let mut ids = vec![0i64; n * width];
        let mut mask = vec![0i64; n * width];
        let mut types = vec![0i64; n * width];
        for (r, e) in rows.iter().enumerate() {
            for (j, ((&id, &m), &t)) in e.get_ids().iter().zip(e.get_attention_mask()).zip(e.get_type_ids()).enumerate()
            {
                ids[r * width + j] = id as i64;
                mask[r * width + j] = m as i64;
                types[r * width + j] = t as i64;
            }
        }
        let shape = [n as i64, width as i64];
        let tensor =
            |v: Vec<i64>| Tensor::from_array((shape, v)).map_err(|e| Error::Inference { reason: e.to_string() });
        let mut inputs = ort::inputs![
            "input_ids" => tensor(ids)?,
            "attention_mask" => tensor(mask)?,
        ];
        if self.needs_type_ids {
            inputs.push(("token_type_ids".into(), tensor(types)?.into()));
        }
        let outputs = session.run(inputs).map_err(|e| Error::Inference { reason: e.to_string() })?;
        let (oshape, logits) = outputs[self.output.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(|e| Error::Inference { reason: format!("output {}: {e}", self.output) })?;
        if oshape.len() != 2 || oshape[0] as usize != n || oshape[1] as usize != n_classes {
            return Err(Error::Inference {
                reason: format!(
                    "output {} has shape {oshape:?}, expected [{n}, {n_classes}] (id2label has {n_classes} classes)",
                    self.output
                ),
            });
        }
        Ok(logits.to_vec())
    }

    /// The score (P(positive) − P(negative)) and label of one probability vector.
    pub fn outcome(&self, probs: &[f32]) -> Outcome {
        let best = probs.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap_or(0);
        let score = f64::from(probs[self.positive]) - f64::from(probs[self.negative]);
        Outcome::Scored { score, label: self.classes[best] }
    }
}

/// The sentiment class of each model label (config.json's `id2label`).
fn sentiment_classes(dir: &Path, labels: &[String]) -> Result<Vec<Label>> {
    let n = labels.len();
    labels
        .iter()
        .enumerate()
        .map(|(i, name)| {
            classify_label(name, i, n).ok_or_else(|| Error::Model {
                path: dir.join("config.json").display().to_string(),
                reason: format!(
                    "label {name:?} (class {i}) is not negative, neutral or positive; \
                     sentiflow needs a sentiment model"
                ),
            })
        })
        .collect()
}

/// The model's tokenizer, its own padding off (batches pad per width bucket)
/// and truncation at the model's max length.
fn load_tokenizer(dir: &Path, max_length: usize) -> Result<Tokenizer> {
    let tok_path = dir.join("tokenizer.json");
    let bad = |reason: String| Error::Model { path: tok_path.display().to_string(), reason };
    let mut tokenizer = Tokenizer::from_file(&tok_path).map_err(|e| bad(format!("cannot load the tokenizer: {e}")))?;
    // dynamic padding happens per batch here; a tokenizer.json that pads to
    // a fixed length would waste most of the compute
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: TruncationDirection::Right,
        }))
        .map_err(|e| bad(e.to_string()))?;
    Ok(tokenizer)
}

/// (intra-op threads per session, sessions) for the options: with `sessions`
/// automatic, one session per `threads` cores (1 thread each by default).
fn session_layout(threads: usize, sessions: usize) -> (usize, usize) {
    if sessions > 0 {
        return (threads, sessions);
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let per = threads.max(1);
    (per, (cores / per).max(1))
}

fn softmax(logits: &[f32]) -> Probs {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|&x| (x - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

impl Scorer for OnnxScorer {
    fn name(&self) -> &str {
        "onnx"
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn score_batch(&self, texts: &[Option<&str>]) -> Result<Vec<Outcome>> {
        let probs = self.predict(texts)?;
        Ok(texts
            .iter()
            .zip(probs)
            .map(|(t, p)| match (t, p) {
                (_, Some(p)) => self.outcome(&p),
                (None, None) => Outcome::Unscorable("text is null".into()),
                (Some(t), None) => Outcome::Unscorable(unreadable(t).unwrap_or("text is empty").into()),
            })
            .collect())
    }

    fn labels(&self) -> Option<Vec<String>> {
        Some(self.labels.clone())
    }

    fn languages(&self) -> Option<Vec<String>> {
        self.languages.clone()
    }

    fn stats(&self) -> Vec<(&'static str, f64)> {
        let s = OnnxScorer::stats(self);
        vec![
            ("texts", s.texts as f64),
            ("session_runs", s.runs as f64),
            ("tokenize_s", s.tokenize_s),
            ("inference_s", s.inference_s),
            ("texts_reused", s.texts_reused as f64),
        ]
    }

    fn probabilities(&self, texts: &[Option<&str>]) -> Option<Result<Vec<Option<Probs>>>> {
        Some(self.predict(texts))
    }

    fn start_run(&self) {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_map_onto_sentiment_classes() {
        assert_eq!(classify_label("NEGATIVE", 0, 2), Some(Label::Negative));
        assert_eq!(classify_label("positive", 1, 2), Some(Label::Positive));
        assert_eq!(classify_label("LABEL_1", 1, 3), Some(Label::Neutral));
        assert_eq!(classify_label("LABEL_2", 2, 3), Some(Label::Positive));
        assert_eq!(classify_label("LABEL_2", 2, 2), None);
        assert_eq!(classify_label("joy", 0, 6), None);
    }

    #[test]
    fn automatic_sessions_fill_the_cores() {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        assert_eq!(session_layout(0, 0), (1, cores));
        assert_eq!(session_layout(2, 0), (2, (cores / 2).max(1)));
        assert_eq!(session_layout(0, 1), (0, 1));
        assert_eq!(session_layout(3, 2), (3, 2));
    }

    #[test]
    fn packed_chunks_cap_rows_and_padded_tokens() {
        let lens = [3, 5, 5, 10, 100, 300, 2000];
        let order: Vec<usize> = (0..lens.len()).collect();
        let cut = |rows, tokens| -> Vec<Vec<usize>> {
            packed_chunks(&order, |k| lens[k], rows, tokens).into_iter().map(<[usize]>::to_vec).collect()
        };
        // rows only: the token cap never binds
        assert_eq!(cut(2, usize::MAX), vec![vec![0, 1], vec![2, 3], vec![4, 5], vec![6]]);
        // padded size rows × longest: 3 rows of 5 = 15 fit 32, 4 rows of 10 = 40 do not
        assert_eq!(cut(8, 32), vec![vec![0, 1, 2], vec![3], vec![4], vec![5], vec![6]]);
        // 4 rows of 10 fit 300, 5 of 100 do not; 300 fits alone, 2 rows of 300 do not
        assert_eq!(cut(8, 300), vec![vec![0, 1, 2, 3], vec![4], vec![5], vec![6]]);
        // every text is in exactly one run, in order; a text longer than the cap runs alone
        assert_eq!(cut(8, 1).concat(), order);
        assert!(cut(8, 1).iter().all(|c| c.len() == 1));
        assert!(packed_chunks(&[], |_| 1, 8, 8).is_empty());
    }

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let p = softmax(&[1.0, 3.0, -2.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[1] > p[0] && p[0] > p[2]);
        // large logits do not overflow
        let p = softmax(&[1000.0, 0.0]);
        assert!((p[0] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn missing_runtime_names_the_fix() {
        let e = find_runtime(Some(Path::new("/nonexistent/libonnxruntime.so"))).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/libonnxruntime.so") && e.contains("onnxruntime==1.31.1"), "{e}");
    }

    #[test]
    fn bad_model_dirs_are_named() {
        let dir = std::env::temp_dir().join(format!("sentiflow-onnx-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = OnnxScorer::load(OnnxOptions::new(&dir)).unwrap_err().to_string();
        assert!(e.contains("config.json"), "{e}");
        std::fs::write(dir.join("config.json"), r#"{"id2label": {"0": "joy", "1": "anger"}}"#).unwrap();
        let e = OnnxScorer::load(OnnxOptions::new(&dir)).unwrap_err().to_string();
        assert!(e.contains("\"joy\""), "{e}");
        std::fs::write(dir.join("config.json"), r#"{"id2label": {"0": "negative", "2": "positive"}}"#).unwrap();
        let e = OnnxScorer::load(OnnxOptions::new(&dir)).unwrap_err().to_string();
        assert!(e.contains("0..n"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
