//! Kinesis Data Streams and Firehose, as Arroyo's connector folder lays it
//! out: this module holds what both directions share (stream URLs, the
//! services' limits), [`sink`] the producers (PutRecords / PutRecordBatch
//! within the limits, retrying only the failed entries with full-jitter
//! backoff, one loop for both services) and [`source`] the shard-level reads
//! that `ingest` and `stream` use, and [`lease`] the shard leases they share.

pub mod lease;
pub mod sink;
pub mod source;

pub use sink::{Entry, FirehoseProducer, KinesisProducer, ProducerStats};
pub use source::*;

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

/// Orders Kinesis sequence numbers (decimal strings of up to 128 digits).
pub fn seq_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_order_numerically() {
        use std::cmp::Ordering::*;
        assert_eq!(seq_cmp("9", "10"), Less);
        assert_eq!(
            seq_cmp(
                "49590338271490256608559692538361571095921575989136588898",
                "49590338271490256608559692538361571095921575989136588899"
            ),
            Less
        );
        assert_eq!(seq_cmp("007", "7"), Equal);
        assert_eq!(seq_cmp("100", "99"), Greater);
    }

    #[test]
    fn stream_urls() {
        assert_eq!(StreamUrl::parse("kinesis://tweets").unwrap().unwrap(), StreamUrl::Kinesis("tweets".into()));
        assert_eq!(StreamUrl::parse("firehose://a.b-c_d/").unwrap().unwrap(), StreamUrl::Firehose("a.b-c_d".into()));
        assert!(StreamUrl::parse("s3://b/x").is_none());
        assert!(StreamUrl::parse("kinesis://").unwrap().is_err());
        assert!(StreamUrl::parse("kinesis://a/b").unwrap().is_err());
    }
}
