//! A node's tasks and how they stop: see [`Lifecycle`].

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a node's shutdown waits for its tasks to finish their current step.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The tasks of a running node and how they stop. Every task of the node runs on its
/// tracker, so [`Lifecycle::shutdown`] waits for a SQLite transaction or a blob write in
/// progress. A task the node cannot run without (its API server, its sync endpoint) is
/// spawned with [`Lifecycle::spawn_essential`]: if it ends by itself the whole node stops,
/// and `shutdown` reports why, so that a supervisor restarts it instead of leaving a node
/// that looks alive.
#[derive(Debug, Clone, Default)]
pub struct Lifecycle {
    cancel: CancellationToken,
    tasks: TaskTracker,
    failure: Arc<Mutex<Option<String>>>,
}

/// Why a node did not stop cleanly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShutdownError {
    /// Some task was still running when the grace period passed.
    #[error("{pending} task(s) did not finish within {grace:?} of the shutdown request")]
    TimedOut {
        /// The grace period.
        grace: Duration,
        /// Tasks still running.
        pending: usize,
    },
    /// The node had stopped by itself before it was asked to.
    #[error("the node stopped by itself: {0}")]
    Failed(String),
}

impl Lifecycle {
    /// A node with no tasks yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The node's cancellation token: cancelled when it stops (take `child_token()` for a
    /// part that may stop earlier on its own).
    pub fn token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// The node's task tracker.
    pub fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    /// Run `task` on the node's tracker.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// Run `task`, which the node cannot do without, on the node's tracker: if it ends
    /// (with an error, or at all) before the node is stopped, the node fails.
    pub fn spawn_essential<E: std::fmt::Display>(
        &self,
        what: &'static str,
        task: impl Future<Output = Result<(), E>> + Send + 'static,
    ) {
        let node = self.clone();
        self.tasks.spawn(async move {
            let ended = task.await;
            if node.cancel.is_cancelled() {
                return;
            }
            match ended {
                Err(e) => node.fail(format!("{what} failed: {e}")),
                Ok(()) => node.fail(format!("{what} stopped")),
            }
        });
    }

    /// Stop the node because of `why` (the first failure is the one reported).
    pub fn fail(&self, why: String) {
        tracing::error!(reason = %why, "stopping: a part the node cannot run without failed");
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(why);
        self.cancel.cancel();
    }

    /// Everything is started: [`join`](Self::join) may return once all tasks have ended
    /// (tasks may still be spawned afterwards).
    pub fn started(&self) {
        self.tasks.close();
    }

    /// Wait until every task has ended: after [`shutdown`](Self::shutdown) began, or after
    /// a failure stopped the node by itself.
    pub async fn join(&self) {
        self.tasks.wait().await;
    }

    /// Stop: cancel every task and wait up to `grace` for them to finish their step. An
    /// error if they did not, or if the node had already failed.
    pub async fn shutdown(&self, grace: Duration) -> Result<(), ShutdownError> {
        self.cancel.cancel();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            return Err(ShutdownError::TimedOut {
                grace,
                pending: self.tasks.len(),
            });
        }
        match self
            .failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            Some(why) => Err(ShutdownError::Failed(why)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Lifecycle, ShutdownError};
    use std::time::Duration;

    /// A node whose essential task ends stops by itself, and says why when shut down; a
    /// node stopped on request shuts down cleanly and waits for its tasks.
    #[tokio::test]
    async fn an_essential_task_that_ends_stops_the_node_and_is_reported() {
        let node = Lifecycle::new();
        let token = node.token().clone();
        node.spawn(async move { token.cancelled().await });
        node.spawn_essential("the HTTP API", async { Err::<(), _>("address in use") });
        node.started();
        tokio::time::timeout(Duration::from_secs(5), node.join())
            .await
            .expect("the node kept running without its API");
        assert_eq!(
            node.shutdown(Duration::from_secs(1)).await,
            Err(ShutdownError::Failed(
                "the HTTP API failed: address in use".into()
            ))
        );

        let node = Lifecycle::new();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let token = node.token().clone();
        node.spawn_essential("the uplink", async move {
            token.cancelled().await;
            // A step in progress finishes before the task ends.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = done_tx.send(());
            Ok::<(), String>(())
        });
        node.started();
        assert_eq!(node.shutdown(Duration::from_secs(5)).await, Ok(()));
        assert!(
            done_rx.await.is_ok(),
            "shutdown returned before the task finished"
        );

        let node = Lifecycle::new();
        node.spawn(std::future::pending());
        node.started();
        assert!(matches!(
            node.shutdown(Duration::from_millis(50)).await,
            Err(ShutdownError::TimedOut { pending: 1, .. })
        ));
    }
}
