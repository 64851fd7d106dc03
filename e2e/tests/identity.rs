//! The Identity controller against a real kube-apiserver, the operator as its real binary.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client,
    api::{DynamicObject, Patch, PatchParams, PostParams},
    discovery::ApiResource,
};
use std::time::Duration;
use tokio::time::Instant;
use weft_crds::Identity;
use weft_e2e::{
    Cluster, eventually,
    identity::{self as id, observe_issuer},
    pki, poll_until,
};

const LEASE_NAME: &str = "weft-operator";

async fn create_identity(client: &Client, name: &str, spec: serde_json::Value) {
    let identity: Identity = serde_json::from_value(serde_json::json!({
        "apiVersion": "weft.dev/v1alpha1",
        "kind": "Identity",
        "metadata": { "name": name },
        "spec": spec,
    }))
    .expect("identity");
    Api::<Identity>::all(client.clone())
        .create(&PostParams::default(), &identity)
        .await
        .unwrap_or_else(|e| panic!("create identity {name}: {e}"));
}

/// Identities as untyped objects, to send what the Rust type could not express.
fn untyped_identities(client: &Client) -> Api<DynamicObject> {
    Api::all_with(client.clone(), &ApiResource::erase::<Identity>(&()))
}

async fn patch_spec(client: &Client, name: &str, spec: serde_json::Value) {
    Api::<Identity>::all(client.clone())
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "spec": spec })),
        )
        .await
        .unwrap_or_else(|e| panic!("patch identity {name}: {e}"));
}

/// Waits for Ready=True and a consistent issuer Secret; returns the observation.
async fn wait_issued(
    client: &Client,
    name: &str,
    renew_before: i64,
    deadline: Duration,
) -> id::IssuerObservation {
    poll_until(
        &format!("identity {name} Ready with a consistent issuer"),
        deadline,
        || async {
            let identity = id::get(client, name).await?;
            if !id::is_ready(&identity) {
                return Err(format!("Ready is {:?}", id::condition(&identity, "Ready")));
            }
            observe_issuer(client, name, renew_before).await
        },
    )
    .await
}

/// Waits until the condition `type_` of `name` has `status` and `reason`.
async fn wait_condition(client: &Client, name: &str, type_: &str, status: &str, reason: &str) {
    eventually(
        &format!("{name}: {type_}={status} ({reason})"),
        Duration::from_secs(30),
        || async {
            let identity = id::get(client, name).await?;
            match id::condition(&identity, type_) {
                Some((s, r)) if s == status && r == reason => Ok(()),
                other => Err(format!("{type_} is {other:?}")),
            }
        },
    )
    .await
}

async fn secret_serial(client: &Client, name: &str) -> String {
    let secret = id::secret(client, id::operator_namespace(), name)
        .await
        .expect("issuer secret");
    let pem = id::secret_text(&secret, "tls.crt").expect("tls.crt");
    pki::summary(&pki::pem_certs(&pem).expect("pem")[0])
        .expect("cert")
        .serial
}

async fn lease_holder(client: &Client) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), id::operator_namespace())
        .get(LEASE_NAME)
        .await
        .ok()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty())
}

#[tokio::test]
async fn issuer_rotates_twice_within_60s_and_status_matches_the_secret() {
    let cluster = Cluster::with_crds("identity-rotation").await;
    let mut operator = cluster.spawn_operator("op-a", &[]);
    let client = &cluster.client;
    create_identity(
        client,
        "rotating",
        serde_json::json!({
            "issuer": { "duration": "30s", "renewBefore": "15s" }
        }),
    )
    .await;

    let first = wait_issued(client, "rotating", 15, Duration::from_secs(30)).await;
    let started = Instant::now();
    let mut seen = vec![first.clone()];
    while seen.last().map(|o| o.revision).unwrap_or(0) < first.revision + 2 {
        let last_revision = seen.last().map(|o| o.revision).unwrap_or(0);
        let next = poll_until(
            "the next rotation",
            Duration::from_secs(60).saturating_sub(started.elapsed()),
            || async {
                let observation = observe_issuer(client, "rotating", 15).await?;
                if observation.revision > last_revision {
                    Ok(observation)
                } else {
                    Err(format!("still revision {}", observation.revision))
                }
            },
        )
        .await;
        seen.push(next);
    }
    let elapsed = started.elapsed();
    eprintln!("two rotations after the first issuance took {elapsed:?}: {seen:#?}");
    assert!(elapsed <= Duration::from_secs(60));
    let serials: std::collections::HashSet<_> =
        seen.iter().map(|o| o.cert.serial.clone()).collect();
    assert_eq!(
        serials.len(),
        seen.len(),
        "every issuance is a new certificate"
    );
    for pair in seen.windows(2) {
        assert!(
            pair[1].cert.not_after > pair[0].cert.not_after,
            "each issuer lives longer than the last"
        );
    }
    assert!(
        operator.try_wait().is_none(),
        "operator exited:\n{}",
        operator.log()
    );
}

#[tokio::test]
async fn sigkill_during_rotation_leaves_a_consistent_secret() {
    let cluster = Cluster::with_crds("identity-sigkill").await;
    let client = &cluster.client;
    // renew every ~5 s, so several kills land on or right after a renewal
    create_identity(
        client,
        "crash",
        serde_json::json!({
            "issuer": { "duration": "20s", "renewBefore": "15s" }
        }),
    )
    .await;
    let mut operator = cluster.spawn_operator("op-a", &["--lease-duration", "4s"]);
    let mut last = wait_issued(client, "crash", 15, Duration::from_secs(30)).await;

    for offset_ms in [0u64, 20, 60, 150, 400] {
        let identity = id::get(client, "crash").await.expect("identity");
        let renewal = id::unix(
            identity
                .status
                .as_ref()
                .and_then(|s| s.renewal_time.as_deref())
                .expect("renewalTime"),
        )
        .expect("renewalTime parses");
        // kill at renewalTime + offset (the operator requeues for exactly that instant)
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock");
        let kill_at = Duration::from_secs(renewal.max(0) as u64) + Duration::from_millis(offset_ms);
        tokio::time::sleep(kill_at.saturating_sub(now)).await;
        operator.kill();

        // whatever instant the kill hit, the Secret holds a key and certificate that belong together
        let secret = id::secret(client, id::operator_namespace(), "crash-issuer")
            .await
            .expect("secret");
        let bundle = id::trust_bundle(client, &identity).await.expect("bundle");
        pki::check_issuer(
            &id::secret_text(&secret, "tls.crt").expect("tls.crt"),
            &id::secret_text(&secret, "tls.key").expect("tls.key"),
            &bundle,
        )
        .unwrap_or_else(|e| {
            panic!("after SIGKILL at renewal+{offset_ms}ms the issuer Secret is inconsistent: {e}")
        });

        operator = cluster.spawn_operator("op-a", &["--lease-duration", "4s"]);
        let previous = last.revision;
        last = poll_until(
            "a Ready issuer newer than before the kill",
            Duration::from_secs(30),
            || async {
                let identity = id::get(client, "crash").await?;
                if !id::is_ready(&identity) {
                    return Err(format!("Ready is {:?}", id::condition(&identity, "Ready")));
                }
                let observation = observe_issuer(client, "crash", 15).await?;
                if observation.revision > previous {
                    Ok(observation)
                } else {
                    Err(format!("revision {}", observation.revision))
                }
            },
        )
        .await;
    }
    assert!(
        operator.try_wait().is_none(),
        "operator exited:\n{}",
        operator.log()
    );
}

#[tokio::test]
async fn bad_input_is_refused_or_reported_and_never_replaces_a_working_issuer() {
    let cluster = Cluster::with_crds("identity-bad-input").await;
    let client = &cluster.client;
    let ns = id::operator_namespace();
    let mut operator = cluster.spawn_operator("op-a", &[]);

    // an unknown key algorithm is rejected by the API server's schema
    let rejected = untyped_identities(client)
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "apiVersion": "weft.dev/v1alpha1", "kind": "Identity",
                "metadata": { "name": "bad-algorithm" },
                "spec": { "issuer": { "keyAlgorithm": "RSA1024" } }
            }))
            .expect("identity"),
        )
        .await;
    match rejected {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 422, "{status:?}"),
        other => panic!("unknown keyAlgorithm was not rejected: {other:?}"),
    }
    // so is a duration that is not one
    let bad_duration = untyped_identities(client)
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "apiVersion": "weft.dev/v1alpha1", "kind": "Identity",
                "metadata": { "name": "bad-duration" },
                "spec": { "issuer": { "duration": "two days" } }
            }))
            .expect("identity"),
        )
        .await;
    assert!(
        matches!(bad_duration, Err(kube::Error::Api(ref s)) if s.code == 422),
        "{bad_duration:?}"
    );

    // anchors the operator must refuse, each in its own Secret
    let garbage = pki::TestCert {
        cert_pem: "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"
            .into(),
        key_pem: "garbage".into(),
    };
    let not_ca = pki::self_signed("not a ca", false, (2024, 1, 1), (2036, 1, 1));
    let expired = pki::self_signed("expired anchor", true, (2010, 1, 1), (2011, 1, 1));
    let good = pki::self_signed("good anchor", true, (2024, 1, 1), (2036, 1, 1));
    for (secret_name, cert) in [
        ("garbage", &garbage),
        ("not-ca", &not_ca),
        ("expired", &expired),
        ("good", &good),
    ] {
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": { "name": format!("anchor-{secret_name}"), "namespace": ns },
            "stringData": { "ca.crt": cert.cert_pem, "ca.key": cert.key_pem }
        }))
        .expect("secret");
        Api::<Secret>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &secret)
            .await
            .expect("create secret");
    }
    for (identity, anchor, reason) in [
        ("anchor-missing", "anchor-nope", "AnchorNotFound"),
        ("anchor-garbage", "anchor-garbage", "AnchorInvalid"),
        ("anchor-not-ca", "anchor-not-ca", "AnchorNotCA"),
        ("anchor-expired", "anchor-expired", "AnchorExpired"),
    ] {
        create_identity(
            client,
            identity,
            serde_json::json!({ "trustAnchor": { "secretRef": { "name": anchor } } }),
        )
        .await;
        wait_condition(client, identity, "Ready", "False", reason).await;
        let warnings: Vec<_> = id::events(client, identity)
            .await
            .into_iter()
            .filter(|e| e.type_.as_deref() == Some("Warning"))
            .collect();
        assert!(!warnings.is_empty(), "{identity}: no Warning Event");
    }

    // a working issuer, then bad edits: renewBefore >= duration, then a garbage anchor
    create_identity(
        client,
        "working",
        serde_json::json!({
            "trustAnchor": { "secretRef": { "name": "anchor-good" } },
            "issuer": { "duration": "1h", "renewBefore": "20m" }
        }),
    )
    .await;
    let before = wait_issued(client, "working", 20 * 60, Duration::from_secs(30)).await;
    patch_spec(
        client,
        "working",
        serde_json::json!({ "issuer": { "renewBefore": "2h" } }),
    )
    .await;
    wait_condition(client, "working", "Ready", "False", "InvalidSpec").await;
    assert_eq!(
        secret_serial(client, "working-issuer").await,
        before.cert.serial,
        "a bad spec replaced the issuer"
    );

    patch_spec(
        client,
        "working",
        serde_json::json!({ "issuer": { "renewBefore": "20m" } }),
    )
    .await;
    let restored = wait_issued(client, "working", 20 * 60, Duration::from_secs(30)).await;
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch(
            "anchor-good",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "stringData": { "ca.crt": garbage.cert_pem } })),
        )
        .await
        .expect("break the anchor");
    wait_condition(client, "working", "Ready", "False", "AnchorInvalid").await;
    assert_eq!(
        secret_serial(client, "working-issuer").await,
        restored.cert.serial,
        "a broken anchor replaced the issuer"
    );

    assert!(
        operator.try_wait().is_none(),
        "operator exited:\n{}",
        operator.log()
    );
    assert!(
        !operator.log().contains("panicked"),
        "operator panicked:\n{}",
        operator.log()
    );
}

#[tokio::test]
async fn only_the_leader_writes_and_a_standby_takes_over_within_the_lease_duration() {
    let cluster = Cluster::with_crds("identity-leader").await;
    let client = &cluster.client;
    let lease = Duration::from_secs(6);
    let mut leader = cluster.spawn_operator("op-a", &["--lease-duration", "6s"]);
    poll_until("op-a holds the lease", Duration::from_secs(30), || async {
        match lease_holder(client).await {
            Some(h) if h == "op-a" => Ok(()),
            other => Err(format!("holder {other:?}")),
        }
    })
    .await;
    let mut standby = cluster.spawn_operator("op-b", &["--lease-duration", "6s"]);
    create_identity(
        client,
        "ha",
        serde_json::json!({ "issuer": { "duration": "30s", "renewBefore": "20s" } }),
    )
    .await;
    let first = wait_issued(client, "ha", 20, Duration::from_secs(30)).await;

    // every Event so far was published by the leader
    let reporters: Vec<_> = id::events(client, "ha")
        .await
        .into_iter()
        .map(|e| e.reporting_instance.unwrap_or_default())
        .collect();
    assert!(!reporters.is_empty(), "no Events about the Identity");
    assert!(
        reporters.iter().all(|r| r == "op-a"),
        "a non-leader wrote Events: {reporters:?}"
    );
    assert_eq!(lease_holder(client).await.as_deref(), Some("op-a"));

    leader.kill();
    let killed = Instant::now();
    poll_until(
        "op-b takes the lease",
        lease + Duration::from_secs(10),
        || async {
            match lease_holder(client).await {
                Some(h) if h == "op-b" => Ok(()),
                other => Err(format!("holder {other:?}")),
            }
        },
    )
    .await;
    let takeover = killed.elapsed();
    eprintln!("takeover took {takeover:?} (lease duration {lease:?})");
    assert!(
        takeover <= lease + Duration::from_millis(500),
        "takeover took {takeover:?}, lease is {lease:?}"
    );

    // rotation continues under the new leader
    let later = poll_until("a rotation by op-b", Duration::from_secs(30), || async {
        let observation = observe_issuer(client, "ha", 20).await?;
        if observation.revision > first.revision {
            Ok(observation)
        } else {
            Err(format!("revision {}", observation.revision))
        }
    })
    .await;
    assert!(later.cert.serial != first.cert.serial);
    assert!(
        standby.try_wait().is_none(),
        "op-b exited:\n{}",
        standby.log()
    );
}
