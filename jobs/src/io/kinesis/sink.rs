//! Producers: one loop ([`put_all`]) sends any service's records in calls
//! within its limits and retries what failed; a [`PutApi`] says how one call
//! is made (PutRecords for Kinesis, PutRecordBatch for Firehose).

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

use super::{FIREHOSE, KINESIS, Limits};
use crate::io::aws::{Failure, classify};
use crate::io::retry::{Jitter, RetryPolicy};
use crate::{Error, Result};

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
pub enum PutOutcome {
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

/// How one put call of a service is made.
pub trait PutApi {
    const LIMITS: Limits;
    /// Sends one call's entries.
    fn put(&self, batch: Vec<Entry>) -> impl std::future::Future<Output = std::result::Result<PutOutcome, Failure>>;
    /// The error when the retries ran out.
    fn error(&self, reason: String) -> Error;
}

/// Puts records on a stream through the shared loop.
pub struct Producer<A> {
    api: A,
    pub policy: RetryPolicy,
    jitter: Jitter,
    pub stats: ProducerStats,
}

impl<A: PutApi> Producer<A> {
    fn with_api(api: A, policy: RetryPolicy) -> Self {
        Self { api, policy, jitter: Jitter::default(), stats: ProducerStats::default() }
    }

    /// Sends the entries; returns once every one is stored (or the retries ran out).
    pub async fn send(&mut self, entries: Vec<Entry>) -> Result<()> {
        let api = &self.api;
        put_all(A::LIMITS, entries, &self.policy, &self.jitter, &mut self.stats, |batch| api.put(batch))
            .await
            .map_err(|reason| self.api.error(reason))
    }
}

/// Kinesis Data Streams: PutRecords.
pub struct KinesisApi {
    client: aws_sdk_kinesis::Client,
    stream: String,
}

/// Puts records on a Kinesis data stream.
pub type KinesisProducer = Producer<KinesisApi>;

impl Producer<KinesisApi> {
    pub async fn new(stream: &str, policy: RetryPolicy) -> Self {
        Self::with_client(crate::io::aws::kinesis_client().await, stream, policy)
    }

    pub fn with_client(client: aws_sdk_kinesis::Client, stream: &str, policy: RetryPolicy) -> Self {
        Self::with_api(KinesisApi { client, stream: stream.into() }, policy)
    }
}

impl PutApi for KinesisApi {
    const LIMITS: Limits = KINESIS;

    async fn put(&self, batch: Vec<Entry>) -> std::result::Result<PutOutcome, Failure> {
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
        let out = self
            .client
            .put_records()
            .stream_name(&self.stream)
            .set_records(Some(records))
            .send()
            .await
            .map_err(|e| classify(&e))?;
        if out.failed_record_count().unwrap_or(0) == 0 {
            return Ok(PutOutcome::Done);
        }
        Ok(PutOutcome::from_codes(out.records().iter().map(|r| r.error_code())))
    }

    fn error(&self, reason: String) -> Error {
        Error::Kinesis { op: "PutRecords", stream: self.stream.clone(), reason }
    }
}

/// Firehose: PutRecordBatch.
pub struct FirehoseApi {
    client: aws_sdk_firehose::Client,
    stream: String,
}

/// Puts records on a Firehose delivery stream.
pub type FirehoseProducer = Producer<FirehoseApi>;

impl Producer<FirehoseApi> {
    pub async fn new(stream: &str, policy: RetryPolicy) -> Self {
        Self::with_api(FirehoseApi { client: crate::io::aws::firehose_client().await, stream: stream.into() }, policy)
    }
}

impl PutApi for FirehoseApi {
    const LIMITS: Limits = FIREHOSE;

    async fn put(&self, batch: Vec<Entry>) -> std::result::Result<PutOutcome, Failure> {
        let records = batch
            .into_iter()
            .map(|e| {
                aws_sdk_firehose::types::Record::builder()
                    .data(aws_sdk_firehose::primitives::Blob::new(e.data))
                    .build()
                    .map_err(|b| Failure::Fatal(b.to_string()))
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let out = self
            .client
            .put_record_batch()
            .delivery_stream_name(&self.stream)
            .set_records(Some(records))
            .send()
            .await
            .map_err(|e| classify(&e))?;
        if out.failed_put_count() == 0 {
            return Ok(PutOutcome::Done);
        }
        Ok(PutOutcome::from_codes(out.request_responses().iter().map(|r| r.error_code())))
    }

    fn error(&self, reason: String) -> Error {
        Error::Firehose { op: "PutRecordBatch", stream: self.stream.clone(), reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
