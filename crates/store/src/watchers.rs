//! Change notification without a runtime: a revision under a mutex and condvar for blocking
//! waiters, plus `mpsc` senders for subscribers.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::Revision;

/// The current revision and who to tell when it moves.
#[derive(Debug, Default)]
pub(crate) struct Watchers {
    revision: Mutex<Revision>,
    changed: Condvar,
    subscribers: Mutex<Vec<Sender<Revision>>>,
}

impl Watchers {
    pub(crate) fn new(revision: Revision) -> Watchers {
        Watchers {
            revision: Mutex::new(revision),
            ..Watchers::default()
        }
    }

    pub(crate) fn current(&self) -> Revision {
        *self.revision.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes a new revision; subscribers that went away are dropped.
    pub(crate) fn publish(&self, revision: Revision) {
        *self.revision.lock().unwrap_or_else(PoisonError::into_inner) = revision;
        self.changed.notify_all();
        let mut subscribers = self
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        subscribers.retain(|tx| tx.send(revision).is_ok());
    }

    pub(crate) fn subscribe(&self) -> Receiver<Revision> {
        let (tx, rx) = mpsc::channel();
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(tx);
        rx
    }

    pub(crate) fn wait(&self, after: Revision, timeout: Duration) -> Revision {
        let deadline = Instant::now() + timeout;
        let mut revision = self.revision.lock().unwrap_or_else(PoisonError::into_inner);
        while *revision <= after {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            revision = self
                .changed
                .wait_timeout(revision, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *revision
    }
}
