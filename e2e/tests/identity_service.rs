//! The identity service against a real kube-apiserver (TokenRequest, TokenReview), the operator as its
//! real binary, a client speaking TLS 1.3 + HTTP/2 like a proxy.

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, api::PostParams};
use std::{net::SocketAddr, time::Duration};
use tokio::time::Instant;
use weft_crds::Identity;
use weft_e2e::{
    Cluster, Process,
    identity::{self as id},
    identity_client::{self, Exchange, IdentityClient, ProxyKey, tokens},
    mesh, pki, poll_until,
};
use weft_wire::identity::{CertifyRequest, TOKEN_AUDIENCE, identity_name, refusal};

const TRUST_DOMAIN: &str = "cluster.local";
const NAMESPACE: &str = "shop";
const IDENTITY: &str = "mesh";

async fn create_identity(client: &Client, spec: serde_json::Value) {
    let identity: Identity = serde_json::from_value(serde_json::json!({
        "apiVersion": "weft.dev/v1alpha1",
        "kind": "Identity",
        "metadata": { "name": IDENTITY },
        "spec": spec,
    }))
    .expect("identity");
    Api::<Identity>::all(client.clone())
        .create(&PostParams::default(), &identity)
        .await
        .expect("create identity");
}

/// An operator replica and where it serves.
struct Replica {
    process: Process,
    identity: SocketAddr,
    admin: SocketAddr,
}

async fn spawn_replica(cluster: &Cluster, name: &str, extra: &[&str]) -> Replica {
    let mut args = vec!["--identity-addr", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let process = cluster.spawn_operator(name, &args);
    let (identity, admin) = identity_client::logged_addrs(&process).await;
    Replica {
        process,
        identity,
        admin,
    }
}

/// The Identity's trust bundle once it is Ready.
async fn ready_bundle(client: &Client) -> String {
    poll_until(
        "the Identity Ready with a trust bundle",
        Duration::from_secs(60),
        || async {
            let identity = id::get(client, IDENTITY).await?;
            if !id::is_ready(&identity) {
                return Err(format!("Ready is {:?}", id::condition(&identity, "Ready")));
            }
            id::trust_bundle(client, &identity).await
        },
    )
    .await
}

/// The issuer certificate (DER) in the issuer Secret now.
async fn issuer_in_secret(client: &Client) -> Vec<u8> {
    let secret: Secret = id::secret(
        client,
        id::operator_namespace(),
        &format!("{IDENTITY}-issuer"),
    )
    .await
    .expect("issuer secret");
    let pem = id::secret_text(&secret, "tls.crt").expect("tls.crt");
    pki::pem_certs(&pem).expect("issuer PEM").remove(0)
}

/// `/metrics` of a replica's admin server.
async fn metrics(admin: SocketAddr) -> Result<String, String> {
    mesh::admin_get(admin, "/metrics")
        .await
        .map(|(_, body)| body)
}

/// The value of the sample `name` (with its labels, as written) in a Prometheus text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

fn refused_sample(reason: &str) -> String {
    format!("weft_operator_identity_certify_refused_total{{reason=\"{reason}\"}}")
}

/// Waits until the replica signs for the trust domain (its issuer loaded, its serving certificate made).
async fn wait_serving(replica: &Replica) {
    let gauge = format!(
        "weft_operator_identity_service_issuer_expiration_timestamp_seconds{{trust_domain=\"{TRUST_DOMAIN}\"}}"
    );
    poll_until(
        "the identity service has an issuer",
        Duration::from_secs(30),
        || async {
            let text = metrics(replica.admin).await?;
            sample(&text, &gauge).ok_or_else(|| format!("no {gauge} yet"))
        },
    )
    .await;
}

fn identity_of(service_account: &str) -> String {
    identity_name(service_account, NAMESPACE, TRUST_DOMAIN)
}

fn request(identity: &str, token: &str, csr_pem: String) -> CertifyRequest {
    CertifyRequest {
        identity: identity.to_string(),
        token: token.to_string(),
        csr_pem,
    }
}

/// A refusal with `reason` and `status`; returns its message.
fn expect_refused(exchange: &Exchange, status: u16, reason: &str) -> String {
    match &exchange.answer {
        Err(error) => {
            assert_eq!(error.reason, reason, "{exchange:?}");
            assert_eq!(exchange.status, status, "{exchange:?}");
            error.message.clone()
        }
        Ok(_) => panic!("expected {reason}, got a certificate: {exchange:?}"),
    }
}

/// The facts about an issued leaf, checked independently (x509-parser): it chains through the issuer
/// in the response to an anchor of the bundle and names `identity` only.
struct Issued {
    leaf: pki::CertSummary,
    issuer_der: Vec<u8>,
}

fn check_issued(exchange: &Exchange, identity: &str, bundle: &str) -> Issued {
    let response = exchange
        .answer
        .as_ref()
        .unwrap_or_else(|e| panic!("refused: {e:?}"));
    assert_eq!(exchange.status, 200);
    let leaf_der = pki::pem_certs(&response.leaf_pem)
        .expect("leaf PEM")
        .remove(0);
    let chain = pki::pem_certs(&response.chain_pem).expect("chain PEM");
    assert_eq!(chain.len(), 1, "the chain is the issuer alone (no anchor)");
    let issuer_der = chain[0].clone();
    pki::verify_signed_by(&leaf_der, &issuer_der).expect("the leaf is signed by the issuer");
    let anchors = pki::pem_certs(bundle).expect("bundle");
    assert!(
        anchors
            .iter()
            .any(|anchor| pki::verify_signed_by(&issuer_der, anchor).is_ok()),
        "the issuer chains to an anchor of the bundle"
    );
    assert!(
        !anchors.contains(&issuer_der),
        "the chain must not carry an anchor"
    );
    let leaf = pki::summary(&leaf_der).expect("leaf");
    assert_eq!(
        leaf.dns_names,
        vec![identity.to_string()],
        "the SAN is the identity"
    );
    assert!(!leaf.is_ca, "a leaf is no CA");
    assert_eq!(leaf.not_after, response.valid_until_unix);
    Issued { leaf, issuer_der }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

#[tokio::test]
async fn certifies_a_proxy_and_refuses_each_bad_call_with_its_reason() {
    let cluster = Cluster::with_crds("idsvc-certify").await;
    let client = &cluster.client;
    cluster.create_namespace(NAMESPACE).await;
    let web_uid = tokens::create_service_account(client, NAMESPACE, "web").await;
    tokens::create_service_account(client, NAMESPACE, "db").await;
    tokens::create_service_account(client, NAMESPACE, "busy").await;
    create_identity(
        client,
        serde_json::json!({
            "trustDomain": TRUST_DOMAIN,
            "leaf": { "lifetime": "1h", "clockSkewAllowance": "20s" }
        }),
    )
    .await;
    // A small burst with a slow refill, so the rate-limit case does not depend on timing.
    let mut replica = spawn_replica(
        &cluster,
        "op-a",
        &[
            "--identity-rate-burst",
            "8",
            "--identity-rate-per-second",
            "0.02",
        ],
    )
    .await;
    let bundle = ready_bundle(client).await;
    wait_serving(&replica).await;
    let service = IdentityClient::new(replica.identity, TRUST_DOMAIN, &bundle, &["h2", "http/1.1"])
        .expect("client");
    let web = identity_of("web");
    let web_token = tokens::request(client, NAMESPACE, "web", TOKEN_AUDIENCE, 3600).await;
    let key = ProxyKey::new();

    // --- a good request, over HTTP/2
    let before = unix_now();
    let exchange = service
        .certify(&request(&web, &web_token, key.csr(&[&web])))
        .await
        .expect("certify");
    let after = unix_now();
    assert_eq!(exchange.tls_version, "TLSv1_3", "{exchange:?}");
    assert_eq!(exchange.alpn.as_deref(), Some("h2"));
    assert_eq!(exchange.http_version, http::Version::HTTP_2);
    let issued = check_issued(&exchange, &web, &bundle);
    assert_eq!(
        issued.issuer_der,
        issuer_in_secret(client).await,
        "signed by the issuer in the Secret"
    );
    // lifetime = spec.leaf.lifetime, backdated by the clock-skew allowance
    assert_eq!(issued.leaf.not_after - issued.leaf.not_before, 3600 + 20);
    assert!(
        (before - 20..=after - 20).contains(&issued.leaf.not_before),
        "notBefore {} is not now - 20s ({before}..{after})",
        issued.leaf.not_before
    );
    // the service's own certificate: weft-identity.<trust domain>, signed by the same issuer
    let server_leaf = pki::summary(&exchange.server_chain[0]).expect("server cert");
    assert_eq!(
        server_leaf.dns_names,
        vec![format!("weft-identity.{TRUST_DOMAIN}")]
    );
    pki::verify_signed_by(&exchange.server_chain[0], &issued.issuer_der)
        .expect("the serving certificate is signed by the issuer");
    // the certified key is the proxy's
    pki::key_matches(
        &key.key.serialize_pem(),
        &pki::pem_certs(&exchange.answer.as_ref().expect("ok").leaf_pem).expect("leaf")[0],
    )
    .expect("the leaf certifies the proxy's key");

    // --- HTTP/1.1 works too
    let http1 = IdentityClient::new(replica.identity, TRUST_DOMAIN, &bundle, &["http/1.1"])
        .expect("client");
    let exchange = http1
        .certify(&request(&web, &web_token, key.csr(&[&web])))
        .await
        .expect("certify over HTTP/1.1");
    assert_eq!(exchange.http_version, http::Version::HTTP_11);
    check_issued(&exchange, &web, &bundle);
    let mut issued_count = 2;

    // --- TLS 1.2 is refused at the handshake
    let tls12 = IdentityClient::with_roots(
        replica.identity,
        TRUST_DOMAIN,
        IdentityClient::roots(&bundle).expect("roots"),
        &["h2"],
        &[&rustls::version::TLS12],
    )
    .expect("client");
    let handshake = tls12
        .certify(&request(&web, &web_token, key.csr(&[&web])))
        .await;
    assert!(
        handshake.is_err(),
        "a TLS 1.2 client was served: {handshake:?}"
    );

    // --- a token of another ServiceAccount
    let db_token = tokens::request(client, NAMESPACE, "db", TOKEN_AUDIENCE, 3600).await;
    let exchange = service
        .certify(&request(&web, &db_token, key.csr(&[&web])))
        .await
        .expect("certify");
    let message = expect_refused(&exchange, 403, refusal::IDENTITY_MISMATCH);
    assert!(
        message.contains("system:serviceaccount:shop:db"),
        "{message}"
    );

    // --- an expired token, minted with the API server's own signing key; the same key and claims with a
    // future expiry do certify, so expiry is what the review refused
    let sa_key = cluster.run_dir.join("pki/sa.key");
    let now = unix_now();
    let expired = tokens::forge(
        &sa_key,
        NAMESPACE,
        "web",
        &web_uid,
        TOKEN_AUDIENCE,
        now - 7200,
        now - 600,
    )
    .expect("forge an expired token");
    let exchange = service
        .certify(&request(&web, &expired, key.csr(&[&web])))
        .await
        .expect("certify");
    let message = expect_refused(&exchange, 401, refusal::TOKEN_INVALID);
    assert!(message.to_lowercase().contains("expired"), "{message}");
    let fresh = tokens::forge(
        &sa_key,
        NAMESPACE,
        "web",
        &web_uid,
        TOKEN_AUDIENCE,
        now - 10,
        now + 600,
    )
    .expect("forge a valid token");
    let exchange = service
        .certify(&request(&web, &fresh, key.csr(&[&web])))
        .await
        .expect("certify");
    check_issued(&exchange, &web, &bundle);
    issued_count += 1;

    // --- a token for another audience (the API server's own)
    let api_token = tokens::request(client, NAMESPACE, "web", tokens::ISSUER, 3600).await;
    let exchange = service
        .certify(&request(&web, &api_token, key.csr(&[&web])))
        .await
        .expect("certify");
    expect_refused(&exchange, 401, refusal::TOKEN_AUDIENCE);

    // --- a CSR for another name, and one naming the identity plus another
    for names in [
        vec![identity_of("db")],
        vec![web.clone(), "evil.example.org".into()],
    ] {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let exchange = service
            .certify(&request(&web, &web_token, key.csr(&names)))
            .await
            .expect("certify");
        expect_refused(&exchange, 400, refusal::BAD_CSR);
    }

    // --- rate limiting: a burst of 8, then refused with Retry-After; others are not affected
    let busy = identity_of("busy");
    let busy_token = tokens::request(client, NAMESPACE, "busy", TOKEN_AUDIENCE, 3600).await;
    for i in 0..8 {
        let exchange = service
            .certify(&request(&busy, &busy_token, key.csr(&[&busy])))
            .await
            .expect("certify");
        assert_eq!(exchange.status, 200, "call {i} of the burst: {exchange:?}");
        issued_count += 1;
    }
    let exchange = service
        .certify(&request(&busy, &busy_token, key.csr(&[&busy])))
        .await
        .expect("certify");
    expect_refused(&exchange, 429, refusal::RATE_LIMITED);
    assert!(exchange.retry_after.is_some(), "429 without Retry-After");
    let exchange = service
        .certify(&request(&web, &web_token, key.csr(&[&web])))
        .await
        .expect("certify");
    check_issued(&exchange, &web, &bundle);
    issued_count += 1;

    // --- garbage
    let exchange = service
        .post(weft_wire::identity::CERTIFY_PATH, b"{not json".to_vec())
        .await
        .expect("post");
    expect_refused(&exchange, 400, refusal::BAD_REQUEST);

    // --- every decision is counted by reason
    let text = metrics(replica.admin).await.expect("metrics");
    for (reason, count) in [
        (refusal::IDENTITY_MISMATCH, 1.0),
        (refusal::TOKEN_INVALID, 1.0),
        (refusal::TOKEN_AUDIENCE, 1.0),
        (refusal::BAD_CSR, 2.0),
        (refusal::RATE_LIMITED, 1.0),
        (refusal::BAD_REQUEST, 1.0),
        (refusal::NO_ISSUER, 0.0),
    ] {
        assert_eq!(
            sample(&text, &refused_sample(reason)),
            Some(count),
            "{reason}:\n{text}"
        );
    }
    assert_eq!(
        sample(&text, "weft_operator_identity_certify_total"),
        Some(f64::from(issued_count)),
        "{text}"
    );

    // tokens and keys never reach the log
    let log = replica.process.log();
    for secret in [&web_token, &db_token, &expired, &fresh, &api_token] {
        assert!(!log.contains(secret.as_str()), "a token was logged");
    }
    assert!(!log.contains("PRIVATE KEY"), "a key was logged");
    assert!(
        log.contains("IdentityMismatch"),
        "refusals are logged with their reason"
    );
    assert!(
        replica.process.try_wait().is_none(),
        "operator exited:\n{log}"
    );
}

#[tokio::test]
async fn after_an_issuer_rotation_leaves_and_the_serving_certificate_follow() {
    let cluster = Cluster::with_crds("idsvc-rotation").await;
    let client = &cluster.client;
    cluster.create_namespace(NAMESPACE).await;
    tokens::create_service_account(client, NAMESPACE, "web").await;
    create_identity(
        client,
        serde_json::json!({
            "trustDomain": TRUST_DOMAIN,
            "issuer": { "duration": "30s", "renewBefore": "15s" }
        }),
    )
    .await;
    // Polling certifies often: no rate limit in the way.
    let replica = spawn_replica(&cluster, "op-a", &["--identity-rate-burst", "10000"]).await;
    let bundle = ready_bundle(client).await;
    wait_serving(&replica).await;
    let service =
        IdentityClient::new(replica.identity, TRUST_DOMAIN, &bundle, &["h2"]).expect("client");
    let web = identity_of("web");
    let token = tokens::request(client, NAMESPACE, "web", TOKEN_AUDIENCE, 3600).await;
    let key = ProxyKey::new();

    let first_issuer = poll_until(
        "a leaf and a serving certificate from the issuer in the Secret",
        Duration::from_secs(30),
        || async {
            let exchange = service
                .certify(&request(&web, &token, key.csr(&[&web])))
                .await?;
            if let Err(refused) = &exchange.answer {
                return Err(format!("refused: {refused:?}"));
            }
            let issued = check_issued(&exchange, &web, &bundle);
            if issued.issuer_der != issuer_in_secret(client).await {
                return Err("between a rotation and the service's re-read".into());
            }
            pki::verify_signed_by(&exchange.server_chain[0], &issued.issuer_der)
                .map_err(|e| format!("serving certificate of another issuer: {e}"))?;
            Ok(issued)
        },
    )
    .await;
    // The leaf lifetime (24h by default) is capped at the issuer's expiry (30s).
    let issuer_summary = pki::summary(&first_issuer.issuer_der).expect("issuer");
    assert_eq!(first_issuer.leaf.not_after, issuer_summary.not_after);

    // Wait for the controller to rotate the issuer, then for the service to follow.
    let rotated = poll_until(
        "the issuer Secret rotates",
        Duration::from_secs(40),
        || async {
            let now = issuer_in_secret(client).await;
            if now != first_issuer.issuer_der {
                Ok(now)
            } else {
                Err("same issuer".into())
            }
        },
    )
    .await;
    let rotated_at = Instant::now();
    let (exchange, issued) = poll_until(
        "a leaf and a serving certificate from the new issuer",
        Duration::from_secs(15),
        || async {
            let exchange = service
                .certify(&request(&web, &token, key.csr(&[&web])))
                .await?;
            if let Err(refused) = &exchange.answer {
                return Err(format!("refused: {refused:?}"));
            }
            let issued = check_issued(&exchange, &web, &bundle);
            if issued.issuer_der == first_issuer.issuer_der {
                return Err("still the first issuer".into());
            }
            // The handshake may have happened just before the service switched: try again then.
            pki::verify_signed_by(&exchange.server_chain[0], &issued.issuer_der)
                .map_err(|e| format!("serving certificate of another issuer: {e}"))?;
            Ok((exchange, issued))
        },
    )
    .await;
    eprintln!(
        "the service signed with the rotated issuer {:?} after the Secret changed",
        rotated_at.elapsed()
    );
    let in_secret = issuer_in_secret(client).await;
    assert!(
        issued.issuer_der == rotated || issued.issuer_der == in_secret,
        "the new leaves chain to the rotated issuer"
    );
    let server_leaf = pki::summary(&exchange.server_chain[0]).expect("server cert");
    let new_issuer = pki::summary(&issued.issuer_der).expect("issuer");
    assert!(server_leaf.not_after <= new_issuer.not_after);
    let text = metrics(replica.admin).await.expect("metrics");
    let gauge = format!(
        "weft_operator_identity_service_issuer_expiration_timestamp_seconds{{trust_domain=\"{TRUST_DOMAIN}\"}}"
    );
    let expiry = sample(&text, &gauge).expect("issuer expiry gauge");
    assert!(expiry >= new_issuer.not_after as f64, "{gauge} = {expiry}");
}

#[tokio::test]
async fn both_replicas_serve_leader_or_not() {
    let cluster = Cluster::with_crds("idsvc-replicas").await;
    let client = &cluster.client;
    cluster.create_namespace(NAMESPACE).await;
    tokens::create_service_account(client, NAMESPACE, "web").await;
    create_identity(client, serde_json::json!({ "trustDomain": TRUST_DOMAIN })).await;
    let first = spawn_replica(&cluster, "op-a", &[]).await;
    let bundle = ready_bundle(client).await;
    let second = spawn_replica(&cluster, "op-b", &[]).await;
    let web = identity_of("web");
    let token = tokens::request(client, NAMESPACE, "web", TOKEN_AUDIENCE, 3600).await;
    let key = ProxyKey::new();

    let mut leaders = 0;
    for replica in [&first, &second] {
        wait_serving(replica).await;
        let service =
            IdentityClient::new(replica.identity, TRUST_DOMAIN, &bundle, &["h2"]).expect("client");
        let exchange = service
            .certify(&request(&web, &token, key.csr(&[&web])))
            .await
            .expect("certify");
        check_issued(&exchange, &web, &bundle);
        let text = metrics(replica.admin).await.expect("metrics");
        assert_eq!(
            sample(&text, "weft_operator_identity_certify_total"),
            Some(1.0)
        );
        if sample(&text, "weft_operator_leader") == Some(1.0) {
            leaders += 1;
        }
    }
    assert_eq!(leaders, 1, "one leader, one standby, both signing");
}
