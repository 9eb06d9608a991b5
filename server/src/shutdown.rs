//! Graceful shutdown. The first SIGTERM or SIGINT (or a listener that ends on its own) turns
//! the one `stop` channel true; every listener stops accepting, in-flight requests run to
//! their end (a commit that was received is made durable and answered; batch streams end with
//! UNAVAILABLE), then the engine closes (indexer stopped and joined, logs closed).
//!
//! Bounds: one deadline for all of it ([`GRACE`]); a second signal gives up waiting at once.
//! Nothing acknowledged is lost either way, as every answer follows its commit's fsync.
//!
//! The plumbing:
//! - `stop` (a `watch` channel, sent once by `server::serve`): listener tasks stop accepting on
//!   it ([`stopped`]), and the runtime's `stopping` copy ends long-running work early.
//! - the listener tasks (a `JoinSet`): waited for first, so every request has been answered.
//! - the runtime (an `Arc`): every request under way holds a handle; the last one dropped
//!   closes the engine, on a blocking thread as it joins the engine's threads.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::runtime::Runtime;

/// How long shutdown waits for in-flight requests and the engine's close before giving up.
const GRACE: Duration = Duration::from_secs(30);

/// How often the close polls for the last handle of the runtime.
const RELEASE_POLL: Duration = Duration::from_millis(20);

/// Resolves on SIGTERM or SIGINT, naming it.
pub(crate) async fn signal() -> &'static str {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        () = terminate => "SIGTERM",
    }
}

/// Resolves once `stop` turns true (or its sender is gone): a listener's cue to stop
/// accepting.
pub(crate) async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Once `stop` was sent: waits for the listeners and the runtime within [`GRACE`] (a second
/// signal ends the wait) and says how it went. True when the store closed cleanly.
pub(crate) async fn close(tasks: JoinSet<anyhow::Result<()>>, runtime: Arc<Runtime>) -> bool {
    let closed = tokio::select! {
        closed = finish(tasks, runtime) => closed,
        () = tokio::time::sleep(GRACE) => false,
        _ = signal() => false,
    };
    if closed {
        tracing::info!("store closed cleanly");
    } else {
        tracing::warn!(
            "shutdown stopped waiting (grace period over or a second signal): requests still \
             running were cut off; anything acknowledged is durable and the store recovers \
             on the next start"
        );
    }
    closed
}

/// Waits for the listeners to finish their requests, then for the last handle of the runtime
/// (work still under way, such as a commit, holds one until it is done), and closes the
/// engine (joining its threads). True once closed.
async fn finish(mut tasks: JoinSet<anyhow::Result<()>>, runtime: Arc<Runtime>) -> bool {
    while let Some(ended) = tasks.join_next().await {
        if let Ok(Err(e)) = ended {
            tracing::error!(error = %e, "listener failed while stopping");
        }
    }
    let mut runtime = runtime;
    loop {
        match Arc::try_unwrap(runtime) {
            Ok(r) => return tokio::task::spawn_blocking(move || drop(r)).await.is_ok(),
            Err(shared) => {
                runtime = shared;
                tokio::time::sleep(RELEASE_POLL).await;
            }
        }
    }
}
