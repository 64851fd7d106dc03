//! Per-request balancing: equal share over one client connection, latency awareness, failures.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::StatusCode;
use support::*;

const AUTHORITY: &str = "bench.test:80";

async fn proxy_to(addrs: &[std::net::SocketAddr]) -> ProxyProcess {
    ProxyProcess::start(
        &config_json(&[service_json("bench", &[AUTHORITY], addrs)]),
        &[],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_equal_backends_share_one_h2_connection_evenly() {
    let backends = [
        Backend::start("b1").await,
        Backend::start("b2").await,
        Backend::start("b3").await,
    ];
    let proxy = proxy_to(&backends.iter().map(|b| b.addr).collect::<Vec<_>>()).await;
    let outbound = proxy.outbound;
    let result = tokio::task::spawn_blocking(move || {
        h2load(outbound, AUTHORITY, &["-n", "30000", "-c", "1", "-m", "16"])
    })
    .await
    .unwrap();
    assert_eq!(result.succeeded, 30_000, "{}", result.output);
    let counts: Vec<u64> = backends.iter().map(|b| b.count()).collect();
    assert_eq!(counts.iter().sum::<u64>(), 30_000);
    for (backend, count) in backends.iter().zip(&counts) {
        let share = *count as f64 / 300.0;
        assert!(
            (28.33..=38.33).contains(&share),
            "{} got {share:.1}% ({counts:?})",
            backend.name
        );
    }
}

/// A closed-loop client: `concurrency` request loops over one HTTP/2 connection until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    async fn start(addr: std::net::SocketAddr, concurrency: usize) -> Load {
        let client = h2_client(addr).await;
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let tasks = (0..concurrency)
            .map(|_| {
                let (mut client, stop, ok, failed) =
                    (client.clone(), stop.clone(), ok.clone(), failed.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let result = client.send_request(get(AUTHORITY, "/")).await;
                        let good = match result {
                            Ok(response) => {
                                let status = response.status();
                                let body =
                                    http_body_util::BodyExt::collect(response.into_body()).await;
                                status == StatusCode::OK && body.is_ok()
                            }
                            Err(_) => false,
                        };
                        if good { &ok } else { &failed }.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            tasks,
        }
    }

    async fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// Share of `backends[index]` among the requests finished between two snapshots.
fn share(before: &[u64], after: &[u64], index: usize) -> f64 {
    let total: u64 = after.iter().zip(before).map(|(a, b)| a - b).sum();
    (after[index] - before[index]) as f64 / total.max(1) as f64
}

fn counts(backends: &[Backend]) -> Vec<u64> {
    backends.iter().map(|b| b.count()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_backend_gets_little_and_wins_its_share_back_after_recovering() {
    let backends = [
        Backend::start("b1").await,
        Backend::start("b2").await,
        Backend::start("slow").await,
    ];
    for b in &backends {
        b.set_delay(Duration::from_millis(1));
    }
    backends[2].set_delay(Duration::from_millis(21));
    let proxy = proxy_to(&backends.iter().map(|b| b.addr).collect::<Vec<_>>()).await;
    let load = Load::start(proxy.outbound, 32).await;

    // Let the estimates settle over 5,000 requests, then measure the slow backend's share over
    // the next 20,000.
    let total = |b: &[Backend]| counts(b).iter().sum::<u64>();
    eventually("5,000 requests", Duration::from_secs(30), || {
        total(&backends) >= 5_000
    })
    .await;
    let before = counts(&backends);
    let start = before.iter().sum::<u64>();
    eventually("20,000 more requests", Duration::from_secs(60), || {
        total(&backends) >= start + 20_000
    })
    .await;
    let after = counts(&backends);
    let slow_share = share(&before, &after, 2);
    assert!(
        slow_share < 0.10,
        "slow backend got {:.1}% ({before:?} -> {after:?})",
        slow_share * 100.0
    );

    // Recovery: within 10 s, its share over a window of 2,000 requests climbs over 25 %.
    backends[2].set_delay(Duration::from_millis(1));
    let recovered_at = Instant::now();
    let mut window_start = counts(&backends);
    let mut best = 0.0f64;
    loop {
        let from = window_start.iter().sum::<u64>();
        eventually("2,000 more requests", Duration::from_secs(10), || {
            total(&backends) >= from + 2_000
        })
        .await;
        let now = counts(&backends);
        let s = share(&window_start, &now, 2);
        best = best.max(s);
        if s > 0.25 {
            break;
        }
        assert!(
            recovered_at.elapsed() < Duration::from_secs(10),
            "slow backend's share stayed at most {:.1}% for 10 s after recovery",
            best * 100.0
        );
        window_start = now;
    }
    eprintln!(
        "slow share {:.1}%, recovered to >25% in {:?}",
        slow_share * 100.0,
        recovered_at.elapsed()
    );
    let (_, failed) = load.stop().await;
    assert_eq!(failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_killed_under_load_fails_only_its_in_flight_requests() {
    let backends = [
        Backend::start("b1").await,
        Backend::start("b2").await,
        Backend::start("b3").await,
    ];
    for b in &backends {
        b.set_delay(Duration::from_millis(5));
    }
    let proxy = proxy_to(&backends.iter().map(|b| b.addr).collect::<Vec<_>>()).await;
    let load = Load::start(proxy.outbound, 24).await;
    eventually(
        "load reaches every backend",
        Duration::from_secs(10),
        || backends.iter().all(|b| b.count() > 200),
    )
    .await;
    let in_flight = backends[2].kill().await;
    let at_kill = counts(&backends);
    eventually("the others keep serving", Duration::from_secs(10), || {
        backends[..2]
            .iter()
            .zip(&at_kill)
            .all(|(b, before)| b.count() > before + 500)
    })
    .await;
    let (ok, failed) = load.stop().await;
    // The proxy counts a request against an endpoint once its bytes reached it, and answers 502 for
    // each one that endpoint then failed: those are the requests that were in flight to the killed
    // backend, whether it had read them yet or they still sat in its socket buffer.
    let metrics = proxy.metrics().await;
    let failed_at = |pod: &str| {
        sample_sum(
            &metrics,
            "response_total",
            &[("dst_pod", pod), ("classification", "failure")],
        ) as u64
    };
    let in_flight_to_killed = failed_at("bench-2");
    eprintln!(
        "ok {ok}, failed {failed}; in flight to the killed backend: {in_flight_to_killed} by the proxy's count, \
         {in_flight} read by the backend"
    );
    assert_eq!(
        failed, in_flight_to_killed,
        "every failed request must be one that was in flight to the killed backend"
    );
    assert_eq!(
        failed_at("bench-0") + failed_at("bench-1"),
        0,
        "a live backend's request failed"
    );
    assert!(
        failed >= in_flight && failed <= 24,
        "failed {failed}: at least the {in_flight} the backend held, at most the load's 24 concurrent requests"
    );
    assert!(ok > 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusing_and_resetting_endpoints_are_ejected_and_requests_retried() {
    let good = Backend::start("good").await;
    // Refuses: nothing listens on this port.
    let refusing = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    // Resets: accepts, then closes at once.
    let resetting = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let resetting_addr = resetting.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = resetting.accept().await {
            counter.fetch_add(1, Ordering::Relaxed);
            drop(s);
        }
    });
    let proxy = proxy_to(&[good.addr, refusing, resetting_addr]).await;
    let outbound = proxy.outbound;
    let result = tokio::task::spawn_blocking(move || {
        h2load(outbound, AUTHORITY, &["-n", "5000", "-c", "2", "-m", "8"])
    })
    .await
    .unwrap();
    let resets = accepted.load(Ordering::Relaxed);
    let ejected = |addr: std::net::SocketAddr| {
        proxy
            .logs()
            .iter()
            .any(|l| l.contains("ejecting endpoint") && l.contains(&format!("endpoint={addr}")))
    };
    assert!(ejected(refusing), "{:?}", proxy.logs());
    assert!(ejected(resetting_addr), "{:?}", proxy.logs());
    // Ejection with backoff: a handful of connection attempts, not one per request.
    assert!(resets <= 5, "resetting endpoint was tried {resets} times");
    // A connection reset after the request was written may fail what was on it; nothing else fails.
    let failed = result.failed + result.errored;
    assert!(
        failed <= resets * 16,
        "{failed} failed requests for {resets} resets\n{}",
        result.output
    );
    assert_eq!(result.succeeded + failed, 5000, "{}", result.output);
    assert_eq!(good.count(), result.succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_added_and_removed_under_load_fail_no_request() {
    let backends = [
        Backend::start("b1").await,
        Backend::start("b2").await,
        Backend::start("b3").await,
    ];
    for b in &backends {
        b.set_delay(Duration::from_millis(3));
    }
    let service =
        |addrs: &[std::net::SocketAddr]| config_json(&[service_json("bench", &[AUTHORITY], addrs)]);
    let proxy = ProxyProcess::start(&service(&[backends[0].addr, backends[1].addr]), &[]).await;
    let load = Load::start(proxy.outbound, 16).await;
    eventually("b1 and b2 serve", Duration::from_secs(10), || {
        backends[0].count() > 100 && backends[1].count() > 100
    })
    .await;

    // Swap b1 for b3 while requests are in flight on b1.
    write_config(
        &proxy.config_path,
        &service(&[backends[1].addr, backends[2].addr]),
    );
    eventually("b3 serves", Duration::from_secs(10), || {
        backends[2].count() > 100
    })
    .await;
    let b1_after_removal = backends[0].count();
    eventually("b2 and b3 keep serving", Duration::from_secs(10), || {
        backends[2].count() > 500
    })
    .await;
    // Requests already on b1 finished there; nothing new went to it.
    assert!(backends[0].count() <= b1_after_removal + 16);
    let (ok, failed) = load.stop().await;
    assert_eq!(failed, 0, "{ok} succeeded");
}
