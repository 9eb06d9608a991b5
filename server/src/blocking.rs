//! Blocking engine work (index and log reads, stream writes) runs on tokio's blocking
//! threads, never on the async workers. Commits do not block: the engine's asynchronous
//! commits queue on the async worker and are completed by the log's committer thread, which
//! wakes the request's task (no hop to a blocking thread and back per commit).
//!
//! Invariant: a worker that ends abnormally (a panic) answers its caller with a `Failure`; it
//! never takes the caller's task down with it.

use crate::api::failure::{self, Failure};

/// Runs blocking engine work (durable commits, index reads) off the async workers.
pub(crate) async fn blocking<T, F>(work: F) -> Result<T, Failure>
where
    F: FnOnce() -> Result<T, Failure> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) => Err(Failure::new(
            failure::id::OTHER,
            format!("the request's worker ended abnormally: {e}"),
        )),
    }
}

/// Runs engine work that waits without blocking (a commit's durable append through the log's
/// committer thread) on the caller's task; a panic in it answers with a `Failure`, as a
/// blocking worker's does.
pub(crate) async fn engine<T>(
    work: impl std::future::Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    use futures_util::FutureExt as _;
    match std::panic::AssertUnwindSafe(work).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => Err(Failure::new(
            failure::id::OTHER,
            format!(
                "the request's work ended abnormally: {}",
                panic_message(&*panic)
            ),
        )),
    }
}

/// What a panic said, when it said it with a string.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned())
}
