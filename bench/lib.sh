# bench/lib.sh — what the benchmark scripts share: logging, the processes they
# start (and stop, however the script exits), tool installation, and the
# machine's CPU accounting. Sourced, not run. The sourcing script sets OUT (where
# logs go) and QUIET_WAIT (seconds busy_check waits for a busy machine).
# shellcheck shell=bash
say() { printf '==> %s\n' "$*" >&2; }
die() {
    printf '%s: %s\n' "$(basename "$0" .sh)" "$*" >&2
    exit 1
}

# --- cleanup ------------------------------------------------------------------
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 30); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- tools --------------------------------------------------------------------
apt_install() {
    command -v apt-get >/dev/null || {
        say "need $* and there is no apt-get here: install it by hand"
        return 1
    }
    say "installing $* (apt-get)"
    if [ -z "${APT_UPDATED:-}" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}


# --- processes ----------------------------------------------------------------
declare -A PID
# start NAME CPU CMD...: runs CMD pinned to CPU, logging to $OUT/NAME.log.
start() {
    local name=$1 cpu=$2
    shift 2
    taskset -c "$cpu" "$@" >"$OUT/$name.log" 2>&1 &
    PIDS+=($!)
    PID[$name]=$!
}

# wait_ok NAME URL: waits (10 s at most) until URL answers 2xx, while NAME lives.
wait_ok() {
    local name=$1 url=$2
    for _ in $(seq 100); do
        kill -0 "${PID[$name]}" 2>/dev/null || {
            cat "$OUT/$name.log" >&2
            die "$name exited during start-up (log above and in $OUT/$name.log)"
        }
        curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null && return 0
        sleep 0.1
    done
    cat "$OUT/$name.log" >&2
    die "$name did not answer $url within 10 s"
}

# alive NAME...: each server is still running (a crash under load is a finding).
alive() {
    local name
    for name in "$@"; do
        kill -0 "${PID[$name]}" 2>/dev/null || {
            tail -20 "$OUT/$name.log" >&2
            die "$name died during the benchmark (log above and in $OUT/$name.log)"
        }
    done
}

# --- machine state -------------------------------------------------------------
BUSY=no
# busy_check: warns when something else uses the CPUs (a build, a test run): on
# a 2-core machine the figures would then measure that, not shoal.
# Waits up to QUIET_WAIT seconds for the machine to calm down before a run.
busy_check() {
    local others busy waited=0
    while :; do
        others=$(ps -eo pid=,comm=,args= | awk '$2 ~ /^(cargo|rustc|cargo-clippy|clippy-driver)$/' | cut -c1-120)
        busy=$(cpu_busy_percent)
        [ -n "$others" ] || [ "$busy" -gt 10 ] || return 0
        [ "$waited" -gt 0 ] || say "the machine is busy (${busy}% CPU in use); waiting up to ${QUIET_WAIT}s for it to calm down"
        waited=$((waited + 1))
        [ "$waited" -le "$QUIET_WAIT" ] || break
    done
    say "WARNING: the machine is busy (${busy}% CPU in use before a run); the figures will be low and noisy"
    [ -z "$others" ] || printf '%s\n' "$others" >&2
    BUSY="yes: ${busy}% CPU in use before a run${others:+, cargo/rustc running} (see the warnings)"
}

# intrusion_check LABEL: warns when, during run LABEL, other processes took a
# noticeable share of the servers' CPU (something started in the middle of it).
cpu_busy_percent() {
    local a b
    a=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 }' /proc/stat)
    sleep 1
    b=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 }' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ");
        t = y[2] - x[2]; printf "%d", ((t > 0) ? 100 * (y[1] - x[1]) / t : 0) }'
}

# ticks PID...: CPU time (clock ticks) the processes used so far.
ticks() {
    local t=0 pid
    for pid in "$@"; do
        t=$((t + $(awk '{ print $14 + $15 }' "/proc/$pid/stat")))
    done
    echo "$t"
}

# cpu_ticks N: busy and total ticks of CPU N so far.
cpu_ticks() {
    awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat
}

