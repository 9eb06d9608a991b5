//! Blocking engine work (durable commits, index and log reads) runs on tokio's blocking
//! threads, never on the async workers.
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
