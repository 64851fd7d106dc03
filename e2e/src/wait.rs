//! Waiting on an observable condition with a deadline.

use std::{future::Future, time::Duration};
use tokio::time::Instant;

/// How often conditions are re-checked: short enough that a test's measured times are honest.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Calls `check` until it returns `Some(value)` or `deadline` passes; on timeout panics with
/// `what` and the last observation `check` reported through `Err`.
pub async fn poll_until<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let give_up = Instant::now() + deadline;
    loop {
        let last = match check().await {
            Ok(value) => return value,
            Err(observation) => observation,
        };
        if Instant::now() >= give_up {
            panic!("timed out after {deadline:?} waiting for {what}; last observation: {last}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Like [`poll_until`] for a check that only says yes or no (with a reason).
pub async fn eventually<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    poll_until(what, deadline, &mut check).await
}
