#!/usr/bin/env bash
# bench/mtls.sh - issue 4's benchmark: a weft-proxy PAIR (client-side proxy, outbound -> server-side
# proxy, inbound -> backend) in plaintext and with mTLS, against a direct connection, same h2load
# load and pinning as bench/run.sh. Writes target/bench/mtls.tsv (name rps p50_ms p99_ms rss_kb;
# rss_kb of a pair is "client/server").
#
# Options (environment): REQUESTS (200000) CONNECTIONS (4) STREAMS (32) REPEATS (3) PROTOCOL (grpc|h2,
# default grpc) BENCH_ALLOW_BUSY=1 BENCH_KEEP_RUN_DIR=1. `--quick`: 20,000 requests, one repeat.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ ${1:-} == --quick ]]; then
    : "${REQUESTS:=20000}" "${REPEATS:=1}"
elif [[ -n ${1:-} ]]; then
    sed -n '2,8p' "$0" >&2
    exit 2
fi
REQUESTS=${REQUESTS:-200000}
CONNECTIONS=${CONNECTIONS:-4}
STREAMS=${STREAMS:-32}
REPEATS=${REPEATS:-3}
PROTOCOL=${PROTOCOL:-grpc}
WARMUP_REQUESTS=${WARMUP_REQUESTS:-5000}

# The pair's inbound side forwards to one local application, as in a pod.
BACKEND_PORTS=(9001)
CLIENT_OUTBOUND=8120
CLIENT_ADMIN=8121
SERVER_INBOUND=8122
SERVER_OUTBOUND=8123 # unused by the load, but every proxy has an outbound side
SERVER_ADMIN=8124
IDENTITY_PORT=8125

row_url() {
    case $1 in
        direct) echo "http://127.0.0.1:${BACKEND_PORTS[0]}/" ;;
        *-pair) echo "http://127.0.0.1:$CLIENT_OUTBOUND/" ;;
    esac
}

# Start one weft-proxy pinned to PROXY_CPU; prints its pid. Args: log-name args...
start_weft() {
    local name=$1
    shift
    taskset -c "$PROXY_CPU" "$WEFT_BIN" "$@" >"$RUN_DIR/$name.log" 2>&1 &
    PIDS+=("$!")
    PEER_PROCS+=("$!")
}

PAIR_WHY=""
PEER_PROCS_EXTRA=()
# Start the client-side and server-side proxies and wait until a request crosses both.
pair_start() {
    local mode=$1
    PEER_PROCS=() PAIR_WHY=""
    [[ -n $WEFT_BIN ]] || { PAIR_WHY=$WEFT_WHY; return 1; }
    local client_id=() server_id=() endpoint_identity=""
    case $mode in
        plaintext) ;;
        mtls)
            # A stand-alone identity service (proxy/examples/dev_identity.rs, weft's identity
            # protocol, a throw-away anchor, any token accepted) certifies both proxies; their keys
            # stay in memory. Pinned with the load, off the proxies' core.
            DEV_IDENTITY_BIN=$TARGET_DIR/release/examples/dev_identity
            taskset -c "$CLIENT_CPU" "$DEV_IDENTITY_BIN" --addr "127.0.0.1:$IDENTITY_PORT" \
                --bundle-out "$RUN_DIR/ca-bundle.crt" >"$RUN_DIR/dev-identity.log" 2>&1 &
            PIDS+=("$!")
            PEER_PROCS_EXTRA=("$!")
            local deadline=$((SECONDS + 10))
            until grep -q 'identity service listening' "$RUN_DIR/dev-identity.log" 2>/dev/null; do
                ((SECONDS < deadline)) || { PAIR_WHY="dev identity service did not start"; return 1; }
                sleep 0.05
            done
            echo dev-token >"$RUN_DIR/token"
            local common=(--identity-addr "127.0.0.1:$IDENTITY_PORT" --identity-token-file "$RUN_DIR/token"
                --trust-bundle-file "$RUN_DIR/ca-bundle.crt")
            client_id=(--identity-name client.bench.serviceaccount.identity.cluster.local "${common[@]}")
            server_id=(--identity-name server.bench.serviceaccount.identity.cluster.local "${common[@]}")
            endpoint_identity=',"identity":"server.bench.serviceaccount.identity.cluster.local"'
            ;;
    esac
    cat >"$RUN_DIR/pair-client.json" <<EOF2
{"services":[{"name":"bench","authorities":["127.0.0.1:$CLIENT_OUTBOUND"],"endpoints":[{"addr":"127.0.0.1:$SERVER_INBOUND"$endpoint_identity}]}]}
EOF2
    echo '{"services":[]}' >"$RUN_DIR/pair-server.json"
    start_weft pair-server --config "$RUN_DIR/pair-server.json" --outbound "127.0.0.1:$SERVER_OUTBOUND" \
        --admin "127.0.0.1:$SERVER_ADMIN" --inbound "127.0.0.1:$SERVER_INBOUND" \
        --inbound-app "127.0.0.1:${BACKEND_PORTS[0]}" --workers 1 --shutdown-grace 0s "${server_id[@]}"
    start_weft pair-client --config "$RUN_DIR/pair-client.json" --outbound "127.0.0.1:$CLIENT_OUTBOUND" \
        --admin "127.0.0.1:$CLIENT_ADMIN" --inbound off --workers 1 --shutdown-grace 0s "${client_id[@]}"
    if ! wait_h2_ok "$(row_url plaintext-pair)" 10; then
        PAIR_WHY="no request crossed the pair within 10 s: client: $(tail -c 200 "$RUN_DIR/pair-client.log" |
            tr '\n\t' '  ') server: $(tail -c 200 "$RUN_DIR/pair-server.log" | tr '\n\t' '  ')"
        pair_stop
        return 1
    fi
}

pair_stop() {
    local pid
    for pid in "${PEER_PROCS[@]}" "${PEER_PROCS_EXTRA[@]}"; do stop_pid "$pid"; done
    PEER_PROCS=() PEER_PROCS_EXTRA=()
}

main() {
    ((REQUESTS > 0 && REPEATS > 0)) || die "REQUESTS and REPEATS must be positive"
    [[ $PROTOCOL == grpc || $PROTOCOL == h2 ]] || die "PROTOCOL must be grpc or h2"
    (($(nproc) >= 2)) || die "needs 2 cores: the proxies alone on one, load and backend on the other"

    install_cleanup_trap
    RUN_DIR=$(mktemp -d /tmp/weft-bench-mtls.XXXXXX)
    mkdir -p "$OUT_DIR"
    RAW=$RUN_DIR/raw.tsv
    : >"$RAW"
    ensure_tools none # h2load, curl, taskset; no peer proxies
    build_binaries weft
    (cd "$REPO" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release -q -j2 -p weft-proxy --example dev_identity) || die "dev_identity does not build"
    require_ports_free "${BACKEND_PORTS[@]}" "$CLIENT_OUTBOUND" "$CLIENT_ADMIN" "$SERVER_INBOUND" \
        "$SERVER_OUTBOUND" "$SERVER_ADMIN" "$IDENTITY_PORT"
    GRPC_FRAME=$RUN_DIR/grpc-request.bin
    write_grpc_frame "$GRPC_FRAME"

    local load_start pct
    load_start=$(cut -d' ' -f1-3 /proc/loadavg)
    log "load average at start: $load_start"
    if ! wait_quiet 60; then
        [[ -n ${BENCH_ALLOW_BUSY:-} ]] ||
            die "machine busy (${QUIET_PCT}% of a core used by others for 60 s); set BENCH_ALLOW_BUSY=1 to measure anyway"
        log "machine busy (${QUIET_PCT}%), measuring anyway: rows will be flagged"
    fi
    start_backends

    local rep row
    for ((rep = 1; rep <= REPEATS; rep++)); do
        for row in direct plaintext-pair mtls-pair; do
            ROW_FLAGS=()
            PEER_PROCS=()
            if [[ $row != direct ]] && ! pair_start "${row%-pair}"; then
                record_na "$row" "$rep" "$PAIR_WHY"
                continue
            fi
            measure_h2load "$row" "$rep" "$(row_url "$row")" "$PROTOCOL" "$REQUESTS"
            pair_stop
        done
    done
    report "$load_start"
}

report() {
    local load_start=$1 tsv=$OUT_DIR/mtls.tsv notes=$OUT_DIR/mtls-notes.txt name
    local rps p50 p99 cpu_us cpu_s cpu_pct rss pb flags
    printf 'name\trps\tp50_ms\tp99_ms\trss_kb\n' >"$tsv"
    {
        printf 'weft mtls bench %s, commit %s, %s %s requests x %s repeats (medians), %s conns x %s streams\n' \
            "$(date -u +%FT%TZ)" "$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')" \
            "$REQUESTS" "$PROTOCOL" "$REPEATS" "$CONNECTIONS" "$STREAMS"
        printf 'load average at start: %s\n' "$load_start"
        printf '%-16s %9s %8s %8s %15s  %s\n' name req/s p50_ms p99_ms rss_kB flags
    } >"$notes"
    for name in $(raw_names); do
        IFS=$'\t' read -r rps p50 p99 cpu_us cpu_s cpu_pct rss pb flags <<<"$(row_medians "$name")"
        if [[ $rps == - ]]; then rps=n/a p50=n/a p99=n/a rss=n/a; fi
        printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$rps" "$p50" "$p99" "$rss" >>"$tsv"
        printf '%-16s %9s %8s %8s %15s  %s\n' "$name" "$rps" "$p50" "$p99" "$rss" "$flags" >>"$notes"
    done
    cp "$RAW" "$OUT_DIR/mtls-runs.tsv"
    echo
    cat "$notes"
    log "wrote $tsv"
}

main "$@"
