//! An S3 store that retries whole operations where object_store's own
//! request retries cannot: a listing whose body is cut off after a 200, a
//! bulk delete (a POST) or a copy that timed out. object_store retries a
//! request on a 5xx, a throttle or a failed connection, but not a body that
//! breaks mid-read, and a timeout only for requests it knows are idempotent.
//! Listings, deletes and copies are safe to repeat, so they are repeated here,
//! up to [`OPERATION_RETRIES`] times; a fault object_store already retried is
//! not retried again (its own budget, 10 tries within 3 minutes, is spent).
//! Writes are not wrapped: a conditional PUT's ambiguity is the caller's to
//! settle (the checkpoints and the output lock read back what they wrote).

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult,
};

use crate::io::retry::{Jitter, RetryPolicy, Retryable, retrying};

/// Whole-operation retries after the first attempt.
pub const OPERATION_RETRIES: u32 = 4;
/// Backoff of whole-operation retries: full jitter from 1 s, doubling, at most 16 s.
const POLICY: RetryPolicy =
    RetryPolicy { max_retries: OPERATION_RETRIES, base: Duration::from_secs(1), cap: Duration::from_secs(16) };
/// Paths per DeleteObjects request (S3's limit), the unit a failed delete is repeated in.
const DELETE_CHUNK: usize = 1000;

#[derive(Debug)]
pub struct PatientStore {
    inner: Arc<dyn ObjectStore>,
    jitter: Arc<Jitter>,
}

impl PatientStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self { inner, jitter: Arc::new(Jitter::default()) }
    }
}

impl std::fmt::Display for PatientStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.inner)
    }
}

/// A failed store operation, judged for [`crate::io::retry::retrying`]: worth
/// repeating when object_store did not retry it itself (a body cut off
/// mid-read, a timed-out POST). Not found, conflicts, permissions and faults
/// it already retried are final.
struct StoreFault(object_store::Error);

impl Retryable for StoreFault {
    fn is_retryable(&self) -> bool {
        is_repeatable(&self.0)
    }
    fn message(&self) -> String {
        crate::error::chain(&self.0)
    }
}

fn is_repeatable(e: &object_store::Error) -> bool {
    match e {
        object_store::Error::Generic { .. } => !crate::error::chain(e).contains("retries, max_retries"),
        _ => false,
    }
}

/// Runs `op` until it succeeds, fails for good, or the retries are spent; a failure to be
/// repeated is logged as a warning.
async fn repeat<T, F, Fut>(what: &str, jitter: &Jitter, mut op: F) -> object_store::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = object_store::Result<T>>,
{
    retrying(what, &POLICY, jitter, |retry| {
        let attempt = op();
        async move {
            attempt.await.map_err(|e| {
                if is_repeatable(&e) && retry < POLICY.max_retries {
                    tracing::warn!(op = what, retry, error = %crate::error::chain(&e), "object store operation failed; repeating it");
                }
                StoreFault(e)
            })
        }
    })
    .await
    .map_err(|(StoreFault(e), _)| e)
}

#[async_trait::async_trait]
impl ObjectStore for PatientStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        repeat("get", &self.jitter, || self.inner.get_opts(location, options.clone())).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> object_store::Result<Vec<Bytes>> {
        repeat("get ranges", &self.jitter, || self.inner.get_ranges(location, ranges)).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let (inner, jitter) = (self.inner.clone(), self.jitter.clone());
        locations
            .chunks(DELETE_CHUNK)
            .then(move |chunk| {
                let (inner, jitter) = (inner.clone(), jitter.clone());
                async move {
                    // errors of the incoming paths pass through as they are; the paths are deleted
                    let (paths, passed): (Vec<_>, Vec<_>) = chunk.into_iter().partition(Result::is_ok);
                    let paths: Vec<Path> = paths.into_iter().flatten().collect();
                    let results = repeat("delete", &jitter, || {
                        let (inner, paths) = (inner.clone(), paths.clone());
                        async move {
                            let results: Vec<object_store::Result<Path>> = inner
                                .delete_stream(futures::stream::iter(paths.into_iter().map(Ok)).boxed())
                                .collect()
                                .await;
                            // a repeatable fault on any path repeats the chunk (deleting twice is harmless)
                            match results.iter().position(|r| r.as_ref().is_err_and(is_repeatable)) {
                                Some(i) => Err(results.into_iter().nth(i).and_then(Result::err).expect("an error")),
                                None => Ok(results),
                            }
                        }
                    })
                    .await;
                    let results = match results {
                        Ok(results) => results,
                        Err(e) => vec![Err(e)],
                    };
                    futures::stream::iter(passed.into_iter().chain(results))
                }
            })
            .flatten()
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        // a listing is repeated whole: the pages read before a cut-off body are not kept
        let (inner, jitter, prefix) = (self.inner.clone(), self.jitter.clone(), prefix.cloned());
        futures::stream::once(async move {
            repeat("list", &jitter, || inner.list(prefix.as_ref()).try_collect::<Vec<_>>()).await
        })
        .map(|listed| match listed {
            Ok(metas) => futures::stream::iter(metas.into_iter().map(Ok)).boxed(),
            Err(e) => futures::stream::once(async { Err(e) }).boxed(),
        })
        .flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        repeat("list", &self.jitter, || self.inner.list_with_delimiter(prefix)).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        repeat("copy", &self.jitter, || self.inner.copy_opts(from, to, options.clone())).await
    }
}
