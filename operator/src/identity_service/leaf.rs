//! Leaf certificates: their validity window (pure) and their making. Proxies' leaves and the service's
//! own serving certificate are both made here.

use super::{issuers::CurrentIssuer, refusal::Refusal};
use crate::controllers::identity::pki::{CertInfo, PkiError, cert_info};
use k8s_openapi::jiff::Timestamp;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose,
    PublicKeyData, SanType, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use std::time::Duration;

/// When a leaf is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub not_before: Timestamp,
    pub not_after: Timestamp,
}

/// The window of a leaf made at `now`: from `now - clock_skew` (peers whose clocks run a little behind
/// accept it at once) to `now + lifetime`, never past the issuer's own `notAfter` (a leaf outliving its
/// issuer would fail verification early anyway). Refused when the issuer is not valid at `now`: an
/// expired or not-yet-valid issuer never signs (linkerd2#15109).
pub fn window(
    now: Timestamp,
    lifetime: Duration,
    clock_skew: Duration,
    issuer: &CertInfo,
) -> Result<Window, Refusal> {
    if issuer.is_expired_at(now) {
        return Err(Refusal::no_issuer(format!(
            "the issuer {} expired at {}; waiting for the rotated one",
            issuer.subject, issuer.not_after
        )));
    }
    if now < issuer.not_before {
        return Err(Refusal::no_issuer(format!(
            "the issuer {} is not valid before {}",
            issuer.subject, issuer.not_before
        )));
    }
    let not_before = now.checked_sub(clock_skew).unwrap_or(now);
    let wanted = now.checked_add(lifetime).unwrap_or(issuer.not_after);
    let not_after = wanted.min(issuer.not_after);
    if not_after.as_second() <= now.as_second() {
        return Err(Refusal::no_issuer(format!(
            "the issuer {} expires now ({})",
            issuer.subject, issuer.not_after
        )));
    }
    Ok(Window {
        not_before,
        not_after,
    })
}

/// A signed leaf.
#[derive(Debug, Clone)]
pub struct SignedLeaf {
    pub cert: CertInfo,
    pub pem: String,
}

/// Signs `public_key` for the DNS name `dns_name` over `window`: not a CA, digital signature only,
/// usable as TLS server and client (EKU serverAuth + clientAuth), a random serial.
pub fn sign(
    issuer: &CurrentIssuer,
    dns_name: &str,
    public_key: &impl PublicKeyData,
    window: Window,
) -> Result<SignedLeaf, PkiError> {
    let mut params = CertificateParams::default();
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, dns_name);
    params.distinguished_name = subject;
    params.subject_alt_names =
        vec![SanType::DnsName(dns_name.try_into().map_err(
            |e: rcgen::Error| PkiError::Generate(e.to_string()),
        )?)];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial()?);
    params.not_before = to_offset(window.not_before)?;
    params.not_after = to_offset(window.not_after)?;
    let cert = params
        .signed_by(public_key, issuer.signer())
        .map_err(|e| PkiError::Generate(e.to_string()))?;
    Ok(SignedLeaf {
        cert: cert_info(cert.der())?,
        pem: cert.pem(),
    })
}

/// 16 random bytes, positive: unique per leaf even when a proxy certifies the same key again (rcgen's
/// default serial is a hash of the public key).
fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| PkiError::Generate("no randomness for a serial number".into()))?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from(bytes.to_vec()))
}

fn to_offset(t: Timestamp) -> Result<time::OffsetDateTime, PkiError> {
    time::OffsetDateTime::from_unix_timestamp(t.as_second())
        .map_err(|e| PkiError::Generate(format!("time out of range: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity_service::issuers::tests::{NOW, at, issuer};
    use weft_wire::identity::refusal;

    const DAY: Duration = Duration::from_secs(86400);
    const SKEW: Duration = Duration::from_secs(20);

    #[test]
    fn window_starts_skew_early_and_lasts_the_lifetime() {
        let issuer = issuer(NOW - 60, NOW + 2 * 86400);
        let w = window(at(NOW), DAY, SKEW, &issuer.cert).expect("window");
        assert_eq!(w.not_before, at(NOW - 20));
        assert_eq!(w.not_after, at(NOW + 86400));
    }

    #[test]
    fn window_never_outlives_the_issuer() {
        let issuer = issuer(NOW - 60, NOW + 3600);
        let w = window(at(NOW), DAY, SKEW, &issuer.cert).expect("window");
        assert_eq!(w.not_after, at(NOW + 3600));
    }

    #[test]
    fn an_expired_or_future_issuer_never_signs() {
        let issuer = issuer(NOW - 60, NOW + 30);
        for now in [NOW + 31, NOW + 86400, NOW - 61] {
            let refused = window(at(now), DAY, SKEW, &issuer.cert).expect_err("refused");
            assert_eq!(refused.reason, refusal::NO_ISSUER, "at {now}");
        }
        let refused = window(at(NOW + 30), DAY, SKEW, &issuer.cert).expect_err("expires now");
        assert_eq!(refused.reason, refusal::NO_ISSUER);
    }

    #[test]
    fn signs_a_leaf_that_chains_to_the_issuer() {
        let issuer = issuer(NOW - 60, NOW + 86400);
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let name = "web.shop.serviceaccount.identity.cluster.local";
        let w = window(at(NOW), Duration::from_secs(3600), SKEW, &issuer.cert).expect("window");
        let leaf = sign(&issuer, name, &key, w).expect("signed");
        crate::controllers::identity::pki::verify_signed_by(&leaf.cert, &issuer.cert)
            .expect("chains to the issuer");
        assert!(!leaf.cert.is_ca);
        assert_eq!(leaf.cert.not_before, at(NOW - 20));
        assert_eq!(leaf.cert.not_after, at(NOW + 3600));
        assert_eq!(leaf.cert.public_key, key.public_key_raw());

        let (_, parsed) = x509_parser::parse_x509_certificate(&leaf.cert.der).expect("parses");
        let sans: Vec<String> = parsed
            .subject_alternative_name()
            .expect("san ext")
            .expect("has sans")
            .value
            .general_names
            .iter()
            .map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(dns) => format!("DNS:{dns}"),
                other => format!("other:{other:?}"),
            })
            .collect();
        assert_eq!(sans, vec![format!("DNS:{name}")]);
        let eku = parsed
            .extended_key_usage()
            .expect("eku ext")
            .expect("has eku")
            .value;
        assert!(eku.server_auth && eku.client_auth);
        assert!(!parsed.is_ca());

        // Same key again: a new serial.
        let again = sign(&issuer, name, &key, w).expect("signed");
        assert_ne!(again.cert.fingerprint, leaf.cert.fingerprint);
    }
}
