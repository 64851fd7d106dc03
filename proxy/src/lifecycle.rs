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
    /// Why the proxy is not ready although serving (e.g. not certified yet), shown by `/ready`.
    not_ready: parking_lot::Mutex<Option<String>>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            phase: watch::Sender::new(Phase::Serving),
            connections: TaskTracker::new(),
            not_ready: parking_lot::Mutex::new(None),
        }
    }
}

impl Lifecycle {
    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    pub fn is_ready(&self) -> bool {
        self.phase() == Phase::Serving && self.not_ready.lock().is_none()
    }

    /// Holds readiness back for `reason` (`None`: nothing holds it back any more).
    pub fn set_not_ready(&self, reason: Option<String>) {
        *self.not_ready.lock() = reason;
    }

    pub fn not_ready_reason(&self) -> Option<String> {
        self.not_ready.lock().clone()
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
