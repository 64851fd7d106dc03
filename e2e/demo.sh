#!/usr/bin/env bash
# `make run`: the local demo. Without KUBECONFIG it starts a real kube-apiserver + etcd on loopback
# (e2e/envtest.sh; built on first use), applies the CRDs and the sample Identity, runs the operator
# and shows the Identity's status. With KUBECONFIG set it does the same against that cluster.
# Interactive: watches until Ctrl-C. Non-interactive (or WEFT_DEMO_ONCE=1): shows the status once and exits.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { echo "[demo] $*" >&2; }
RUN=target/demo
mkdir -p "$RUN"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "${STARTED_APISERVER:-}" ]; then KAPI_RUN=$PWD/$RUN/kapi bash e2e/envtest.sh down || true; fi
}
trap cleanup EXIT INT TERM

if [ -z "${KUBECONFIG:-}" ]; then
  log "no KUBECONFIG: starting a local kube-apiserver + etcd (first run builds the apiserver, ~5 min)"
  bash e2e/setup.sh
  out=$(KAPI_RUN=$PWD/$RUN/kapi bash e2e/envtest.sh up)
  STARTED_APISERVER=1
  export KUBECONFIG=${out##*KUBECONFIG=}
else
  log "using the cluster of KUBECONFIG=$KUBECONFIG"
fi

kubectl apply --server-side --field-manager=weft-demo -k crds/generated/ >/dev/null
kubectl wait --for=condition=Established --timeout=60s crd/identities.weft.dev crd/meshpolicies.weft.dev crd/trafficsplits.weft.dev >/dev/null
kubectl create namespace weft-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -f config/samples/identity.yaml

log "starting weft-operator (logs: $RUN/operator.log)"
WEFT_NAMESPACE=weft-system POD_NAME=demo WEFT_ADMIN_ADDR=127.0.0.1:0 \
  target/debug/weft-operator >"$RUN/operator.log" 2>&1 &
pids+=($!)

name=$(kubectl get -f config/samples/identity.yaml -o jsonpath='{.metadata.name}')
if ! kubectl wait --for=condition=Ready --timeout=90s "identity/$name" >/dev/null; then
  log "the Identity did not become Ready; operator log:"; tail -30 "$RUN/operator.log" >&2
  kubectl get identity "$name" -o yaml >&2
  exit 1
fi
kubectl get identities -o wide
kubectl get secrets,configmaps -n weft-system

# The policy and split samples, in a namespace whose Services do not exist yet: their status says so.
kubectl create namespace demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -n demo -f config/samples/meshpolicy.yaml -f config/samples/trafficsplit.yaml >/dev/null
kubectl wait -n demo --for=condition=Accepted=False --timeout=30s meshpolicy/web >/dev/null 2>&1 || true
kubectl wait -n demo --for=condition=ResolvedRefs=False --timeout=30s trafficsplit/web-canary >/dev/null 2>&1 || true
kubectl get meshpolicies,trafficsplits -n demo -o wide
if [ -t 1 ] && [ -z "${WEFT_DEMO_ONCE:-}" ]; then
  log "watching (the issuer rotates at its renewal time); Ctrl-C stops the operator and the apiserver"
  kubectl get identities -o wide --watch
fi
