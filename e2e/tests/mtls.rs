//! mTLS between real proxies certified by the real operator (its identity service, TokenReview
//! against a real kube-apiserver), with a tonic gRPC client and server: a call over mTLS with TLS
//! 1.3 and the expected names proven on both sides, and about two minutes of continuous load
//! through leaf refreshes, issuer rotations and an anchor rotation without a single failure.
//!
//! No kubelet runs here, so the test does what it would do for a meshed pod: it writes the pod's
//! projected ServiceAccount token (from the TokenRequest API, audience `identity.weft.dev`) and the
//! Identity's trust-bundle ConfigMap (`ca-bundle.crt`) to files the proxy reads, and rewrites them
//! when the kubelet would (token rotation, ConfigMap update).

use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio::time::Instant;
use weft_crds::Identity;
use weft_e2e::{
    Cluster, Process,
    identity::{self as id},
    identity_client::{self, IdentityClient, ProxyKey, tokens},
    mesh::{
        GreeterClient, GreeterServer, MeshProxy, PodFiles, TlsTap, admin_get, hello_over,
        meshed_service, sample_sum,
    },
    pki, poll_until,
};
use weft_wire::identity::{CertifyRequest, TOKEN_AUDIENCE, identity_name};

const TRUST_DOMAIN: &str = "cluster.local";
const NAMESPACE: &str = "shop";
const IDENTITY: &str = "mesh";
const AUTHORITY: &str = "greeter.shop.svc.cluster.local:80";
const READY: Duration = Duration::from_secs(60);

fn identity_of(service_account: &str) -> String {
    identity_name(service_account, NAMESPACE, TRUST_DOMAIN)
}

/// A cluster with weft's CRDs, an operator serving identities, and an Identity.
struct Mesh {
    cluster: Cluster,
    operator: Process,
    identity_service: SocketAddr,
    operator_admin: SocketAddr,
}

/// Two meshed proxies and what sits around them (see [`Mesh::pair_through_tap`]).
struct Pair {
    app: GreeterServer,
    server_files: PodFiles,
    server: MeshProxy,
    tap: TlsTap,
    client_files: PodFiles,
    client: MeshProxy,
}

impl Mesh {
    /// Starts it all; `anchors` are anchor Secrets (in the operator's namespace) made first.
    async fn start(test: &str, spec: serde_json::Value, anchors: &[&str]) -> Self {
        let cluster = Cluster::with_crds(test).await;
        cluster.create_namespace(NAMESPACE).await;
        for anchor in anchors {
            create_anchor(&cluster.client, anchor).await;
        }
        for account in ["client", "server", "visitor"] {
            tokens::create_service_account(&cluster.client, NAMESPACE, account).await;
        }
        let identity: Identity = serde_json::from_value(serde_json::json!({
            "apiVersion": "weft.dev/v1alpha1",
            "kind": "Identity",
            "metadata": { "name": IDENTITY },
            "spec": spec,
        }))
        .expect("identity");
        Api::<Identity>::all(cluster.client.clone())
            .create(&PostParams::default(), &identity)
            .await
            .expect("create identity");
        let operator = cluster.spawn_operator("op-a", &["--identity-addr", "127.0.0.1:0"]);
        let (identity_service, operator_admin) = identity_client::logged_addrs(&operator).await;
        let mesh = Self {
            cluster,
            operator,
            identity_service,
            operator_admin,
        };
        mesh.bundle_with(1).await;
        mesh
    }

    fn client(&self) -> &Client {
        &self.cluster.client
    }

    /// The Identity's trust bundle once Ready and holding `anchors` anchors.
    async fn bundle_with(&self, anchors: usize) -> String {
        poll_until(
            &format!("the trust bundle with {anchors} anchor(s)"),
            READY,
            || async {
                let identity = id::get(self.client(), IDENTITY).await?;
                if !id::is_ready(&identity) {
                    return Err(format!("Ready is {:?}", id::condition(&identity, "Ready")));
                }
                let bundle = id::trust_bundle(self.client(), &identity).await?;
                let count = pki::pem_certs(&bundle)?.len();
                if count == anchors {
                    Ok(bundle)
                } else {
                    Err(format!("{count} anchors"))
                }
            },
        )
        .await
    }

    /// The files of a pod running as `service_account`, with a fresh token and the current bundle.
    async fn pod(&self, service_account: &str, bundle: &str) -> PodFiles {
        let files = PodFiles::new(&self.cluster.run_dir.join(format!("pod-{service_account}")));
        self.rotate_token(&files, service_account).await;
        files.write_bundle(bundle);
        files
    }

    async fn rotate_token(&self, files: &PodFiles, service_account: &str) {
        let token = tokens::request(
            self.client(),
            NAMESPACE,
            service_account,
            TOKEN_AUDIENCE,
            3600,
        )
        .await;
        files.write_token(&token);
    }

    fn proxy_args(&self, files: &PodFiles, service_account: &str) -> Vec<String> {
        [
            "--identity-name",
            &identity_of(service_account),
            "--identity-addr",
            &self.identity_service.to_string(),
            "--identity-token-file",
            &files.token.display().to_string(),
            "--trust-bundle-file",
            &files.bundle.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// The layout both tests run: the gRPC app, the server proxy in front of it, a TLS tap on the
    /// wire between the proxies, and the client proxy routing through the tap; both ready.
    async fn pair_through_tap(&self, bundle: &str) -> Pair {
        let app = GreeterServer::start().await;
        let server_files = self.pod("server", bundle).await;
        let server = self.server_proxy(&server_files, app.addr).await;
        let tap = TlsTap::start(server.inbound.expect("inbound")).await;
        let client_files = self.pod("client", bundle).await;
        let client = self.client_proxy(&client_files, tap.addr).await;
        server.wait_ready(READY).await;
        client.wait_ready(READY).await;
        Pair {
            app,
            server_files,
            server,
            tap,
            client_files,
            client,
        }
    }

    /// The server side: a proxy whose inbound side forwards to `app` (strict: mTLS only).
    async fn server_proxy(&self, files: &PodFiles, app: SocketAddr) -> MeshProxy {
        let mut args = self.proxy_args(files, "server");
        args.extend(["--inbound-app".to_string(), app.to_string()]);
        let config = serde_json::json!({ "services": [] }).to_string();
        MeshProxy::spawn(&self.cluster.run_dir, "server", &config, &args).await
    }

    /// The client side: a proxy routing `AUTHORITY` to `endpoint`, which must prove the server's
    /// identity; `late` is a second service to the same endpoint, for a fresh connection later.
    async fn client_proxy(&self, files: &PodFiles, endpoint: SocketAddr) -> MeshProxy {
        let mut args = self.proxy_args(files, "client");
        args.extend(["--inbound".to_string(), "off".to_string()]);
        let server = identity_of("server");
        let config = serde_json::json!({ "services": [
            meshed_service("greeter", AUTHORITY, &[(endpoint, &server)]),
            meshed_service("greeter-late", "late.shop.svc.cluster.local:80", &[(endpoint, &server)]),
        ]})
        .to_string();
        MeshProxy::spawn(&self.cluster.run_dir, "client", &config, &args).await
    }

    /// A certificate for `visitor` from the real identity service, with its key, for the test's own
    /// TLS clients; also returns the issuer certificate (DER) that signed it.
    async fn visitor_certificate(
        &self,
        bundle: &str,
    ) -> Result<(rustls::ClientConfig, Vec<u8>), String> {
        let key = ProxyKey::new();
        let name = identity_of("visitor");
        let token = tokens::request(self.client(), NAMESPACE, "visitor", TOKEN_AUDIENCE, 600).await;
        let service = IdentityClient::new(self.identity_service, TRUST_DOMAIN, bundle, &["h2"])
            .expect("identity client");
        let exchange = service
            .certify(&CertifyRequest {
                identity: name.clone(),
                token,
                csr_pem: key.csr(&[&name]),
            })
            .await?;
        let response = exchange
            .answer
            .map_err(|e| format!("visitor refused: {e:?}"))?;
        let mut chain: Vec<CertificateDer<'static>> = pki::pem_certs(&response.leaf_pem)
            .expect("leaf")
            .into_iter()
            .map(CertificateDer::from)
            .collect();
        let issuer = pki::pem_certs(&response.chain_pem).expect("chain");
        chain.extend(issuer.iter().cloned().map(CertificateDer::from));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("versions")
            .with_root_certificates(IdentityClient::roots(bundle).expect("roots"))
            .with_client_auth_cert(
                chain,
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.key.serialize_der())),
            )
            .expect("client certificate");
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok((config, issuer[0].clone()))
    }

    async fn operator_metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = admin_get(self.operator_admin, "/metrics")
            .await
            .map(|(_, body)| body)
            .unwrap_or_default();
        sample_sum(&text, name, labels)
    }
}

/// A TLS session the test opens to a proxy's inbound port, as an independent observer.
struct Observed {
    version: Option<rustls::ProtocolVersion>,
    server_names: Vec<String>,
    server_chain: Vec<Vec<u8>>,
}

async fn handshake(
    addr: SocketAddr,
    config: rustls::ClientConfig,
    server_name: &str,
) -> Result<
    (
        tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
        Observed,
    ),
    String,
> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            ServerName::try_from(server_name.to_string()).map_err(|e| e.to_string())?,
            tcp,
        )
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let session = stream.get_ref().1;
    let server_chain: Vec<Vec<u8>> = session
        .peer_certificates()
        .map(|chain| chain.iter().map(|c| c.to_vec()).collect())
        .unwrap_or_default();
    let server_names = server_chain
        .first()
        .map(|leaf| pki::summary(leaf).map(|s| s.dns_names).unwrap_or_default())
        .unwrap_or_default();
    let observed = Observed {
        version: session.protocol_version(),
        server_names,
        server_chain,
    };
    Ok((stream, observed))
}

#[tokio::test]
async fn a_grpc_call_crosses_two_proxies_over_mtls_proving_tls13_and_both_names() {
    let mesh = Mesh::start(
        "mtls-call",
        serde_json::json!({ "trustDomain": TRUST_DOMAIN, "leaf": { "lifetime": "1h" } }),
        &[],
    )
    .await;
    let bundle = mesh.bundle_with(1).await;
    let Pair {
        app,
        server,
        tap,
        client,
        ..
    } = mesh.pair_through_tap(&bundle).await;

    let mut greeter = GreeterClient::connect(client.outbound, AUTHORITY)
        .await
        .expect("gRPC channel");
    let reply = greeter.hello("mesh", 1).await.expect("a call over mTLS");
    assert_eq!(reply.name, "hello mesh");
    assert_eq!(app.calls.load(Ordering::Relaxed), 1);

    // On the wire: SNI and ALPN in the ClientHello, TLS 1.3 selected in the ServerHello, and nothing
    // after the ServerHello in plaintext (the certificates travel encrypted).
    let views = tap.views();
    assert_eq!(views.len(), 1, "{views:?}");
    let view = &views[0];
    assert_eq!(view.sni.as_deref(), Some(identity_of("server").as_str()));
    assert_eq!(view.alpn, vec!["h2".to_string()]);
    assert_eq!(view.selected_version, Some(0x0304), "{view:?}");
    assert!(
        view.server_record_types[1..]
            .iter()
            .all(|&t| t == 0x14 || t == 0x17),
        "only change_cipher_spec and encrypted records after the ServerHello: {view:?}"
    );

    // Each proxy reports the identity it verified on the other side, and the version.
    let server_id = identity_of("server");
    let client_id = identity_of("client");
    assert_eq!(
        client
            .sample(
                "tls_handshake_total",
                &[
                    ("direction", "outbound"),
                    ("peer_id", server_id.as_str()),
                    ("tls_version", "TLSv1_3")
                ]
            )
            .await,
        1.0,
        "{}",
        client.metrics().await.unwrap_or_default()
    );
    assert_eq!(
        server
            .sample(
                "tls_handshake_total",
                &[
                    ("direction", "inbound"),
                    ("peer_id", client_id.as_str()),
                    ("tls_version", "TLSv1_3")
                ]
            )
            .await,
        1.0
    );
    assert_eq!(
        server
            .sample(
                "response_total",
                &[
                    ("direction", "inbound"),
                    ("tls", "true"),
                    ("client_id", client_id.as_str()),
                    ("classification", "success"),
                    ("grpc_status_code", "0"),
                ]
            )
            .await,
        1.0,
        "{}",
        server.metrics().await.unwrap_or_default()
    );

    // An independent client with its own certificate from the identity service sees the server
    // proxy's side: TLS 1.3, a chain to the bundle's anchor, the server's identity as the only SAN.
    let (config, _) = mesh
        .visitor_certificate(&bundle)
        .await
        .expect("a certificate for the visitor");
    let (stream, seen) = handshake(server.inbound.expect("inbound"), config, &server_id)
        .await
        .expect("the visitor's handshake");
    assert_eq!(seen.version, Some(rustls::ProtocolVersion::TLSv1_3));
    assert_eq!(seen.server_names, vec![server_id.clone()]);
    assert_eq!(seen.server_chain.len(), 2, "leaf and issuer");
    let anchor = pki::pem_certs(&bundle).expect("bundle").remove(0);
    pki::verify_signed_by(&seen.server_chain[1], &anchor).expect("the issuer chains to the anchor");
    let reply = hello_over(stream, AUTHORITY, "visitor")
        .await
        .expect("a call on the visitor's own session");
    assert_eq!(reply.name, "hello visitor");
}

/// Continuous gRPC calls from `workers` tasks over one channel, until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(client: &GreeterClient, workers: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..workers)
            .map(|worker| {
                let (mut client, stop, ok, failures) =
                    (client.clone(), stop.clone(), ok.clone(), failures.clone());
                tokio::spawn(async move {
                    let mut seq = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        seq += 1;
                        match client.hello(&format!("worker-{worker}"), seq).await {
                            Ok(_) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(status) => failures.lock().expect("lock").push(format!(
                                "{:?}: {}",
                                status.code(),
                                status.message()
                            )),
                        }
                        // Continuous load that leaves the shared machine some room.
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                })
            })
            .collect();
        Self {
            stop,
            ok,
            failures,
            tasks,
        }
    }

    async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("load task");
        }
        let failures = self.failures.lock().expect("lock").clone();
        (self.ok.load(Ordering::Relaxed), failures)
    }

    fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }
}

async fn create_anchor(client: &Client, name: &str) -> String {
    let anchor = pki::self_signed(name, true, (2024, 1, 1), (2036, 1, 1));
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": { "name": name, "namespace": id::operator_namespace() },
        "type": "Opaque",
        "stringData": { "ca.crt": anchor.cert_pem, "ca.key": anchor.key_pem },
    }))
    .expect("secret");
    Api::<Secret>::namespaced(client.clone(), id::operator_namespace())
        .create(&PostParams::default(), &secret)
        .await
        .unwrap_or_else(|e| panic!("create anchor secret {name}: {e}"));
    anchor.cert_pem
}

async fn patch_spec(client: &Client, spec: serde_json::Value) {
    Api::<Identity>::all(client.clone())
        .patch(
            IDENTITY,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "spec": spec })),
        )
        .await
        .expect("patch identity");
}

/// Waits until a proxy has loaded a bundle of `anchors` anchors.
async fn wait_anchors(proxy: &MeshProxy, anchors: f64) {
    poll_until(
        &format!("the proxy to use {anchors} anchor(s)"),
        Duration::from_secs(30),
        || async {
            let loaded = proxy.sample("identity_trust_anchors", &[]).await;
            if loaded == anchors {
                Ok(())
            } else {
                Err(format!("{loaded} anchors"))
            }
        },
    )
    .await
}

async fn refreshes(proxy: &MeshProxy) -> f64 {
    proxy.sample("identity_cert_refresh_count", &[]).await
}

#[tokio::test]
async fn two_minutes_of_grpc_load_through_leaf_issuer_and_anchor_rotations_fail_nothing() {
    const SOAK: Duration = Duration::from_secs(120);
    const LEAF: f64 = 20.0;
    let mesh = Mesh::start(
        "mtls-soak",
        serde_json::json!({
            "trustDomain": TRUST_DOMAIN,
            "trustAnchor": { "secretRef": { "name": "anchor-1" } },
            "issuer": { "duration": "60s", "renewBefore": "30s" },
            // A 20 s leaf needs a skew allowance below 20 s.
            "leaf": { "lifetime": "20s", "clockSkewAllowance": "5s" },
        }),
        &["anchor-1"],
    )
    .await;
    let client_api = mesh.client();
    let bundle = mesh.bundle_with(1).await;

    let Pair {
        app: _serving, // the gRPC server lives as long as this binding
        server_files,
        server,
        tap,
        client_files,
        client,
    } = mesh.pair_through_tap(&bundle).await;
    let greeter = GreeterClient::connect(client.outbound, AUTHORITY)
        .await
        .expect("gRPC channel");
    let proxies = [&client, &server];
    let pods = [(&client_files, "client"), (&server_files, "server")];

    let started = Instant::now();
    let base = [refreshes(&client).await, refreshes(&server).await];
    let issuer_base = mesh
        .operator_metric(
            "weft_operator_issuer_issuances_total",
            &[("identity", IDENTITY)],
        )
        .await;
    let load = Load::start(&greeter, 4);

    // Leaf refreshes (every 14 s) and issuer rotations (every 30 s) run on their own meanwhile.
    tokio::time::sleep(Duration::from_secs(25)).await;
    // The kubelet rotates projected tokens; the proxies read the file at each call.
    for (files, account) in pods {
        mesh.rotate_token(files, account).await;
    }

    // Anchor rotation, step 1: the new anchor joins the bundle (trusted, not yet signing).
    let new_anchor = create_anchor(client_api, "anchor-2").await;
    patch_spec(
        client_api,
        serde_json::json!({ "additionalTrustAnchors": [ { "secretRef": { "name": "anchor-2" } } ] }),
    )
    .await;
    let both = mesh.bundle_with(2).await;
    for (files, _) in pods {
        files.write_bundle(&both);
    }
    for proxy in proxies {
        wait_anchors(proxy, 2.0).await;
    }
    // Step 2: the new anchor signs (the issuer is reissued by it); the old one is only trusted.
    patch_spec(
        client_api,
        serde_json::json!({
            "trustAnchor": { "secretRef": { "name": "anchor-2" } },
            "additionalTrustAnchors": [ { "secretRef": { "name": "anchor-1" } } ],
        }),
    )
    .await;
    let new_anchor_der = pki::pem_certs(&new_anchor).expect("anchor").remove(0);
    let visitor_certificates = AtomicU64::new(0);
    poll_until(
        "the identity service to sign through the new anchor",
        Duration::from_secs(60),
        || async {
            let (_, issuer) = mesh.visitor_certificate(&both).await?;
            visitor_certificates.fetch_add(1, Ordering::Relaxed);
            pki::verify_signed_by(&issuer, &new_anchor_der)
        },
    )
    .await;
    let visitor_certificates = visitor_certificates.load(Ordering::Relaxed) as f64;
    // Every proxy gets a leaf from the new chain at its next refresh.
    let before = [refreshes(&client).await, refreshes(&server).await];
    for (proxy, count) in proxies.iter().zip(before) {
        poll_until(
            "a refresh after the anchor swap",
            Duration::from_secs(30),
            || async {
                let now = refreshes(proxy).await;
                if now > count {
                    Ok(())
                } else {
                    Err(format!("{now} refreshes"))
                }
            },
        )
        .await;
    }
    // Step 3: the old anchor leaves the bundle.
    patch_spec(
        client_api,
        serde_json::json!({ "additionalTrustAnchors": [] }),
    )
    .await;
    let only_new = mesh.bundle_with(1).await;
    assert_eq!(pki::pem_certs(&only_new), pki::pem_certs(&new_anchor));
    for (files, _) in pods {
        files.write_bundle(&only_new);
    }
    for proxy in proxies {
        wait_anchors(proxy, 1.0).await;
    }
    let rotated_at = started.elapsed();
    assert!(rotated_at < SOAK, "the anchor rotation took {rotated_at:?}");

    // The rest of the two minutes under load.
    tokio::time::sleep(SOAK - rotated_at).await;
    let calls_before_stop = load.ok();
    let (ok, failures) = load.finish().await;
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "{ok} calls in {elapsed:.0} s ({calls_before_stop} before stopping), {} failed; anchor rotation done at {rotated_at:?}",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} calls failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(20)]
    );
    assert!(ok > 1000, "only {ok} calls");

    // Rotation counts: each proxy refreshed every 70 % of 20 s.
    let expected = elapsed / (0.7 * LEAF);
    let mut total_certificates = visitor_certificates;
    for ((proxy, name), base) in proxies.iter().zip(["client", "server"]).zip(base) {
        let metrics = proxy.metrics().await.unwrap_or_default();
        let count = sample_sum(&metrics, "identity_cert_refresh_count", &[]);
        total_certificates += count;
        let during = count - base;
        eprintln!(
            "{name}: {during} refreshes during the soak, {expected:.1} expected, {count} in all"
        );
        assert!(
            (during - expected).abs() <= 1.5,
            "{name}: {during} refreshes in {elapsed:.0} s, expected about {expected:.1}"
        );
        assert_eq!(
            sample_sum(&metrics, "identity_cert_refresh_failures_total", &[]),
            0.0,
            "{name}: {metrics}"
        );
    }
    let issuer_rotations = mesh
        .operator_metric(
            "weft_operator_issuer_issuances_total",
            &[("identity", IDENTITY)],
        )
        .await
        - issuer_base;
    eprintln!("{issuer_rotations} issuer issuances during the soak");
    assert!(
        issuer_rotations >= (elapsed / 30.0).floor(),
        "{issuer_rotations} issuer rotations in {elapsed:.0} s"
    );
    // The operator issued exactly the leaves the proxies (and the test's visitor) counted.
    assert_eq!(
        mesh.operator_metric("weft_operator_identity_certify_total", &[])
            .await,
        total_certificates
    );

    // Rotations did not tear the proxies' connection down: one connection, one handshake.
    assert_eq!(tap.connections(), 1);
    assert_eq!(
        client
            .sample(
                "tcp_open_total",
                &[("peer", "dst"), ("dst_service", "greeter")]
            )
            .await,
        1.0
    );
    // New handshakes use the new material: a fresh connection (another service to the same
    // endpoint) works with only the new anchor trusted on both sides.
    let mut late = GreeterClient::connect(client.outbound, "late.shop.svc.cluster.local:80")
        .await
        .expect("gRPC channel");
    late.hello("late", 1)
        .await
        .expect("a call on a new mTLS connection");
    assert_eq!(tap.connections(), 2);
    let views = tap.views();
    assert_eq!(views[1].selected_version, Some(0x0304));
    assert!(mesh.operator.log().contains("identity service listening"));
}
