//! A lease on an output directory, so two runs of a job that replaces whole
//! tables (`aggregate`) never interleave their writes.
//!
//! The lock is a JSON document `<out>/_locks/<job>.json` written with the same
//! compare-and-swap as the Kinesis checkpoints ([`crate::io::checkpoint::StateStore`]):
//! S3 conditional PUT, or an OS file lock around read-compare-rename locally.
//! The holder renews its lease every third of [`LEASE`]; a run that finds the
//! lock held waits, and takes it over once the lease has expired (its holder
//! crashed). A holder that fails to renew stops before it replaces anything.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use object_store::ObjectStore;
use serde_json::{Value, json};

use crate::io::checkpoint::{StateStore, Version};
use crate::io::store::Location;
use crate::{Error, Result};

/// How long a lock stays valid without renewal.
pub const LEASE: Duration = Duration::from_secs(60);
/// Directory of the lock documents below an output root.
pub const LOCK_DIR: &str = "_locks";

/// A held lock; renewed in the background until [`OutputLock::release`].
pub struct OutputLock {
    states: StateStore,
    name: String,
    owner: String,
    held: Arc<AtomicBool>,
    renewer: tokio::task::JoinHandle<()>,
    version: Arc<tokio::sync::Mutex<Version>>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn doc(owner: &str, until_ms: i64) -> Value {
    json!({ "owner": owner, "lease_until_ms": until_ms })
}

impl OutputLock {
    /// Takes the lock `name` on the output root `out`, waiting while another
    /// live run holds it.
    pub async fn acquire(store: Arc<dyn ObjectStore>, out: &Location, name: &str) -> Result<OutputLock> {
        let states = StateStore::new(store, out.child(LOCK_DIR));
        let owner = format!("{}:{}:{}", crate::io::checkpoint::default_worker_id(), std::process::id(), now_ms());
        let mut last_note = std::time::Instant::now() - Duration::from_secs(3600);
        let version = loop {
            let current = states.load_doc(name).await?;
            let free = match &current {
                None => true,
                Some((v, _)) => v.get("lease_until_ms").and_then(Value::as_i64).unwrap_or(0) < now_ms(),
            };
            if free {
                let until = now_ms() + LEASE.as_millis() as i64;
                if let Ok(v) = states.save_doc(name, doc(&owner, until), current.as_ref().map(|(_, v)| v)).await? {
                    break v;
                }
                continue; // another run took it first: look again
            }
            if last_note.elapsed() >= Duration::from_secs(30) {
                let holder = current.as_ref().and_then(|(v, _)| v.get("owner").and_then(Value::as_str)).unwrap_or("?");
                tracing::warn!(lock = %out.child(LOCK_DIR).display, holder, "another run is writing this output; waiting for it");
                last_note = std::time::Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let held = Arc::new(AtomicBool::new(true));
        let version = Arc::new(tokio::sync::Mutex::new(version));
        let renewer =
            tokio::spawn(renew(states.clone(), name.to_string(), owner.clone(), held.clone(), version.clone()));
        Ok(OutputLock { states, name: name.to_string(), owner, held, renewer, version })
    }

    /// Fails when the lease was lost (a renewal did not land in time).
    pub fn check(&self) -> Result<()> {
        if self.held.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(Error::Lock {
                lock: format!("{}/{}.json", self.states.display(), self.name),
                reason: format!(
                    "it was not renewed within {} s; nothing more was replaced, run the job again",
                    LEASE.as_secs()
                ),
            })
        }
    }

    /// Releases the lock (a run that starts next need not wait for the lease).
    pub async fn release(self) -> Result<()> {
        self.renewer.abort();
        if !self.held.load(Ordering::SeqCst) {
            return Ok(());
        }
        let version = self.version.lock().await.clone();
        // a conflict means someone took over an expired lease: nothing to release
        let _ = self.states.save_doc(&self.name, doc(&self.owner, 0), Some(&version)).await?;
        Ok(())
    }
}

impl Drop for OutputLock {
    /// A run that fails stops renewing; its lease then expires within [`LEASE`].
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

async fn renew(
    states: StateStore,
    name: String,
    owner: String,
    held: Arc<AtomicBool>,
    version: Arc<tokio::sync::Mutex<Version>>,
) {
    loop {
        tokio::time::sleep(LEASE / 3).await;
        let mut v = version.lock().await;
        let until = now_ms() + LEASE.as_millis() as i64;
        match states.save_doc(&name, doc(&owner, until), Some(&v)).await {
            Ok(Ok(new)) => *v = new,
            Ok(Err(_)) | Err(_) => {
                tracing::error!(lock = %name, "lost the output lock; stopping before more is replaced");
                held.store(false, Ordering::SeqCst);
                return;
            }
        }
    }
}
