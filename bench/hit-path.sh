#!/usr/bin/env bash
# bench/hit-path.sh — shoal's cache-hit throughput and latency against a bare
# axum server, and the peer-hit path. One command; BENCHMARKS.md explains it.
#
#   bench/hit-path.sh
#
# Environment (all optional):
#   BENCH_DURATION=10s      length of each measured run
#   BENCH_WARMUP=2s         unrecorded run before the first measurement of each server
#   BENCH_REPEAT=3          peak runs per server (interleaved bare/shoal); the median counts
#   BENCH_CONNECTIONS=64    connections of the load generator
#   BENCH_QUIET_WAIT=60     seconds to wait for a busy machine (builds, tests) before a run
#   BENCH_PEAK_LOADGEN=wrk  load generator of the peak runs: wrk (Debian), or oha if
#                           wrk cannot be had. One oha thread cannot saturate bare axum
#                           on one core here; one wrk thread can (BENCHMARKS.md).
#                           The rate-limited runs always use oha (crates.io).
#   BENCH_ONLY=local,peer,peer-signed
#                           which parts to run: local (bare axum + shoal hit), peer,
#                           peer-signed (the peer hit with a keyring: every peer request signed),
#                           peer-baseline (the peer hit of BENCH_BASELINE's binary, measured in
#                           the same rounds: a before/after of a change to the peer path)
#   BENCH_BASELINE=         the other shoal binary for peer-baseline
#   BENCH_SCHED=batch       run every server under SCHED_BATCH (chrt --batch 0): no wake-up
#                           preemption between the processes sharing CPU 0, so that node A and
#                           node B, which on a real cluster run on different machines, do not
#                           preempt each other on every request (BENCHMARKS.md, "Scale")
#   BENCH_SKIP_BUILD=1      use the binaries already in target/release
#
# Every server of the parts asked for is started and warmed first, then the peak
# runs go round all of them in turn (bare, local, peer, peer-signed, then again),
# so that a machine whose speed drifts over minutes (this VM's does) slows every
# target alike, and the ratios compare runs a minute apart. The summary also
# gives the peer / local ratio of each round.
#
# Only loopback addresses (127.0.0.1–7); servers pinned to CPU 0, the load
# generator (one thread) to CPU 1. Raw results go to bench/results/<UTC time>/.
# Every process the script starts is stopped when it exits, however it exits.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-2s}
REPEAT=${BENCH_REPEAT:-3}
QUIET_WAIT=${BENCH_QUIET_WAIT:-60}
CONNS=${BENCH_CONNECTIONS:-64}
PEAK_LOADGEN=${BENCH_PEAK_LOADGEN:-}
HAVE_OHA=no
ONLY=${BENCH_ONLY:-local,peer,peer-signed}
KEYS=1000
VALUE_SIZE=1024
SERVER_CPU=0
LOADGEN_CPU=1

# Ports away from shoal's defaults (3000/8000/7946/9090), so that a developer's
# demo node can keep running.
LOCAL_IP=127.0.0.1 LOCAL_SERVICE=3101 LOCAL_PEER=8101 LOCAL_GOSSIP=7101 LOCAL_ADMIN=9101
BARE_ADDR=127.0.0.1:3199
PEER_A=127.0.0.2 PEER_B=127.0.0.3
SIGNED_A=127.0.0.4 SIGNED_B=127.0.0.5
BASELINE_A=127.0.0.6 BASELINE_B=127.0.0.7
PEER_SERVICE=3102 PEER_PEER=8102 PEER_GOSSIP=7102 PEER_ADMIN=9102

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=bench/results/$STAMP
SHOAL=${BENCH_SHOAL:-target/release/shoal}
BARE=target/release/examples/bare_axum
CLK_TCK=$(getconf CLK_TCK)
case ${BENCH_SCHED:-} in
'') RUN_AS=() ;;
batch) RUN_AS=(chrt --batch 0) ;;
*) echo "BENCH_SCHED takes batch or nothing, not '$BENCH_SCHED'" >&2 && exit 2 ;;
esac

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

# --- tools --------------------------------------------------------------------
ensure_tools() {
    command -v taskset >/dev/null || apt_install util-linux
    command -v curl >/dev/null || apt_install curl
    command -v jq >/dev/null || apt_install jq
    local cpus
    cpus=$(nproc --all)
    [ "$cpus" -ge 2 ] || die "needs 2 CPUs (servers on CPU $SERVER_CPU, load generator on CPU $LOADGEN_CPU); this machine has $cpus"

    export PATH="$HOME/.cargo/bin:$PATH"
    case ${PEAK_LOADGEN:-wrk} in wrk | oha) ;; *) die "BENCH_PEAK_LOADGEN must be wrk or oha, not '$PEAK_LOADGEN'" ;; esac

    # oha runs at a fixed rate (-q) with latency correction: the half-peak runs.
    if ! command -v oha >/dev/null; then
        local log=${TMPDIR:-/tmp}/hit-path-oha-install.log
        say "installing oha (cargo install oha --locked: a few minutes, once)"
        cargo install oha --locked >"$log" 2>&1 || say "WARNING: cargo install oha failed (see $log)"
    fi
    if command -v oha >/dev/null; then HAVE_OHA=yes; fi

    # wrk drives the peak runs: one thread of it saturates a one-core server.
    if [ "${PEAK_LOADGEN:-wrk}" = wrk ] && ! command -v wrk >/dev/null; then
        apt_install wrk || say "WARNING: could not install wrk"
    fi
    if [ -z "$PEAK_LOADGEN" ]; then
        if command -v wrk >/dev/null; then PEAK_LOADGEN=wrk; else PEAK_LOADGEN=oha; fi
    fi
    case $PEAK_LOADGEN in
    wrk) command -v wrk >/dev/null || die "no wrk (apt-get install wrk)" ;;
    oha) [ $HAVE_OHA = yes ] || die "neither wrk nor oha could be installed" ;;
    esac
}

intrusion_check() {
    local other
    other=$(awk '{ printf "%d", $7 - $5 }' "$OUT/$1.figures")
    if [ "$other" -gt 10 ]; then
        say "WARNING: other processes took ~${other}% of CPU $SERVER_CPU during $1; its figures are suspect"
        BUSY="yes: other processes ran during a measured run (see the warnings)"
    fi
}

# cpu_busy_percent: share of all CPUs in use over one second, from /proc/stat.
# --- load ---------------------------------------------------------------------
# measure LABEL BASE_URL PATHS_FILE RATE CORRECT DURATION SERVER...
# One run of the load generator $GEN on CPU 1 (RATE "" = as fast as it goes;
# CORRECT yes = oha's latency correction). Prints "req/s p50_ms p99_ms failed
# server_cpu% loadgen_core% server_core%" and keeps the raw output.
measure() {
    local label=$1 base=$2 paths=$3 rate=$4 correct=$5 duration=$6
    shift 6
    local servers=() name raw=$OUT/$label
    for name in "$@"; do servers+=("${PID[$name]}"); done
    local t0 t1 g0 g1 s0 s1 w0 w1 figures
    t0=$(ticks "${servers[@]}")
    g0=$(cpu_ticks "$LOADGEN_CPU")
    s0=$(cpu_ticks "$SERVER_CPU")
    w0=$(date +%s.%N)
    case $GEN in
    oha)
        sed "s#^#$base#" "$paths" >"$raw.urls"
        local args=(--no-tui --worker-threads 1 -c "$CONNS" -z "$duration"
            --output-format json -o "$raw.json" --urls-from-file "$raw.urls")
        [ -z "$rate" ] || args+=(-q "$rate")
        [ "$correct" != yes ] || args+=(--latency-correction)
        taskset -c "$LOADGEN_CPU" oha "${args[@]}" >/dev/null
        figures=$(jq -r '[.summary.requestsPerSec,
                .latencyPercentiles.p50 * 1000, .latencyPercentiles.p99 * 1000,
                ([.statusCodeDistribution | to_entries[] | select(.key != "200") | .value] | add // 0)
                + ([.errorDistribution | to_entries[] | select(.key != "aborted due to deadline") | .value] | add // 0)]
               | map(tostring) | join(" ")' "$raw.json")
        ;;
    wrk)
        [ -z "$rate" ] || die "wrk has no rate limit: the half-peak runs need oha"
        WRK_PATHS=$paths WRK_OUT=$raw.json taskset -c "$LOADGEN_CPU" \
            wrk -t1 -c "$CONNS" -d "$duration" -s bench/wrk-paths.lua "$base" >"$raw.txt"
        figures=$(jq -r '[.requests_per_sec, .p50_us / 1000, .p99_us / 1000,
                (.errors | add)] | map(tostring) | join(" ")' "$raw.json")
        ;;
    esac
    w1=$(date +%s.%N)
    t1=$(ticks "${servers[@]}")
    g1=$(cpu_ticks "$LOADGEN_CPU")
    s1=$(cpu_ticks "$SERVER_CPU")
    alive "$@"
    # fields: req/s p50 p99 failed server_cpu% loadgen_core_busy% server_core_busy%
    awk -v f="$figures" -v t0="$t0" -v t1="$t1" -v w0="$w0" -v w1="$w1" -v hz="$CLK_TCK" \
        -v g0="$g0" -v g1="$g1" -v s0="$s0" -v s1="$s1" 'BEGIN {
            split(g0, a, " "); split(g1, b, " "); split(s0, c, " "); split(s1, d, " ");
            printf "%s %.0f %.0f %.0f\n", f, 100 * (t1 - t0) / hz / (w1 - w0),
                ((b[2] > a[2]) ? 100 * (b[1] - a[1]) / (b[2] - a[2]) : 0),
                ((d[2] > c[2]) ? 100 * (d[1] - c[1]) / (d[2] - c[2]) : 0) }' | tee "$raw.figures"
}

declare -A R # results: R[name.what]

# record NAME KIND LINE: keeps one run's figures under R[NAME.KIND.*].
record() {
    local rps p50 p99 bad srv gen
    read -r rps p50 p99 bad srv gen _ <<<"$3"
    R[$1.$2.rps]=$rps R[$1.$2.p50]=$p50 R[$1.$2.p99]=$p99
    R[$1.$2.bad]=$bad R[$1.$2.srv]=$srv R[$1.$2.gen]=$gen
    [ "$bad" = 0 ] || say "WARNING: $1 $2: $bad requests failed or answered other than 200 (see $OUT)"
}

# peaks "NAME BASE PATHS SERVERS..."...: warm-up, then REPEAT rounds of one
# peak run per target, interleaved so that a drifting machine hits every target
# alike; the median run (by req/s) of each target counts.
peaks() {
    local spec name base paths servers i line
    GEN=$PEAK_LOADGEN
    for spec in "$@"; do
        read -r name base paths servers <<<"$spec"
        # shellcheck disable=SC2086 # servers is a list of names
        {
            busy_check
            say "$name: warm-up $WARMUP"
            measure "$name-warmup" "$base" "$paths" "" no "$WARMUP" $servers >/dev/null
        }
    done
    for i in $(seq "$REPEAT"); do
        busy_check
        for spec in "$@"; do
            read -r name base paths servers <<<"$spec"
            say "$name: peak run $i/$REPEAT, $DURATION, $CONNS connections"
            # shellcheck disable=SC2086
            measure "$name-peak-$i" "$base" "$paths" "" no "$DURATION" $servers >/dev/null
            intrusion_check "$name-peak-$i"
        done
    done
    for spec in "$@"; do
        read -r name _ <<<"$spec"
        line=$(for i in $(seq "$REPEAT"); do cat "$OUT/$name-peak-$i.figures"; done | sort -g | awk '{ a[NR] = $0 } END { print a[int((NR + 1) / 2)] }')
        record "$name" peak "$line"
        R[$name.peak.min]=$(for i in $(seq "$REPEAT"); do cut -d' ' -f1 "$OUT/$name-peak-$i.figures"; done | sort -g | head -1)
        R[$name.peak.max]=$(for i in $(seq "$REPEAT"); do cut -d' ' -f1 "$OUT/$name-peak-$i.figures"; done | sort -g | tail -1)
    done
}

# halves "NAME BASE PATHS SERVERS..."...: each target at half its median peak
# rate, with and without oha's latency correction.
halves() {
    [ $HAVE_OHA = yes ] || return 0
    GEN=oha
    local spec name base paths servers rate line
    for spec in "$@"; do
        read -r name base paths servers <<<"$spec"
        rate=$(awk -v r="${R[$name.peak.rps]}" 'BEGIN { printf "%d", r / 2 }')
        busy_check
        say "$name: $rate req/s (half its peak), $DURATION, latency corrected"
        # shellcheck disable=SC2086
        line=$(measure "$name-half" "$base" "$paths" "$rate" yes "$DURATION" $servers)
        intrusion_check "$name-half"
        record "$name" half "$line"
        say "$name: $rate req/s (half its peak), $DURATION, per-request latency"
        # shellcheck disable=SC2086
        line=$(measure "$name-half-uncorrected" "$base" "$paths" "$rate" no "$DURATION" $servers)
        intrusion_check "$name-half-uncorrected"
        record "$name" halfraw "$line"
    done
}

# --- shoal helpers ----------------------------------------------------------------
write_config() { # FILE HOT_FRACTION
    cat >"$1" <<EOF
# written by bench/hit-path.sh
node: { drain: 0s }
groups:
  bench:
    capacity: 64MiB
    hot_fraction: $2
    loader: { demo: { delay: 1ms } }
EOF
}

# put_keys SERVICE_URL KEYS_FILE: PUTs the 1 KiB value under every key; every PUT must answer 204.
put_keys() {
    local base=$1 keys=$2 cfg=$OUT/put.curl codes
    sed "s#.*#url = \"$base/bench/&\"#" "$keys" >"$cfg"
    codes=$(curl -sS -X PUT -H 'content-type: application/octet-stream' \
        --data-binary "@$OUT/value.bin" -K "$cfg" -w '%{http_code}\n' -o /dev/null | sort | uniq -c)
    [ "$(awk '$2 == 204 { print $1 }' <<<"$codes")" = "$(grep -c . "$keys")" ] ||
        die "PUT through $base did not answer 204 for every key: $codes"
}

# expect_source URL SOURCE: 200, a 1 KiB body, and x-shoal-source: SOURCE.
expect_source() {
    local url=$1 want=$2 headers size got
    headers=$(curl -sS -D - -o "$OUT/probe.bin" "$url" | tr -d '\r')
    size=$(wc -c <"$OUT/probe.bin" | tr -d ' ')
    head -1 <<<"$headers" | grep -q ' 200' || die "GET $url: $(head -1 <<<"$headers")"
    [ "$size" = "$VALUE_SIZE" ] || die "GET $url: $size bytes, expected $VALUE_SIZE"
    got=$(awk -F': *' 'tolower($1) == "x-shoal-source" { print $2 }' <<<"$headers")
    [ "$got" = "$want" ] || die "GET $url: x-shoal-source is '${got:-absent}', expected '$want'"
}

# --- the measurements ---------------------------------------------------------------
# Each setup_PART starts its servers on CPU 0 (idle ones cost nothing), warms
# them and appends its targets to SPECS; main measures them all in turns.
SPECS=()

# Local hit: bare axum and one shoal node.
setup_local() {
    say "bare_axum on $BARE_ADDR (CPU $SERVER_CPU)"
    start bare "$SERVER_CPU" "${RUN_AS[@]}" "$BARE" "$BARE_ADDR"
    write_config "$OUT/local.yaml" 0.125
    say "shoal on $LOCAL_IP:$LOCAL_SERVICE (CPU $SERVER_CPU)"
    start shoal "$SERVER_CPU" "${RUN_AS[@]}" "$SHOAL" -c "$OUT/local.yaml" --node-name bench-local \
        --bind "$LOCAL_IP" --service-port "$LOCAL_SERVICE" --peer-port "$LOCAL_PEER" \
        --gossip-port "$LOCAL_GOSSIP" --admin-port "$LOCAL_ADMIN"
    wait_ok bare "http://$BARE_ADDR/bench/k000"
    wait_ok shoal "http://$LOCAL_IP:$LOCAL_ADMIN/readyz"

    say "warming $KEYS keys of $VALUE_SIZE bytes"
    put_keys "http://$LOCAL_IP:$LOCAL_SERVICE" "$OUT/local-keys.txt"
    expect_source "http://$LOCAL_IP:$LOCAL_SERVICE/bench/k000" main
    expect_source "http://$LOCAL_IP:$LOCAL_SERVICE/bench/k$((KEYS - 1))" main

    SPECS+=("bare http://$BARE_ADDR $OUT/local-paths.txt bare"
        "shoal http://$LOCAL_IP:$LOCAL_SERVICE $OUT/local-paths.txt shoal")
}

finish_local() {
    curl -sS "http://$LOCAL_IP:$LOCAL_ADMIN/_stats" >"$OUT/shoal-stats.json" || true
    curl -sS "http://$LOCAL_IP:$LOCAL_ADMIN/metrics" >"$OUT/shoal-metrics.txt" || true
}

# Peer hit: node A asks node B for every key. Two nodes with fixed membership,
# hot_fraction 0 so that A never keeps a copy. With "signed", another pair
# (127.0.0.4 and .5) shares a keyring, so every peer request is signed and
# verified; with "baseline", another pair (127.0.0.6 and .7) runs
# BENCH_BASELINE's binary.
setup_peer() {
    local name=peer keyring=() a=$PEER_A b=$PEER_B shoal=$SHOAL
    case ${1:-} in
    signed)
        name=peer-signed a=$SIGNED_A b=$SIGNED_B
        head -c 32 /dev/urandom | base64 >"$OUT/keyring"
        keyring=(--keyring "$OUT/keyring")
        ;;
    baseline)
        name=peer-baseline a=$BASELINE_A b=$BASELINE_B shoal=${BENCH_BASELINE:-}
        [ -x "$shoal" ] || die "peer-baseline needs BENCH_BASELINE=<another shoal binary>"
        ;;
    esac
    write_config "$OUT/peer.yaml" 0
    local node ip
    for node in a b; do
        if [ $node = a ]; then ip=$a; else ip=$b; fi
        say "shoal $name node $node on $ip:$PEER_SERVICE (CPU $SERVER_CPU)"
        start "$name-node-$node" "$SERVER_CPU" "${RUN_AS[@]}" "$shoal" -c "$OUT/peer.yaml" --node-name "bench-$node" \
            --bind "$ip" --service-port "$PEER_SERVICE" --peer-port "$PEER_PEER" \
            --gossip-port "$PEER_GOSSIP" --admin-port "$PEER_ADMIN" \
            --peer "$a:$PEER_PEER" --peer "$b:$PEER_PEER" "${keyring[@]}"
    done
    wait_ok "$name-node-a" "http://$a:$PEER_ADMIN/readyz"
    wait_ok "$name-node-b" "http://$b:$PEER_ADMIN/readyz"

    say "choosing $KEYS keys that $name node B owns (node A's /_ring)"
    seq -f 'k%04g' 0 $((KEYS * 4 - 1)) >"$OUT/$name-candidates.txt"
    sed "s#.*#url = \"http://$a:$PEER_ADMIN/_ring/bench/&\"#" "$OUT/$name-candidates.txt" >"$OUT/$name-ring.curl"
    curl -sS -K "$OUT/$name-ring.curl" -w '\n' >"$OUT/$name-ring.jsonl"
    [ "$(grep -c . "$OUT/$name-ring.jsonl")" = $((KEYS * 4)) ] ||
        die "node A's /_ring did not answer every key (see $OUT/$name-ring.jsonl)"
    paste -d ' ' "$OUT/$name-candidates.txt" \
        <(jq -r --arg ip "$b" \
            'if ((.owner.addr | tostring) == $ip or (.owner.name | tostring | startswith($ip + ":"))) then "B" else "A" end' \
            "$OUT/$name-ring.jsonl") |
        awk -v n="$KEYS" '$2 == "B" && kept < n { print $1; kept++ }' >"$OUT/$name-keys.txt"
    local owned
    owned=$(grep -c . "$OUT/$name-keys.txt" || true)
    [ "$owned" = "$KEYS" ] || die "node B owns only $owned of $((KEYS * 4)) candidate keys (see $OUT/$name-ring.jsonl)"
    sed 's#^#/bench/#' "$OUT/$name-keys.txt" >"$OUT/$name-paths.txt"

    say "warming them (PUT through node A stores at node B)"
    put_keys "http://$a:$PEER_SERVICE" "$OUT/$name-keys.txt"
    local first
    first=$(head -1 "$OUT/$name-keys.txt")
    expect_source "http://$b:$PEER_SERVICE/bench/$first" main
    expect_source "http://$a:$PEER_SERVICE/bench/$first" peer
    expect_source "http://$a:$PEER_SERVICE/bench/$first" peer # again: A kept no copy
    SPECS+=("$name http://$a:$PEER_SERVICE $OUT/$name-paths.txt $name-node-a $name-node-b")
}

finish_peer() {
    local name=peer a=$PEER_A b=$PEER_B node ip first
    case ${1:-} in
    signed) name=peer-signed a=$SIGNED_A b=$SIGNED_B ;;
    baseline) name=peer-baseline a=$BASELINE_A b=$BASELINE_B ;;
    esac
    first=$(head -1 "$OUT/$name-keys.txt")
    expect_source "http://$a:$PEER_SERVICE/bench/$first" peer # nor after the load
    for node in a b; do
        if [ $node = a ]; then ip=$a; else ip=$b; fi
        curl -sS "http://$ip:$PEER_ADMIN/_stats" >"$OUT/$name-node-$node-stats.json" || true
        curl -sS "http://$ip:$PEER_ADMIN/metrics" >"$OUT/$name-node-$node-metrics.txt" || true
    done
}

setup_peer-signed() { setup_peer signed; }
finish_peer-signed() { finish_peer signed; }
setup_peer-baseline() { setup_peer baseline; }
finish_peer-baseline() { finish_peer baseline; }

# --- main -------------------------------------------------------------------------
main() {
    local part
    for part in ${ONLY//,/ }; do
        case $part in local | peer | peer-signed | peer-baseline) ;; *) die "BENCH_ONLY takes local, peer, peer-signed and peer-baseline, not '$part'" ;; esac
    done
    ensure_tools
    mkdir -p "$OUT"
    say "results in $OUT (peak runs: $PEAK_LOADGEN; rate-limited runs: $([ $HAVE_OHA = yes ] && echo oha || echo none, no oha))"

    if [ -z "${BENCH_SKIP_BUILD:-}" ]; then
        say "building release"
        cargo build --release --bin shoal --example bare_axum
    fi
    if [ ! -x "$SHOAL" ] || [ ! -x "$BARE" ]; then
        die "missing $SHOAL or $BARE (build them, or unset BENCH_SKIP_BUILD)"
    fi

    {
        echo "date (UTC): $STAMP"
        echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src Cargo.toml examples 2>/dev/null || echo ' + uncommitted changes')"
        echo "shoal: $($SHOAL --version 2>&1), binary built $(date -u -r "$SHOAL" +%Y-%m-%dT%H:%M:%SZ)"
        [ -z "${BENCH_BASELINE:-}" ] || echo "baseline (peer-baseline): $BENCH_BASELINE, built $(date -u -r "$BENCH_BASELINE" +%Y-%m-%dT%H:%M:%SZ)"
        echo "load generator: peak runs $($PEAK_LOADGEN --version 2>&1 | head -1 | cut -d' ' -f1-2)$([ $HAVE_OHA = no ] || echo ", rate-limited runs $(oha --version)"), 1 thread on CPU $LOADGEN_CPU; servers on CPU $SERVER_CPU"
        echo "cpu: $(lscpu 2>/dev/null | awk -F': *' '/^Model name/ { print $2; exit }'), $(nproc --all) CPUs; kernel $(uname -r)"
        echo "scheduling of the servers: ${BENCH_SCHED:-default (SCHED_OTHER)}"
        echo "runs: $REPEAT x $DURATION at peak (median kept) + $DURATION at half the peak rate; $CONNS connections; $KEYS keys of $VALUE_SIZE bytes"
    } >"$OUT/env.txt"

    head -c "$VALUE_SIZE" /dev/zero | tr '\0' 'v' >"$OUT/value.bin"
    seq -f 'k%03g' 0 $((KEYS - 1)) >"$OUT/local-keys.txt"
    sed 's#^#/bench/#' "$OUT/local-keys.txt" >"$OUT/local-paths.txt"

    for part in ${ONLY//,/ }; do
        "setup_$part"
    done
    peaks "${SPECS[@]}"
    halves "${SPECS[@]}"
    for part in ${ONLY//,/ }; do
        "finish_$part"
    done
    cleanup
    summary | tee "$OUT/summary.txt"
}

# per_core NAME: requests served per second of server CPU in NAME's median peak run.
per_core() { awk -v r="${R[$1.peak.rps]}" -v c="${R[$1.peak.srv]}" 'BEGIN { printf "%f", ((c > 0) ? 100 * r / c : 0) }'; }
# round_ratios A B: A's peak req/s over B's, round by round.
round_ratios() {
    local i out=()
    for i in $(seq "$REPEAT"); do
        out+=("$(paste -d ' ' "$OUT/$1-peak-$i.figures" "$OUT/$2-peak-$i.figures" |
            awk '{ printf "%.2f", $1 / $8 }')")
    done
    echo "${out[*]}"
}
fmt0() { awk -v x="$1" 'BEGIN { printf "%d", x + 0.5 }'; }
fmt2() { awk -v x="$1" 'BEGIN { printf "%.2f", x }'; }

summary() {
    echo
    echo "shoal hit-path benchmark"
    sed 's/^/  /' "$OUT/env.txt"
    echo "  machine busy: $BUSY"
    echo
    printf '%-16s | %8s %15s %6s %6s %8s | %7s %6s %6s | %6s %6s\n' \
        "" "peak" "(min-max)" "p50" "p99" "cpu" "half" "p50" "p99" "p50" "p99"
    printf '%-16s | %8s %15s %6s %6s %8s | %7s %6s %6s | %6s %6s\n' \
        "" "req/s" "" "ms" "ms" "srv/gen" "req/s" "ms" "ms" "ms" "ms"
    printf '%-16s | %48s | %21s | %13s\n' "" "" "latency corrected" "per request"
    local row label n
    for row in "bare axum:bare" "shoal local hit:shoal" "shoal peer hit:peer" "peer, keyring:peer-signed" "peer, baseline:peer-baseline"; do
        label=${row%%:*} n=${row##*:}
        [ -n "${R[$n.peak.rps]:-}" ] || continue
        printf '%-16s | %8s %15s %6s %6s %8s' "$label" "$(fmt0 "${R[$n.peak.rps]}")" \
            "($(fmt0 "${R[$n.peak.min]}")-$(fmt0 "${R[$n.peak.max]}"))" \
            "$(fmt2 "${R[$n.peak.p50]}")" "$(fmt2 "${R[$n.peak.p99]}")" \
            "${R[$n.peak.srv]}/${R[$n.peak.gen]}%"
        if [ -n "${R[$n.half.rps]:-}" ]; then
            printf ' | %7s %6s %6s | %6s %6s\n' "$(fmt0 "${R[$n.half.rps]}")" \
                "$(fmt2 "${R[$n.half.p50]}")" "$(fmt2 "${R[$n.half.p99]}")" \
                "$(fmt2 "${R[$n.halfraw.p50]}")" "$(fmt2 "${R[$n.halfraw.p99]}")"
        else
            printf ' | %7s %6s %6s | %6s %6s\n' - - - - -
        fi
    done
    echo
    local failed=0 k
    for k in "${!R[@]}"; do
        [[ $k != *.bad ]] || failed=$((failed + ${R[$k]}))
    done
    echo "cpu srv/gen: CPU used by the server(s) / busy share of the load generator's core, in the median peak run"
    if [ -n "${R[bare.peak.srv]:-}" ] && [ "${R[bare.peak.srv]}" -lt 90 ]; then
        echo "NOTE: bare axum used only ${R[bare.peak.srv]}% CPU at its peak: the load generator was the limit, so bare axum's" \
            "peak is low and the shoal/bare ratio flattering (BENCH_PEAK_LOADGEN=wrk saturates it)"
    fi
    echo "failed or non-200 requests, all runs: $failed"
    if [ -n "${R[shoal.peak.rps]:-}" ]; then
        local ratio verdict
        ratio=$(awk -v s="${R[shoal.peak.rps]}" -v b="${R[bare.peak.rps]}" 'BEGIN { printf "%.2f", s / b }')
        verdict=$(awk -v r="$ratio" 'BEGIN { print ((r >= 0.8) ? "PASS" : "FAIL") }')
        echo "target shoal local hit >= 0.8 x bare axum throughput: $ratio -> $verdict"
        # The load generator's core can be the limit when the server is cheap:
        # requests per second of server CPU is the ratio with that factored out.
        echo "  per second of server CPU: bare $(fmt0 "$(per_core bare)"), shoal $(fmt0 "$(per_core shoal)") req -> ratio" \
            "$(awk -v s="$(per_core shoal)" -v b="$(per_core bare)" 'BEGIN { printf "%.2f", s / b }')"
        if [ -n "${R[shoal.half.p99]:-}" ]; then
            verdict=$(awk -v p="${R[shoal.half.p99]}" 'BEGIN { print ((p <= 1.0) ? "PASS" : "FAIL") }')
            echo "target shoal local hit p99 <= 1 ms at half the peak rate: $(fmt2 "${R[shoal.half.p99]}") ms latency corrected -> $verdict" \
                "($(fmt2 "${R[shoal.halfraw.p99]}") ms per request; bare axum $(fmt2 "${R[bare.half.p99]}") / $(fmt2 "${R[bare.halfraw.p99]}") ms)"
        else
            echo "target p99 <= 1 ms at half the peak rate: not measured (needs oha)"
        fi
    fi
    if [ -n "${R[shoal.half.p99]:-}" ] && [ -n "${R[bare.half.p99]:-}" ]; then
        ratio=$(awk -v s="${R[shoal.half.p99]}" -v b="${R[bare.half.p99]}" 'BEGIN { printf "%.2f", s / b }')
        verdict=$(awk -v r="$ratio" 'BEGIN { print ((r <= 1.2) ? "PASS" : "FAIL") }')
        echo "target (issue 11) shoal local hit p99 <= 1.2 x bare axum's, half peak, latency corrected: $ratio -> $verdict"
    fi
    if [ -n "${R[peer-baseline.peak.rps]:-}" ] && [ -n "${R[peer.peak.rps]:-}" ]; then
        echo "peer hit over the baseline's: $(awk -v p="${R[peer.peak.rps]}" -v b="${R[peer-baseline.peak.rps]}" 'BEGIN { printf "%.2f", p / b }')" \
            "(each round: $(round_ratios peer peer-baseline))"
    fi
    local peer
    for peer in peer peer-signed; do
        if [ -n "${R[$peer.peak.rps]:-}" ] && [ -n "${R[shoal.peak.rps]:-}" ]; then
            ratio=$(awk -v p="${R[$peer.peak.rps]}" -v s="${R[shoal.peak.rps]}" 'BEGIN { printf "%.2f", p / s }')
            verdict=$(awk -v r="$ratio" 'BEGIN { print ((r >= 0.3) ? "PASS" : "FAIL") }')
            echo "target (issue 11) $peer hit >= 0.3 x local hit throughput: $ratio -> $verdict"
            echo "  $peer / local in each round (runs a minute apart): $(round_ratios "$peer" shoal)"
        fi
    done
    echo "raw results: $OUT"
}

main "$@"
