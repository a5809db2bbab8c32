//! Locations and object stores.
//!
//! Every path a job takes is a [`Location`]: a local path, a `file://` URL or an
//! `s3://bucket/prefix` URL, optionally with a glob (`raw/2025/*/*/*/*.gz`).
//! [`build_object_store`] is the one function that builds object stores
//! (endpoint, credentials, retries) and [`StoreRegistry`] hands them to
//! DataFusion, so SQL can read any `s3://` path as well.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::execution::object_store::ObjectStoreRegistry;
use futures::TryStreamExt;
use globset::{GlobBuilder, GlobMatcher};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    BackoffConfig, ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload,
    RetryConfig,
};
use url::Url;

use crate::{Error, Result};

/// Builds the object store for a store URL (`s3://bucket` or `file:///`).
///
/// S3 settings come from the standard AWS environment: `AWS_REGION` /
/// `AWS_DEFAULT_REGION`, credentials (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/
/// `AWS_SESSION_TOKEN`, web identity, ECS task role, instance metadata),
/// `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` for S3-compatible servers and
/// `AWS_ALLOW_HTTP=true` for plain-http endpoints. Requests are retried with
/// exponential backoff (10 tries, at most 3 minutes).
pub fn build_object_store(url: &Url) -> Result<Arc<dyn ObjectStore>> {
    match url.scheme() {
        "file" => Ok(Arc::new(LocalFileSystem::new())),
        "s3" | "s3a" => {
            let bucket = url.host_str().ok_or_else(|| Error::Location {
                location: url.to_string(),
                reason: "an s3 URL needs a bucket: s3://BUCKET/prefix".into(),
            })?;
            let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
            // AWS SDKs' service-specific endpoint variable wins over the generic one.
            if let Ok(ep) = std::env::var("AWS_ENDPOINT_URL_S3") {
                b = b.with_endpoint(ep);
            }
            let endpoint_is_custom = std::env::var_os("AWS_ENDPOINT_URL_S3").is_some()
                || std::env::var_os("AWS_ENDPOINT_URL").is_some()
                || std::env::var_os("AWS_ENDPOINT").is_some();
            if endpoint_is_custom && std::env::var_os("AWS_VIRTUAL_HOSTED_STYLE_REQUEST").is_none() {
                // S3-compatible servers (SeaweedFS, MinIO, moto) expect path-style URLs.
                b = b.with_virtual_hosted_style_request(false);
            }
            if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none() {
                b = b.with_region("us-east-1");
            }
            let retry = RetryConfig {
                max_retries: 10,
                retry_timeout: Duration::from_secs(180),
                backoff: BackoffConfig::default(),
            };
            let store = b
                .with_retry(retry)
                .build()
                .map_err(|source| Error::StoreBuild { location: url.to_string(), source })?;
            Ok(Arc::new(store))
        }
        other => Err(Error::Location {
            location: url.to_string(),
            reason: format!("unsupported scheme {other:?}: use a local path or s3://bucket/prefix"),
        }),
    }
}

/// Caches one store per bucket and builds missing ones on demand; given to
/// DataFusion's runtime so `SELECT * FROM 's3://…'` and listing tables work.
#[derive(Debug, Default)]
pub struct StoreRegistry {
    stores: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl StoreRegistry {
    fn key(url: &Url) -> String {
        format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default())
    }

    pub fn store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        let key = Self::key(url);
        let mut stores = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = stores.get(&key) {
            return Ok(s.clone());
        }
        let s = build_object_store(url)?;
        stores.insert(key, s.clone());
        Ok(s)
    }
}

impl ObjectStoreRegistry for StoreRegistry {
    fn register_store(&self, url: &Url, store: Arc<dyn ObjectStore>) -> Option<Arc<dyn ObjectStore>> {
        let mut stores = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        stores.insert(Self::key(url), store)
    }

    fn get_store(&self, url: &Url) -> datafusion::common::Result<Arc<dyn ObjectStore>> {
        self.store(url).map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))
    }
}

/// A place to read from or write to: store + path (+ optional glob).
#[derive(Debug, Clone)]
pub struct Location {
    /// The store's URL: `s3://bucket` or `file:///`.
    pub store_url: Url,
    /// Path inside the store, without glob characters.
    pub path: Path,
    glob: Option<(String, GlobMatcher)>,
    /// What the user wrote, for messages.
    pub display: String,
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

impl Location {
    /// Parses a local path, `file://` URL or `s3://bucket/key` URL.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |reason: String| Error::Location { location: s.to_string(), reason };
        if s.is_empty() {
            return Err(bad("empty path".into()));
        }
        let (store_url, raw_path) = if let Some(rest) = s.strip_prefix("s3://").or_else(|| s.strip_prefix("s3a://")) {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("an s3 URL needs a bucket: s3://BUCKET/prefix".into()));
            }
            let url = Url::parse(&format!("s3://{bucket}")).map_err(|e| bad(e.to_string()))?;
            (url, key.to_string())
        } else if s.contains("://") && !s.starts_with("file://") {
            return Err(bad("unsupported scheme: use a local path, file:// or s3://bucket/prefix".into()));
        } else {
            let p = s.strip_prefix("file://").unwrap_or(s);
            let abs = std::path::absolute(p).map_err(|e| bad(e.to_string()))?;
            let abs = abs.to_str().ok_or_else(|| bad("path is not UTF-8".into()))?.to_string();
            (Url::parse("file:///").map_err(|e| bad(e.to_string()))?, abs.trim_start_matches('/').to_string())
        };
        let (path, glob) = if has_glob(&raw_path) {
            // the literal prefix is every segment before the first one with a glob character
            let segs: Vec<&str> = raw_path.split('/').collect();
            let first = segs.iter().position(|p| has_glob(p)).unwrap_or(segs.len());
            let prefix = segs[..first].join("/");
            let matcher = GlobBuilder::new(&raw_path)
                .literal_separator(true)
                .build()
                .map_err(|e| bad(format!("bad glob: {e}")))?
                .compile_matcher();
            (Path::from(prefix), Some((raw_path.clone(), matcher)))
        } else {
            (Path::from(raw_path.trim_end_matches('/')), None)
        };
        Ok(Self { store_url, path, glob, display: s.to_string() })
    }

    pub fn is_s3(&self) -> bool {
        self.store_url.scheme() != "file"
    }

    /// A location below this one (for outputs: `root.child("scored")`).
    pub fn child(&self, rel: &str) -> Location {
        let mut path = self.path.clone();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            path = path.join(part);
        }
        let display = format!("{}/{}", self.display.trim_end_matches('/'), rel);
        Location { store_url: self.store_url.clone(), path, glob: None, display }
    }

    /// Full URL of a path in this location's store (for messages and DataFusion).
    pub fn url_of(&self, path: &Path) -> String {
        match self.store_url.scheme() {
            "file" => format!("/{path}"),
            _ => format!("{}/{}", self.store_url.as_str().trim_end_matches('/'), path),
        }
    }

    /// URL of this location as DataFusion wants it for a directory (trailing slash).
    pub fn dir_url(&self) -> String {
        match self.store_url.scheme() {
            "file" => format!("file:///{}/", self.path),
            _ => format!("{}/{}/", self.store_url.as_str().trim_end_matches('/'), self.path),
        }
    }
}

/// Returns true when a path below `prefix` is hidden: a segment starts with `_` or `.`
/// (`_SUCCESS`, `_checkpoints/`, `.crc`, temp files).
fn is_hidden(prefix: &Path, p: &Path) -> bool {
    let skip = prefix.parts().count();
    p.parts().skip(skip).any(|part| {
        let s = part.as_ref();
        s.starts_with('_') || s.starts_with('.')
    })
}

/// Lists the files a location names: the object itself, or every visible
/// object below it (recursively) matching its glob, sorted by path.
pub async fn list_files(store: &dyn ObjectStore, loc: &Location) -> Result<Vec<ObjectMeta>> {
    if loc.glob.is_none() && !loc.path.as_ref().is_empty() {
        match store.head(&loc.path).await {
            Ok(meta) => return Ok(vec![meta]),
            Err(object_store::Error::NotFound { .. }) => {}
            // a local directory answers head with an error of its own; list it below
            Err(_) if !loc.is_s3() => {}
            Err(source) => return Err(Error::Store { op: "head", location: loc.display.clone(), source }),
        }
    }
    let mut out: Vec<ObjectMeta> = list_below(store, loc, &loc.path)
        .await?
        .into_iter()
        .filter(|m| {
            !is_hidden(&loc.path, &m.location)
                && loc.glob.as_ref().is_none_or(|(_, g)| g.is_match(m.location.as_ref()))
        })
        .collect();
    out.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(out)
}

/// Every object below `dir`, hidden ones included; a missing directory is empty.
pub async fn list_below(store: &dyn ObjectStore, loc: &Location, dir: &Path) -> Result<Vec<ObjectMeta>> {
    let prefix = if dir.as_ref().is_empty() { None } else { Some(dir) };
    store.list(prefix).try_collect().await.or_else(|e| match e {
        object_store::Error::NotFound { .. } => Ok(vec![]),
        source => Err(Error::Store { op: "list", location: loc.url_of(dir), source }),
    })
}

/// Writes bytes to a path (atomically: S3 PUT, or a rename into place locally).
pub async fn put(store: &dyn ObjectStore, loc: &Location, path: &Path, bytes: Vec<u8>) -> Result<()> {
    store
        .put(path, PutPayload::from(bytes))
        .await
        .map(|_| ())
        .map_err(|source| Error::Store { op: "put", location: loc.url_of(path), source })
}

/// Deletes every visible file below `dir` that is not in `keep`. Used to
/// replace a partition: write the new files first, then remove the strays.
pub async fn delete_except(
    store: &dyn ObjectStore,
    loc: &Location,
    dir: &Path,
    keep: &[Path],
) -> Result<usize> {
    let mut n = 0;
    for f in list_below(store, loc, dir).await? {
        if keep.contains(&f.location) || is_hidden(dir, &f.location) {
            continue;
        }
        store
            .delete(&f.location)
            .await
            .map_err(|source| Error::Store { op: "delete", location: loc.url_of(&f.location), source })?;
        n += 1;
    }
    Ok(n)
}

/// Stable 64-bit FNV-1a hash, for deterministic output file names
/// (std's hasher is not stable across Rust versions).
pub fn stable_hash(s: &str) -> u64 {
    sentiflow_udfs::stable_hash(s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_s3_and_globs() {
        let l = Location::parse("s3://bkt/raw/2025/*/*.json").unwrap();
        assert_eq!(l.store_url.as_str(), "s3://bkt");
        assert_eq!(l.path.as_ref(), "raw/2025");
        let (_, g) = l.glob.as_ref().unwrap();
        assert!(g.is_match("raw/2025/02/a.json"));
        assert!(!g.is_match("raw/2025/02/03/a.json"));
        assert!(Location::parse("s3:///x").is_err());
        assert!(Location::parse("gs://x/y").is_err());
    }

    #[test]
    fn local_paths_become_absolute() {
        let l = Location::parse("some/dir/").unwrap();
        assert_eq!(l.store_url.as_str(), "file:///");
        assert!(l.path.as_ref().ends_with("some/dir"));
        assert!(l.child("scored").path.as_ref().ends_with("some/dir/scored"));
    }

    #[test]
    fn hidden_files_are_skipped() {
        let p = Path::from("a/b");
        assert!(is_hidden(&p, &Path::from("a/b/_SUCCESS")));
        assert!(is_hidden(&p, &Path::from("a/b/_checkpoints/x")));
        assert!(!is_hidden(&p, &Path::from("a/b/dt=1/x.parquet")));
    }

    #[test]
    fn stable_hash_is_stable() {
        assert_eq!(stable_hash(""), 0xcbf29ce484222325);
        assert_eq!(stable_hash("a"), 0xaf63dc4c8601ec8c);
    }
}
