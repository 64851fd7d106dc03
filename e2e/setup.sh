#!/usr/bin/env bash
# Everything the tests need on a fresh Debian bookworm machine (run as root, or with sudo available):
# Debian packages, then the kube-apiserver built from Debian's source package (cached between runs).
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { echo "[setup] $*" >&2; }
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

# etcd (envtest), nghttp2-client (h2load: proxy tests), iptables (SO_ORIGINAL_DST test), iproute2 (ss), curl, openssl
need=()
command -v etcd >/dev/null || need+=(etcd-server)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v ss >/dev/null || need+=(iproute2)
command -v iptables >/dev/null || need+=(iptables)
command -v curl >/dev/null || need+=(curl)
command -v openssl >/dev/null || need+=(openssl)
command -v kubectl >/dev/null || need+=(kubernetes-client)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
    { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
fi

t0=$SECONDS
$SUDO bash e2e/envtest.sh build
log "kube-apiserver ready ($((SECONDS - t0))s)"
