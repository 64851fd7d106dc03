//! The file configuration source: loads the JSON file, then polls it and publishes each new valid
//! version. An invalid version is logged with its cause and ignored; the last good one stays live.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tracing::{error, info};

use crate::config::{ConfigError, ProxyConfig};

pub fn load(path: &Path) -> Result<ProxyConfig, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    ProxyConfig::from_json(&bytes)
}

/// What tells us the file changed without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    // `metadata` follows symlinks, so a ConfigMap-style symlink swap is seen too.
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    })
}

/// Polls `path`'s metadata every `interval` and calls `changed` each time it differs from the
/// last poll (content, size, or inode: the kubelet's atomic symlink swap of a mounted ConfigMap
/// changes it too). Polling rather than inotify: a symlink swap in a mounted volume is not always
/// seen by a watch on the file, and a few `stat`s a second cost nothing.
pub(crate) async fn on_change(path: &Path, interval: Duration, mut changed: impl FnMut()) {
    let mut last = stamp(path);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let current = stamp(path);
        if current != last {
            last = current;
            changed();
        }
    }
}

/// Polls `path` every `interval` and publishes changed valid configurations on `tx`.
pub async fn watch_file(path: PathBuf, interval: Duration, tx: watch::Sender<Arc<ProxyConfig>>) {
    on_change(&path, interval, || {
        match load(&path) {
            Ok(config) => {
                let changed = tx.send_if_modified(|live| {
                    if **live == config {
                        return false;
                    }
                    *live = Arc::new(config);
                    true
                });
                if changed {
                    info!(path = %path.display(), "configuration file changed; applying");
                }
            }
            Err(error) => {
                error!(path = %path.display(), %error, "ignoring invalid configuration file; keeping the last good configuration");
            }
        }
    })
    .await
}
