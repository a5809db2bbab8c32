//! Shard leases, shared by `ingest` and `stream`, the way the Kinesis Client
//! Library shares a stream between workers: one state object per shard in the
//! object store ([`crate::io::checkpoint`]) holds the lease (owner, until
//! when) next to the shard's progress, and every change is a conditional
//! write, so a worker that lost a lease cannot commit.
//!
//! [`ShardLeases::acquire`] takes the shards that are free, expired or this
//! worker's own (a restarted worker with the same id takes its shards back at
//! once), readable (parents read to their end first), up to the worker's share
//! of ceil(readable shards / live workers); it takes over at most one lease
//! per call from a worker above its share. [`ForeignLeases`] remembers other
//! workers' leases across calls, to tell a live holder from a dead one as KCL
//! does: by watching the lease's revision on this host's clock. A lease not
//! renewed for a whole lease length, as this worker saw it, is expired,
//! whatever end time its holder wrote (a holder whose clock ran 2 h fast wrote
//! an end 2 h away; trusting it kept its shards unread for 2 h). A lease first
//! seen is watched for one lease length before it can be taken over.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::{ShardInfo, StartPosition};
use crate::Result;
use crate::io::checkpoint::{ShardState, StateStore, Version};

/// Epoch milliseconds now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The lease side of a worker: where the states are, who it is, how long a lease lasts.
#[derive(Clone)]
pub struct ShardLeases {
    pub states: StateStore,
    pub worker: String,
    pub lease: Duration,
    /// Where a shard never read starts (`ingest --start`; `stream` reads from the trim horizon).
    pub start: StartPosition,
}

/// A shard's stored state and its version, if it has one.
type Stored = Option<(ShardState, Version)>;

/// A shard leased by [`ShardLeases::acquire`].
pub struct Taken {
    pub shard: ShardInfo,
    pub state: ShardState,
    pub version: Version,
    /// `--start latest` was pinned to a time just now (the first read opens LATEST).
    pub pinned_now: bool,
}

/// What one [`ShardLeases::acquire`] call found.
pub struct Acquired {
    pub taken: Vec<Taken>,
    /// Shards under another worker's live lease: shard → what was seen of it.
    pub leased_elsewhere: HashMap<String, Seen>,
}

impl ShardLeases {
    fn lease_end(&self) -> i64 {
        now_ms() + self.lease.as_millis() as i64
    }

    /// Leases the shards of `shards` that are not finished, whose parents are
    /// finished, and that are free (or held by a worker above its share of
    /// ceil(readable shards / live workers): one such lease per call is taken
    /// over; its old owner notices at its next conditional write and lets go).
    /// `running` are shards this worker holds; `done` are shards it finished with.
    /// `watched` says which foreign leases went unrenewed for a lease length (expired).
    pub async fn acquire(
        &self,
        shards: &[ShardInfo],
        running: &HashSet<String>,
        done: &HashSet<String>,
        watched: &ForeignLeases,
    ) -> Result<Acquired> {
        let ids: HashSet<&str> = shards.iter().map(|s| s.id.as_str()).collect();
        let mut states: HashMap<String, Option<(ShardState, Version)>> = HashMap::new();
        for s in shards {
            if !running.contains(&s.id) {
                states.insert(s.id.clone(), self.states.load(&s.id).await?);
            }
        }
        let finished = |id: &str| states.get(id).and_then(|s| s.as_ref()).is_some_and(|(st, _)| st.closed);
        let mut out = Acquired { taken: Vec::new(), leased_elsewhere: HashMap::new() };
        let now = now_ms();
        // live leases per worker, to balance: each of n workers aims at ceil(open shards / n)
        let mut load: HashMap<String, usize> = HashMap::new();
        let mut readable = 0usize;
        // with each: the other worker whose live lease holds it
        let mut candidates: Vec<(&ShardInfo, Stored, Option<String>)> = Vec::new();
        for s in shards {
            if done.contains(&s.id) {
                continue;
            }
            let current = states.get(&s.id).cloned().flatten();
            if current.as_ref().is_some_and(|(st, _)| st.closed) {
                continue;
            }
            if !s.readable(&ids, finished) {
                continue;
            }
            readable += 1;
            if running.contains(&s.id) {
                *load.entry(self.worker.clone()).or_default() += 1;
                continue;
            }
            let holder = current.as_ref().and_then(|(st, v)| {
                watched.live_holder(&s.id, st.owner.as_ref(), st.lease_until_ms, v.rev(), &self.worker, self.lease)
            });
            let holder = holder.cloned();
            if let Some(o) = &holder {
                *load.entry(o.clone()).or_default() += 1;
            }
            candidates.push((s, current, holder));
        }
        load.entry(self.worker.clone()).or_default();
        let target = readable.div_ceil(load.len().max(1));
        let mut mine = load.get(&self.worker).copied().unwrap_or(0);
        let mut stole = false;
        for (s, current, holder) in candidates {
            let has_parent = s.parents().next().is_some();
            let (mut state, prev) = match current {
                Some((st, v)) => (st, Some(v)),
                None => (ShardState::new(&s.id), None),
            };
            if let Some(owner) = holder {
                // another worker's live lease: take one (per call) from a worker above its share
                let over = load.get(&owner).copied().unwrap_or(0) > target;
                if stole || mine >= target || !over {
                    let rev = prev.as_ref().map_or(0, Version::rev);
                    out.leased_elsewhere.insert(s.id.clone(), Seen { owner, rev });
                    continue;
                }
                tracing::info!(shard = %s.id, from = %owner, mine, target, "taking a lease to balance the shards");
                stole = true;
                if let Some(n) = load.get_mut(&owner) {
                    *n -= 1;
                }
            } else if let Some(owner) = foreign_owner(state.owner.as_ref(), state.lease_until_ms, &self.worker) {
                tracing::warn!(shard = %s.id, holder = %owner, lease_s = self.lease.as_secs_f64(), "taking over a lease its holder has not renewed for a lease length (as this worker's clock saw it)");
            } else if mine >= target && load.len() > 1 {
                // free, but this worker has its share: leave it for the others this round
                continue;
            }
            state.owner = Some(self.worker.clone());
            state.lease_until_ms = now + self.lease.as_millis() as i64;
            let mut pinned_now = false;
            if state.committed.is_none()
                && state.pending.is_none()
                && state.start_at_ms.is_none()
                && !has_parent
                && let StartPosition::Latest = self.start
            {
                // pin "latest" to a time so a restart before the first commit loses nothing
                state.start_at_ms = Some(now);
                pinned_now = true;
            }
            match self.states.save(&state, prev.as_ref()).await? {
                Ok(version) => {
                    tracing::info!(shard = %s.id, worker = %self.worker, committed = ?state.committed, "lease taken");
                    mine += 1;
                    out.taken.push(Taken { shard: s.clone(), state, version, pinned_now });
                }
                Err(_) => {
                    // another worker wrote the lease first: seen as its holder at the next call
                }
            }
        }
        Ok(out)
    }

    /// Writes `next` (with the lease extended) if the stored state is still
    /// at `version`; false when another worker took the shard.
    pub async fn save(&self, state: &mut ShardState, version: &mut Version, mut next: ShardState) -> Result<bool> {
        next.lease_until_ms = self.lease_end();
        match self.states.save(&next, Some(version)).await? {
            Ok(v) => {
                *version = v;
                *state = next;
                Ok(true)
            }
            Err(_) => {
                tracing::warn!(shard = %state.shard_id, worker = %self.worker, "lease lost to another worker");
                Ok(false)
            }
        }
    }

    /// Extends the lease; false when another worker took the shard.
    pub async fn renew(&self, state: &mut ShardState, version: &mut Version) -> Result<bool> {
        let next = state.clone();
        self.save(state, version, next).await
    }

    /// Gives the shard up (and marks it finished when `closed`); false when
    /// another worker had taken it already.
    pub async fn release(&self, state: &mut ShardState, version: &Version, closed: bool) -> Result<bool> {
        let mut next = state.clone();
        next.owner = None;
        next.lease_until_ms = 0;
        next.closed = closed;
        match self.states.save(&next, Some(version)).await? {
            Ok(_) => {
                *state = next;
                Ok(true)
            }
            Err(_) => Ok(false),
        }
    }
}

/// The other worker that owns a lease: an owner that is not `me`, the lease not given up
/// (a release writes its end as 0).
fn foreign_owner<'a>(owner: Option<&'a String>, lease_until_ms: i64, me: &str) -> Option<&'a String> {
    owner.filter(|o| o.as_str() != me && lease_until_ms != 0)
}

/// What one [`ShardLeases::acquire`] call saw of another worker's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub owner: String,
    /// The shard state's revision: every renewal writes a new one.
    pub rev: u64,
}

/// Another worker's lease on a shard, as this worker has watched it.
#[derive(Debug, Clone)]
struct ForeignLease {
    owner: String,
    rev: u64,
    /// When this worker last saw the revision change (or first saw the lease): its own clock.
    changed_at: Instant,
    /// The holder renewed it since: a live worker, whose shard is left to it.
    renewed: bool,
}

/// Other workers' leases across [`ShardLeases::acquire`] calls.
#[derive(Debug, Default)]
pub struct ForeignLeases {
    by_shard: HashMap<String, ForeignLease>,
    last_wait_note: Option<Instant>,
}

impl ForeignLeases {
    /// Tracks what one call saw: a lease whose revision moved on was renewed (a live holder).
    pub fn note(&mut self, seen: HashMap<String, Seen>) {
        self.note_at(seen, Instant::now());
    }

    fn note_at(&mut self, seen: HashMap<String, Seen>, now: Instant) {
        self.by_shard.retain(|id, _| seen.contains_key(id));
        for (id, Seen { owner, rev }) in seen {
            match self.by_shard.get_mut(&id) {
                Some(f) if f.owner == owner => {
                    if rev != f.rev {
                        (f.rev, f.changed_at, f.renewed) = (rev, now, true);
                    }
                }
                _ => {
                    self.by_shard.insert(id, ForeignLease { owner, rev, changed_at: now, renewed: false });
                }
            }
        }
    }

    /// The holder of another worker's lease on `key` (`owner`, ended at
    /// `lease_until_ms`, at revision `rev`) when it is live: not given up, and
    /// not seen by this worker (`me`) going `lease` unrenewed on its own clock.
    pub fn live_holder<'a>(
        &self,
        key: &str,
        owner: Option<&'a String>,
        lease_until_ms: i64,
        rev: u64,
        me: &str,
        lease: Duration,
    ) -> Option<&'a String> {
        foreign_owner(owner, lease_until_ms, me).filter(|o| !self.expired_at(key, o, rev, lease, Instant::now()))
    }

    fn expired_at(&self, shard: &str, owner: &str, rev: u64, lease: Duration, now: Instant) -> bool {
        self.by_shard
            .get(shard)
            .is_some_and(|f| f.owner == owner && f.rev == rev && now.duration_since(f.changed_at) >= lease)
    }

    /// This worker took the shard.
    pub fn forget(&mut self, shard: &str) {
        self.by_shard.remove(shard);
    }

    pub fn len(&self) -> usize {
        self.by_shard.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_shard.is_empty()
    }

    /// Shards whose holders keep renewing their leases, sorted.
    pub fn live(&self) -> Vec<String> {
        let mut v: Vec<String> = self.by_shard.iter().filter(|(_, f)| f.renewed).map(|(id, _)| id.clone()).collect();
        v.sort();
        v
    }

    /// Nothing left to read but shards of live workers: a shard whose holder
    /// has not renewed yet is waited for (a lease length without a renewal
    /// expires it, or a renewal shows the holder is alive); says so at most
    /// every 10 s, with the time left on this worker's clock.
    pub fn only_live_left(&mut self, lease: Duration) -> bool {
        let waiting: Vec<(&String, &ForeignLease)> = self.by_shard.iter().filter(|(_, f)| !f.renewed).collect();
        if waiting.is_empty() {
            return true;
        }
        if self.last_wait_note.is_some_and(|t| t.elapsed() < Duration::from_secs(10)) {
            return false;
        }
        self.last_wait_note = Some(Instant::now());
        for (id, f) in &waiting {
            let left = lease.saturating_sub(f.changed_at.elapsed()).as_secs_f64();
            tracing::info!(
                shard = %id,
                holder = %f.owner,
                takeover_in_s = left,
                lease_s = lease.as_secs(),
                "waiting: the shard is taken over unless its holder renews its lease"
            );
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_leases_tell_live_from_dead_holders() {
        let seen = |v: &[(&str, &str, u64)]| -> HashMap<String, Seen> {
            v.iter().map(|(s, o, rev)| (s.to_string(), Seen { owner: o.to_string(), rev: *rev })).collect()
        };
        let (t0, lease) = (Instant::now(), Duration::from_secs(10));
        let mut f = ForeignLeases::default();
        f.note_at(seen(&[("s1", "a", 1), ("s2", "b", 1)]), t0);
        assert!(!f.only_live_left(lease), "not renewed yet: waited for");
        assert!(!f.expired_at("s2", "b", 1, lease, t0 + Duration::from_secs(9)), "watched for less than a lease");
        // a renews (its revision moves on), b does not
        f.note_at(seen(&[("s1", "a", 2), ("s2", "b", 1)]), t0 + Duration::from_secs(5));
        assert_eq!(f.live(), vec!["s1".to_string()]);
        // b unrenewed for a lease on this clock: expired, whatever end it wrote; a was renewed at 5 s
        let t = t0 + Duration::from_secs(11);
        assert!(f.expired_at("s2", "b", 1, lease, t));
        assert!(!f.expired_at("s1", "a", 2, lease, t));
        // a shard never watched is not expired
        assert!(!f.expired_at("s9", "z", 1, lease, t));
        // b's shard was taken over by this worker: only a's live lease is left
        f.forget("s2");
        assert!(f.only_live_left(lease));
        assert_eq!(f.len(), 1);
        // a new holder starts unrenewed, and is watched anew
        f.note_at(seen(&[("s1", "c", 3)]), t);
        assert!(f.live().is_empty());
        assert!(!f.expired_at("s1", "c", 3, lease, t + Duration::from_secs(9)));
    }
}
