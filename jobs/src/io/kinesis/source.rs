//! Reading shards: positions, pages of records with retries on throttling,
//! the shard list with parents and children (resharding).

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::types::ShardIteratorType;

use crate::io::aws::{Failure, classify};
use crate::io::retry::{Jitter, RetryPolicy};
use crate::{Error, Result};

/// When a record reached the stream (epoch milliseconds).
pub fn arrival_ms(r: &aws_sdk_kinesis::types::Record) -> Option<i64> {
    r.approximate_arrival_timestamp().and_then(|t| t.to_millis().ok())
}

/// Adds a stream record to a parser: its arrival time fills a missing `ingested_at`.
pub fn parse_record(parser: &mut crate::io::read::RecordParser, shard: &str, r: &aws_sdk_kinesis::types::Record) {
    parser.push(shard, r.sequence_number(), r.data().as_ref(), arrival_ms(r).map(|ms| ms * 1000));
}

/// A shard as ListShards describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    pub id: String,
    pub parent: Option<String>,
    pub adjacent_parent: Option<String>,
    /// The shard was closed by a split or merge: it has an ending sequence number.
    pub closed: bool,
}

impl ShardInfo {
    /// The shard's parents (one after a split, two after a merge).
    pub fn parents(&self) -> impl Iterator<Item = &String> {
        self.parent.iter().chain(self.adjacent_parent.iter())
    }

    /// Whether it may be read: every parent is read to its end (`finished`) or
    /// has expired out of the stream (not in `listed`).
    pub fn readable(&self, listed: &std::collections::HashSet<&str>, finished: impl Fn(&str) -> bool) -> bool {
        self.parents().all(|p| !listed.contains(p.as_str()) || finished(p))
    }
}

/// Where to start reading a shard that has no checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    TrimHorizon,
    Latest,
    /// Records that arrived at or after this time (epoch milliseconds).
    AtTimestamp(i64),
}

/// Where to (re)open a shard iterator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    TrimHorizon,
    Latest,
    AtTimestamp(i64),
    At(String),
    After(String),
}

/// One GetRecords page.
pub struct Page {
    pub records: Vec<aws_sdk_kinesis::types::Record>,
    /// `None` when the shard is closed and every record has been read.
    pub next: Option<String>,
    pub millis_behind: Option<i64>,
}

/// Why a read failed.
#[derive(Debug)]
pub enum ReadError {
    /// The iterator expired (older than 5 minutes): open a new one.
    Expired,
    Fatal(Error),
}

/// Shard-level reads with retries: what ingest builds on.
#[derive(Clone)]
pub struct KinesisReader {
    pub client: aws_sdk_kinesis::Client,
    pub stream: String,
    pub policy: RetryPolicy,
    jitter: Arc<Jitter>,
    pub counters: Arc<ReadCounters>,
}

/// Shared counters of a reader's calls.
#[derive(Debug, Default)]
pub struct ReadCounters {
    pub requests: std::sync::atomic::AtomicU64,
    pub retries: std::sync::atomic::AtomicU64,
    pub throttled: std::sync::atomic::AtomicU64,
}

impl KinesisReader {
    pub async fn new(stream: &str, policy: RetryPolicy) -> Self {
        Self::with_client(crate::io::aws::kinesis_client().await, stream, policy)
    }

    pub fn with_client(client: aws_sdk_kinesis::Client, stream: &str, policy: RetryPolicy) -> Self {
        Self {
            client,
            stream: stream.into(),
            policy,
            jitter: Arc::new(Jitter::default()),
            counters: Arc::new(ReadCounters::default()),
        }
    }

    fn err(&self, op: &'static str, reason: String) -> Error {
        Error::Kinesis { op, stream: self.stream.clone(), reason }
    }

    /// Retries `f` on throttles and transient faults; `Ok(Err(code))` from `f`
    /// is a service error it wants to handle itself.
    async fn retrying<T, F, Fut>(&self, op: &'static str, mut f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, Failure>>,
    {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.counters;
        crate::io::retry::retrying(op, &self.policy, &self.jitter, |retry| {
            c.requests.fetch_add(1, Relaxed);
            if retry > 0 {
                c.retries.fetch_add(1, Relaxed);
            }
            let call = f();
            async move {
                let r = call.await;
                if let Err(Failure::Throttled(_)) = &r {
                    c.throttled.fetch_add(1, Relaxed);
                }
                r
            }
        })
        .await
        .map_err(|(failure, retries)| self.err(op, format!("{} (after {retries} retries)", failure.message())))
    }

    /// Every shard of the stream, open and closed (paginated ListShards).
    pub async fn list_shards(&self) -> Result<Vec<ShardInfo>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .retrying("ListShards", || {
                    let mut req = self.client.list_shards().max_results(1000);
                    // ListShards rejects a stream name together with a next token
                    req = match &token {
                        Some(t) => req.next_token(t),
                        None => req.stream_name(&self.stream),
                    };
                    async move { req.send().await.map_err(|e| classify(&e)) }
                })
                .await?;
            for s in page.shards() {
                out.push(ShardInfo {
                    id: s.shard_id().to_string(),
                    parent: s.parent_shard_id().map(str::to_string),
                    adjacent_parent: s.adjacent_parent_shard_id().map(str::to_string),
                    closed: s.sequence_number_range().and_then(|r| r.ending_sequence_number()).is_some(),
                });
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Opens an iterator on a shard.
    pub async fn iterator(&self, shard: &str, pos: &Position) -> Result<Option<String>> {
        self.retrying("GetShardIterator", || {
            let mut req = self.client.get_shard_iterator().stream_name(&self.stream).shard_id(shard);
            req = match pos {
                Position::TrimHorizon => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
                Position::Latest => req.shard_iterator_type(ShardIteratorType::Latest),
                Position::AtTimestamp(ms) => req
                    .shard_iterator_type(ShardIteratorType::AtTimestamp)
                    .timestamp(aws_sdk_kinesis::primitives::DateTime::from_millis(*ms)),
                Position::At(s) => {
                    req.shard_iterator_type(ShardIteratorType::AtSequenceNumber).starting_sequence_number(s)
                }
                Position::After(s) => {
                    req.shard_iterator_type(ShardIteratorType::AfterSequenceNumber).starting_sequence_number(s)
                }
            };
            async move { req.send().await.map(|o| o.shard_iterator().map(str::to_string)).map_err(|e| classify(&e)) }
        })
        .await
    }

    /// One GetRecords call (retried on throttles and transient faults).
    pub async fn get_records(&self, iterator: &str, limit: i32) -> std::result::Result<Page, ReadError> {
        let r = self
            .retrying("GetRecords", || {
                let req = self.client.get_records().shard_iterator(iterator).limit(limit);
                async move {
                    match req.send().await {
                        Ok(o) => Ok(Ok(o)),
                        Err(e) if e.as_service_error().is_some_and(|s| s.is_expired_iterator_exception()) => {
                            Ok(Err(ReadError::Expired))
                        }
                        Err(e) => Err(classify(&e)),
                    }
                }
            })
            .await
            .map_err(ReadError::Fatal)?;
        let o = r?;
        Ok(Page {
            next: o.next_shard_iterator().map(str::to_string),
            millis_behind: o.millis_behind_latest(),
            records: o.records,
        })
    }
}

/// Sleeps that a stop request cuts short.
pub async fn sleep_or_stop(d: Duration, stop: &tokio::sync::watch::Receiver<bool>) {
    let mut stop = stop.clone();
    if *stop.borrow() {
        return;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = stop.changed() => {}
    }
}
