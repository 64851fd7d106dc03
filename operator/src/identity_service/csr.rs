//! The proxy's certificate signing request: a PKCS#10 PEM whose self-signature verifies and whose only
//! subject alternative name is the identity asked for. Only its public key is used: the leaf's other
//! contents are the service's choice, whatever else the CSR asks for.

use super::refusal::Refusal;
use rcgen::{CertificateSigningRequestParams, PublicKey, SanType};

/// Reads `pem` and checks that it asks for exactly the DNS name `identity`; returns the key to certify.
pub fn check(pem: &str, identity: &str) -> Result<PublicKey, Refusal> {
    // Parses with x509-parser and verifies the request's signature with its own key (proof of
    // possession); a CSR with extensions rcgen does not know is refused too.
    let csr = CertificateSigningRequestParams::from_pem(pem)
        .map_err(|e| Refusal::bad_csr(format!("unusable CSR: {e}")))?;
    let names = &csr.params.subject_alt_names;
    let asks_for_identity = matches!(
        names.as_slice(),
        [SanType::DnsName(name)] if name.as_str() == identity
    );
    if !asks_for_identity {
        return Err(Refusal::bad_csr(format!(
            "the CSR must name exactly the DNS name {identity:?}; it names {}",
            describe(names)
        )));
    }
    Ok(csr.public_key)
}

fn describe(names: &[SanType]) -> String {
    if names.is_empty() {
        return "nothing".into();
    }
    names
        .iter()
        .map(|name| match name {
            SanType::DnsName(dns) => format!("DNS:{}", dns.as_str()),
            SanType::IpAddress(ip) => format!("IP:{ip}"),
            SanType::URI(uri) => format!("URI:{}", uri.as_str()),
            SanType::Rfc822Name(mail) => format!("email:{}", mail.as_str()),
            other => format!("{other:?}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};
    use weft_wire::identity::refusal;

    const IDENTITY: &str = "web.shop.serviceaccount.identity.cluster.local";

    /// A CSR for `names` with a fresh P-256 key, as the proxy makes it.
    pub(crate) fn csr_for(names: &[&str]) -> (KeyPair, String) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        let csr = params.serialize_request(&key).expect("csr");
        (key, csr.pem().expect("pem"))
    }

    #[test]
    fn accepts_a_csr_for_the_identity_and_returns_its_key() {
        let (key, pem) = csr_for(&[IDENTITY]);
        let public = check(&pem, IDENTITY).expect("accepted");
        assert_eq!(
            rcgen::PublicKeyData::der_bytes(&public),
            key.public_key_raw()
        );
    }

    #[test]
    fn refuses_other_or_extra_names() {
        for names in [
            vec!["db.shop.serviceaccount.identity.cluster.local"],
            vec![IDENTITY, "evil.example.org"],
            vec![],
        ] {
            let (_, pem) = csr_for(&names);
            let refused = check(&pem, IDENTITY).expect_err("refused");
            assert_eq!(refused.reason, refusal::BAD_CSR, "{names:?}");
        }
    }

    #[test]
    fn refuses_garbage_and_a_broken_signature() {
        assert_eq!(
            check("hello", IDENTITY).expect_err("garbage").reason,
            refusal::BAD_CSR
        );
        let (_, pem) = csr_for(&[IDENTITY]);
        // Flip one bit in the DER body: the self-signature no longer verifies (or it stops parsing).
        let block = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .expect("pem")
            .1;
        let mut der = block.contents.clone();
        let middle = der.len() / 2;
        der[middle] ^= 0x01;
        let tampered = crate::controllers::identity::pki::to_pem("CERTIFICATE REQUEST", &der);
        assert_eq!(
            check(&tampered, IDENTITY).expect_err("tampered").reason,
            refusal::BAD_CSR
        );
    }
}
