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

use bytes::Bytes;
use datafusion::execution::object_store::ObjectStoreRegistry;
use futures::TryStreamExt;
use globset::{GlobBuilder, GlobMatcher};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    BackoffConfig, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
};
use percent_encoding::utf8_percent_encode;
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
            let store = b
                .with_retry(s3_retry())
                .build()
                .map_err(|source| Error::StoreBuild { location: url.to_string(), source })?;
            Ok(Arc::new(crate::io::patient::PatientStore::new(Arc::new(store))))
        }
        other => Err(Error::Location {
            location: url.to_string(),
            reason: format!("unsupported scheme {other:?}: use a local path or s3://bucket/prefix"),
        }),
    }
}

/// How S3 requests are retried (a 5xx, a throttle, a failed connection): up
/// to 10 times, never past 3 minutes from the first try. Each wait is drawn
/// between 1 s and 3× the one before, at most 30 s: at least 10 s in all, so a
/// burst of 503s lasting seconds is waited out (object_store's default, from
/// 100 ms doubling, gave up after 2.4–4.2 s), and about 2–3 minutes when all
/// 10 are spent. Faults a request retry cannot mend (a listing cut off
/// mid-body, a timed-out bulk delete) are repeated whole by [`crate::io::patient`].
pub fn s3_retry() -> RetryConfig {
    RetryConfig {
        max_retries: 10,
        retry_timeout: Duration::from_secs(180),
        backoff: BackoffConfig {
            init_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            base: 3.0,
        },
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

/// What a path part must escape inside a URL: everything but unreserved characters.
const URL_PART: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'=');

/// Whether `s`, a local path or `file://` URL as written, names an existing
/// entry: such a name is that entry, whatever glob or template characters it holds.
pub fn is_existing_local(s: &str) -> bool {
    let local = !s.contains("://") || s.starts_with("file://");
    local && std::fs::symlink_metadata(s.strip_prefix("file://").unwrap_or(s)).is_ok()
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
            let abs = resolve_local(p).map_err(|e| bad(e.to_string()))?;
            let abs = abs.to_str().ok_or_else(|| bad("path is not UTF-8".into()))?.to_string();
            (Url::parse("file:///").map_err(|e| bad(e.to_string()))?, abs.trim_start_matches('/').to_string())
        };
        // paths are kept as written (object_store's own form for both stores: a local file
        // `données/ü.json`, an S3 key `sortié#1/x`); Path::from would percent-encode them
        let literal = |p: &str| {
            Path::parse(p).map_err(|e| bad(format!("{e}; rename it without control characters or empty parts")))
        };
        // a local name holding glob characters (`q?x.json`, `{b}.json`) that exists is that file
        let is_glob =
            has_glob(&raw_path) && !(store_url.scheme() == "file" && is_existing_local(&format!("/{raw_path}")));
        let (path, glob) = if is_glob {
            // the literal prefix is every segment before the first one with a glob character
            let segs: Vec<&str> = raw_path.split('/').collect();
            let first = segs.iter().position(|p| has_glob(p)).unwrap_or(segs.len());
            let prefix = segs[..first].join("/");
            let matcher = GlobBuilder::new(&raw_path)
                .literal_separator(true)
                .build()
                .map_err(|e| bad(format!("bad glob: {e}")))?
                .compile_matcher();
            (literal(&prefix)?, Some((raw_path.clone(), matcher)))
        } else {
            (literal(raw_path.trim_end_matches('/'))?, None)
        };
        Ok(Self { store_url, path, glob, display: s.to_string() })
    }

    pub fn is_s3(&self) -> bool {
        self.store_url.scheme() != "file"
    }

    /// The directory holding this location (for outputs: the data root of `…/scored`).
    pub fn parent(&self) -> Location {
        let parts: Vec<_> = self.path.parts().collect();
        let path = Path::from_iter(parts[..parts.len().saturating_sub(1)].iter().cloned());
        let display = match self.display.trim_end_matches('/').rsplit_once('/') {
            Some((head, _)) if !head.is_empty() => head.to_string(),
            _ => self.url_of(&path),
        };
        Location { store_url: self.store_url.clone(), path, glob: None, display }
    }

    /// Whether `p` lies at or below this location's path.
    pub fn contains(&self, p: &Path) -> bool {
        p.prefix_match(&self.path).is_some()
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

    /// URL of this location as DataFusion wants it for a directory (trailing
    /// slash), every part percent-encoded: DataFusion decodes the URL's path
    /// back into the names as written (`#`, `?`, `%`, `é` and spaces included).
    pub fn dir_url(&self) -> String {
        let base = match self.store_url.scheme() {
            "file" => "file://".to_string(),
            _ => self.store_url.as_str().trim_end_matches('/').to_string(),
        };
        let parts: String =
            self.path.parts().map(|p| format!("/{}", utf8_percent_encode(p.as_ref(), URL_PART))).collect();
        format!("{base}{parts}/")
    }
}

/// Makes a local path absolute the way the shell would: `..` and symlinks
/// are resolved in the part that exists (so `../x`, a symlinked input and
/// its real path name the same files); a part that does not exist yet (an
/// output directory, a glob) is normalised lexically.
fn resolve_local(p: &str) -> std::io::Result<std::path::PathBuf> {
    use std::path::{Component, PathBuf};
    let abs = std::path::absolute(p)?;
    let mut existing = abs.clone();
    let mut rest = Vec::new();
    while std::fs::symlink_metadata(&existing).is_err() {
        match existing.file_name() {
            Some(n) => rest.push(n.to_owned()),
            None => break,
        }
        if !existing.pop() {
            break;
        }
    }
    // a dangling symlink exists but cannot be canonicalised: keep it as written
    let mut out = std::fs::canonicalize(&existing).unwrap_or(existing);
    for part in rest.iter().rev() {
        out.push(part);
    }
    // what does not exist is cleaned up lexically (`a/./b`, `missing/../b`)
    let mut clean = PathBuf::new();
    for c in out.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                clean.pop();
            }
            c => clean.push(c),
        }
    }
    Ok(clean)
}

/// An input entry that is not read: it is reported (and dead-lettered by
/// `score`) instead of being skipped in silence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Path as listed (a symlink's own path).
    pub path: String,
    pub reason: String,
}

/// What an input location holds: the files to read, the entries that cannot
/// be read as files, and the hidden ones, which are not read.
#[derive(Debug, Default)]
pub struct Inputs {
    pub files: Vec<ObjectMeta>,
    /// Local only: dangling symlinks, FIFOs, sockets, devices, unreadable directories.
    pub skipped: Vec<Skipped>,
    /// Hidden entries below the location (a name starting with `_` or `.`, see
    /// [`list_files`]): a hidden directory counts once, its files are not listed.
    pub hidden: Vec<String>,
}

/// Lists the input files a location names, like [`list_files`], and for a
/// local location also what cannot be read as a file: dangling symlinks,
/// FIFOs, sockets, devices, unreadable directories. Local files are listed
/// under their real path (symlinks resolved) and each appears once. Hidden
/// entries are counted, not read.
pub async fn list_inputs(store: &dyn ObjectStore, loc: &Location) -> Result<Inputs> {
    if loc.is_s3() {
        let (files, hidden) = list_visible(store, loc).await?;
        let mut hidden: Vec<String> = hidden.iter().map(|m| loc.url_of(&m.location)).collect();
        hidden.sort();
        return Ok(Inputs { files, skipped: Vec::new(), hidden });
    }
    let loc = loc.clone();
    tokio::task::spawn_blocking(move || walk_local(&loc))
        .await
        .map_err(|e| Error::Location { location: "input listing".into(), reason: e.to_string() })
}

fn walk_local(loc: &Location) -> Inputs {
    use std::collections::BTreeMap;
    let root = std::path::PathBuf::from(format!("/{}", loc.path));
    let mut files: BTreeMap<String, ObjectMeta> = BTreeMap::new();
    let mut skipped = Vec::new();
    let mut hidden = Vec::new();
    let mut seen_dirs = std::collections::HashSet::new();
    let mut stack = vec![root.clone()];
    let kind = |ft: std::fs::FileType| {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_socket() {
            "a socket"
        } else if ft.is_block_device() || ft.is_char_device() {
            "a device"
        } else {
            "not a regular file"
        }
    };
    // directories are walked whatever the glob; files and broken entries must match it
    let matches_glob = |p: &std::path::Path| {
        *p == root || loc.glob.as_ref().is_none_or(|(_, g)| g.is_match(p.to_string_lossy().trim_start_matches('/')))
    };
    while let Some(p) = stack.pop() {
        let shown = p.display().to_string();
        let is_root = p == root;
        let rel = p.strip_prefix(&root).map(|r| r.to_string_lossy().into_owned()).unwrap_or_default();
        if !is_root && rel.split('/').any(hidden_name) {
            if p.is_dir() || matches_glob(&p) {
                hidden.push(shown);
            }
            continue;
        }
        let meta = match std::fs::metadata(&p) {
            Ok(m) => m,
            Err(e) if is_root && e.kind() == std::io::ErrorKind::NotFound && std::fs::symlink_metadata(&p).is_err() => {
                continue; // nothing there: the caller says "no input files"
            }
            Err(_) if !matches_glob(&p) => continue,
            Err(e) => {
                let reason = if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
                    format!("a symlink whose target cannot be read ({e}); fix or remove the link")
                } else {
                    format!("cannot be read ({e}); fix its permissions or remove it")
                };
                skipped.push(Skipped { path: shown, reason });
                continue;
            }
        };
        if meta.is_dir() {
            let real = std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone());
            if !seen_dirs.insert(real) {
                continue; // a symlink loop, or a directory reached twice
            }
            match std::fs::read_dir(&p) {
                Ok(entries) => {
                    for e in entries {
                        match e {
                            Ok(e) => stack.push(e.path()),
                            Err(e) => skipped.push(Skipped {
                                path: shown.clone(),
                                reason: format!("directory cannot be read in full ({e}); fix its permissions"),
                            }),
                        }
                    }
                }
                Err(e) => skipped.push(Skipped {
                    path: shown,
                    reason: format!("directory cannot be read ({e}); fix its permissions or remove it"),
                }),
            }
            continue;
        }
        if !matches_glob(&p) {
            continue;
        }
        if !meta.is_file() {
            let what = kind(meta.file_type());
            skipped.push(Skipped { path: shown, reason: format!("{what}, not a regular file; only files are read") });
            continue;
        }
        let real = std::fs::canonicalize(&p).unwrap_or(p);
        let Some(real_str) = real.to_str() else {
            skipped.push(Skipped { path: shown, reason: "the path is not UTF-8; rename the file".into() });
            continue;
        };
        let Ok(location) = Path::parse(real_str.trim_start_matches('/')) else {
            skipped.push(Skipped { path: shown, reason: "the name holds control characters; rename the file".into() });
            continue;
        };
        let last_modified = meta.modified().map(chrono::DateTime::<chrono::Utc>::from).unwrap_or_default();
        files.entry(location.to_string()).or_insert(ObjectMeta {
            location,
            last_modified,
            size: meta.len(),
            e_tag: None,
            version: None,
        });
    }
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    hidden.sort();
    Inputs { files: files.into_values().collect(), skipped, hidden }
}

/// Returns true when a path below `prefix` is hidden: a segment starts with `_` or `.`
/// (`_SUCCESS`, `_checkpoints/`, `.crc`, temp files).
pub(crate) fn is_hidden(prefix: &Path, p: &Path) -> bool {
    let skip = prefix.parts().count();
    p.parts().skip(skip).any(|part| hidden_name(part.as_ref()))
}

/// A file or directory name readers skip: it starts with `_` or `.`.
fn hidden_name(s: &str) -> bool {
    s.starts_with('_') || s.starts_with('.')
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
    Ok(list_visible(store, loc).await?.0)
}

/// The objects below a location that match its glob: the visible ones, sorted
/// by path, and the hidden ones.
async fn list_visible(store: &dyn ObjectStore, loc: &Location) -> Result<(Vec<ObjectMeta>, Vec<ObjectMeta>)> {
    let (hidden, mut out): (Vec<ObjectMeta>, Vec<ObjectMeta>) = list_below(store, loc, &loc.path)
        .await?
        .into_iter()
        .filter(|m| loc.glob.as_ref().is_none_or(|(_, g)| g.is_match(m.location.as_ref())))
        .partition(|m| is_hidden(&loc.path, &m.location));
    out.sort_by(|a, b| a.location.cmp(&b.location));
    Ok((out, hidden))
}

/// Every object below `dir`, hidden ones included; a missing directory is empty.
pub async fn list_below(store: &dyn ObjectStore, loc: &Location, dir: &Path) -> Result<Vec<ObjectMeta>> {
    let prefix = if dir.as_ref().is_empty() { None } else { Some(dir) };
    store.list(prefix).try_collect().await.or_else(|e| match e {
        object_store::Error::NotFound { .. } => Ok(vec![]),
        source => Err(Error::Store { op: "list", location: loc.url_of(dir), source }),
    })
}

/// Where a local write is staged before it is renamed into place: a hidden
/// `_staging/<run>/` beside the table root, outside every table prefix, so a
/// crash never leaves a partial file where Athena, Spark, pyarrow or Polars
/// read (object_store writes local files as `<name>#<n>` and renames them).
/// S3 needs none: an object, multipart or not, appears only when complete.
pub fn staging_path(loc: &Location, path: &Path) -> Option<Path> {
    if loc.is_s3() {
        return None;
    }
    static RUN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!("{}-{}", std::process::id(), chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default())
    });
    let rel: Vec<_> = path.prefix_match(&loc.path).map(|p| p.collect()).unwrap_or_default();
    let base = staging_dir(loc).join(RUN.as_str());
    Some(rel.into_iter().fold(base.join(loc.path.filename().unwrap_or("root")), |p, part| p.join(part)))
}

/// Name of the staging directory (hidden: it starts with `_`).
pub const STAGING_DIR: &str = "_staging";

/// The staging directory beside a table root.
fn staging_dir(loc: &Location) -> Path {
    loc.parent().path.clone().join(STAGING_DIR)
}

/// Moves a staged file into place (a rename on the local disk, atomic).
pub async fn publish(store: &dyn ObjectStore, loc: &Location, staged: &Path, path: &Path) -> Result<()> {
    store.rename(staged, path).await.map_err(|source| Error::Store { op: "rename", location: loc.url_of(path), source })
}

/// Removes what crashed runs left in the staging directory beside `loc`
/// (anything older than an hour; younger files may belong to a live run).
pub async fn clean_staging(store: &dyn ObjectStore, loc: &Location) -> Result<usize> {
    if loc.is_s3() {
        return Ok(0);
    }
    delete_leftovers(store, loc, &staging_dir(loc)).await
}

/// Deletes the files below `dir` older than an hour (what crashed runs left;
/// younger files may belong to a live run), as far as deletes succeed.
pub async fn delete_leftovers(store: &dyn ObjectStore, loc: &Location, dir: &Path) -> Result<usize> {
    let cutoff = chrono::Utc::now() - chrono::Duration::hours(1);
    let mut n = 0;
    for f in list_below(store, loc, dir).await? {
        if f.last_modified < cutoff && store.delete(&f.location).await.is_ok() {
            n += 1;
        }
    }
    Ok(n)
}

/// Reads a whole object.
pub async fn fetch(store: &dyn ObjectStore, loc: &Location, path: &Path) -> Result<Bytes> {
    let get = |source| Error::Store { op: "get", location: loc.url_of(path), source };
    store.get(path).await.map_err(get)?.bytes().await.map_err(get)
}

/// Writes bytes to a path atomically: an S3 PUT, or locally a staged file
/// renamed into place.
pub async fn put(store: &dyn ObjectStore, loc: &Location, path: &Path, bytes: Vec<u8>) -> Result<()> {
    let target = staging_path(loc, path).unwrap_or_else(|| path.clone());
    store.put(&target, PutPayload::from(bytes)).await.map_err(|source| Error::Store {
        op: "put",
        location: loc.url_of(path),
        source,
    })?;
    if target != *path {
        publish(store, loc, &target, path).await?;
    }
    Ok(())
}

/// Writes one object unless one is already at `path` (S3: a conditional PUT; local disk: staged,
/// then hard-linked into place, which fails if the name is taken). Returns `false` when one was:
/// it is kept, never replaced. For files whose name fixes their rows (a replayed batch writes the
/// same rows under the same name): a second writer, whether a replay or a worker that lost its
/// lease and does not know it yet, can then never change the bytes under a reader.
pub async fn put_if_absent(store: &dyn ObjectStore, loc: &Location, path: &Path, bytes: Vec<u8>) -> Result<bool> {
    let taken = |e: &object_store::Error| {
        matches!(e, object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. })
    };
    let Some(staged) = staging_path(loc, path) else {
        let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
        return match store.put_opts(path, PutPayload::from(bytes), opts).await {
            Ok(_) => Ok(true),
            // also a PUT of ours that landed, was answered 500 and retried: the object is there
            Err(e) if taken(&e) => Ok(false),
            Err(source) => Err(Error::Store { op: "conditional put", location: loc.url_of(path), source }),
        };
    };
    store.put(&staged, PutPayload::from(bytes)).await.map_err(|source| Error::Store {
        op: "put",
        location: loc.url_of(path),
        source,
    })?;
    match store.rename_if_not_exists(&staged, path).await {
        Ok(()) => Ok(true),
        Err(e) if taken(&e) => {
            delete_if_exists(store, loc, &staged).await?;
            Ok(false)
        }
        Err(source) => Err(Error::Store { op: "rename", location: loc.url_of(path), source }),
    }
}

/// Deletes every visible file below `dir` that is not in `keep`. Used to
/// replace a partition: write the new files first, then remove the strays.
pub async fn delete_except(store: &dyn ObjectStore, loc: &Location, dir: &Path, keep: &[Path]) -> Result<usize> {
    let mut n = 0;
    for f in list_below(store, loc, dir).await? {
        if keep.contains(&f.location) || is_hidden(dir, &f.location) {
            continue;
        }
        store.delete(&f.location).await.map_err(|source| Error::Store {
            op: "delete",
            location: loc.url_of(&f.location),
            source,
        })?;
        n += 1;
    }
    Ok(n)
}

/// Whether an object exists (a HEAD request).
pub async fn exists(store: &dyn ObjectStore, loc: &Location, path: &Path) -> Result<bool> {
    match store.head(path).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(source) => Err(Error::Store { op: "head", location: loc.url_of(path), source }),
    }
}

/// Deletes one object; one that is already gone is no error.
pub async fn delete_if_exists(store: &dyn ObjectStore, loc: &Location, path: &Path) -> Result<()> {
    match store.delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(source) => Err(Error::Store { op: "delete", location: loc.url_of(path), source }),
    }
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

    #[tokio::test]
    async fn put_if_absent_keeps_the_first_object() {
        let d = std::env::temp_dir().join(format!("sentiflow-put-if-absent-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d); // what a crashed earlier run left
        let loc = Location::parse(&d.join("t").display().to_string()).unwrap();
        let store = LocalFileSystem::new();
        let path = loc.path.clone().join("sub/a.parquet");
        assert!(put_if_absent(&store, &loc, &path, b"first".to_vec()).await.unwrap());
        assert!(!put_if_absent(&store, &loc, &path, b"second".to_vec()).await.unwrap());
        let got = store.get(&path).await.unwrap().bytes().await.unwrap();
        assert_eq!(got.as_ref(), b"first");
        // the second attempt's staged copy is gone, and nothing was staged inside the table
        assert!(list_below(&store, &loc, &staging_dir(&loc)).await.unwrap().is_empty());
        assert_eq!(list_below(&store, &loc, &loc.path).await.unwrap().len(), 1);
        std::fs::remove_dir_all(&d).unwrap();
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
