//! Certificates and keys: reading them (x509-parser), checking them (signatures, key pairs, CA bits,
//! validity), and making them (rcgen): the self-signed trust anchor and the issuer it signs.
//!
//! Everything here is pure: bytes and a clock reading in, values or a [`PkiError`] out.

use k8s_openapi::jiff::Timestamp;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SignatureAlgorithm,
};
use std::time::Duration;
use weft_crds::identity::KeyAlgorithm;
use x509_parser::{certificate::X509Certificate, pem::Pem};

/// Why a certificate or key could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PkiError {
    #[error("no PEM {0} block found")]
    NoPem(&'static str),
    #[error("malformed PEM: {0}")]
    BadPem(String),
    #[error("not an X.509 certificate: {0}")]
    BadCertificate(String),
    #[error("unusable private key: {0}")]
    BadKey(String),
    #[error("the private key does not belong to the certificate")]
    KeyMismatch,
    #[error("{child} is not signed by {why}")]
    NotSignedBy { child: String, why: String },
    #[error("cannot create a certificate: {0}")]
    Generate(String),
}

/// The facts about one certificate that the controller decides on, detached from the parser's borrows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// The subject, e.g. `CN=identity.cluster.local`.
    pub subject: String,
    /// The issuer's subject.
    pub issuer: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    /// `basicConstraints: CA:TRUE`.
    pub is_ca: bool,
    /// The key usage extension is absent or allows `keyCertSign`.
    pub may_sign_certificates: bool,
    /// The subject public key (the BIT STRING of SubjectPublicKeyInfo).
    pub public_key: Vec<u8>,
    /// SHA-256 of the DER, lower-case hex.
    pub fingerprint: String,
}

impl CertInfo {
    /// Whether `now` lies in `[notBefore, notAfter]`.
    pub fn is_valid_at(&self, now: Timestamp) -> bool {
        self.not_before <= now && now <= self.not_after
    }

    /// Whether the certificate has expired by `now`.
    pub fn is_expired_at(&self, now: Timestamp) -> bool {
        now > self.not_after
    }

    /// The certificate in PEM.
    pub fn pem(&self) -> String {
        to_pem("CERTIFICATE", &self.der)
    }
}

/// Parses one DER certificate.
pub fn cert_info(der: &[u8]) -> Result<CertInfo, PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| PkiError::BadCertificate(e.to_string()))?;
    let basic = cert
        .basic_constraints()
        .map_err(|e| PkiError::BadCertificate(e.to_string()))?;
    let key_usage = cert
        .key_usage()
        .map_err(|e| PkiError::BadCertificate(e.to_string()))?;
    Ok(CertInfo {
        der: der.to_vec(),
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_before: asn1_to_timestamp(cert.validity().not_before.timestamp())?,
        not_after: asn1_to_timestamp(cert.validity().not_after.timestamp())?,
        is_ca: basic.is_some_and(|b| b.value.ca),
        may_sign_certificates: key_usage.is_none_or(|k| k.value.key_cert_sign()),
        public_key: cert.public_key().subject_public_key.data.to_vec(),
        fingerprint: sha256_hex(der),
    })
}

fn asn1_to_timestamp(seconds: i64) -> Result<Timestamp, PkiError> {
    Timestamp::from_second(seconds)
        .map_err(|e| PkiError::BadCertificate(format!("validity out of range: {e}")))
}

/// Parses every `CERTIFICATE` block of a PEM text, in order. Other blocks are ignored; no certificate,
/// a broken block or a broken certificate is an error.
pub fn parse_certificates(pem: &[u8]) -> Result<Vec<CertInfo>, PkiError> {
    let mut certs = Vec::new();
    for block in Pem::iter_from_buffer(pem) {
        let block = block.map_err(|e| PkiError::BadPem(e.to_string()))?;
        if block.label == "CERTIFICATE" {
            certs.push(cert_info(&block.contents)?);
        }
    }
    if certs.is_empty() {
        return Err(PkiError::NoPem("CERTIFICATE"));
    }
    Ok(certs)
}

/// Reads a private key from PEM: PKCS#8 (`PRIVATE KEY`), SEC1 (`EC PRIVATE KEY`, what cert-manager and
/// `openssl ecparam` write) or PKCS#1 (`RSA PRIVATE KEY`). SEC1 and PKCS#1 are wrapped into PKCS#8,
/// the form `ring` signs with.
pub fn parse_private_key(pem: &[u8]) -> Result<KeyPair, PkiError> {
    for block in Pem::iter_from_buffer(pem) {
        let block = block.map_err(|e| PkiError::BadPem(e.to_string()))?;
        let candidates: Vec<Vec<u8>> = match block.label.as_str() {
            "PRIVATE KEY" => vec![block.contents.clone()],
            "EC PRIVATE KEY" => vec![
                wrap_sec1_in_pkcs8(&block.contents, OID_P256),
                wrap_sec1_in_pkcs8(&block.contents, OID_P384),
            ],
            "RSA PRIVATE KEY" => vec![wrap_pkcs1_in_pkcs8(&block.contents)],
            "ENCRYPTED PRIVATE KEY" => {
                return Err(PkiError::BadKey(
                    "encrypted private keys are not supported".into(),
                ));
            }
            _ => continue,
        };
        let mut last_error = String::new();
        for der in candidates {
            match KeyPair::try_from(der.as_slice()) {
                Ok(key) => return Ok(key),
                Err(e) => last_error = e.to_string(),
            }
        }
        return Err(PkiError::BadKey(format!(
            "{} block: {last_error}",
            block.label
        )));
    }
    Err(PkiError::NoPem("PRIVATE KEY"))
}

/// Whether `key` is the private half of `cert`'s public key.
pub fn key_matches(key: &KeyPair, cert: &CertInfo) -> Result<(), PkiError> {
    if key.public_key_raw() == cert.public_key.as_slice() {
        Ok(())
    } else {
        Err(PkiError::KeyMismatch)
    }
}

/// Verifies that `parent`'s key made `child`'s signature and that the names link up.
pub fn verify_signed_by(child: &CertInfo, parent: &CertInfo) -> Result<(), PkiError> {
    let fail = |why: String| PkiError::NotSignedBy {
        child: child.subject.clone(),
        why: format!("{}: {why}", parent.subject),
    };
    if child.issuer != parent.subject {
        return Err(fail(format!("its issuer is {:?}", child.issuer)));
    }
    let child_cert = parse(&child.der)?;
    let parent_cert = parse(&parent.der)?;
    child_cert
        .verify_signature(Some(parent_cert.public_key()))
        .map_err(|e| fail(e.to_string()))
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, PkiError> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert)
        .map_err(|e| PkiError::BadCertificate(e.to_string()))
}

/// A certificate plus its private key, both PEM; what gets written into a Secret.
pub struct Issued {
    pub cert: CertInfo,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    // Never print the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("cert", &self.cert.subject)
            .finish_non_exhaustive()
    }
}

/// A trust anchor that can sign: its certificate and its key, known to match.
pub struct SigningAnchor {
    pub cert: CertInfo,
    key: KeyPair,
}

impl std::fmt::Debug for SigningAnchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningAnchor")
            .field("cert", &self.cert.subject)
            .finish_non_exhaustive()
    }
}

impl SigningAnchor {
    /// Pairs an anchor certificate with its key, refusing a key that is not the certificate's.
    pub fn new(cert: CertInfo, key: KeyPair) -> Result<Self, PkiError> {
        key_matches(&key, &cert)?;
        Ok(Self { cert, key })
    }
}

/// The subject CN of issuers for `trust_domain` (Linkerd: `identity.linkerd.cluster.local`).
pub fn issuer_common_name(trust_domain: &str) -> String {
    format!("identity.{trust_domain}")
}

/// Generates a self-signed ECDSA P-256 trust anchor valid from `now - backdate` for `lifetime`.
pub fn generate_anchor(
    trust_domain: &str,
    now: Timestamp,
    lifetime: Duration,
    backdate: Duration,
) -> Result<Issued, PkiError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_error)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = name(&format!("root.identity.{trust_domain}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = to_offset(sub(now, backdate)?)?;
    params.not_after = to_offset(add(now, lifetime)?)?;
    let cert = params.self_signed(&key).map_err(gen_error)?;
    Ok(Issued {
        cert: cert_info(cert.der())?,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Issues an intermediate CA for `trust_domain` with a fresh key of `algorithm`, signed by `anchor`,
/// valid for `[not_before, not_after]`. Refuses an anchor that is not valid at `now`: an expired
/// anchor must never sign.
pub fn issue_issuer(
    anchor: &SigningAnchor,
    trust_domain: &str,
    algorithm: KeyAlgorithm,
    now: Timestamp,
    not_before: Timestamp,
    not_after: Timestamp,
) -> Result<Issued, PkiError> {
    if !anchor.cert.is_valid_at(now) {
        return Err(PkiError::Generate(format!(
            "the trust anchor is not valid now (valid {} to {})",
            anchor.cert.not_before, anchor.cert.not_after
        )));
    }
    let key = KeyPair::generate_for(signature_algorithm(algorithm)).map_err(gen_error)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = name(&issuer_common_name(trust_domain));
    // Path length 0: the issuer signs leaves only, never another CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.use_authority_key_identifier_extension = true;
    params.not_before = to_offset(not_before)?;
    params.not_after = to_offset(not_after)?;
    let signer = Issuer::from_ca_cert_der(&anchor.cert.der.clone().into(), &anchor.key)
        .map_err(gen_error)?;
    let cert = params.signed_by(&key, &signer).map_err(gen_error)?;
    Ok(Issued {
        cert: cert_info(cert.der())?,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The rcgen algorithm for a spec's key algorithm.
pub fn signature_algorithm(algorithm: KeyAlgorithm) -> &'static SignatureAlgorithm {
    match algorithm {
        KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyAlgorithm::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
    }
}

/// The spec's key algorithm of `key`, if it is one the spec can name.
pub fn key_algorithm_of(key: &KeyPair) -> Option<KeyAlgorithm> {
    [
        KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::EcdsaP384,
        KeyAlgorithm::Ed25519,
    ]
    .into_iter()
    .find(|alg| key.algorithm() == signature_algorithm(*alg))
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

fn gen_error(e: rcgen::Error) -> PkiError {
    PkiError::Generate(e.to_string())
}

fn add(t: Timestamp, d: Duration) -> Result<Timestamp, PkiError> {
    t.checked_add(d)
        .map_err(|e| PkiError::Generate(format!("time out of range: {e}")))
}

fn sub(t: Timestamp, d: Duration) -> Result<Timestamp, PkiError> {
    t.checked_sub(d)
        .map_err(|e| PkiError::Generate(format!("time out of range: {e}")))
}

/// Certificates carry whole seconds; rcgen takes `time::OffsetDateTime`.
fn to_offset(t: Timestamp) -> Result<time::OffsetDateTime, PkiError> {
    time::OffsetDateTime::from_unix_timestamp(t.as_second())
        .map_err(|e| PkiError::Generate(format!("time out of range: {e}")))
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// PEM-encodes `der` under `label` with 64-character lines.
pub fn to_pem(label: &str, der: &[u8]) -> String {
    let encoded = base64_encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

// === DER wrapping of legacy key formats into PKCS#8 ===

/// `id-ecPublicKey` followed by the named curve, as DER OIDs.
const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
/// `rsaEncryption` with NULL parameters.
const ALG_RSA: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];

/// PKCS#8 `PrivateKeyInfo` around an RFC 5915 `ECPrivateKey` on `curve`. ring checks that the inner
/// key's own curve parameter (if present) agrees, so a wrong guess fails cleanly.
fn wrap_sec1_in_pkcs8(sec1: &[u8], curve: &[u8]) -> Vec<u8> {
    let algorithm = der_tlv(0x30, &[OID_EC_PUBLIC_KEY, curve].concat());
    pkcs8(&algorithm, sec1)
}

/// PKCS#8 `PrivateKeyInfo` around an RFC 8017 `RSAPrivateKey`.
fn wrap_pkcs1_in_pkcs8(pkcs1: &[u8]) -> Vec<u8> {
    pkcs8(ALG_RSA, pkcs1)
}

fn pkcs8(algorithm: &[u8], private_key: &[u8]) -> Vec<u8> {
    let version = [0x02, 0x01, 0x00];
    let body = [&version[..], algorithm, &der_tlv(0x04, private_key)].concat();
    der_tlv(0x30, &body)
}

fn der_tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let significant: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(&significant);
    }
    out.extend_from_slice(value);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).expect("in range")
    }

    pub(crate) const NOW: i64 = 1_800_000_000;

    pub(crate) fn anchor() -> (Issued, SigningAnchor) {
        let issued = generate_anchor(
            "cluster.local",
            at(NOW),
            Duration::from_secs(86400),
            Duration::from_secs(60),
        )
        .expect("anchor");
        let key = parse_private_key(issued.key_pem.as_bytes()).expect("anchor key");
        let signing =
            SigningAnchor::new(issued.cert.clone(), key).expect("anchor pairs with its key");
        (issued, signing)
    }

    #[test]
    fn generated_anchor_is_a_self_signed_ca() {
        let (issued, _) = anchor();
        assert!(issued.cert.is_ca);
        assert!(issued.cert.may_sign_certificates);
        assert_eq!(issued.cert.subject, "CN=root.identity.cluster.local");
        assert_eq!(issued.cert.not_before, at(NOW - 60));
        assert_eq!(issued.cert.not_after, at(NOW + 86400));
        verify_signed_by(&issued.cert, &issued.cert).expect("self-signed");
    }

    #[test]
    fn issuer_chains_to_its_anchor_with_every_algorithm() {
        let (_, signing) = anchor();
        for algorithm in [
            KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::EcdsaP384,
            KeyAlgorithm::Ed25519,
        ] {
            let issued = issue_issuer(
                &signing,
                "cluster.local",
                algorithm,
                at(NOW),
                at(NOW - 20),
                at(NOW + 30),
            )
            .expect("issues");
            assert!(issued.cert.is_ca, "{algorithm:?}: a CA");
            assert_eq!(issued.cert.subject, "CN=identity.cluster.local");
            assert_eq!(issued.cert.not_after, at(NOW + 30));
            verify_signed_by(&issued.cert, &signing.cert).expect("chains to the anchor");
            let key = parse_private_key(issued.key_pem.as_bytes()).expect("key parses");
            key_matches(&key, &issued.cert).expect("key matches");
            assert_eq!(key_algorithm_of(&key), Some(algorithm));
        }
    }

    #[test]
    fn each_issuance_makes_a_fresh_key() {
        let (_, signing) = anchor();
        let issue = || {
            issue_issuer(
                &signing,
                "cluster.local",
                KeyAlgorithm::EcdsaP256,
                at(NOW),
                at(NOW),
                at(NOW + 30),
            )
            .expect("issues")
        };
        let (a, b) = (issue(), issue());
        assert_ne!(a.cert.public_key, b.cert.public_key);
        assert_ne!(a.cert.fingerprint, b.cert.fingerprint);
    }

    #[test]
    fn an_expired_anchor_never_signs() {
        let (_, signing) = anchor();
        let later = at(NOW + 86400 + 1);
        let result = issue_issuer(
            &signing,
            "cluster.local",
            KeyAlgorithm::EcdsaP256,
            later,
            later,
            at(NOW + 90000),
        );
        assert!(matches!(result, Err(PkiError::Generate(_))));
    }

    #[test]
    fn a_foreign_anchor_does_not_verify() {
        let (_, signing) = anchor();
        let (_, other) = anchor();
        let issued = issue_issuer(
            &signing,
            "cluster.local",
            KeyAlgorithm::EcdsaP256,
            at(NOW),
            at(NOW),
            at(NOW + 30),
        )
        .expect("issues");
        // Same subject name, different key: only the signature check tells them apart.
        assert!(matches!(
            verify_signed_by(&issued.cert, &other.cert),
            Err(PkiError::NotSignedBy { .. })
        ));
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let (anchor_issued, _) = anchor();
        let (other, _) = anchor();
        let key = parse_private_key(other.key_pem.as_bytes()).expect("parses");
        assert_eq!(
            key_matches(&key, &anchor_issued.cert),
            Err(PkiError::KeyMismatch)
        );
        assert!(SigningAnchor::new(anchor_issued.cert, key).is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(
            parse_certificates(b"hello").err(),
            Some(PkiError::NoPem("CERTIFICATE"))
        );
        let broken = b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            parse_certificates(broken),
            Err(PkiError::BadPem(_))
        ));
        let not_der = to_pem("CERTIFICATE", b"definitely not DER");
        assert!(matches!(
            parse_certificates(not_der.as_bytes()),
            Err(PkiError::BadCertificate(_))
        ));
        assert!(matches!(parse_private_key(b""), Err(PkiError::NoPem(_))));
        let bad_key = to_pem("PRIVATE KEY", b"\x30\x03\x02\x01\x00");
        assert!(matches!(
            parse_private_key(bad_key.as_bytes()),
            Err(PkiError::BadKey(_))
        ));
        let bad_sec1 = to_pem("EC PRIVATE KEY", b"\x30\x03\x02\x01\x01");
        assert!(matches!(
            parse_private_key(bad_sec1.as_bytes()),
            Err(PkiError::BadKey(_))
        ));
    }

    #[test]
    fn reads_sec1_keys_as_cert_manager_writes_them() {
        // An RFC 5915 ECPrivateKey with curve parameters and public key, built from a PKCS#8 key the
        // way `openssl ec` would print it.
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let pkcs8 = key.serialize_der();
        let sec1 = extract_sec1(&pkcs8);
        let pem = to_pem("EC PRIVATE KEY", &sec1);
        let parsed = parse_private_key(pem.as_bytes()).expect("SEC1 parses");
        assert_eq!(parsed.public_key_raw(), key.public_key_raw());
    }

    /// The OCTET STRING payload of a ring-made PKCS#8 EC key is a SEC1 key (with public key).
    fn extract_sec1(pkcs8: &[u8]) -> Vec<u8> {
        // SEQUENCE { INTEGER 0, SEQUENCE {...}, OCTET STRING { sec1 } }: find the OCTET STRING after
        // the algorithm identifier.
        let (_, body) = der_parts(pkcs8);
        let (after_version, _) = skip_tlv(body);
        let (after_alg, _) = skip_tlv(after_version);
        let (_, octets) = der_parts(after_alg);
        octets.to_vec()
    }

    fn der_parts(input: &[u8]) -> (&[u8], &[u8]) {
        let (len, header) = der_len(&input[1..]);
        let value = &input[1 + header..1 + header + len];
        (&input[1 + header + len..], value)
    }

    fn skip_tlv(input: &[u8]) -> (&[u8], &[u8]) {
        der_parts(input)
    }

    fn der_len(input: &[u8]) -> (usize, usize) {
        if input[0] < 0x80 {
            (input[0] as usize, 1)
        } else {
            let n = (input[0] & 0x7f) as usize;
            let len = input[1..=n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | *b as usize);
            (len, 1 + n)
        }
    }

    #[test]
    fn pem_round_trips_through_the_parser() {
        let (issued, _) = anchor();
        let pem = issued.cert.pem();
        let parsed = parse_certificates(pem.as_bytes()).expect("parses");
        assert_eq!(parsed, vec![issued.cert]);
    }

    #[test]
    fn der_lengths_use_long_form_above_127() {
        assert_eq!(der_tlv(0x04, &[0; 3])[..2], [0x04, 3]);
        assert_eq!(der_tlv(0x04, &[0; 200])[..3], [0x04, 0x81, 200]);
        assert_eq!(der_tlv(0x04, &[0; 300])[..4], [0x04, 0x82, 0x01, 0x2c]);
    }
}
