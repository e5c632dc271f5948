#!/usr/bin/env bash
# bench/hot-key.sh — one key read at full rate through every node of a 5-node
# cluster, against the same load spread over many keys. One command;
# BENCHMARKS.md ("Hot keys") explains it.
#
#   bench/hot-key.sh
#
# Environment (all optional):
#   BENCH_DURATION=10s     length of each measured run
#   BENCH_REPEAT=2         runs per scenario (interleaved hot/spread); the median counts
#   BENCH_CONNECTIONS=16   connections per node (one wrk thread per node)
#   BENCH_QUIET_WAIT=60    seconds to wait for a busy machine before a run
#   BENCH_SKIP_BUILD=1     use the binary already in target/release
#
# Five nodes with fixed membership on 127.0.55.2–6 share CPU 0; five wrk
# processes (one per node, one thread each) share CPU 1. Raw results go to
# bench/results/hot-key-<UTC time>/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

DURATION=${BENCH_DURATION:-10s}
REPEAT=${BENCH_REPEAT:-2}
QUIET_WAIT=${BENCH_QUIET_WAIT:-60}
CONNS=${BENCH_CONNECTIONS:-16}
NODES=5
KEYS=1000
VALUE_SIZE=1024
SERVER_CPU=0
LOADGEN_CPU=1
SERVICE=3155 PEER=8155 GOSSIP=7155 ADMIN=9155

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=bench/results/hot-key-$STAMP
SHOAL=target/release/shoal
CLK_TCK=$(getconf CLK_TCK)

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

ip_of() { echo "127.0.55.$(($1 + 2))"; }

start_cluster() {
    cat >"$OUT/node.yaml" <<EOF
# written by bench/hot-key.sh: the defaults (hot_fraction 0.125, hot_ttl 60s)
node: { drain: 0s }
groups:
  bench:
    capacity: 64MiB
    loader: { demo: { delay: 1ms } }
EOF
    local peers=() i
    for i in $(seq 0 $((NODES - 1))); do peers+=(--peer "$(ip_of "$i"):$PEER"); done
    for i in $(seq 0 $((NODES - 1))); do
        start "node-$i" "$SERVER_CPU" "$SHOAL" -c "$OUT/node.yaml" --node-name "hot-$i" \
            --bind "$(ip_of "$i")" --service-port "$SERVICE" --peer-port "$PEER" \
            --gossip-port "$GOSSIP" --admin-port "$ADMIN" "${peers[@]}"
    done
    for i in $(seq 0 $((NODES - 1))); do wait_ok "node-$i" "http://$(ip_of "$i"):$ADMIN/readyz"; done
}

# put_keys KEYS_FILE: PUTs the 1 KiB value under every key through node 0.
put_keys() {
    local cfg=$OUT/put.curl codes
    sed "s#.*#url = \"http://$(ip_of 0):$SERVICE/bench/&\"#" "$1" >"$cfg"
    codes=$(curl -sS -X PUT --data-binary "@$OUT/value.bin" -K "$cfg" -w '%{http_code}\n' -o /dev/null | sort | uniq -c)
    [ "$(awk '$2 == 204 { print $1 }' <<<"$codes")" = "$(grep -c . "$1")" ] ||
        die "PUT did not answer 204 for every key: $codes"
}

# node_stats NODE FILE: the node's /_stats into FILE.
node_stats() {
    curl -fsS "http://$(ip_of "$1"):$ADMIN/_stats" >"$2"
}

# measure LABEL PATHS_FILE: one run of the five wrk processes at once. Prints
# "req/s owner_cpu% cluster_cpu% owner_service_req owner_peer_req hot_hits peer_loads"
# (counts are deltas over the run, summed over the nodes but for the owner's).
measure() {
    local label=$1 paths=$2 i raw=$OUT/$1
    local pids=() t0=() t1=() wrks=()
    for i in $(seq 0 $((NODES - 1))); do
        pids+=("${PID[node-$i]}")
        node_stats "$i" "$raw.before-$i.json"
        t0+=("$(ticks "${PID[node-$i]}")")
    done
    local w0 w1
    w0=$(date +%s.%N)
    for i in $(seq 0 $((NODES - 1))); do
        WRK_PATHS=$paths WRK_OUT=$raw.wrk-$i.json taskset -c "$LOADGEN_CPU" \
            wrk -t1 -c "$CONNS" -d "$DURATION" -s bench/wrk-paths.lua "http://$(ip_of "$i"):$SERVICE" >"$raw.wrk-$i.txt" &
        wrks+=($!)
    done
    for i in "${wrks[@]}"; do wait "$i"; done
    w1=$(date +%s.%N)
    for i in $(seq 0 $((NODES - 1))); do
        t1+=("$(ticks "${PID[node-$i]}")")
        node_stats "$i" "$raw.after-$i.json"
    done
    alive $(for i in $(seq 0 $((NODES - 1))); do echo "node-$i"; done)
    local rps bad owner_ticks=0 all_ticks=0 delta
    rps=$(jq -s 'map(.requests_per_sec) | add' "$raw".wrk-*.json)
    bad=$(jq -s 'map(.errors | add) | add' "$raw".wrk-*.json)
    [ "$bad" = 0 ] || say "WARNING: $label: $bad requests failed or answered other than 200"
    for i in $(seq 0 $((NODES - 1))); do
        delta=$((t1[i] - t0[i]))
        all_ticks=$((all_ticks + delta))
        [ "$i" != "$OWNER" ] || owner_ticks=$delta
    done
    # Per node: gets (service requests), server_requests (peer requests it
    # answered), hot hits and peer loads, as deltas over the run.
    local counts
    counts=$(for i in $(seq 0 $((NODES - 1))); do
        jq -n --slurpfile a "$raw.before-$i.json" --slurpfile b "$raw.after-$i.json" -r '
            def d(f): ($b[0].groups.bench | f) - ($a[0].groups.bench | f);
            [d(.gets), d(.server_requests), d(.hot.hits), d(.peer_loads)] | map(tostring) | join(" ")'
    done)
    awk -v rps="$rps" -v o="$OWNER" -v ot="$owner_ticks" -v at="$all_ticks" -v hz="$CLK_TCK" \
        -v w0="$w0" -v w1="$w1" '
        { gets[NR - 1] = $1; served[NR - 1] = $2; hot += $3; peer += $4 }
        END { printf "%.0f %.0f %.0f %d %d %d %d\n", rps, (at > 0) ? 100 * ot / at : 0,
                100 * at / hz / (w1 - w0), gets[o], served[o], hot, peer }' <<<"$counts" | tee "$raw.figures"
}

median_of() { # LABEL: the median run's figures, by req/s
    for i in $(seq "$REPEAT"); do cat "$OUT/$1-$i.figures"; done | sort -g |
        awk '{ a[NR] = $0 } END { print a[int((NR + 1) / 2)] }'
}

main() {
    for tool in taskset curl jq wrk; do command -v "$tool" >/dev/null || apt_install "$tool"; done
    [ "$(nproc --all)" -ge 2 ] || die "needs 2 CPUs"
    if [ -z "${BENCH_SKIP_BUILD:-}" ]; then
        say "building release (cargo build --release --bin shoal)"
        cargo build --release --locked --bin shoal >&2
    fi
    mkdir -p "$OUT"
    head -c "$VALUE_SIZE" /dev/zero | tr '\0' 'v' >"$OUT/value.bin"
    start_cluster

    seq -f 'k%04g' 0 $((KEYS - 1)) >"$OUT/spread-keys.txt"
    echo hot >"$OUT/hot-keys.txt"
    put_keys "$OUT/spread-keys.txt"
    put_keys "$OUT/hot-keys.txt"
    sed 's#^#/bench/#' "$OUT/spread-keys.txt" >"$OUT/spread-paths.txt"
    sed 's#^#/bench/#' "$OUT/hot-keys.txt" >"$OUT/hot-paths.txt"
    local owner_ip i
    owner_ip=$(curl -fsS "http://$(ip_of 0):$ADMIN/_ring/bench/hot" | jq -r .owner.addr)
    OWNER=
    for i in $(seq 0 $((NODES - 1))); do [ "$(ip_of "$i")" != "$owner_ip" ] || OWNER=$i; done
    [ -n "$OWNER" ] || die "no node is the owner of key 'hot' ($owner_ip)"
    say "key 'hot' is owned by node $OWNER ($owner_ip)"

    say "warm-up: 2 s of each scenario"
    DURATION=2s measure warmup-hot "$OUT/hot-paths.txt" >/dev/null
    DURATION=2s measure warmup-spread "$OUT/spread-paths.txt" >/dev/null
    for i in $(seq "$REPEAT"); do
        busy_check
        say "run $i/$REPEAT: one key through $NODES nodes, $DURATION"
        measure "hot-$i" "$OUT/hot-paths.txt" >/dev/null
        busy_check
        say "run $i/$REPEAT: $KEYS keys through $NODES nodes, $DURATION"
        measure "spread-$i" "$OUT/spread-paths.txt" >/dev/null
    done
    cleanup

    {
        echo "hot-key benchmark, $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
        echo "$NODES nodes on CPU $SERVER_CPU, $NODES × wrk -t1 -c$CONNS on CPU $LOADGEN_CPU, $DURATION per run, median of $REPEAT; machine busy: $BUSY"
        echo "owner of 'hot': node $OWNER ($owner_ip)"
        printf '%-22s %12s %12s %12s %16s %16s %12s %12s\n' scenario "req/s" "owner cpu%" "cluster cpu%" "owner svc reqs" "owner peer reqs" "hot hits" "peer loads"
        local row name
        for row in "one key:hot" "$KEYS keys:spread"; do
            name=${row#*:}
            read -r rps own all svc srv hot peer <<<"$(median_of "$name")"
            printf '%-22s %12s %12s %12s %16s %16s %12s %12s\n' "${row%%:*}" "$rps" "$own" "$all" "$svc" "$srv" "$hot" "$peer"
        done
    } | tee "$OUT/summary.txt"
    echo "results: $OUT" >&2
}

main "$@"
