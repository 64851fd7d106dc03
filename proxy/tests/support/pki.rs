//! Test certificates: anchors, issuers and leaves made with rcgen, as weft's operator makes them
//! (ECDSA P-256, leaves with one DNS SAN and both server and client authentication).
#![allow(dead_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, PublicKeyData,
};
use time::OffsetDateTime;

/// An anchor or an issuer (intermediate) that signs.
pub struct TestCa {
    pub name: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = at(SystemTime::now() - Duration::from_secs(3600));
    params.not_after = at(SystemTime::now() + Duration::from_secs(30 * 86400));
    params
}

fn p256() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key")
}

pub fn at(time: SystemTime) -> OffsetDateTime {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    OffsetDateTime::from_unix_timestamp(seconds as i64).expect("in range")
}

impl TestCa {
    /// A self-signed trust anchor.
    pub fn anchor(name: &str) -> Self {
        let issuer = CertifiedIssuer::self_signed(ca_params(name), p256()).expect("anchor");
        Self {
            name: name.to_string(),
            issuer,
        }
    }

    /// An issuer signed by this anchor.
    pub fn issuer(&self, name: &str) -> Self {
        let issuer =
            CertifiedIssuer::signed_by(ca_params(name), p256(), &self.issuer).expect("issuer");
        Self {
            name: name.to_string(),
            issuer,
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    pub fn der(&self) -> Vec<u8> {
        self.issuer.der().to_vec()
    }

    /// A leaf for `dns_name` and `public_key`, valid between the two times.
    pub fn sign_leaf(
        &self,
        public_key: &impl PublicKeyData,
        dns_name: &str,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Certificate {
        let mut params = CertificateParams::new(vec![dns_name.to_string()]).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, dns_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = at(not_before);
        params.not_after = at(not_after);
        params
            .signed_by(public_key, &self.issuer)
            .expect("signed leaf")
    }

    /// A fresh key and a leaf for it, valid for `lifetime` from a minute ago.
    pub fn leaf(&self, dns_name: &str, lifetime: Duration) -> TestLeaf {
        let now = SystemTime::now();
        self.leaf_between(dns_name, now - Duration::from_secs(60), now + lifetime)
    }

    pub fn leaf_between(
        &self,
        dns_name: &str,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> TestLeaf {
        let key = p256();
        let cert = self.sign_leaf(&key, dns_name, not_before, not_after);
        TestLeaf {
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
            chain_der: vec![self.der()],
        }
    }
}

/// A leaf with its key and the chain up to (not including) the anchor.
#[derive(Clone)]
pub struct TestLeaf {
    pub cert_der: Vec<u8>,
    pub key_der: Vec<u8>,
    pub chain_der: Vec<Vec<u8>>,
}

impl TestLeaf {
    /// For rustls: the leaf then the chain, and the key.
    pub fn rustls(
        &self,
    ) -> (
        Vec<rustls::pki_types::CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ) {
        let mut chain = vec![rustls::pki_types::CertificateDer::from(
            self.cert_der.clone(),
        )];
        chain.extend(
            self.chain_der
                .iter()
                .map(|der| rustls::pki_types::CertificateDer::from(der.clone())),
        );
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(
            rustls::pki_types::PrivatePkcs8KeyDer::from(self.key_der.clone()),
        );
        (chain, key)
    }
}
