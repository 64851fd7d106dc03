//! Opaque forwarding: bytes both ways, for connections that are not HTTP.

use tracing::debug;

use crate::endpoint::Endpoint;
use crate::io::MeteredIo;
use crate::load::now_ms;

pub async fn forward(mut client: MeteredIo, endpoint: &Endpoint) {
    match endpoint.connect_opaque().await {
        Ok(mut server) => {
            if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut server).await {
                debug!(endpoint = %endpoint.addr, %error, "opaque connection ended with an error");
            }
        }
        Err(error) => {
            endpoint.record_failure(now_ms(tokio::time::Instant::now()), &error);
        }
    }
}
