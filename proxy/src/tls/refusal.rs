//! Why an mTLS handshake failed, as one word for the `reason` label of `tls_refused_total` and for
//! logs. Derived from the rustls error so that each cause a user can act on has its own reason.

use rustls::{AlertDescription, CertificateError, Error};

/// Verifiers answer this (as `Error::General`) while no trust bundle is loaded.
pub const NO_BUNDLE: &str = "no trust bundle loaded";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsRefusal {
    /// The peer's chain leads to no anchor of the bundle (e.g. it comes from another anchor).
    UnknownIssuer,
    /// The peer's certificate (or one of its chain) has expired.
    Expired,
    NotYetValid,
    /// The peer's certificate names another identity than the one expected.
    IdentityMismatch,
    /// Any other certificate problem (bad signature, wrong usage, unparsable, no DNS name).
    BadCertificate,
    /// The client sent no certificate to a port that requires one.
    NoClientCertificate,
    /// The peer refused this proxy's certificate (it sent an alert).
    PeerRefused,
    /// This proxy has no certificate yet.
    NotCertified,
    /// This proxy has no trust bundle yet.
    NoTrustBundle,
    /// Plaintext (or TLS that is not mTLS for this proxy) on a port that requires mTLS.
    Plaintext,
    HandshakeFailed,
    HandshakeTimeout,
}

impl TlsRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsRefusal::UnknownIssuer => "UnknownIssuer",
            TlsRefusal::Expired => "Expired",
            TlsRefusal::NotYetValid => "NotYetValid",
            TlsRefusal::IdentityMismatch => "IdentityMismatch",
            TlsRefusal::BadCertificate => "BadCertificate",
            TlsRefusal::NoClientCertificate => "NoClientCertificate",
            TlsRefusal::PeerRefused => "PeerRefused",
            TlsRefusal::NotCertified => "NotCertified",
            TlsRefusal::NoTrustBundle => "NoTrustBundle",
            TlsRefusal::Plaintext => "Plaintext",
            TlsRefusal::HandshakeFailed => "HandshakeFailed",
            TlsRefusal::HandshakeTimeout => "HandshakeTimeout",
        }
    }

    pub fn from_rustls(error: &Error) -> Self {
        match error {
            Error::InvalidCertificate(cert) => match cert {
                CertificateError::UnknownIssuer => TlsRefusal::UnknownIssuer,
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    TlsRefusal::Expired
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    TlsRefusal::NotYetValid
                }
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => TlsRefusal::IdentityMismatch,
                _ => TlsRefusal::BadCertificate,
            },
            Error::NoCertificatesPresented => TlsRefusal::NoClientCertificate,
            Error::AlertReceived(AlertDescription::CertificateRequired) => TlsRefusal::NotCertified,
            Error::AlertReceived(_) => TlsRefusal::PeerRefused,
            Error::General(message) if message == NO_BUNDLE => TlsRefusal::NoTrustBundle,
            _ => TlsRefusal::HandshakeFailed,
        }
    }

    /// tokio-rustls reports handshake failures as I/O errors wrapping the rustls error.
    pub fn from_io(error: &std::io::Error) -> Self {
        error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<Error>())
            .map_or(TlsRefusal::HandshakeFailed, Self::from_rustls)
    }
}

/// The rustls error inside an I/O error, for logs; else the I/O error itself.
pub fn describe_io(error: &std::io::Error) -> String {
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<Error>())
    {
        Some(tls) => tls.to_string(),
        None => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_each_cause() {
        let cert = |e| Error::InvalidCertificate(e);
        assert_eq!(
            TlsRefusal::from_rustls(&cert(CertificateError::UnknownIssuer)),
            TlsRefusal::UnknownIssuer
        );
        assert_eq!(
            TlsRefusal::from_rustls(&cert(CertificateError::Expired)),
            TlsRefusal::Expired
        );
        assert_eq!(
            TlsRefusal::from_rustls(&cert(CertificateError::NotValidForName)),
            TlsRefusal::IdentityMismatch
        );
        assert_eq!(
            TlsRefusal::from_rustls(&Error::NoCertificatesPresented),
            TlsRefusal::NoClientCertificate
        );
        assert_eq!(
            TlsRefusal::from_rustls(&Error::General(NO_BUNDLE.into())),
            TlsRefusal::NoTrustBundle
        );
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            cert(CertificateError::UnknownIssuer),
        );
        assert_eq!(TlsRefusal::from_io(&io), TlsRefusal::UnknownIssuer);
        assert_eq!(
            TlsRefusal::from_io(&std::io::ErrorKind::UnexpectedEof.into()),
            TlsRefusal::HandshakeFailed
        );
    }
}
