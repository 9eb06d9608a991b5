//! Runs the engine's blocking calls (disk reads, synced writes) on tokio's blocking threads,
//! so the tasks that serve and receive streams never stall a worker.

use annals_engine::Error;

/// Runs `work` on a blocking thread. A panic inside it (an engine invariant broken) becomes an
/// error for this one call instead of taking the task down.
pub(crate) async fn run<T, F>(work: F) -> Result<T, Error>
where
    F: FnOnce() -> Result<T, Error> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) => Err(Error::Log(annals_engine::LogError::InvalidRequest(
            format!("an engine call ended abnormally: {e}"),
        ))),
    }
}
