//! A small client of the operator's identity service, as a proxy would talk to it: TLS 1.3 verified
//! against the Identity's trust bundle with the server name `weft-identity.<trust-domain>`, HTTP/2 (or
//! HTTP/1.1), `POST /v1/certify`. Also what a test needs around it: the service's address from the
//! operator's log, a proxy key and its CSR, ServiceAccount tokens (TokenRequest), and self-made JWTs
//! signed with the test API server's service-account key (to forge expired tokens).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, ServerName},
};
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use weft_wire::identity::{
    CERTIFY_PATH, CertifyError, CertifyRequest, CertifyResponse, service_name,
};

/// The address after `addr=` on the last log line that contains `message` (ANSI colours stripped).
pub fn logged_addr(log: &str, message: &str) -> Option<SocketAddr> {
    strip_ansi(log)
        .lines()
        .rev()
        .filter(|line| line.contains(message))
        .find_map(|line| {
            let rest = line.split("addr=").nth(1)?;
            rest.split_whitespace().next()?.parse().ok()
        })
}

/// The identity service's address, from the operator's log line `identity service listening addr=...`.
pub fn identity_addr(log: &str) -> Option<SocketAddr> {
    logged_addr(log, "identity service listening")
}

/// The admin server's address, from the operator's log line `admin server listening ... addr=...`.
pub fn admin_addr(log: &str) -> Option<SocketAddr> {
    logged_addr(log, "admin server listening")
}

/// Waits (30 s at most) until the operator `process` has logged the addresses its identity service
/// and admin server bound (it is started with port 0), and returns them in that order.
pub async fn logged_addrs(process: &crate::Process) -> (SocketAddr, SocketAddr) {
    crate::poll_until(
        "the operator logs its identity service and admin addresses",
        Duration::from_secs(30),
        || async {
            let log = process.log();
            match (identity_addr(&log), admin_addr(&log)) {
                (Some(identity), Some(admin)) => Ok((identity, admin)),
                _ => Err(format!("log so far:\n{log}")),
            }
        },
    )
    .await
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ ... final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

// === proxy key and CSR ===

/// A key made in memory, as the proxy makes it (ECDSA P-256).
pub struct ProxyKey {
    pub key: rcgen::KeyPair,
}

impl Default for ProxyKey {
    fn default() -> Self {
        Self::new()
    }
}

impl ProxyKey {
    pub fn new() -> Self {
        Self {
            key: rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .expect("generate a P-256 key"),
        }
    }

    /// A PKCS#10 CSR (PEM) for the DNS names `names`.
    pub fn csr(&self, names: &[&str]) -> String {
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("CSR params");
        params
            .serialize_request(&self.key)
            .and_then(|csr| csr.pem())
            .expect("serialize CSR")
    }
}

// === the client ===

/// What one certify call showed: the TLS session and the HTTP answer.
#[derive(Debug)]
pub struct Exchange {
    pub status: u16,
    /// `TLSv1_3` or `TLSv1_2`.
    pub tls_version: String,
    /// The ALPN protocol agreed (`h2`, `http/1.1`).
    pub alpn: Option<String>,
    /// The HTTP version the response came in.
    pub http_version: http::Version,
    /// The service's certificate chain as sent (DER), leaf first.
    pub server_chain: Vec<Vec<u8>>,
    pub retry_after: Option<String>,
    pub answer: Result<CertifyResponse, CertifyError>,
}

/// Calls one operator replica's identity service.
#[derive(Clone)]
pub struct IdentityClient {
    addr: SocketAddr,
    server_name: ServerName<'static>,
    tls: Arc<ClientConfig>,
}

impl IdentityClient {
    /// A client trusting the anchors of `bundle_pem`, expecting the service of `trust_domain` at `addr`,
    /// offering TLS 1.3 and 1.2 (the service must pick 1.3) and ALPN `alpn` (e.g. `["h2", "http/1.1"]`).
    pub fn new(
        addr: SocketAddr,
        trust_domain: &str,
        bundle_pem: &str,
        alpn: &[&str],
    ) -> Result<Self, String> {
        let mut roots = RootCertStore::empty();
        for der in crate::pki::pem_certs(bundle_pem)? {
            roots
                .add(CertificateDer::from(der))
                .map_err(|e| format!("bad anchor in the bundle: {e}"))?;
        }
        Self::with_roots(
            addr,
            trust_domain,
            roots,
            alpn,
            &[&rustls::version::TLS13, &rustls::version::TLS12],
        )
    }

    /// Like [`Self::new`] with a chosen set of TLS versions (e.g. TLS 1.2 only, to see it refused).
    pub fn with_roots(
        addr: SocketAddr,
        trust_domain: &str,
        roots: RootCertStore,
        alpn: &[&str],
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(|e| format!("TLS versions: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        // Each call is a full handshake, so each shows the serving certificate in use then.
        config.resumption = rustls::client::Resumption::disabled();
        let server_name = ServerName::try_from(service_name(trust_domain))
            .map_err(|e| format!("server name: {e}"))?;
        Ok(Self {
            addr,
            server_name,
            tls: Arc::new(config),
        })
    }

    /// The bundle's anchors as a rustls root store.
    pub fn roots(bundle_pem: &str) -> Result<RootCertStore, String> {
        let mut roots = RootCertStore::empty();
        for der in crate::pki::pem_certs(bundle_pem)? {
            roots
                .add(CertificateDer::from(der))
                .map_err(|e| format!("bad anchor in the bundle: {e}"))?;
        }
        Ok(roots)
    }

    /// One certify call on a fresh connection.
    pub async fn certify(&self, request: &CertifyRequest) -> Result<Exchange, String> {
        let body = serde_json::to_vec(request).map_err(|e| e.to_string())?;
        self.post(CERTIFY_PATH, body).await
    }

    /// A POST of `body` to `path` on a fresh connection (TLS handshake included), within 10 s.
    pub async fn post(&self, path: &str, body: Vec<u8>) -> Result<Exchange, String> {
        tokio::time::timeout(Duration::from_secs(10), self.post_inner(path, body))
            .await
            .map_err(|_| format!("no answer from {} within 10s", self.addr))?
    }

    async fn post_inner(&self, path: &str, body: Vec<u8>) -> Result<Exchange, String> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", self.addr))?;
        let tls = TlsConnector::from(self.tls.clone())
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| format!("TLS handshake with {}: {e}", self.addr))?;
        let (_, session) = tls.get_ref();
        let tls_version = session
            .protocol_version()
            .map(|v| format!("{v:?}"))
            .unwrap_or_default();
        let alpn = session
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        let server_chain = session
            .peer_certificates()
            .map(|certs| certs.iter().map(|c| c.to_vec()).collect())
            .unwrap_or_default();

        let request =
            http::Request::post(format!("https://{}{path}", service_host(&self.server_name)))
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| e.to_string())?;
        let io = TokioIo::new(tls);
        let response = if alpn.as_deref() == Some("h2") {
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
            tokio::spawn(connection);
            sender.send_request(request).await
        } else {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| format!("HTTP/1.1 handshake: {e}"))?;
            tokio::spawn(connection);
            sender.send_request(request).await
        }
        .map_err(|e| format!("POST {path}: {e}"))?;

        let status = response.status().as_u16();
        let http_version = response.version();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("read the answer: {e}"))?
            .to_bytes();
        let answer = if status == 200 {
            Ok(serde_json::from_slice(&bytes)
                .map_err(|e| format!("200 with a body that is no CertifyResponse: {e}"))?)
        } else {
            Err(serde_json::from_slice(&bytes).map_err(|e| {
                format!(
                    "{status} with a body that is no CertifyError ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })?)
        };
        Ok(Exchange {
            status,
            tls_version,
            alpn,
            http_version,
            server_chain,
            retry_after,
            answer,
        })
    }
}

fn service_host(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(dns) => dns.as_ref().to_string(),
        other => format!("{other:?}"),
    }
}

// === tokens ===

/// ServiceAccount tokens: real ones from the API server, and forged ones.
pub mod tokens {
    use base64::Engine as _;
    use k8s_openapi::api::{
        authentication::v1::{TokenRequest, TokenRequestSpec},
        core::v1::ServiceAccount,
    };
    use kube::{Api, Client, api::PostParams};
    use ring::{
        rand::SystemRandom,
        signature::{RSA_PKCS1_SHA256, RsaKeyPair},
    };
    use std::path::Path;

    /// The service-account token issuer of `e2e/envtest.sh`'s API server.
    pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

    /// Creates the ServiceAccount `namespace/name` (no controller-manager runs in tests); returns its uid.
    pub async fn create_service_account(client: &Client, namespace: &str, name: &str) -> String {
        let account: ServiceAccount = serde_json::from_value(serde_json::json!({
            "metadata": { "name": name, "namespace": namespace }
        }))
        .expect("service account");
        let created = Api::<ServiceAccount>::namespaced(client.clone(), namespace)
            .create(&PostParams::default(), &account)
            .await
            .unwrap_or_else(|e| panic!("create ServiceAccount {namespace}/{name}: {e}"));
        created
            .metadata
            .uid
            .expect("a created ServiceAccount has a uid")
    }

    /// A token of `namespace/name` for `audience` from the TokenRequest API (what the kubelet projects).
    pub async fn request(
        client: &Client,
        namespace: &str,
        name: &str,
        audience: &str,
        seconds: i64,
    ) -> String {
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![audience.to_string()],
                expiration_seconds: Some(seconds),
                bound_object_ref: None,
            },
            ..TokenRequest::default()
        };
        Api::<ServiceAccount>::namespaced(client.clone(), namespace)
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .unwrap_or_else(|e| panic!("TokenRequest for {namespace}/{name}: {e}"))
            .status
            .map(|s| s.token)
            .expect("TokenRequest status")
    }

    /// A ServiceAccount JWT as the API server mints them, signed RS256 with `sa_key` (the API server's
    /// `--service-account-signing-key-file`), valid from `issued_at` to `expires_at` (Unix seconds).
    pub fn forge(
        sa_key: &Path,
        namespace: &str,
        name: &str,
        uid: &str,
        audience: &str,
        issued_at: i64,
        expires_at: i64,
    ) -> Result<String, String> {
        let pem = std::fs::read(sa_key).map_err(|e| format!("read {}: {e}", sa_key.display()))?;
        let key = rsa_key(&pem)?;
        let header = serde_json::json!({ "alg": "RS256", "typ": "JWT" });
        let claims = serde_json::json!({
            "iss": ISSUER,
            "sub": format!("system:serviceaccount:{namespace}:{name}"),
            "aud": [audience],
            "iat": issued_at,
            "nbf": issued_at,
            "exp": expires_at,
            "kubernetes.io": {
                "namespace": namespace,
                "serviceaccount": { "name": name, "uid": uid }
            }
        });
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let signing_input = format!(
            "{}.{}",
            b64(&serde_json::to_vec(&header).map_err(|e| e.to_string())?),
            b64(&serde_json::to_vec(&claims).map_err(|e| e.to_string())?)
        );
        let mut signature = vec![0u8; key.public().modulus_len()];
        key.sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            signing_input.as_bytes(),
            &mut signature,
        )
        .map_err(|_| "RSA signing failed".to_string())?;
        Ok(format!("{signing_input}.{}", b64(&signature)))
    }

    /// An RSA key from PEM: PKCS#8 (`PRIVATE KEY`, what OpenSSL 3's `genrsa` writes) or PKCS#1.
    fn rsa_key(pem: &[u8]) -> Result<RsaKeyPair, String> {
        let block = x509_parser::pem::Pem::iter_from_buffer(pem)
            .next()
            .ok_or("no PEM block")?
            .map_err(|e| format!("bad PEM: {e}"))?;
        match block.label.as_str() {
            "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&block.contents),
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(&block.contents),
            other => return Err(format!("not an RSA key: {other}")),
        }
        .map_err(|e| format!("unusable RSA key: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_addresses_in_coloured_logs() {
        let log = "\u{1b}[2m2026-01-01T00:00:00Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m \u{1b}[2mweft_operator\u{1b}[0m\u{1b}[2m:\u{1b}[0m identity service listening \u{1b}[3maddr\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:4321\n\
                   INFO admin server listening (/live, /ready, /metrics) addr=127.0.0.1:9999\n";
        assert_eq!(identity_addr(log), Some("127.0.0.1:4321".parse().unwrap()));
        assert_eq!(admin_addr(log), Some("127.0.0.1:9999".parse().unwrap()));
        assert_eq!(identity_addr("nothing here"), None);
    }
}
