//! Answers cached in the object store, keyed by (model, prompt version,
//! SHA-256 of the text): re-scoring the same data costs no requests.
//!
//! Layout: `<dir>/<model>/<prompt version>/<first 2 hex>/<sha256>.json`
//! holding `{"score": …, "answer": "…"}`. The directory is listed once (one
//! LIST per 1,000 answers), so a miss costs nothing and a hit one GET.

use std::collections::HashSet;
use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::Result;
use crate::io::store::{Location, StoreRegistry, list_below};

/// Where a job writing below `root` keeps its answers unless told otherwise.
pub fn default_dir(root: &Location) -> String {
    root.child("_cache/llm").display
}

pub struct AnswerCache {
    store: Arc<dyn ObjectStore>,
    dir: Location,
    known: OnceCell<HashSet<String>>,
}

/// A cached answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Cached {
    pub score: f64,
    pub answer: String,
}

fn slug(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' }).collect()
}

/// SHA-256 of a text, hex.
pub fn text_key(text: &str) -> String {
    let d = Sha256::digest(text.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

impl AnswerCache {
    pub fn open(stores: &StoreRegistry, dir: &str, model: &str, prompt_version: &str) -> Result<Self> {
        let root = Location::parse(dir)?;
        let dir = root.child(&format!("{}/{}", slug(model), slug(prompt_version)));
        Ok(Self { store: stores.store(&dir.store_url)?, dir, known: OnceCell::new() })
    }

    fn path(&self, key: &str) -> Path {
        self.dir.path.clone().join(&key[..2]).join(format!("{key}.json"))
    }

    async fn known(&self) -> Result<&HashSet<String>> {
        self.known
            .get_or_try_init(|| async {
                let all = list_below(self.store.as_ref(), &self.dir, &self.dir.path).await?;
                Ok(all
                    .into_iter()
                    .filter_map(|m| m.location.filename().and_then(|f| f.strip_suffix(".json")).map(str::to_string))
                    .collect())
            })
            .await
    }

    /// The cached answer for a text key, if any (an unreadable entry is a miss).
    pub async fn get(&self, key: &str) -> Result<Option<Cached>> {
        if !self.known().await?.contains(key) {
            return Ok(None);
        }
        let bytes = match self.store.get(&self.path(key)).await {
            Ok(g) => match g.bytes().await {
                Ok(b) => b,
                Err(_) => return Ok(None),
            },
            Err(_) => return Ok(None),
        };
        let v: serde_json::Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(_) => return Ok(None),
        };
        Ok(v.get("score").and_then(|s| s.as_f64()).map(|score| Cached {
            score,
            answer: v.get("answer").and_then(|a| a.as_str()).unwrap_or_default().to_string(),
        }))
    }

    pub async fn put(&self, key: &str, c: &Cached) -> Result<()> {
        let body = serde_json::json!({"score": c.score, "answer": c.answer}).to_string();
        let path = self.path(key);
        self.store
            .put(&path, PutPayload::from(body.into_bytes()))
            .await
            .map(|_| ())
            .map_err(|source| crate::Error::Store { op: "put", location: self.dir.url_of(&path), source })
    }
}
