#!/usr/bin/env bash
# envtest.sh - a real kube-apiserver (Kubernetes v1.20.2) + etcd (3.4.23) on loopback,
# the way controller-runtime's "envtest" does it, on Debian bookworm (amd64) with
# access to the Debian archive only (no Docker, no Go module proxy, no GitHub).
# weft's e2e tests (e2e/src/cluster.rs) start one instance per test with their own KAPI_RUN;
# `make run` starts one for the local demo. TokenRequest and TokenReview work (service-account
# issuer + signing key), which the identity service relies on.
#
#   envtest.sh [up]   install + build (first time only), start etcd + kube-apiserver,
#                     print "KUBECONFIG=<path>" as the LAST line on stdout
#   envtest.sh build  only install packages and build bin/kube-apiserver (+ kube-controller-manager
#                     if KAPI_CONTROLLERS is set); then deletes $KAPI_HOME/src (1.8 GB) unless KAPI_KEEP_SRC=1
#   envtest.sh down   stop the processes started by "up" for this KAPI_RUN (by PID files)
#
# Environment (all optional):
#   KAPI_HOME       where sources, Go cache and bin/ live: a cache kept between runs
#                   (default /var/cache/weft/kapi as root, else ~/.cache/weft/kapi)
#   KAPI_RUN        state of one instance: pki, etcd data, logs,  (default $KAPI_HOME/run)
#                   kubeconfig, PID files. Use a different KAPI_RUN per parallel instance.
#   KAPI_AUTHZ      --authorization-mode                         (default RBAC; e.g. AlwaysAllow)
#   KAPI_PORT       apiserver secure port on 127.0.0.1           (default: a free port)
#   KAPI_ETCD_PORT  etcd client port on 127.0.0.1                (default: a free port)
#   KAPI_EXTRA_ARGS extra kube-apiserver flags (word-split)
#   KAPI_CONTROLLERS optional, beyond envtest: also build (+~1.5 min) and run kube-controller-manager
#                   with these controllers, e.g. "namespace,garbagecollector,serviceaccount,serviceaccount-token"
#                   (namespace deletion, ownerReference GC, default ServiceAccounts). Default: none,
#                   like envtest (namespaces then stay Terminating, no GC).
#
# The kubeconfig has two contexts: "admin" (client cert, CN=admin, O=system:masters; default)
# and "admin-token" (static bearer token, same groups). Server URL is https://127.0.0.1:<port>;
# the serving cert is valid for 127.0.0.1, ::1, localhost, kubernetes, kubernetes.default{,.svc}.
set -euo pipefail

if [ "$(id -u)" = 0 ]; then KAPI_HOME=${KAPI_HOME:-/var/cache/weft/kapi}; else KAPI_HOME=${KAPI_HOME:-$HOME/.cache/weft/kapi}; fi
KAPI_RUN=${KAPI_RUN:-$KAPI_HOME/run}
KAPI_AUTHZ=${KAPI_AUTHZ:-RBAC}
BIN=$KAPI_HOME/bin
GO=/usr/lib/go-1.19/bin
K8S_SRC_PKG=kubernetes          # Debian source package (bookworm: 1.20.5+really1.20.2)
log() { echo "[envtest] $*" >&2; }

need_root() { [ "$(id -u)" = 0 ] || { log "must run as root (apt-get)"; exit 1; }; }

install_packages() {
  need_root
  export DEBIAN_FRONTEND=noninteractive
  # deb-src for the archive already configured (same host, same suites); only if the
  # "kubernetes" source package is not already visible to apt
  if ! apt-cache showsrc "$K8S_SRC_PKG" 2>/dev/null | grep -q "^Package: $K8S_SRC_PKG"; then
    log "enabling deb-src for deb.debian.org bookworm"
    cat > /etc/apt/sources.list.d/kapi-debian-src.sources <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    apt-get update -qq
  fi
  local pkgs="golang-1.19-go etcd-server golang-github-modern-go-reflect2-dev make rsync openssl ca-certificates curl iproute2"
  # kubectl: keep an existing one (e.g. google-cloud-cli's kubectl conflicts with kubernetes-client)
  command -v kubectl >/dev/null 2>&1 || pkgs="$pkgs kubernetes-client"
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $pkgs >/dev/null ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends $pkgs >/dev/null; }
}

prepare_src() {  # download + unpack the Debian "kubernetes" source once; patch reflect2
  SRC=$(ls -d "$KAPI_HOME"/src/kubernetes-*/ 2>/dev/null | head -1 || true)
  [ -n "$SRC" ] && [ -f "$SRC/.kapi-prepared" ] && return 0
  install_packages
  mkdir -p "$KAPI_HOME/dl"
  (cd "$KAPI_HOME/dl" && apt-get source --download-only -qq "$K8S_SRC_PKG" 2>/dev/null)
  local orig; orig=$(ls "$KAPI_HOME"/dl/kubernetes_*.orig.tar.gz | head -1)
  log "unpacking $orig"
  rm -rf "$KAPI_HOME/src"; mkdir -p "$KAPI_HOME/src"
  tar -xzf "$orig" -C "$KAPI_HOME/src"
  SRC=$(ls -d "$KAPI_HOME"/src/kubernetes-*/ | head -1)
  [ -d "$SRC/vendor" ] || { log "no vendor/ in $orig - cannot build offline"; exit 1; }
  # k8s 1.20 vendors modern-go/reflect2 v1.0.1, which SIGSEGVs when built with Go >= 1.18
  # (json-iterator map encoding: pretty JSON for curl/browsers, YAML output). Swap in Debian's
  # reflect2 1.0.2 (same API, has the Go 1.18+ fix).
  rm -rf "$SRC/vendor/github.com/modern-go/reflect2"
  cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$SRC/vendor/github.com/modern-go/reflect2"
  rm -f "$SRC/vendor/github.com/modern-go/reflect2/go.mod"
  touch "$SRC/.kapi-prepared"
}

build_cmd() {  # build_cmd kube-apiserver|kube-controller-manager
  local cmd=$1
  [ -x "$BIN/$cmd" ] && { log "have $BIN/$cmd"; return 0; }
  local t0=$SECONDS
  prepare_src
  mkdir -p "$BIN"
  local ver; ver=v$(basename "$SRC" | sed 's/^kubernetes-//')
  log "building cmd/$cmd $ver with $($GO/go version | cut -d' ' -f3) (GOPATH mode, vendor/, offline) ..."
  # k8s 1.20 builds in GOPATH mode (hack/lib/init.sh sets GO111MODULE=off) and needs its code
  # generators (openapi etc.) to run first; "make WHAT=..." does both, as Debian's package does.
  ( cd "$SRC"
    export PATH=$GO:$PATH HOME=$KAPI_HOME/home CGO_ENABLED=0 GOPROXY=off GOTOOLCHAIN=local
    unset GOFLAGS GOPATH GO111MODULE GOCACHE
    export KUBE_GIT_VERSION=$ver KUBE_GIT_TREE_STATE=clean
    export KUBE_GIT_MAJOR=${ver#v}; KUBE_GIT_MAJOR=${KUBE_GIT_MAJOR%%.*}
    KUBE_GIT_MINOR=${ver#v*.}; export KUBE_GIT_MINOR=${KUBE_GIT_MINOR%%.*}
    mkdir -p "$HOME"
    make WHAT="cmd/$cmd" >&2 )
  cp "$SRC/_output/bin/$cmd" "$BIN/$cmd"
  log "built $BIN/$cmd ($(du -h "$BIN/$cmd" | cut -f1)) in $((SECONDS - t0))s"
}

build_all() {
  build_cmd kube-apiserver
  [ -z "${KAPI_CONTROLLERS:-}" ] || build_cmd kube-controller-manager
  # The binaries are cached in bin/ and the source tarball in dl/; the unpacked tree and Go's build
  # cache (about 2 GB) only cost disk that the Rust build needs next (KAPI_KEEP_SRC=1 keeps them).
  if [ -z "${KAPI_KEEP_SRC:-}" ] && [ -d "$KAPI_HOME/src" ]; then
    rm -rf "$KAPI_HOME/src" "$KAPI_HOME/home/.cache"
    log "removed the kubernetes source tree and Go build cache (binaries kept in $BIN)"
  fi
}

free_port() {  # a TCP port on 127.0.0.1 that nothing listens on
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 30000))
    ss -Hltn "sport = :$p" 2>/dev/null | grep -q . || { echo "$p"; return 0; }
  done
  return 1
}

gen_pki() {
  local d=$KAPI_RUN/pki; mkdir -p "$d"
  [ -s "$d/admin.crt" ] && return 0
  ( cd "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=kapi-envtest-ca" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,IP:::1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n' > apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 3650 -extfile apiserver.ext 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=admin" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n' > client.ext
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out admin.crt -days 3650 -extfile client.ext 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    echo "kapi-admin-$(openssl rand -hex 16),admin,admin-uid,\"system:masters\"" > tokens.csv
    chmod 600 ./*.key tokens.csv )
}

write_kubeconfig() {
  local d=$KAPI_RUN/pki port=$1 token
  token=$(cut -d, -f1 "$d/tokens.csv")
  cat > "$KAPI_RUN/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: envtest
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $(base64 -w0 "$d/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $(base64 -w0 "$d/admin.crt")
    client-key-data: $(base64 -w0 "$d/admin.key")
- name: admin-token
  user:
    token: $token
contexts:
- name: admin
  context: {cluster: envtest, user: admin, namespace: default}
- name: admin-token
  context: {cluster: envtest, user: admin-token, namespace: default}
current-context: admin
EOF
  chmod 600 "$KAPI_RUN/kubeconfig"
}

wait_http() {  # url, seconds, curl args...
  local url=$1 n=$2; shift 2
  for _ in $(seq 1 $((n * 4))); do
    curl -fsS -o /dev/null "$@" "$url" 2>/dev/null && return 0
    sleep 0.25
  done
  return 1
}

down() {
  local f pid
  for f in "$KAPI_RUN/kube-controller-manager.pid" "$KAPI_RUN/kube-apiserver.pid" "$KAPI_RUN/etcd.pid"; do
    [ -s "$f" ] || continue
    pid=$(cat "$f")
    # only signal the process if it is still the etcd / kube-apiserver we started
    if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -e "$KAPI_RUN" -e "$BIN/kube-apiserver"; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -9 "$pid" 2>/dev/null || true
      log "stopped $(basename "$f" .pid) (pid $pid)"
    fi
    rm -f "$f"
  done
}

up() {
  build_all
  command -v etcd >/dev/null || install_packages
  [ -s "$KAPI_RUN/kube-apiserver.pid" ] && kill -0 "$(cat "$KAPI_RUN/kube-apiserver.pid")" 2>/dev/null && {
    log "already running"; echo "KUBECONFIG=$KAPI_RUN/kubeconfig"; return 0; }
  down
  mkdir -p "$KAPI_RUN"; rm -rf "$KAPI_RUN/etcd-data"
  gen_pki
  local eport=${KAPI_ETCD_PORT:-$(free_port)} pport port=${KAPI_PORT:-$(free_port)}
  pport=$(free_port)
  log "starting etcd on 127.0.0.1:$eport"
  setsid etcd --name kapi --data-dir "$KAPI_RUN/etcd-data" \
    --listen-client-urls "http://127.0.0.1:$eport" --advertise-client-urls "http://127.0.0.1:$eport" \
    --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
    --initial-cluster "kapi=http://127.0.0.1:$pport" --initial-cluster-state new \
    --logger zap --log-outputs stderr \
    </dev/null >"$KAPI_RUN/etcd.log" 2>&1 &
  echo $! > "$KAPI_RUN/etcd.pid"
  wait_http "http://127.0.0.1:$eport/health" 30 || { tail -20 "$KAPI_RUN/etcd.log" >&2; down; exit 1; }
  log "starting kube-apiserver on https://127.0.0.1:$port (authorization-mode=$KAPI_AUTHZ)"
  local p=$KAPI_RUN/pki
  # shellcheck disable=SC2086
  setsid "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$eport" \
    --bind-address 127.0.0.1 --secure-port "$port" --insecure-port 0 --advertise-address 127.0.0.1 \
    --tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" \
    --client-ca-file "$p/ca.crt" --token-auth-file "$p/tokens.csv" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" \
    --service-cluster-ip-range 10.0.0.0/24 --endpoint-reconciler-type none \
    --authorization-mode "$KAPI_AUTHZ" --disable-admission-plugins ServiceAccount \
    --allow-privileged=true --profiling=false --v=1 ${KAPI_EXTRA_ARGS:-} \
    </dev/null >"$KAPI_RUN/kube-apiserver.log" 2>&1 &
  echo $! > "$KAPI_RUN/kube-apiserver.pid"
  if ! wait_http "https://127.0.0.1:$port/readyz" 90 --cacert "$p/ca.crt" --cert "$p/admin.crt" --key "$p/admin.key"; then
    log "kube-apiserver did not become ready:"; tail -30 "$KAPI_RUN/kube-apiserver.log" >&2; down; exit 1
  fi
  write_kubeconfig "$port"
  # wait until the default namespace + RBAC bootstrap exist (post-start hooks)
  for _ in $(seq 1 120); do
    KUBECONFIG=$KAPI_RUN/kubeconfig kubectl get ns default >/dev/null 2>&1 && break; sleep 0.25
  done
  if [ -n "${KAPI_CONTROLLERS:-}" ]; then
    # optional, beyond envtest: real controllers, e.g. namespace,garbagecollector,serviceaccount,serviceaccount-token
    log "starting kube-controller-manager (controllers: $KAPI_CONTROLLERS)"
    setsid "$BIN/kube-controller-manager" --kubeconfig "$KAPI_RUN/kubeconfig" \
      --bind-address 127.0.0.1 --secure-port 0 --port 0 --leader-elect=false \
      --controllers "$KAPI_CONTROLLERS" --use-service-account-credentials=false \
      --service-account-private-key-file "$p/sa.key" --root-ca-file "$p/ca.crt" --v=1 \
      </dev/null >"$KAPI_RUN/kube-controller-manager.log" 2>&1 &
    echo $! > "$KAPI_RUN/kube-controller-manager.pid"
    if [[ ",$KAPI_CONTROLLERS," == *,serviceaccount,* ]]; then
      for _ in $(seq 1 120); do
        KUBECONFIG=$KAPI_RUN/kubeconfig kubectl get sa default >/dev/null 2>&1 && break; sleep 0.25
      done
    fi
  fi
  log "ready: etcd pid $(cat "$KAPI_RUN/etcd.pid"), kube-apiserver pid $(cat "$KAPI_RUN/kube-apiserver.pid")"
  echo "KUBECONFIG=$KAPI_RUN/kubeconfig"
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  build) build_all ;;
  *) echo "usage: $0 [up|down|build]" >&2; exit 2 ;;
esac
