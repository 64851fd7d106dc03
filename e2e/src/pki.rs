//! Independent checks of what the operator wrote: certificates parsed and verified with
//! x509-parser in the test process, not with the operator's own code.

use x509_parser::{certificate::X509Certificate, pem::Pem, prelude::FromDer};

/// What a test needs to know of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    pub serial: String,
    pub subject: String,
    pub is_ca: bool,
    pub not_before: i64,
    pub not_after: i64,
    pub dns_names: Vec<String>,
}

/// Every certificate in a PEM bundle, as DER.
pub fn pem_certs(pem: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    for block in Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| format!("bad PEM: {e}"))?;
        if block.label == "CERTIFICATE" {
            out.push(block.contents);
        }
    }
    if out.is_empty() {
        return Err("no CERTIFICATE block".into());
    }
    Ok(out)
}

pub fn summary(der: &[u8]) -> Result<CertSummary, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("bad certificate: {e}"))?;
    let dns_names = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(CertSummary {
        serial: cert.raw_serial_as_string(),
        subject: cert.subject().to_string(),
        is_ca: cert.is_ca(),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        dns_names,
    })
}

/// Ok when `child` carries a valid signature by `issuer`'s key and names it as issuer.
pub fn verify_signed_by(child: &[u8], issuer: &[u8]) -> Result<(), String> {
    let (_, child) = X509Certificate::from_der(child).map_err(|e| format!("bad child: {e}"))?;
    let (_, issuer) = X509Certificate::from_der(issuer).map_err(|e| format!("bad issuer: {e}"))?;
    if child.issuer() != issuer.subject() {
        return Err(format!(
            "issuer name {} is not the anchor's subject {}",
            child.issuer(),
            issuer.subject()
        ));
    }
    child
        .verify_signature(Some(issuer.public_key()))
        .map_err(|e| format!("signature does not verify: {e}"))
}

/// Ok when the private key in `key_pem` belongs to the certificate `cert`.
pub fn key_matches(key_pem: &str, cert: &[u8]) -> Result<(), String> {
    let key = rcgen::KeyPair::from_pem(key_pem).map_err(|e| format!("bad key: {e}"))?;
    let (_, cert) = X509Certificate::from_der(cert).map_err(|e| format!("bad certificate: {e}"))?;
    // compare the raw public key bits (the SubjectPublicKeyInfo minus its algorithm header)
    if key.public_key_raw() == cert.public_key().subject_public_key.data.as_ref() {
        Ok(())
    } else {
        Err("the key does not match the certificate".into())
    }
}

/// Checks an issuer Secret's data (`tls.crt`, `tls.key`, `ca.crt`) against a set of trusted anchors:
/// the first certificate of tls.crt is a CA, is signed by one of `anchors`, and matches tls.key.
pub fn check_issuer(
    tls_crt: &str,
    tls_key: &str,
    anchors_pem: &str,
) -> Result<CertSummary, String> {
    let chain = pem_certs(tls_crt)?;
    let issuer = &chain[0];
    let anchors = pem_certs(anchors_pem)?;
    if !anchors.iter().any(|a| verify_signed_by(issuer, a).is_ok()) {
        let reasons: Vec<String> = anchors
            .iter()
            .map(|a| verify_signed_by(issuer, a).err().unwrap_or_default())
            .collect();
        return Err(format!("issuer chains to no anchor: {reasons:?}"));
    }
    key_matches(tls_key, issuer)?;
    let summary = summary(issuer)?;
    if !summary.is_ca {
        return Err("issuer is not a CA".into());
    }
    Ok(summary)
}

/// A self-signed certificate and its key, PEM, for anchors the tests hand to the operator.
pub struct TestCert {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A self-signed certificate: a CA or not, valid between the two dates (year, month, day).
pub fn self_signed(
    common_name: &str,
    ca: bool,
    not_before: (i32, u8, u8),
    not_after: (i32, u8, u8),
) -> TestCert {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    params.is_ca = if ca {
        rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained)
    } else {
        rcgen::IsCa::NoCa
    };
    if ca {
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
    }
    params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("self-signed");
    TestCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}
