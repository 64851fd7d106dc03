//! mTLS between proxies: TLS 1.3 (rustls, ring) with certificates from the identity service.
//!
//! - [`connect`]: outbound, to endpoints whose configuration names an identity;
//! - [`accept`]: inbound, telling mTLS from plaintext and terminating it;
//! - [`resolve`] / [`verify`]: the current certificate and trust bundle, read at every handshake,
//!   so rotations never touch established connections;
//! - [`peer`]: expected and proven peer identities; [`refusal`]: why a handshake failed.
//!
//! Which inbound ports also take plaintext is a [`crate::ports::PortSet`].

pub mod accept;
pub mod connect;
pub mod peer;
pub mod refusal;
pub mod resolve;
pub mod verify;

/// What an mTLS connection carries, told by ALPN so the receiving proxy skips detection. HTTP/2 is
/// the standard `h2`; HTTP/1.1 `http/1.1`; anything else weft's own `weft.dev/opaque`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alpn {
    H2 = 0,
    Http1 = 1,
    Opaque = 2,
}

impl Alpn {
    pub const fn protocol(self) -> &'static [u8] {
        match self {
            Alpn::H2 => b"h2",
            Alpn::Http1 => b"http/1.1",
            Alpn::Opaque => b"weft.dev/opaque",
        }
    }

    pub fn from_protocol(protocol: &[u8]) -> Option<Self> {
        [Alpn::H2, Alpn::Http1, Alpn::Opaque]
            .into_iter()
            .find(|alpn| alpn.protocol() == protocol)
    }
}
