//! AWS SDK clients (Kinesis, Firehose): one place that builds their
//! configuration, and one classification of their errors for retries.
//!
//! Settings come from the standard AWS environment: region (`AWS_REGION`,
//! else us-east-1), credentials (env, profile, web identity, ECS task role,
//! instance metadata) and endpoints (`AWS_ENDPOINT_URL_KINESIS`,
//! `AWS_ENDPOINT_URL_FIREHOSE`, then `AWS_ENDPOINT_URL`) for local servers.
//! The SDK's own retries are off: [`crate::io::retry`] retries with full jitter
//! and counts what it did, per request and per failed entry.

use std::time::Duration;

use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};

/// Builds the shared SDK configuration.
pub async fn sdk_config() -> SdkConfig {
    let region = RegionProviderChain::default_provider().or_else("us-east-1");
    aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(30))
                .build(),
        )
        .load()
        .await
}

pub async fn kinesis_client() -> aws_sdk_kinesis::Client {
    aws_sdk_kinesis::Client::new(&sdk_config().await)
}

pub async fn firehose_client() -> aws_sdk_firehose::Client {
    aws_sdk_firehose::Client::new(&sdk_config().await)
}

/// What to do about a failed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The server asked us to slow down: retry after a backoff.
    Throttled(String),
    /// A transient fault (timeout, connection, 5xx): retry after a backoff.
    Transient(String),
    /// Retrying will not help (bad request, missing stream, no access).
    Fatal(String),
}

impl Failure {
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Failure::Fatal(_))
    }
    pub fn message(&self) -> &str {
        match self {
            Failure::Throttled(m) | Failure::Transient(m) | Failure::Fatal(m) => m,
        }
    }
}

/// Error codes AWS services use to say "slow down".
pub fn is_throttle_code(code: &str) -> bool {
    matches!(
        code,
        "ProvisionedThroughputExceededException"
            | "ThrottlingException"
            | "Throttling"
            | "LimitExceededException"
            | "ServiceUnavailableException"
            | "KMSThrottlingException"
            | "RequestLimitExceeded"
            | "TooManyRequestsException"
            | "SlowDown"
    )
}

/// Classifies an SDK error (both the Kinesis and the Firehose SDK use the
/// same smithy `SdkError`).
pub fn classify<E, R>(e: &SdkError<E, R>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + HttpStatus + 'static,
{
    match e {
        SdkError::TimeoutError(_) => Failure::Transient("request timed out".into()),
        SdkError::DispatchFailure(d) if d.is_io() || d.is_timeout() => {
            Failure::Transient(format!("request could not be sent: {}", source_chain(e)))
        }
        // credentials, endpoint or configuration problems: retrying will not help
        SdkError::DispatchFailure(_) => Failure::Fatal(format!(
            "request could not be sent: {} (check the AWS credentials, region and endpoint settings)",
            source_chain(e)
        )),
        SdkError::ResponseError(_) => Failure::Transient(format!("unreadable response: {}", source_chain(e))),
        SdkError::ServiceError(se) => {
            let status = se.raw().status_code();
            let code = se.err().code().unwrap_or("").to_string();
            let msg = format!(
                "{} (HTTP {status}{})",
                if code.is_empty() { "error" } else { &code },
                se.err().message().map(|m| format!(": {m}")).unwrap_or_default()
            );
            if is_throttle_code(&code) || status == 429 {
                Failure::Throttled(msg)
            } else if status >= 500 || code == "InternalFailure" || code == "InternalError" {
                Failure::Transient(msg)
            } else {
                Failure::Fatal(msg)
            }
        }
        _ => Failure::Fatal(source_chain(e)),
    }
}

/// The status code of a raw HTTP response (kept generic so `classify` works
/// for any SDK built on smithy's HTTP response type).
pub trait HttpStatus {
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_sdk_kinesis::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_codes() {
        assert!(is_throttle_code("ProvisionedThroughputExceededException"));
        assert!(is_throttle_code("ServiceUnavailableException"));
        assert!(!is_throttle_code("ResourceNotFoundException"));
        assert!(Failure::Throttled("x".into()).is_retryable());
        assert!(!Failure::Fatal("x".into()).is_retryable());
    }
}
