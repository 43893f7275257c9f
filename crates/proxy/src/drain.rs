//! One drain primitive for the whole proxy: listeners stop accepting when it is signalled,
//! every connection task is tracked, and shutdown waits for them up to a deadline.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tokio_util::task::TaskTracker;

/// Shared by every listener and connection task.
#[derive(Debug, Clone, Default)]
pub struct Drain {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Drain {
    /// A drain that has not been signalled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns a tracked task: [`Drain::drain`] waits for it.
    pub fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(fut);
    }

    /// Resolves once the drain is signalled.
    pub fn signaled(&self) -> WaitForCancellationFuture<'_> {
        self.token.cancelled()
    }

    /// Whether the drain has been signalled.
    pub fn is_signaled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// The token listeners watch.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Signals the drain (idempotent).
    pub fn signal(&self) {
        self.token.cancel();
    }

    /// Signals, then waits up to `timeout` for every tracked task. Returns whether all finished.
    pub async fn drain(&self, timeout: Duration) -> bool {
        self.signal();
        self.tracker.close();
        tokio::time::timeout(timeout, self.tracker.wait())
            .await
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn waits_for_tasks_up_to_the_deadline() {
        let drain = Drain::new();
        let d = drain.clone();
        drain.spawn(async move {
            d.signaled().await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        });
        assert!(drain.drain(Duration::from_secs(5)).await);

        let stuck = Drain::new();
        stuck.spawn(std::future::pending());
        assert!(!stuck.drain(Duration::from_secs(5)).await);
    }
}
