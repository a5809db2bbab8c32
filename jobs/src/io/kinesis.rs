//! Kinesis Data Streams and Firehose: producers (PutRecords /
//! PutRecordBatch within the services' limits, retrying only the failed
//! entries with full-jitter backoff) and the shard-level reads ingest uses.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};

use crate::io::aws::{Failure, classify};
use crate::io::retry::{Jitter, RetryPolicy};
use crate::{Error, Result};

/// What one put call of a service may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub service: &'static str,
    pub max_records: usize,
    pub max_batch_bytes: usize,
    pub max_record_bytes: usize,
    /// The partition key counts toward the sizes (Kinesis), or is not sent (Firehose).
    pub key_counts: bool,
}

/// Kinesis PutRecords: at most 500 records and 5 MiB per call, 1 MiB per
/// record (data + partition key).
pub const KINESIS: Limits = Limits {
    service: "Kinesis",
    max_records: 500,
    max_batch_bytes: 5 * 1024 * 1024,
    max_record_bytes: 1024 * 1024,
    key_counts: true,
};
/// Firehose PutRecordBatch: at most 500 records and 4 MiB per call, 1,000 KiB per record.
pub const FIREHOSE: Limits = Limits {
    service: "Firehose",
    max_records: 500,
    max_batch_bytes: 4 * 1024 * 1024,
    max_record_bytes: 1000 * 1024,
    key_counts: false,
};

/// A stream named in a URL: `kinesis://NAME` or `firehose://NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamUrl {
    Kinesis(String),
    Firehose(String),
}

impl StreamUrl {
    /// Returns `None` when `s` is not a stream URL (a path or s3:// URL).
    pub fn parse(s: &str) -> Option<Result<Self>> {
        let (kind, rest) = if let Some(r) = s.strip_prefix("kinesis://") {
            (0, r)
        } else if let Some(r) = s.strip_prefix("firehose://") {
            (1, r)
        } else {
            return None;
        };
        let name = rest.trim_end_matches('/');
        let valid = !name.is_empty()
            && name.len() <= 128
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid {
            return Some(Err(Error::Location {
                location: s.to_string(),
                reason: "a stream name is 1-128 characters of A-Z a-z 0-9 _ . - (kinesis://NAME or firehose://NAME)"
                    .into(),
            }));
        }
        Some(Ok(if kind == 0 { StreamUrl::Kinesis(name.into()) } else { StreamUrl::Firehose(name.into()) }))
    }

    pub fn name(&self) -> &str {
        match self {
            StreamUrl::Kinesis(n) | StreamUrl::Firehose(n) => n,
        }
    }
}

impl std::fmt::Display for StreamUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamUrl::Kinesis(n) => write!(f, "kinesis://{n}"),
            StreamUrl::Firehose(n) => write!(f, "firehose://{n}"),
        }
    }
}

/// What a producer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStats {
    pub records: u64,
    pub bytes: u64,
    pub requests: u64,
    /// Calls repeated after a throttle or transient error (whole call or some entries).
    pub retries: u64,
    /// Entries the service refused in an otherwise successful call (then retried).
    pub failed_entries: u64,
    pub throttled: u64,
}

/// One record to put: partition key (ignored by Firehose) and bytes.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub data: Vec<u8>,
}

/// The outcome of one put call.
enum PutOutcome {
    /// Indices (into the call's entries) that failed, with the first error code.
    Partial(Vec<usize>, String),
    Done,
}

impl PutOutcome {
    /// From the per-entry error codes of a response (None: stored).
    fn from_codes<'a>(codes: impl Iterator<Item = Option<&'a str>>) -> Self {
        let mut first = None;
        let failed: Vec<usize> = codes
            .enumerate()
            .filter_map(|(i, c)| {
                let c = c?;
                first.get_or_insert_with(|| c.to_string());
                Some(i)
            })
            .collect();
        match first {
            None => PutOutcome::Done,
            Some(code) => PutOutcome::Partial(failed, code),
        }
    }
}

/// Sends `entries` in calls of at most `max_records` / `max_bytes`, retrying
/// failed calls and failed entries with backoff. `call` sends a slice.
async fn put_all<F, Fut>(
    limits: Limits,
    entries: Vec<Entry>,
    policy: &RetryPolicy,
    jitter: &Jitter,
    stats: &mut ProducerStats,
    mut call: F,
) -> std::result::Result<(), String>
where
    F: FnMut(Vec<Entry>) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<PutOutcome, Failure>>,
{
    let Limits { service: what, max_records, max_batch_bytes: max_bytes, max_record_bytes: max_record, key_counts } =
        limits;
    let size = |e: &Entry| e.data.len() + if key_counts { e.key.len() } else { 0 };
    if let Some((i, e)) = entries.iter().enumerate().find(|(_, e)| size(e) > max_record) {
        return Err(format!(
            "record {i} (key {:?}) is {} bytes, over the {what} limit of {max_record} bytes per record",
            e.key,
            size(e)
        ));
    }
    let mut start = 0;
    while start < entries.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < entries.len() && end - start < max_records && bytes + size(&entries[end]) <= max_bytes {
            bytes += size(&entries[end]);
            end += 1;
        }
        let mut pending: Vec<Entry> = entries[start..end].to_vec();
        let mut retry = 0u32;
        loop {
            stats.requests += 1;
            let failure = match call(pending.clone()).await {
                Ok(PutOutcome::Done) => break,
                Ok(PutOutcome::Partial(failed, code)) => {
                    stats.failed_entries += failed.len() as u64;
                    if crate::io::aws::is_throttle_code(&code) {
                        stats.throttled += 1;
                    }
                    pending = failed.into_iter().filter_map(|i| pending.get(i).cloned()).collect();
                    Failure::Throttled(format!("{} of the records failed with {code}", pending.len()))
                }
                Err(f) => {
                    if matches!(f, Failure::Throttled(_)) {
                        stats.throttled += 1;
                    }
                    f
                }
            };
            if !failure.is_retryable() || retry >= policy.max_retries {
                return Err(format!(
                    "{} (after {retry} retries{})",
                    failure.message(),
                    if failure.is_retryable() { "; raise --max-retries or slow down with --rate" } else { "" }
                ));
            }
            retry += 1;
            stats.retries += 1;
            let d = jitter.delay(policy, retry);
            tracing::debug!(what, retry, delay_ms = d.as_millis() as u64, reason = failure.message(), "retrying put");
            tokio::time::sleep(d).await;
        }
        stats.records += (end - start) as u64;
        stats.bytes += entries[start..end].iter().map(|e| e.data.len() as u64).sum::<u64>();
        start = end;
    }
    Ok(())
}

/// Puts records on a Kinesis data stream.
pub struct KinesisProducer {
    client: aws_sdk_kinesis::Client,
    stream: String,
    pub policy: RetryPolicy,
    jitter: Jitter,
    pub stats: ProducerStats,
}

impl KinesisProducer {
    pub async fn new(stream: &str, policy: RetryPolicy) -> Self {
        Self::with_client(crate::io::aws::kinesis_client().await, stream, policy)
    }

    pub fn with_client(client: aws_sdk_kinesis::Client, stream: &str, policy: RetryPolicy) -> Self {
        Self { client, stream: stream.into(), policy, jitter: Jitter::default(), stats: ProducerStats::default() }
    }

    /// Sends the entries; returns once every one is stored (or the retries ran out).
    pub async fn send(&mut self, entries: Vec<Entry>) -> Result<()> {
        let client = &self.client;
        let stream = &self.stream;
        put_all(KINESIS, entries, &self.policy, &self.jitter, &mut self.stats, |batch| async move {
            let records = batch
                .into_iter()
                .map(|e| {
                    PutRecordsRequestEntry::builder()
                        .data(Blob::new(e.data))
                        .partition_key(e.key)
                        .build()
                        .map_err(|b| Failure::Fatal(b.to_string()))
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let out = client
                .put_records()
                .stream_name(stream)
                .set_records(Some(records))
                .send()
                .await
                .map_err(|e| classify(&e))?;
            if out.failed_record_count().unwrap_or(0) == 0 {
                return Ok(PutOutcome::Done);
            }
            Ok(PutOutcome::from_codes(out.records().iter().map(|r| r.error_code())))
        })
        .await
        .map_err(|reason| Error::Kinesis { op: "PutRecords", stream: self.stream.clone(), reason })
    }
}

/// Puts records on a Firehose delivery stream.
pub struct FirehoseProducer {
    client: aws_sdk_firehose::Client,
    stream: String,
    pub policy: RetryPolicy,
    jitter: Jitter,
    pub stats: ProducerStats,
}

impl FirehoseProducer {
    pub async fn new(stream: &str, policy: RetryPolicy) -> Self {
        Self {
            client: crate::io::aws::firehose_client().await,
            stream: stream.into(),
            policy,
            jitter: Jitter::default(),
            stats: ProducerStats::default(),
        }
    }

    pub async fn send(&mut self, entries: Vec<Entry>) -> Result<()> {
        let client = &self.client;
        let stream = &self.stream;
        put_all(FIREHOSE, entries, &self.policy, &self.jitter, &mut self.stats, |batch| async move {
            let records = batch
                .into_iter()
                .map(|e| {
                    aws_sdk_firehose::types::Record::builder()
                        .data(aws_sdk_firehose::primitives::Blob::new(e.data))
                        .build()
                        .map_err(|b| Failure::Fatal(b.to_string()))
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let out = client
                .put_record_batch()
                .delivery_stream_name(stream)
                .set_records(Some(records))
                .send()
                .await
                .map_err(|e| classify(&e))?;
            if out.failed_put_count() == 0 {
                return Ok(PutOutcome::Done);
            }
            Ok(PutOutcome::from_codes(out.request_responses().iter().map(|r| r.error_code())))
        })
        .await
        .map_err(|reason| Error::Firehose { op: "PutRecordBatch", stream: self.stream.clone(), reason })
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_urls() {
        assert_eq!(StreamUrl::parse("kinesis://tweets").unwrap().unwrap(), StreamUrl::Kinesis("tweets".into()));
        assert_eq!(StreamUrl::parse("firehose://a.b-c_d/").unwrap().unwrap(), StreamUrl::Firehose("a.b-c_d".into()));
        assert!(StreamUrl::parse("s3://b/x").is_none());
        assert!(StreamUrl::parse("kinesis://").unwrap().is_err());
        assert!(StreamUrl::parse("kinesis://a/b").unwrap().is_err());
    }

    fn entries(n: usize, size: usize) -> Vec<Entry> {
        (0..n).map(|i| Entry { key: format!("k{i}"), data: vec![b'x'; size] }).collect()
    }

    #[test]
    fn outcome_from_entry_codes() {
        assert!(matches!(PutOutcome::from_codes([None, None].into_iter()), PutOutcome::Done));
        match PutOutcome::from_codes(
            [None, Some("ProvisionedThroughputExceededException"), None, Some("InternalFailure")].into_iter(),
        ) {
            PutOutcome::Partial(failed, code) => {
                assert_eq!(failed, vec![1, 3]);
                assert_eq!(code, "ProvisionedThroughputExceededException");
            }
            PutOutcome::Done => panic!("two entries failed"),
        }
    }

    #[tokio::test]
    async fn batches_respect_limits_and_failed_entries_are_retried() {
        let policy = RetryPolicy { max_retries: 5, base: Duration::from_millis(1), cap: Duration::from_millis(2) };
        let jitter = Jitter::default();
        let mut stats = ProducerStats::default();
        let mut calls: Vec<usize> = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        // 1,200 records of 10 KiB: the 5 MiB cap (not the 500-record cap) cuts the calls;
        // every third call fails its first two entries once.
        let r = put_all(KINESIS, entries(1200, 10 * 1024), &policy, &jitter, &mut stats, |b| {
            calls.push(b.len());
            let fail = calls.len().is_multiple_of(3) && b.len() > 2;
            if !fail {
                seen.extend(b.iter().map(|e| e.key.clone()));
            } else {
                seen.extend(b[2..].iter().map(|e| e.key.clone()));
            }
            async move {
                if fail {
                    Ok(PutOutcome::Partial(vec![0, 1], "ProvisionedThroughputExceededException".into()))
                } else {
                    Ok(PutOutcome::Done)
                }
            }
        })
        .await;
        assert!(r.is_ok(), "{r:?}");
        assert!(calls.iter().all(|&n| n <= 500 && n * (10 * 1024 + 5) <= 5 << 20), "{calls:?}");
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 1200, "every record was stored once");
        assert_eq!(stats.records, 1200);
        assert!(stats.retries >= 1 && stats.failed_entries >= 2 && stats.throttled >= 1, "{stats:?}");
    }

    #[tokio::test]
    async fn retries_are_bounded_and_fatal_errors_stop() {
        let policy = RetryPolicy { max_retries: 3, base: Duration::from_millis(1), cap: Duration::from_millis(2) };
        let jitter = Jitter::default();
        let mut stats = ProducerStats::default();
        let mut n = 0;
        let r = put_all(KINESIS, entries(3, 10), &policy, &jitter, &mut stats, |_| {
            n += 1;
            async { Err::<PutOutcome, _>(Failure::Transient("HTTP 500".into())) }
        })
        .await;
        assert_eq!(n, 4, "1 try + 3 retries");
        assert!(r.unwrap_err().contains("after 3 retries"));
        let mut n = 0;
        let r = put_all(KINESIS, entries(3, 10), &policy, &jitter, &mut stats, |_| {
            n += 1;
            async { Err::<PutOutcome, _>(Failure::Fatal("ResourceNotFoundException".into())) }
        })
        .await;
        assert_eq!(n, 1);
        assert!(r.unwrap_err().contains("ResourceNotFoundException"));
        // an oversized record is refused before any call
        let r = put_all(KINESIS, entries(1, (1 << 20) + 1), &policy, &jitter, &mut stats, |_| async {
            Ok(PutOutcome::Done)
        })
        .await;
        assert!(r.unwrap_err().contains("over the Kinesis limit"));
    }
}
