//! Tells HTTP/1.1, HTTP/2 (prior knowledge) and anything else apart from a connection's first bytes.

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// How much of a request line we read before deciding; longer lines are left to hyper to reject.
const MAX_PEEK: usize = 8 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
    /// Not HTTP (or the client never spoke within the timeout): forwarded as a byte stream.
    Opaque,
}

/// Classifies what has been read so far; `None` means more bytes are needed.
pub fn classify(buf: &[u8]) -> Option<Protocol> {
    if buf.is_empty() {
        return None;
    }
    if buf.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(buf) {
        return None;
    }
    if buf.starts_with(H2_PREFACE) {
        return Some(Protocol::Http2);
    }
    // An HTTP/1 request line: METHOD SP target SP HTTP/1.x CRLF
    let method_len = buf.iter().take_while(|b| b.is_ascii_uppercase()).count();
    if method_len == 0 || method_len > 20 {
        return Some(Protocol::Opaque);
    }
    match buf.get(method_len) {
        None => return None,
        Some(b' ') => {}
        Some(_) => return Some(Protocol::Opaque),
    }
    match buf.iter().position(|&b| b == b'\n') {
        Some(end) => {
            let line = buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end]);
            if line.ends_with(b" HTTP/1.1") || line.ends_with(b" HTTP/1.0") {
                Some(Protocol::Http1)
            } else {
                Some(Protocol::Opaque)
            }
        }
        None if buf.len() >= MAX_PEEK => Some(Protocol::Http1),
        None if buf.iter().any(|b| b.is_ascii_control() && *b != b'\r') => Some(Protocol::Opaque),
        None => None,
    }
}

/// Reads until the protocol is known, the peer closes, or `timeout` passes (then: opaque).
/// Returns the protocol and the bytes consumed, which the caller must replay. `Ok(None)` when the
/// peer closed without sending anything.
pub async fn detect<R: AsyncRead + Unpin>(
    stream: &mut R,
    timeout: Duration,
) -> io::Result<Option<(Protocol, BytesMut)>> {
    detect_after(stream, BytesMut::with_capacity(1024), timeout).await
}

/// [`detect`], continuing from bytes already read (`buf`, possibly empty).
pub async fn detect_after<R: AsyncRead + Unpin>(
    stream: &mut R,
    mut buf: BytesMut,
    timeout: Duration,
) -> io::Result<Option<(Protocol, BytesMut)>> {
    let read = async {
        if let Some(protocol) = classify(&buf) {
            return Ok(Some(protocol));
        }
        loop {
            if stream.read_buf(&mut buf).await? == 0 {
                return Ok::<_, io::Error>(
                    classify(&buf).or_else(|| (!buf.is_empty()).then_some(Protocol::Opaque)),
                );
            }
            if let Some(protocol) = classify(&buf) {
                return Ok(Some(protocol));
            }
            if buf.len() >= MAX_PEEK {
                return Ok(Some(Protocol::Opaque));
            }
        }
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(Some(protocol))) => Ok(Some((protocol, buf))),
        Ok(Ok(None)) => Ok(None),
        Ok(Err(e)) => Err(e),
        Err(_elapsed) => Ok(Some((Protocol::Opaque, buf))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_first_bytes() {
        assert_eq!(classify(H2_PREFACE), Some(Protocol::Http2));
        assert_eq!(classify(&H2_PREFACE[..10]), None);
        assert_eq!(
            classify(b"GET / HTTP/1.1\r\nHost: a\r\n"),
            Some(Protocol::Http1)
        );
        assert_eq!(classify(b"POST /x HTTP/1.0\n"), Some(Protocol::Http1));
        assert_eq!(classify(b"GET /very/long"), None);
        assert_eq!(classify(b"GET / SMTP\r\n"), Some(Protocol::Opaque));
        assert_eq!(classify(b"\x16\x03\x01\x02\x00"), Some(Protocol::Opaque));
        assert_eq!(
            classify(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"),
            Some(Protocol::Opaque)
        );
        assert_eq!(classify(b"hello"), Some(Protocol::Opaque));
        assert_eq!(classify(b"GET\x00"), Some(Protocol::Opaque));
    }
}
