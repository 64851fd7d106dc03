#!/usr/bin/env bash
# bench/run.sh - `make bench`: weft-proxy against a direct connection, HAProxy and nginx, under the
# same h2load load (h2c and gRPC-framed), then at a fixed 5,000 req/s with oha. Prints a table of
# medians and writes target/bench/proxy.tsv. See bench/README.md for what each column means.
#
# Options (environment): REQUESTS (200000) CONNECTIONS (4) STREAMS (32) REPEATS (3) RATE (5000)
# RATE_SECONDS (5) PEERS ("direct weft haproxy nginx") PROTOCOLS ("h2 grpc") BENCH_ALLOW_BUSY=1
# (start even when the machine stays busy; busy rows are flagged) BENCH_BUSY_RETRIES (6: runs
# measured again when a neighbour was busy) BENCH_KEEP_RUN_DIR=1 (keep logs). `--quick` is a
# smoke run: 20,000 requests, one repeat, 2 s of fixed rate.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ ${1:-} == --quick ]]; then
    : "${REQUESTS:=20000}" "${REPEATS:=1}" "${RATE_SECONDS:=2}"
elif [[ -n ${1:-} ]]; then
    sed -n '2,10p' "$0" >&2
    exit 2
fi
REQUESTS=${REQUESTS:-200000}
CONNECTIONS=${CONNECTIONS:-4}
STREAMS=${STREAMS:-32}
REPEATS=${REPEATS:-3}
RATE=${RATE:-5000}
RATE_SECONDS=${RATE_SECONDS:-5}
PEERS=${PEERS:-direct weft haproxy nginx}
PROTOCOLS=${PROTOCOLS:-h2 grpc}
WARMUP_REQUESTS=${WARMUP_REQUESTS:-5000}

WEFT_PORT=8100
WEFT_ADMIN_PORT=8190
HAPROXY_PORT=8101 # fixed in bench/haproxy.cfg
NGINX_PORT=8102   # fixed in bench/nginx.conf

# === peers: how to start each one, where it listens ===

peer_url() {
    case $1 in
        direct) echo "http://127.0.0.1:${BACKEND_PORTS[0]}/" ;;
        weft) echo "http://127.0.0.1:$WEFT_PORT/" ;;
        haproxy) echo "http://127.0.0.1:$HAPROXY_PORT/" ;;
        nginx) echo "http://127.0.0.1:$NGINX_PORT/" ;;
        *) die "unknown peer $1" ;;
    esac
}

PEER_WHY=""  # why the peer could not start

# Start a peer pinned to PROXY_CPU and wait until a request through it succeeds; sets PEER_PROCS.
peer_start() {
    local peer=$1 log=$RUN_DIR/$1.log pid
    PEER_PROCS=() PEER_WHY=""
    case $peer in
        direct) return 0 ;;
        weft)
            if [[ -z $WEFT_BIN ]]; then PEER_WHY=$WEFT_WHY; return 1; fi
            cat >"$RUN_DIR/weft.json" <<EOF
{"services":[{"name":"bench","authorities":["127.0.0.1:$WEFT_PORT"],"endpoints":[{"addr":"127.0.0.1:9001"},{"addr":"127.0.0.1:9002"},{"addr":"127.0.0.1:9003"}]}]}
EOF
            # No drain on SIGTERM: nothing is in flight when the bench stops it.
            taskset -c "$PROXY_CPU" "$WEFT_BIN" --config "$RUN_DIR/weft.json" --workers 1 \
                --outbound "127.0.0.1:$WEFT_PORT" --admin "127.0.0.1:$WEFT_ADMIN_PORT" --inbound off \
                --shutdown-grace 0s >"$log" 2>&1 &
            ;;
        haproxy) taskset -c "$PROXY_CPU" haproxy -db -f "$BENCH_DIR/haproxy.cfg" >"$log" 2>&1 & ;;
        nginx)
            sed "s|@RUN_DIR@|$RUN_DIR|g" "$BENCH_DIR/nginx.conf" >"$RUN_DIR/nginx.conf"
            taskset -c "$PROXY_CPU" nginx -c "$RUN_DIR/nginx.conf" -p "$RUN_DIR" -e "$RUN_DIR/nginx-error.log" \
                >"$log" 2>&1 &
            ;;
    esac
    pid=$!
    PIDS+=("$pid")
    if ! wait_h2_ok "$(peer_url "$peer")" 10 || ! kill -0 "$pid" 2>/dev/null; then
        PEER_WHY="$peer did not answer a request within 10 s: $(tail -c 300 "$log" | tr '\n\t' '  ')"
        stop_pid "$pid"
        return 1
    fi
    PEER_PROCS=("$pid")
}

peer_stop() {
    local pid
    for pid in "${PEER_PROCS[@]}"; do stop_pid "$pid"; done
    PEER_PROCS=()
}

# === gRPC correctness: one real unary call through the peer, trailers checked ===

declare -A GRPC_CHECK=()

# Prints "ok" or why the peer's gRPC answers cannot be trusted (checked by a real client:
# status, framing and grpc-status in the trailers, which h2load does not look at).
grpc_check() {
    "$GRPC_CHECK_BIN" "${1%/}/weft.bench.Echo/Ping" 3 || true
}

# === the run ===

# Runs flagged busy that may be measured again once the machine is quiet, for the whole run.
RETRIES_LEFT=${BENCH_BUSY_RETRIES:-6}

# One row, one repeat: a fresh peer (so its peak RSS is this run's), gRPC checked once per peer.
measure_row() {
    local peer=$1 proto=$2 mode=$3 rep=$4 name=$1-$2 url
    [[ $mode == rate ]] && name+=-rate
    url=$(peer_url "$peer")
    while :; do
        if ! peer_start "$peer"; then
            record_na "$name" "$rep" "$PEER_WHY"
            return
        fi
        if [[ $proto == grpc && -z ${GRPC_CHECK[$peer]:-} ]]; then
            GRPC_CHECK[$peer]=$(grpc_check "$url")
            log "gRPC check through $peer: ${GRPC_CHECK[$peer]}"
        fi
        ROW_FLAGS=()
        [[ $proto != grpc || ${GRPC_CHECK[$peer]} == ok ]] || ROW_FLAGS+=("grpc-untrusted")
        if [[ $mode == closed ]]; then
            measure_h2load "$name" "$rep" "$url" "$proto" "$REQUESTS"
        else
            measure_rate "$name" "$rep" "$url" "$proto" "$RATE" "$RATE_SECONDS"
        fi
        peer_stop
        [[ $(tail -n 1 "$RAW" | cut -f11) == *busy* ]] && ((RETRIES_LEFT > 0)) || return 0
        # Measuring again only helps once the neighbour is gone.
        QUIET_GAVE_UP=""
        wait_quiet 20 || return 0
        RETRIES_LEFT=$((RETRIES_LEFT - 1))
        log "measuring $name again: a neighbour was busy during the run ($RETRIES_LEFT retries left)"
    done
}

main() {
    local peers protocols want_tools=() p
    read -ra peers <<<"$PEERS"
    read -ra protocols <<<"$PROTOCOLS"
    for p in "${peers[@]}"; do want_tools+=("$p"); done
    ((REQUESTS > 0 && REPEATS > 0)) || die "REQUESTS and REPEATS must be positive"
    (($(nproc) >= 2)) || die "needs 2 cores: the proxy alone on one, load and backends on the other"

    install_cleanup_trap
    RUN_DIR=$(mktemp -d /tmp/weft-bench.XXXXXX)
    mkdir -p "$OUT_DIR"
    RAW=$RUN_DIR/raw.tsv
    : >"$RAW"
    ensure_tools "${want_tools[@]}"
    ensure_oha
    build_binaries "$([[ " ${peers[*]} " == *" weft "* ]] && echo weft)"
    require_ports_free "${BACKEND_PORTS[@]}" "$WEFT_PORT" "$WEFT_ADMIN_PORT" "$HAPROXY_PORT" "$NGINX_PORT"
    GRPC_FRAME=$RUN_DIR/grpc-request.bin
    write_grpc_frame "$GRPC_FRAME"

    local load_start pct
    load_start=$(cut -d' ' -f1-3 /proc/loadavg)
    log "load average at start: $load_start"
    if ! wait_quiet 60; then
        [[ -n ${BENCH_ALLOW_BUSY:-} ]] ||
            die "machine busy (${QUIET_PCT}% of a core used by others for 60 s); set BENCH_ALLOW_BUSY=1 to measure anyway (rows flagged)"
        log "machine busy (${QUIET_PCT}%), measuring anyway: rows will be flagged"
    fi
    start_backends

    local started=$SECONDS rep peer proto mode
    for ((rep = 1; rep <= REPEATS; rep++)); do
        for mode in closed rate; do
            for peer in "${peers[@]}"; do
                for proto in "${protocols[@]}"; do
                    measure_row "$peer" "$proto" "$mode" "$rep"
                done
            done
        done
    done
    log "measured in $((SECONDS - started)) s"

    report "$load_start"
}

# Medians per row over the repeats; prints the table, writes the TSV and notes.
report() {
    local load_start=$1 tsv=$OUT_DIR/proxy.tsv notes=$OUT_DIR/proxy-notes.txt
    local names name
    mapfile -t names < <(raw_names)
    printf 'name\trps\tp50_ms\tp99_ms\tcpu_us_per_req\tcpu_s\trss_kb\tper_backend\n' >"$tsv"
    {
        printf 'weft bench %s, commit %s, %s requests x %s repeats (medians), %s conns x %s streams, rate %s/s for %s s\n' \
            "$(date -u +%FT%TZ)" "$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')" \
            "$REQUESTS" "$REPEATS" "$CONNECTIONS" "$STREAMS" "$RATE" "$RATE_SECONDS"
        printf 'load average at start: %s; cpu: %s\n' "$load_start" \
            "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
        printf 'versions: %s; %s; %s; %s\n' "$(h2load --version 2>&1 | head -1)" \
            "$(haproxy -v 2>/dev/null | head -1 | cut -d' ' -f1-3)" "$(nginx -v 2>&1)" "$("$OHA" --version 2>&1)"
        local peer
        for peer in "${!GRPC_CHECK[@]}"; do printf 'gRPC check through %s: %s\n' "$peer" "${GRPC_CHECK[$peer]}"; done
    } >"$notes"

    local header
    header=$(printf '%-18s %9s %8s %8s %8s %6s %8s %9s  %-20s %s' \
        name req/s p50_ms p99_ms cpu_us/r cpu_% cpu_s rss_kB per_backend flags)
    echo
    echo "$header"
    echo "$header" >>"$notes"
    local rps p50 p99 cpu_us cpu_s cpu_pct rss pb flags
    for name in "${names[@]}"; do
        IFS=$'\t' read -r rps p50 p99 cpu_us cpu_s cpu_pct rss pb flags <<<"$(row_medians "$name")"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$rps" "$p50" "$p99" "$cpu_us" "$cpu_s" "$rss" "$pb" >>"$tsv"
        printf '%-18s %9s %8s %8s %8s %6s %8s %9s  %-20s %s\n' "$name" "$rps" "$p50" "$p99" "$cpu_us" \
            "$cpu_pct" "$cpu_s" "$rss" "$pb" "$flags" | tee -a "$notes"
    done
    cp "$RAW" "$OUT_DIR/proxy-runs.tsv"
    echo
    sed -n '1,3p' "$notes"
    grep '^gRPC check' "$notes" || true
    log "wrote $tsv (medians), $OUT_DIR/proxy-runs.tsv (every run), $notes"
}

main "$@"
