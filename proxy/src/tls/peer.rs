//! Peer identities: the one an endpoint is expected to prove (outbound), and the one a verified
//! certificate names (both sides, for metrics and, later, authorization).

use rustls::pki_types::{CertificateDer, ServerName};

/// The identity an endpoint must prove: sent as SNI, and required as a DNS SAN of its certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    pub name: String,
    pub server_name: ServerName<'static>,
}

impl PeerIdentity {
    /// `None` when `name` is not a DNS name (the configuration refuses those).
    pub fn new(name: &str) -> Option<Self> {
        Some(Self {
            name: name.to_string(),
            server_name: ServerName::try_from(name.to_string()).ok()?,
        })
    }
}

/// The identity a certificate names: its first DNS SAN (weft's leaves carry exactly one).
pub fn dns_identity(cert: &CertificateDer<'_>) -> Option<String> {
    let cert = webpki::EndEntityCert::try_from(cert).ok()?;
    cert.valid_dns_names().next().map(str::to_string)
}

/// `TLSv1_3`, as rustls names the version.
pub fn version_label(version: Option<rustls::ProtocolVersion>) -> String {
    version.map_or_else(|| "unknown".to_string(), |v| format!("{v:?}"))
}
