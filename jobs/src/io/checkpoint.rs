//! Per-shard state of a Kinesis consumer, kept in the object store next to
//! the data (`<out>/_checkpoints/<job>/<stream>/<shard>.json`).
//!
//! One small JSON object per shard holds both the lease (which worker reads
//! the shard, until when) and the progress (the last committed sequence
//! number, and the range being written). Every write is a compare-and-swap
//! on the version the writer last saw: S3 conditional PUT (`If-Match` /
//! `If-None-Match`) or, on a local disk, an OS file lock around a
//! read-compare-write. A worker that lost its lease therefore cannot commit,
//! and two workers never both own a shard.
//!
//! Commit protocol (exactly-once files across crashes):
//! 1. write the state with `pending = {first, last}` (the records about to be written);
//! 2. write the data files, named after (shard, first sequence number);
//! 3. write the state with `committed = last`, `pending = None`.
//!
//! A restart that finds `pending` re-reads exactly that range and rewrites
//! the same files (same names, same content) before going on; one that finds
//! none resumes AFTER `committed`.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::io::store::Location;
use crate::{Error, Result};

/// How long a local state write waits for another process's lock before it
/// counts as a conflict (the lock is held for a read and a rename).
pub const LOCAL_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Crash injection for the exactly-once tests: `SENTIFLOW_TEST_CRASH=files:3`
/// aborts the process (as kill -9 would) at the 3rd time it reaches the
/// point named `files` (ingest: `intent`, `files`; stream: `stream_outputs`).
pub fn crash_point(stage: &str) {
    static SEEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let Ok(spec) = std::env::var("SENTIFLOW_TEST_CRASH") else { return };
    let Some((at, n)) = spec.split_once(':') else { return };
    if at == stage && SEEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1 == n.parse::<u64>().unwrap_or(0) {
        eprintln!("SENTIFLOW_TEST_CRASH: aborting after {stage} #{n}");
        std::process::abort();
    }
}

/// Delay injection for the concurrency tests: `SENTIFLOW_TEST_PAUSE=aggregate_tables:2000`
/// sleeps 2 s each time the process reaches the point named `aggregate_tables`.
pub async fn pause_point(stage: &str) {
    let Ok(spec) = std::env::var("SENTIFLOW_TEST_PAUSE") else { return };
    if let Some((at, ms)) = spec.split_once(':')
        && at == stage
    {
        tokio::time::sleep(std::time::Duration::from_millis(ms.parse().unwrap_or(0))).await;
    }
}

/// A worker id unique per process: host, pid and a random suffix.
pub fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|s| s.trim().to_string()))
        .unwrap_or_else(|| "host".into());
    let mut rng = crate::io::retry::jitter_rng();
    format!("{host}-{}-{:04x}", std::process::id(), rng.next_u64() & 0xffff)
}

/// The range being written when a worker stopped between steps 1 and 3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub first: String,
    pub last: String,
    #[serde(default)]
    pub records: u64,
}

/// What the state object holds (serde; the store's `updated_at` is ignored on reading).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ShardState {
    pub shard_id: String,
    pub owner: Option<String>,
    /// Lease end, epoch milliseconds.
    pub lease_until_ms: i64,
    pub committed: Option<String>,
    pub pending: Option<Pending>,
    /// The shard is closed (split or merged) and every record of it is committed.
    pub closed: bool,
    /// For a first start at `latest`: the time that start resolved to, so a
    /// restart before the first commit resumes there instead of skipping records.
    pub start_at_ms: Option<i64>,
    pub records_committed: u64,
    /// What the job keeps per shard besides the cursor (`stream`: its window
    /// partials and watermark), committed in the same conditional write.
    #[serde(skip_serializing_if = "Value::is_null")]
    pub job: Value,
    /// Local stores only: the compare-and-swap counter.
    rev: u64,
}

impl ShardState {
    pub fn new(shard_id: &str) -> Self {
        Self { shard_id: shard_id.into(), ..Default::default() }
    }

    fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn from_value(v: &Value) -> std::result::Result<Self, String> {
        let state: Self = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
        if state.shard_id.is_empty() {
            return Err("shard_id missing".into());
        }
        Ok(state)
    }
}

/// The version a state was read at: what a conditional write compares against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    e_tag: Option<String>,
    rev: u64,
}

impl Version {
    /// The document's revision: one more on every write.
    pub fn rev(&self) -> u64 {
        self.rev
    }
}

/// A conditional write lost: someone else wrote the state since we read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conflict;

/// Reads and conditionally writes shard states below a directory.
#[derive(Clone)]
pub struct StateStore {
    store: Arc<dyn ObjectStore>,
    dir: Location,
    requests: Arc<StateRequests>,
}

/// Object-store requests a [`StateStore`] made (clones share them): the
/// coordination cost of leases and commits.
#[derive(Debug, Default)]
pub struct StateRequests {
    pub gets: AtomicU64,
    pub puts: AtomicU64,
    pub lists: AtomicU64,
    /// Conditional writes refused: another writer got there first.
    pub conflicts: AtomicU64,
}

impl StateStore {
    pub fn new(store: Arc<dyn ObjectStore>, dir: Location) -> Self {
        Self { store, dir, requests: Arc::default() }
    }

    /// (GETs, conditional PUTs, LISTs) so far.
    pub fn requests(&self) -> (u64, u64, u64) {
        let r = &self.requests;
        (r.gets.load(Relaxed), r.puts.load(Relaxed), r.lists.load(Relaxed))
    }

    /// The counters themselves (shared by its clones and children), for `/metrics`.
    pub fn counters(&self) -> Arc<StateRequests> {
        self.requests.clone()
    }

    /// A state store for a subdirectory, counting into the same totals.
    pub fn child(&self, dir: &str) -> Self {
        Self { store: self.store.clone(), dir: self.dir.child(dir), requests: self.requests.clone() }
    }

    /// The directory, as the user named it (for messages).
    pub fn display(&self) -> String {
        self.dir.display.clone()
    }

    fn path(&self, name: &str) -> Path {
        self.dir.path.clone().join(format!("{name}.json"))
    }

    fn bad(&self, name: &str, reason: String) -> Error {
        Error::Checkpoint { location: self.dir.url_of(&self.path(name)), reason }
    }

    /// A JSON document `<name>.json` and its version (its `rev` field, and the
    /// e_tag on S3), or `None` when there is none yet.
    pub async fn load_doc(&self, name: &str) -> Result<Option<(Value, Version)>> {
        let path = self.path(name);
        self.requests.gets.fetch_add(1, Relaxed);
        let got = match self.store.get(&path).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(source) => return Err(Error::Store { op: "get", location: self.dir.url_of(&path), source }),
        };
        // local stores compare the rev counter, not the file's e_tag
        let e_tag = if self.dir.is_s3() { got.meta.e_tag.clone() } else { None };
        let bytes =
            got.bytes().await.map_err(|source| Error::Store { op: "get", location: self.dir.url_of(&path), source })?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| self.bad(name, format!("not JSON: {e}")))?;
        let rev = v.get("rev").and_then(Value::as_u64).unwrap_or(0);
        Ok(Some((v, Version { e_tag, rev })))
    }

    /// Writes the JSON document `<name>.json` if the stored one is still at
    /// `prev` (`None`: if there is none); sets its `rev` field.
    pub async fn save_doc(
        &self,
        name: &str,
        doc: Value,
        prev: Option<&Version>,
    ) -> Result<std::result::Result<Version, Conflict>> {
        let outcome = self.put_doc(name, doc, prev).await;
        if matches!(outcome, Ok(Err(Conflict))) {
            self.requests.conflicts.fetch_add(1, Relaxed);
        }
        outcome
    }

    async fn put_doc(
        &self,
        name: &str,
        mut doc: Value,
        prev: Option<&Version>,
    ) -> Result<std::result::Result<Version, Conflict>> {
        let rev = prev.map(|v| v.rev + 1).unwrap_or(1);
        doc["rev"] = json!(rev);
        doc["updated_at"] = json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        let mut bytes = serde_json::to_vec_pretty(&doc).unwrap_or_default();
        bytes.push(b'\n');
        self.requests.puts.fetch_add(1, Relaxed);
        if !self.dir.is_s3() {
            return self.save_local(name, bytes, rev, prev.cloned()).await;
        }
        let path = self.path(name);
        let mode = match prev {
            None => PutMode::Create,
            Some(v) => PutMode::Update(UpdateVersion { e_tag: v.e_tag.clone(), version: None }),
        };
        let opts = PutOptions { mode, ..Default::default() };
        match self.store.put_opts(&path, PutPayload::from(bytes), opts).await {
            Ok(r) => Ok(Ok(Version { e_tag: r.e_tag, rev })),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                // a conflict can be our own write: it landed, its answer was lost (a 500) and the
                // retried PUT found the document changed. The stored document then is exactly ours.
                match self.load_doc(name).await {
                    Ok(Some((stored, version))) if stored == doc => {
                        tracing::info!(
                            doc = name,
                            rev,
                            "a conditional write answered with an error had landed: it stands"
                        );
                        Ok(Ok(version))
                    }
                    _ => Ok(Err(Conflict)),
                }
            }
            Err(source) => Err(Error::Store { op: "conditional put", location: self.dir.url_of(&path), source }),
        }
    }

    /// The state of a shard and its version, or `None` when it has none yet.
    pub async fn load(&self, shard: &str) -> Result<Option<(ShardState, Version)>> {
        let Some((v, version)) = self.load_doc(shard).await? else { return Ok(None) };
        let state = ShardState::from_value(&v).map_err(|r| {
            self.bad(
                shard,
                format!("{r}; delete the file to restart the shard from --start (records may be read twice)"),
            )
        })?;
        Ok(Some((state, version)))
    }

    /// Writes `state` if the stored one is still at `prev` (`None`: if there is none).
    pub async fn save(
        &self,
        state: &ShardState,
        prev: Option<&Version>,
    ) -> Result<std::result::Result<Version, Conflict>> {
        self.save_doc(&state.shard_id, state.to_value(), prev).await
    }

    /// Local disk: an exclusive OS lock on `<name>.json.lock` (released if the
    /// process dies) around read, compare and an atomic rename into place. The
    /// new content is written and synced before the lock is taken, so the lock
    /// is held for a read and a rename only; a holder that does not let go
    /// within [`LOCAL_LOCK_WAIT`] (a stopped or frozen process) makes this
    /// write a conflict, never a hang.
    async fn save_local(
        &self,
        name: &str,
        bytes: Vec<u8>,
        rev: u64,
        prev: Option<Version>,
    ) -> Result<std::result::Result<Version, Conflict>> {
        let file = std::path::PathBuf::from(format!("/{}", self.path(name)));
        let (this, name) = (self.clone(), name.to_string());
        tokio::task::spawn_blocking(move || {
            let io = |source: std::io::Error| Error::Io { path: file.display().to_string(), source };
            if let Some(d) = file.parent() {
                std::fs::create_dir_all(d).map_err(io)?;
            }
            static TMP_SEQ: AtomicU64 = AtomicU64::new(0);
            let tmp = file.with_extension(format!("json.{}-{}.tmp", std::process::id(), TMP_SEQ.fetch_add(1, Relaxed)));
            std::fs::write(&tmp, &bytes).map_err(io)?;
            std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)?;
            let outcome = this.swap_locked(&file, &name, &tmp, prev.map(|v| v.rev));
            if !matches!(outcome, Ok(true)) {
                std::fs::remove_file(&tmp).ok();
            }
            Ok(if outcome? { Ok(Version { e_tag: None, rev }) } else { Err(Conflict) })
        })
        .await
        .map_err(|e| Error::Checkpoint {
            location: self.dir.display.clone(),
            reason: format!("state writer failed: {e}"),
        })?
    }

    /// Under the lock of `file`: renames `tmp` onto it if its rev is still
    /// `prev` (`None`: no file). False on a different rev or a lock not freed
    /// within [`LOCAL_LOCK_WAIT`].
    fn swap_locked(
        &self,
        file: &std::path::Path,
        name: &str,
        tmp: &std::path::Path,
        prev: Option<u64>,
    ) -> Result<bool> {
        let io = |source: std::io::Error| Error::Io { path: file.display().to_string(), source };
        let lock_path = file.with_extension("json.lock");
        let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io)?;
        let since = std::time::Instant::now();
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if since.elapsed() < LOCAL_LOCK_WAIT => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    tracing::warn!(
                        lock = %lock_path.display(),
                        waited_ms = since.elapsed().as_millis() as u64,
                        "another process holds the state's lock (stopped or frozen?): taken as a conflict"
                    );
                    return Ok(false);
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
            }
        }
        let current = match std::fs::read(file) {
            Ok(b) => {
                let v: Value = serde_json::from_slice(&b).map_err(|e| self.bad(name, format!("not JSON: {e}")))?;
                Some(v.get("rev").and_then(Value::as_u64).unwrap_or(0))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(e)),
        };
        if current != prev {
            return Ok(false);
        }
        std::fs::rename(tmp, file).map_err(io)?;
        drop(lock);
        Ok(true)
    }

    /// Every shard state below the directory (for reports and tests).
    pub async fn all(&self) -> Result<Vec<ShardState>> {
        let mut out = Vec::new();
        self.requests.lists.fetch_add(1, Relaxed);
        for m in crate::io::store::list_below(self.store.as_ref(), &self.dir, &self.dir.path).await? {
            let name = m.location.filename().unwrap_or_default();
            if let Some(shard) = name.strip_suffix(".json")
                && let Some((s, _)) = self.load(shard).await?
            {
                out.push(s);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip() {
        let s = ShardState {
            shard_id: "shardId-000000000001".into(),
            owner: Some("w1".into()),
            lease_until_ms: 5,
            committed: Some("4959".into()),
            pending: Some(Pending { first: "4960".into(), last: "4999".into(), records: 40 }),
            closed: false,
            start_at_ms: Some(7),
            records_committed: 12,
            job: json!({"max_event_us": 5}),
            rev: 3,
        };
        assert_eq!(ShardState::from_value(&s.to_value()).unwrap(), s);
        assert!(ShardState::from_value(&json!({})).is_err());
    }

    #[tokio::test]
    async fn local_compare_and_swap() {
        let d = tempfile_dir();
        let loc = Location::parse(&d).unwrap();
        let st = StateStore::new(Arc::new(object_store::local::LocalFileSystem::new()), loc);
        assert!(st.load("s1").await.unwrap().is_none());
        let a = ShardState::new("s1");
        let v1 = st.save(&a, None).await.unwrap().unwrap();
        assert_eq!(st.save(&a, None).await.unwrap(), Err(Conflict), "create twice");
        let v2 = st.save(&a, Some(&v1)).await.unwrap().unwrap();
        assert_eq!(st.save(&a, Some(&v1)).await.unwrap(), Err(Conflict), "stale version");
        let (_, v) = st.load("s1").await.unwrap().unwrap();
        assert_eq!(v, v2);
        assert_eq!(st.all().await.unwrap().len(), 1);
        // a process that holds the lock and does not let go (stopped): a conflict after the wait, not a hang
        let lock = std::fs::File::create(format!("{d}/s1.json.lock")).unwrap();
        lock.lock().unwrap();
        let t0 = std::time::Instant::now();
        assert_eq!(st.save(&a, Some(&v2)).await.unwrap(), Err(Conflict), "lock held elsewhere");
        assert!(t0.elapsed() >= LOCAL_LOCK_WAIT, "{:?}", t0.elapsed());
        drop(lock);
        let v3 = st.save(&a, Some(&v2)).await.unwrap().unwrap();
        assert_eq!(st.load("s1").await.unwrap().unwrap().1, v3);
        let left: Vec<_> = std::fs::read_dir(&d).unwrap().flatten().map(|e| e.file_name()).collect();
        assert!(left.iter().all(|n| !n.to_string_lossy().ends_with(".tmp")), "no temp file left: {left:?}");
        std::fs::remove_dir_all(&d).ok();
    }

    fn tempfile_dir() -> String {
        let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let d = std::env::temp_dir().join(format!("sentiflow-ckpt-{n}"));
        std::fs::create_dir_all(&d).unwrap();
        d.display().to_string()
    }
}
