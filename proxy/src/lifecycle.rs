//! Readiness and shutdown phases, shared by listeners, connections and the admin server.

use tokio::sync::watch;
use tokio_util::task::TaskTracker;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Ready, serving.
    Serving,
    /// SIGTERM received: not ready, but still serving in-flight and new requests while the
    /// application winds down.
    Draining,
    /// Stop accepting, close connections gracefully, exit.
    Stopping,
}

pub struct Lifecycle {
    phase: watch::Sender<Phase>,
    /// Every served connection, so the final drain can wait for them.
    pub connections: TaskTracker,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            phase: watch::Sender::new(Phase::Serving),
            connections: TaskTracker::new(),
        }
    }
}

impl Lifecycle {
    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    pub fn is_ready(&self) -> bool {
        self.phase() == Phase::Serving
    }

    /// Moves forward to `phase` (never back).
    pub fn advance(&self, phase: Phase) {
        self.phase.send_if_modified(|current| {
            let moved = phase > *current;
            if moved {
                *current = phase;
            }
            moved
        });
    }

    pub fn subscribe(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }
}

/// Resolves once the phase is at least `phase`.
pub async fn reached(rx: &mut watch::Receiver<Phase>, phase: Phase) {
    // An error means the sender is gone: the process is going down anyway.
    let _ = rx.wait_for(|current| *current >= phase).await;
}
