//! Per-endpoint load estimate (peak-EWMA with pending-request weighting) and the power-of-two-choices
//! pick over it.
//!
//! The estimate follows Finagle's / tower's `PeakEwma` as linkerd2-proxy configures it (default RTT
//! 30 ms, decay 10 s): a slower response raises the estimate at once ("peak"), an idle endpoint's
//! estimate decays toward zero with the decay time constant (so an endpoint that lost every pick is
//! eventually tried again), and the load is `estimate * (pending + 1)`.
//!
//! One deliberate difference: under load tower moves the estimate down only through the time decay,
//! so an endpoint that was slow for a while needs tens of seconds to win its share back even when
//! every fresh sample says it is fast again. Here each sample below the estimate also pulls it down
//! by at least [`MIN_SAMPLE_WEIGHT`], so plenty of fresh evidence shortens recovery to a few seconds
//! while a single slow sample still counts in full.
//!
//! The state is one `AtomicU64` (estimate as `f32` nanoseconds, stamp as `u32` milliseconds) and one
//! `AtomicU32`, so reads and updates are lock-free and stay correct with several worker threads.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

pub const DEFAULT_RTT: Duration = Duration::from_millis(30);
pub const DEFAULT_DECAY: Duration = Duration::from_secs(10);
/// The least weight a sample below the estimate gets (see the module docs).
pub const MIN_SAMPLE_WEIGHT: f64 = 0.05;

/// Milliseconds since the first call: compact stamps for the packed state.
pub fn now_ms(now: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    now.saturating_duration_since(epoch).as_millis() as u64
}

/// Balancer tuning shared by all endpoints.
#[derive(Clone, Copy, Debug)]
pub struct EwmaConfig {
    pub default_rtt: Duration,
    pub decay: Duration,
}

impl Default for EwmaConfig {
    fn default() -> Self {
        Self {
            default_rtt: DEFAULT_RTT,
            decay: DEFAULT_DECAY,
        }
    }
}

#[derive(Debug)]
pub struct PeakEwma {
    /// High 32 bits: estimate in ns as f32 bits; low 32 bits: stamp of the last update in ms.
    state: AtomicU64,
    pending: AtomicU32,
}

fn pack(cost_ns: f64, stamp_ms: u32) -> u64 {
    ((cost_ns as f32).to_bits() as u64) << 32 | stamp_ms as u64
}

fn unpack(state: u64) -> (f64, u32) {
    (f32::from_bits((state >> 32) as u32) as f64, state as u32)
}

fn decayed(cost_ns: f64, stamp_ms: u32, now_ms: u32, decay_ms: f64) -> f64 {
    let elapsed = now_ms.wrapping_sub(stamp_ms);
    if elapsed == 0 || elapsed > u32::MAX / 2 {
        return cost_ns;
    }
    cost_ns * (-(elapsed as f64) / decay_ms).exp()
}

impl PeakEwma {
    pub fn new(config: &EwmaConfig, now_ms: u64) -> Self {
        Self {
            state: AtomicU64::new(pack(config.default_rtt.as_nanos() as f64, now_ms as u32)),
            pending: AtomicU32::new(0),
        }
    }

    /// The current latency estimate in nanoseconds, decayed to `now_ms`.
    pub fn estimate_ns(&self, config: &EwmaConfig, now_ms: u64) -> f64 {
        let (cost, stamp) = unpack(self.state.load(Ordering::Relaxed));
        decayed(cost, stamp, now_ms as u32, config.decay.as_secs_f64() * 1e3)
    }

    /// What P2C compares: the estimate weighted by the requests still waiting for a response.
    pub fn load(&self, config: &EwmaConfig, now_ms: u64) -> f64 {
        let pending = self.pending.load(Ordering::Relaxed) as f64;
        self.estimate_ns(config, now_ms) * (pending + 1.0)
    }

    pub fn pending(&self) -> u32 {
        self.pending.load(Ordering::Relaxed)
    }

    /// Counts a request as pending until the returned guard is dropped or completed.
    pub fn start(&self) {
        self.pending.fetch_add(1, Ordering::Relaxed);
    }

    /// Ends a pending request, feeding its round-trip time when it got a response.
    pub fn finish(&self, config: &EwmaConfig, rtt: Option<Duration>, now_ms: u64) {
        self.pending.fetch_sub(1, Ordering::Relaxed);
        if let Some(rtt) = rtt {
            self.observe(config, rtt.as_nanos() as f64, now_ms);
        }
    }

    fn observe(&self, config: &EwmaConfig, rtt_ns: f64, now_ms: u64) {
        let decay_ms = config.decay.as_secs_f64() * 1e3;
        let mut current = self.state.load(Ordering::Relaxed);
        loop {
            let (cost, stamp) = unpack(current);
            let base = decayed(cost, stamp, now_ms as u32, decay_ms);
            let next = if rtt_ns > base {
                rtt_ns
            } else {
                base + (rtt_ns - base) * MIN_SAMPLE_WEIGHT
            };
            match self.state.compare_exchange_weak(
                current,
                pack(next, now_ms as u32),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }
}

/// Picks an index by power of two choices: two distinct random candidates, the lower load wins.
/// Candidates for which `available` is false lose to available ones; when both are unavailable the
/// first available endpoint after a random offset wins; when none is, `None`.
pub fn p2c(
    len: usize,
    available: impl Fn(usize) -> bool,
    load: impl Fn(usize) -> f64,
) -> Option<usize> {
    match len {
        0 => None,
        1 => available(0).then_some(0),
        _ => {
            let a = fastrand::usize(..len);
            let mut b = fastrand::usize(..len - 1);
            if b >= a {
                b += 1;
            }
            match (available(a), available(b)) {
                (true, true) => Some(if load(b) < load(a) { b } else { a }),
                (true, false) => Some(a),
                (false, true) => Some(b),
                (false, false) => (0..len).map(|i| (a + i) % len).find(|&i| available(i)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn starts_at_default_rtt_and_peaks_immediately() {
        let c = EwmaConfig::default();
        let e = PeakEwma::new(&c, 0);
        assert_eq!(e.estimate_ns(&c, 0), 30e6);
        e.start();
        e.finish(&c, Some(ms(50)), 0);
        assert_eq!(e.estimate_ns(&c, 0), 50e6);
    }

    #[test]
    fn idle_estimate_decays_with_the_time_constant() {
        let c = EwmaConfig::default();
        let e = PeakEwma::new(&c, 0);
        let after = e.estimate_ns(&c, 10_000);
        assert!((after - 30e6 / std::f64::consts::E).abs() < 1e4, "{after}");
    }

    #[test]
    fn pending_requests_weigh_in() {
        let c = EwmaConfig::default();
        let e = PeakEwma::new(&c, 0);
        e.start();
        e.start();
        assert_eq!(e.load(&c, 0), 90e6);
        e.finish(&c, None, 0);
        assert_eq!(e.load(&c, 0), 60e6);
    }

    #[test]
    fn fast_samples_pull_a_slow_estimate_down_within_a_hundred_samples() {
        let c = EwmaConfig::default();
        let e = PeakEwma::new(&c, 0);
        e.start();
        e.finish(&c, Some(ms(20)), 0);
        for _ in 0..100 {
            e.start();
            e.finish(&c, Some(ms(1)), 1);
        }
        let est = e.estimate_ns(&c, 1);
        assert!(est < 2e6, "{est}");
    }

    #[test]
    fn p2c_prefers_the_lower_load_and_skips_unavailable() {
        let loads = [5.0, 1.0];
        for _ in 0..100 {
            assert_eq!(p2c(2, |_| true, |i| loads[i]), Some(1));
            assert_eq!(p2c(2, |i| i == 0, |i| loads[i]), Some(0));
        }
        assert_eq!(p2c(3, |_| false, |_| 0.0), None);
        assert_eq!(p2c(0, |_| true, |_| 0.0), None);
        assert_eq!(p2c(1, |_| true, |_| 0.0), Some(0));
    }

    #[test]
    fn p2c_spreads_over_equal_endpoints() {
        let mut counts = [0u32; 3];
        for _ in 0..30_000 {
            counts[p2c(3, |_| true, |_| 1.0).unwrap()] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }
}
