#!/usr/bin/env bash
# bench/profile.sh - where weft-proxy spends its instructions under the h2 (or gRPC) load of
# bench/run.sh, with valgrind's callgrind: repeatable instruction counts, no hardware counters
# needed (these VMs have none, so `perf stat -e instructions` does not work here).
#
# Runs the proxy under callgrind, warms it up uninstrumented, then counts REQUESTS requests
# (default 20000, h2load 4 connections x 32 streams), and prints instructions per request and the
# top functions (self and inclusive). Output: target/bench/callgrind.<peer>.<proto>.out and .txt.
# Options (environment): REQUESTS, PROTOCOL (h2|grpc, default h2), PEER (weft|haproxy, default
# weft: HAProxy gives a reference count).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ -z ${1:-} ]] || { sed -n '2,10p' "$0" >&2; exit 2; }
REQUESTS=${REQUESTS:-20000}
PROTOCOL=${PROTOCOL:-h2}
PEER=${PEER:-weft}
CONNECTIONS=4
STREAMS=32
PORT=8130
ADMIN_PORT=8131

# Shorter names: crate paths without the registry prefix, no binary suffix.
tidy_paths() {
    sed -E 's|/root/.cargo/registry/src/[^/]*/||g; s|/rustc/[0-9a-f]*/||g; s| \[/[^]]*/release/[^]]*\]||g'
}

main() {
    install_cleanup_trap
    RUN_DIR=$(mktemp -d /tmp/weft-bench-profile.XXXXXX)
    mkdir -p "$OUT_DIR"
    command -v valgrind >/dev/null || apt_install valgrind
    ensure_tools "$PEER"
    build_binaries "$([[ $PEER == weft ]] && echo weft)"
    require_ports_free "${BACKEND_PORTS[@]}" "$PORT" "$ADMIN_PORT"
    GRPC_FRAME=$RUN_DIR/grpc-request.bin
    write_grpc_frame "$GRPC_FRAME"
    start_backends

    local profile=$OUT_DIR/callgrind.$PEER.$PROTOCOL.out report=$OUT_DIR/callgrind.$PEER.$PROTOCOL.txt url cmd
    url=http://127.0.0.1:$PORT/
    case $PEER in
        weft)
            [[ -n $WEFT_BIN ]] || die "$WEFT_WHY"
            cat >"$RUN_DIR/weft.json" <<EOF
{"services":[{"name":"bench","authorities":["127.0.0.1:$PORT"],"endpoints":[{"addr":"127.0.0.1:9001"},{"addr":"127.0.0.1:9002"},{"addr":"127.0.0.1:9003"}]}]}
EOF
            cmd=("$WEFT_BIN" --config "$RUN_DIR/weft.json" --outbound "127.0.0.1:$PORT"
                --admin "127.0.0.1:$ADMIN_PORT" --inbound off --workers 1 --shutdown-grace 0s)
            ;;
        haproxy)
            sed "s/127.0.0.1:8101/127.0.0.1:$PORT/" "$BENCH_DIR/haproxy.cfg" >"$RUN_DIR/haproxy.cfg"
            cmd=(haproxy -db -f "$RUN_DIR/haproxy.cfg")
            ;;
        *) die "PEER must be weft or haproxy" ;;
    esac
    rm -f "$profile"
    taskset -c "$PROXY_CPU" valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$profile" \
        "${cmd[@]}" >"$RUN_DIR/proxy.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_h2_ok "$url" 60 || die "$PEER under valgrind did not answer: $(tail -5 "$RUN_DIR/proxy.log")"

    local extra=()
    [[ $PROTOCOL == grpc ]] && extra=(-d "$GRPC_FRAME" -H 'content-type: application/grpc' -H 'te: trailers')
    local h2load=(taskset -c "$CLIENT_CPU" h2load -t 1 -c "$CONNECTIONS" -m "$STREAMS" "${extra[@]}")
    log "warming up (not counted)"
    "${h2load[@]}" -n 2000 "$url" >/dev/null
    callgrind_control -i on "$pid" >/dev/null
    log "counting $REQUESTS $PROTOCOL requests under callgrind"
    "${h2load[@]}" -n "$REQUESTS" "$url" | grep -E '^(finished|requests:)' >&2
    callgrind_control -i off "$pid" >/dev/null
    stop_pid "$pid" # callgrind writes its profile on exit

    local total
    # "totals:" is the count of the instrumented part ("summary:" may stay 0 with --instr-atstart=no).
    total=$(awk '/^totals:/ {print $2; exit}' "$profile")
    {
        printf '%s %s, %s requests under callgrind (%s conns x %s streams): %s instructions, %.0f per request\n\n' \
            "$PEER" "$PROTOCOL" "$REQUESTS" "$CONNECTIONS" "$STREAMS" "$total" "$(awk -v t="$total" -v n="$REQUESTS" 'BEGIN { print t / n }')"
        echo "== self (exclusive) =="
        callgrind_annotate --inclusive=no "$profile" 2>/dev/null | tidy_paths | sed -n '/^Ir/,$p' | head -45 || true
        echo
        echo "== inclusive =="
        callgrind_annotate --inclusive=yes "$profile" 2>/dev/null | tidy_paths | sed -n '/^Ir/,$p' | head -60 || true
        echo
        echo "== who calls memcpy (largest callers) =="
        callgrind_annotate --tree=caller --inclusive=yes "$profile" 2>/dev/null | tidy_paths |
            awk '/^$/ { blk = ""; next } { blk = blk "\n" $0 } /\* .*memcpy/ { print blk; exit }' |
            sed 's/,//g' | sort -k1,1 -rn | head -16 || true
    } >"$report"
    cat "$report"
    log "wrote $report and $profile (open with callgrind_annotate or kcachegrind)"
}

main "$@"
