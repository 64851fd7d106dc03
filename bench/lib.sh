# Shared helpers of bench/run.sh and bench/mtls.sh. Sourced, not run.
# shellcheck disable=SC2034 # globals set here are read by the scripts that source this file
# Needs: bash, awk (mawk is enough), curl, taskset, pgrep, and /proc.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
# Release binaries go to the usual target dir unless the caller chose another one.
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
# Results always land in the repository's target/bench, wherever cargo builds.
OUT_DIR=${BENCH_OUT_DIR:-$REPO/target/bench}
# Tools the script installs itself (oha) live here, outside the repository.
TOOLS_DIR=${BENCH_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/weft-bench}

# Pinning: the proxy under test alone on PROXY_CPU; load generator and backends on CLIENT_CPU.
PROXY_CPU=${PROXY_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
# A row is flagged "busy" when processes other than ours used more than this share of one core
# (percent) while it ran, or while we waited for quiet before it.
BUSY_PCT=${BENCH_BUSY_PCT:-15}
CLK_TCK=$(getconf CLK_TCK)

BACKEND_PORTS=(9001 9002 9003)
PIDS=()       # every process we started, killed by cleanup
RUN_DIR=""

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# === processes ===

# Kill everything we started (TERM, then KILL after 5 s) and remove the run folder.
cleanup() {
    set +e
    local pid deadline
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    deadline=$((SECONDS + 5))
    for pid in "${PIDS[@]}"; do
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.05; done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    PIDS=()
    if [[ -n $RUN_DIR && -z ${BENCH_KEEP_RUN_DIR:-} ]]; then rm -rf "$RUN_DIR"; fi
}

install_cleanup_trap() {
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# Stop one process we started (and forget it).
stop_pid() {
    local pid=$1 deadline=$((SECONDS + 5)) keep=() p
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.02; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# The process and its direct children (nginx's master and worker).
pid_family() {
    local pid=$1
    echo "$pid"
    pgrep -P "$pid" 2>/dev/null || true
}

# utime+stime of the given processes, in clock ticks (all their threads included).
cpu_ticks() {
    local pid total=0 f
    for pid in "$@"; do
        # Fields after the ")" of the command name: state is $1, utime $12, stime $13.
        f=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null) || continue
        total=$((total + $(awk '{print $12 + $13}' <<<"$f")))
    done
    echo "$total"
}

# Sum of VmHWM (peak resident set) of the given processes, in kB.
peak_rss_kb() {
    local pid total=0 v
    for pid in "$@"; do
        v=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# Busy ticks of the whole machine (user, nice, system, irq, softirq, steal) and total ticks.
machine_ticks() {
    awk '/^cpu / {busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6; exit}' /proc/stat
}

# CPU ticks (utime+stime+cutime+cstime) of every user-space process that is not this script or
# one of its descendants, one "pid ticks" line each, into file $1. Two snapshots tell what the
# neighbours did meanwhile. (Comparing /proc/stat with our own processes' times does not work:
# the kernel's loopback work is not charged to any process and looks like 30-50 % of a core.)
others_snapshot() {
    # cat fails when a process exits between the glob and the read: that is expected here.
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v self=$$ '
        {
            pid = $1; rest = $0; sub(/^.*\) /, "", rest); split(rest, f, " ")
            ppid[pid] = f[2]; ticks[pid] = f[12] + f[13] + f[14] + f[15]
        }
        END {
            for (pid in ticks) {
                # Kernel threads (children of kthreadd, pid 2) work for whoever sends packets.
                if (pid == 2 || ppid[pid] == 2) continue
                ours = 0
                for (p = pid; p > 1; p = ppid[p]) if (p == self) { ours = 1; break }
                if (!ours) print pid, ticks[pid]
            }
        }' >"$1"
}

# Ticks the neighbours used between two others_snapshot files (processes started meanwhile count
# whole; a process reaped meanwhile shows in its parent's cutime).
others_delta() {
    awk 'NR == FNR { before[$1] = $2; next } { d = $2 - before[$1]; if (d > 0) sum += d } END { print sum + 0 }' "$1" "$2"
}

# Wait until the machine is quiet: over one second, busy time (ours included: keep idle while
# calling) is under BUSY_PCT of one core. Tries for up to $1 seconds; sets QUIET_PCT to the last
# busy percentage; returns 1 if it never got quiet. After one wait in vain the next ones give up after
# 3 s, so that a machine that stays busy costs minutes, not the whole session.
QUIET_GAVE_UP=""
QUIET_PCT=0
wait_quiet() {
    local limit=${1:-30} deadline b0 b1 pct
    [[ -z $QUIET_GAVE_UP ]] || limit=3
    deadline=$((SECONDS + limit))
    while :; do
        read -r b0 _ < <(machine_ticks)
        sleep 1
        read -r b1 _ < <(machine_ticks)
        # Percent of ONE core busy over the second.
        pct=$(( (b1 - b0) * 100 / CLK_TCK ))
        if ((pct < BUSY_PCT)); then QUIET_GAVE_UP=""; QUIET_PCT=$pct; return 0; fi
        if ((SECONDS >= deadline)); then QUIET_GAVE_UP=1; QUIET_PCT=$pct; return 1; fi
        ((SECONDS - deadline + limit > 1)) || log "machine busy (${pct}% of a core used by others), waiting up to ${limit} s"
    done
}

# === tools ===

apt_install() {
    command -v apt-get >/dev/null || die "missing $* and no apt-get to install it"
    log "installing $* (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 || {
        apt-get update -qq >/dev/null 2>&1
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null ||
            die "apt-get install $* failed"
    }
    # Debian starts services it installs where it can: ours run under the bench only.
    local svc
    for svc in haproxy nginx; do
        if [[ " $* " == *" $svc"* ]] && command -v systemctl >/dev/null; then
            systemctl stop "$svc" >/dev/null 2>&1 || true
        fi
    done
}

ensure_tools() {
    local need=()
    command -v h2load >/dev/null || need+=(nghttp2-client)
    command -v curl >/dev/null || need+=(curl)
    command -v taskset >/dev/null || need+=(util-linux)
    command -v pgrep >/dev/null || need+=(procps)
    local want
    for want in "$@"; do
        case $want in
            haproxy) command -v haproxy >/dev/null || need+=(haproxy) ;;
            nginx) command -v nginx >/dev/null || need+=(nginx-light) ;;
        esac
    done
    ((${#need[@]} == 0)) || apt_install "${need[@]}"
}

# oha (fixed-rate load), from crates.io into TOOLS_DIR when it is not on PATH.
OHA=""
ensure_oha() {
    OHA=$(command -v oha || true)
    [[ -n $OHA ]] && return 0
    OHA=$TOOLS_DIR/bin/oha
    [[ -x $OHA ]] && return 0
    log "installing oha into $TOOLS_DIR (cargo install --locked, a few minutes once)"
    cargo install --locked --quiet --root "$TOOLS_DIR" oha -j2 >&2 || die "cargo install oha failed"
}

# Build release binaries; sets BACKEND_BIN and GRPC_CHECK_BIN (required) and, when called with
# "weft", WEFT_BIN (empty when weft-proxy does not build, so its rows show n/a instead of stopping
# the benchmark).
BACKEND_BIN=""
GRPC_CHECK_BIN=""
WEFT_BIN=""
WEFT_WHY=""
build_binaries() {
    log "building weft-bench-backend (release, target dir $TARGET_DIR)"
    (cd "$REPO" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release -q -j2 -p weft-bench-backend) ||
        die "weft-bench-backend does not build"
    BACKEND_BIN=$TARGET_DIR/release/weft-bench-backend
    GRPC_CHECK_BIN=$TARGET_DIR/release/weft-bench-grpc-check
    if [[ ${1:-} != weft ]]; then WEFT_WHY="weft-proxy not built"; return 0; fi
    log "building weft-proxy (release)"
    if (cd "$REPO" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release -q -j2 -p weft-proxy --bin weft-proxy) \
        >"$RUN_DIR/weft-build.log" 2>&1; then
        WEFT_BIN=$TARGET_DIR/release/weft-proxy
    else
        WEFT_WHY="weft-proxy does not build (see $RUN_DIR/weft-build.log)"
        log "$WEFT_WHY"
        tail -5 "$RUN_DIR/weft-build.log" >&2
    fi
}

# === readiness ===

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

require_ports_free() {
    local port
    for port in "$@"; do
        port_free "$port" || die "port $port is in use: stop whatever listens there first"
    done
}

# Wait until an h2c request to $1 answers 200, for up to $2 seconds (default 10).
wait_h2_ok() {
    local url=$1 limit=${2:-10} deadline
    deadline=$((SECONDS + limit))
    until [[ $(curl -s -o /dev/null -w '%{http_code}' --http2-prior-knowledge --max-time 1 "$url") == 200 ]]; do
        ((SECONDS < deadline)) || return 1
        sleep 0.05
    done
}

# === backends ===

BACKEND_PIDS=()
start_backends() {
    local port pid
    BACKEND_PIDS=()
    for port in "${BACKEND_PORTS[@]}"; do
        taskset -c "$CLIENT_CPU" "$BACKEND_BIN" --listen "127.0.0.1:$port" >"$RUN_DIR/backend-$port.log" 2>&1 &
        pid=$!
        PIDS+=("$pid")
        BACKEND_PIDS+=("$pid")
    done
    for port in "${BACKEND_PORTS[@]}"; do
        wait_h2_ok "http://127.0.0.1:$port/__count" 10 || die "backend on :$port did not come up"
    done
}

# Requests served so far by each backend, space-separated.
backend_counts() {
    local port out=()
    for port in "${BACKEND_PORTS[@]}"; do
        out+=("$(curl -s --max-time 2 "http://127.0.0.1:$port/__count" || echo 0)")
    done
    echo "${out[*]}"
}

# "a/b/c" of the per-backend differences between two backend_counts outputs.
count_delta() {
    awk -v before="$1" -v after="$2" 'BEGIN {
        n = split(before, b, " "); split(after, a, " ")
        for (i = 1; i <= n; i++) out = out (i > 1 ? "/" : "") (a[i] - b[i])
        print out }'
}

# === request bodies ===

# A gRPC request message: 5-byte prefix (uncompressed, length 6) + protobuf {1: "ping"}.
write_grpc_frame() {
    printf '\x00\x00\x00\x00\x06\x0a\x04ping' >"$1"
}

# === load generators ===

# Percentiles (ms, 3 decimals) of h2load's per-request log: column 3 is microseconds to the end
# of the response. Prints "p50 p99 count".
log_percentiles() {
    sort -n -k3,3 -t $'\t' "$1" | awk -F'\t' '{ v[NR] = $3 }
        END {
            if (NR == 0) { print "- - 0"; exit }
            i50 = int(NR * 0.50); if (i50 < 1) i50 = 1
            i99 = int(NR * 0.99); if (i99 < 1) i99 = 1
            printf "%.3f %.3f %d\n", v[i50] / 1000, v[i99] / 1000, NR }'
}

# Median of the numbers given, ignoring "-" (not measured); "-" when none is a number. The mean of
# the two middle values for an even count, rounded to an integer when the inputs are integers.
median() {
    printf '%s\n' "$@" | awk '
        $0 != "-" && $0 != "" { v[++n] = $0 + 0; if ($0 !~ /^[0-9]+$/) frac = 1 }
        END {
            if (n == 0) { print "-"; exit }
            for (i = 2; i <= n; i++) { x = v[i]; j = i - 1; while (j > 0 && v[j] > x) { v[j + 1] = v[j]; j-- } v[j + 1] = x }
            m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
            if (!frac) printf "%d\n", m + 0.5; else if (m == int(m)) printf "%d\n", m; else printf "%.3f\n", m }'
}

# === one measured run ===
#
# The caller sets: RUN_DIR, GRPC_FRAME, CONNECTIONS, STREAMS, WARMUP_REQUESTS, RAW (file), OHA (rate
# runs), PEER_PROCS (the proxies under test: one pid per proxy; a process's children count with
# it, e.g. nginx's worker) and ROW_FLAGS (reasons to doubt the row, reset per row).

RAW=""
PEER_PROCS=()
ROW_FLAGS=()

# Closed loop: h2load, `requests` over CONNECTIONS x STREAMS. Args: name rep url proto requests.
measure_h2load() {
    local name=$1 rep=$2 url=$3 proto=$4 requests=$5 extra=() pct
    [[ $proto == grpc ]] && extra=(-d "$GRPC_FRAME" -H 'content-type: application/grpc' -H 'te: trailers')
    local h2load=(h2load -t 1 -c "$CONNECTIONS" -m "$STREAMS" "${extra[@]}")
    # Warm-up: connections to the backends established, allocators warm; not measured.
    taskset -c "$CLIENT_CPU" "${h2load[@]}" -n "$WARMUP_REQUESTS" "$url" >/dev/null 2>&1 || true
    wait_quiet 30 || ROW_FLAGS+=("busy-before(${QUIET_PCT}%)")
    run_load h2load "$name" "$rep" "$requests" \
        taskset -c "$CLIENT_CPU" "${h2load[@]}" -n "$requests" --log-file "$RUN_DIR/h2load.log" "$url"
}

# Open loop: oha at `rate` req/s for `seconds`, latency counted from each request's scheduled
# start (--latency-correction), so queueing in the proxy shows. Args: name rep url proto rate seconds.
measure_rate() {
    local name=$1 rep=$2 url=$3 proto=$4 rate=$5 seconds=$6 extra=() pct n
    [[ $proto == grpc ]] && extra=(-m POST -D "$GRPC_FRAME" -H 'content-type: application/grpc' -H 'te: trailers')
    n=$((rate * seconds))
    local oha=("$OHA" --no-tui --http2 -c "$CONNECTIONS" -p "$STREAMS" "${extra[@]}" --output-format json)
    taskset -c "$CLIENT_CPU" "${oha[@]}" -n "$WARMUP_REQUESTS" "$url" >/dev/null 2>&1 || true
    wait_quiet 30 || ROW_FLAGS+=("busy-before(${QUIET_PCT}%)")
    run_load oha "$name" "$rep" "$n" \
        taskset -c "$CLIENT_CPU" "${oha[@]}" -q "$rate" --latency-correction -n "$n" "$url"
}

# All pids of the proxies under test (with their children).
peer_family_pids() {
    local top
    for top in "${PEER_PROCS[@]}"; do pid_family "$top"; done
}

# Runs the load command given after the first four args, reads what it and the proxies did and
# appends a line to RAW: name rep rps p50 p99 cpu_us cpu_s cpu_pct rss per_backend flags.
# Args: kind (h2load|oha) name rep expected-requests command...
run_load() {
    local kind=$1 name=$2 rep=$3 expected=$4
    shift 4
    local before after p0 p1 rps=0 p50=- p99=- done_ok=0 wall top
    local -a ppids rss_parts=()
    mapfile -t ppids < <(peer_family_pids)
    before=$(backend_counts)
    p0=$(cpu_ticks "${ppids[@]}")
    others_snapshot "$RUN_DIR/others.0"
    "$@" >"$RUN_DIR/load.out" 2>&1 || echo "exit=$?" >>"$RUN_DIR/load.out"
    others_snapshot "$RUN_DIR/others.1"
    p1=$(cpu_ticks "${ppids[@]}")
    after=$(backend_counts)
    local rss=- cpu_us=- cpu_s=- cpu_pct=-
    for top in "${PEER_PROCS[@]}"; do
        # shellcheck disable=SC2046 # one pid per word
        rss_parts+=("$(peak_rss_kb $(pid_family "$top"))")
    done
    ((${#rss_parts[@]} == 0)) || rss=$(IFS=/; echo "${rss_parts[*]}")

    if [[ $kind == h2load ]]; then
        # "finished in 1.23s, 162000.00 req/s, ..." and "requests: N total, N started, N done, N succeeded, ..."
        read -r rps done_ok <<<"$(awk '
            /^finished in/ { gsub(",", ""); rps = $4 }
            /^requests:/ { gsub(",", ""); ok = $8 }
            END { printf "%.0f %d\n", rps, ok }' "$RUN_DIR/load.out")"
        [[ ! -s $RUN_DIR/h2load.log ]] || read -r p50 p99 _ <<<"$(log_percentiles "$RUN_DIR/h2load.log")"
    else
        # oha's JSON (whitespace removed): summary.requestsPerSec, latencyPercentiles.p50/p99 in
        # seconds (from the scheduled start with --latency-correction), statusCodeDistribution.
        read -r rps p50 p99 done_ok <<<"$(tr -d ' \n' <"$RUN_DIR/load.out" | awk '
            function num(section, key,   s, at) {
                at = index($0, "\"" section "\":"); if (at == 0) return -1
                s = substr($0, at)
                if (!match(s, "\"" key "\":[-0-9.e+]+")) return -1
                s = substr(s, RSTART, RLENGTH); sub(/^"[^"]*":/, "", s); return s + 0 }
            { printf "%.0f %.3f %.3f %d\n", num("summary", "requestsPerSec"), num("latencyPercentiles", "p50") * 1000,
                num("latencyPercentiles", "p99") * 1000, num("statusCodeDistribution", "200") }')"
    fi
    if [[ ! $rps =~ ^[0-9]+$ ]] || ((rps <= 0)); then
        ROW_FLAGS+=("load-failed")
        log "load generator output for $name: $(tail -c 400 "$RUN_DIR/load.out" | tr '\n' ' ')"
        rps=0 p50=- p99=-
    fi
    ((done_ok == expected)) || ROW_FLAGS+=("ok=$done_ok/$expected")

    local per_backend total
    per_backend=$(count_delta "$before" "$after")
    total=$(awk -F/ '{ for (i = 1; i <= NF; i++) s += $i; print s + 0 }' <<<"$per_backend")
    ((total == expected)) || ROW_FLAGS+=("backends-served=$total")

    if ((${#ppids[@]} > 0 && rps > 0)); then
        wall=$(awk -v n="$expected" -v r="$rps" 'BEGIN { print n / r }')
        read -r cpu_s cpu_us cpu_pct <<<"$(awk -v t=$((p1 - p0)) -v hz="$CLK_TCK" -v n="$expected" -v w="$wall" \
            'BEGIN { s = t / hz; printf "%.2f %.2f %.0f\n", s, s * 1e6 / n, s / w * 100 }')"
    fi
    # Neighbours' CPU while the load ran, in percent of one core: over BUSY_PCT flags the row.
    local foreign_pct
    foreign_pct=$(awk -v t="$(others_delta "$RUN_DIR/others.0" "$RUN_DIR/others.1")" -v hz="$CLK_TCK" \
        -v n="$expected" -v r="$rps" 'BEGIN { w = (r > 0) ? n / r : 1; printf "%.0f\n", t / hz / w * 100 }')
    ((foreign_pct < BUSY_PCT)) || ROW_FLAGS+=("busy(${foreign_pct}%)")

    local flagstr=-
    ((${#ROW_FLAGS[@]} == 0)) || flagstr=$(IFS=,; echo "${ROW_FLAGS[*]}")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$rep" "$rps" "$p50" "$p99" \
        "$cpu_us" "$cpu_s" "$cpu_pct" "$rss" "$per_backend" "$flagstr" >>"$RAW"
    log "$(printf '%-20s rep %s: %7s req/s  p50 %s ms  p99 %s ms  cpu %s us/req (%s%%)  rss %s kB  %s  others %s%%  %s' \
        "$name" "$rep" "$rps" "$p50" "$p99" "$cpu_us" "$cpu_pct" "$rss" "$per_backend" "$foreign_pct" "$flagstr")"
}

# A row that could not be measured (its peer did not start).
record_na() {
    local name=$1 rep=$2 why=$3
    printf '%s\t%s\t-\t-\t-\t-\t-\t-\t-\t-\tn/a: %s\n' "$name" "$rep" "$(tr '\t\n' '  ' <<<"$why")" >>"$RAW"
    log "$name rep $rep: n/a: $why"
}

# === medians ===

# Median of "a/b/c" strings, component by component ("-" entries ignored).
median_split() {
    local v k parts=() out=()
    for v in "$@"; do [[ $v == - ]] || { IFS=/ read -ra parts <<<"$v"; break; }; done
    ((${#parts[@]} > 0)) || { echo -; return; }
    for ((k = 1; k <= ${#parts[@]}; k++)); do
        # shellcheck disable=SC2046 # one value per word
        out+=("$(median $(printf '%s\n' "$@" | cut -d/ -f"$k"))")
    done
    (IFS=/; echo "${out[*]}")
}

# Row names of RAW in the order they were first measured.
raw_names() { cut -f1 "$RAW" | awk '!seen[$0]++'; }

# Medians of one row over its repeats, tab-separated:
# rps p50 p99 cpu_us cpu_s cpu_pct rss per_backend flags ("r<rep>:<flags>" joined, or "-").
# Runs flagged busy are left out of the medians when the row has at least one quiet run.
row_medians() {
    local name=$1 n r a b c d e f g h i quiet=0
    local -a rps=() p50=() p99=() cpu_us=() cpu_s=() cpu_pct=() rss=() pb=() fl=()
    while IFS=$'\t' read -r n r a b c d e f g h i; do
        [[ $n == "$name" && $i != *busy* ]] && quiet=1
    done <"$RAW"
    while IFS=$'\t' read -r n r a b c d e f g h i; do
        [[ $n == "$name" ]] || continue
        if ((quiet)) && [[ $i == *busy* ]]; then
            fl+=("r$r:$i(left-out)")
            continue
        fi
        rps+=("$a") p50+=("$b") p99+=("$c") cpu_us+=("$d") cpu_s+=("$e") cpu_pct+=("$f") rss+=("$g") pb+=("$h")
        [[ $i == - ]] || fl+=("r$r:$i")
    done <"$RAW"
    local flagstr=-
    ((${#fl[@]} == 0)) || flagstr=$(IFS=' '; echo "${fl[*]}")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(median "${rps[@]}")" "$(median "${p50[@]}")" \
        "$(median "${p99[@]}")" "$(median "${cpu_us[@]}")" "$(median "${cpu_s[@]}")" "$(median "${cpu_pct[@]}")" \
        "$(median_split "${rss[@]}")" "$(median_split "${pb[@]}")" "$flagstr"
}
