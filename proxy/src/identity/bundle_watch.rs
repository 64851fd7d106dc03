//! Watches the trust bundle file (the Identity's trust-bundle ConfigMap, `ca-bundle.crt`, mounted
//! in the pod) and makes each new valid version current. A bad version is logged with its cause
//! and ignored: the last good bundle stays in use.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info};

use crate::config_watch::on_change;
use crate::identity::bundle::TrustBundle;
use crate::identity::credentials::Credentials;
use crate::metrics::MtlsMetrics;

/// Polls `path` every `interval` and loads each changed version.
pub async fn watch(
    path: PathBuf,
    interval: Duration,
    credentials: Arc<Credentials>,
    metrics: MtlsMetrics,
) {
    on_change(&path, interval, || load(&path, &credentials, &metrics)).await
}

/// Reads the bundle file and makes it current when it is valid and differs from the live one.
pub fn load(path: &Path, credentials: &Credentials, metrics: &MtlsMetrics) {
    match TrustBundle::read(path, credentials.provider()) {
        Ok(bundle) => {
            let unchanged = credentials
                .bundle()
                .is_some_and(|live| live.fingerprints == bundle.fingerprints);
            if unchanged {
                return;
            }
            info!(path = %path.display(), anchors = ?bundle.fingerprints, "trust bundle loaded");
            metrics.trust_anchors.set(bundle.fingerprints.len() as i64);
            credentials.set_bundle(bundle);
        }
        Err(error) if credentials.bundle().is_some() => {
            error!(path = %path.display(), %error, "ignoring the trust bundle file; keeping the last good bundle");
        }
        Err(error) => {
            error!(path = %path.display(), %error, "no usable trust bundle yet: cannot verify the identity service or peers");
        }
    }
}
