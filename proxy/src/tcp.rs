//! Opaque forwarding: bytes both ways, for connections that are not HTTP.

use tracing::debug;

use crate::endpoint::Endpoint;
use crate::load::now_ms;
use tokio::io::{AsyncRead, AsyncWrite};

/// Copies bytes both ways between a client connection (plain or mTLS) and the endpoint.
pub async fn forward<C>(mut client: C, endpoint: &Endpoint)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    match endpoint.connect_opaque().await {
        Ok(mut server) => {
            if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut server).await {
                debug!(endpoint = %endpoint.addr, %error, "opaque connection ended with an error");
            }
        }
        Err(error) => {
            endpoint.record_connect_failure(now_ms(tokio::time::Instant::now()), &error);
        }
    }
}
