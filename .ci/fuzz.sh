#!/usr/bin/env bash
# Coverage-guided fuzzing of the gossip decoder and unsealer, the peer
# request parser and verifier, the service route parser and the config
# loader (fuzz/, cargo-fuzz on nightly). Each target runs for FUZZ_SECONDS
# (default 20) on a copy of its corpus, so the checkout is never written;
# a crash fails the run and names the input that crashed.
#
#   .ci/fuzz.sh                       every target, 20 s each (CI)
#   FUZZ_SECONDS=600 .ci/fuzz.sh      every target, 10 min each
#   .ci/fuzz.sh config                one target
#
# FUZZ_RSS_MB (default 2048) caps each target's memory. A crash's input is
# kept in fuzz/target/crashes/<target>/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-20}"
rss_mb="${FUZZ_RSS_MB:-2048}"
all_targets=(gossip_packet peer_request service_route config)
if (($#)); then
  targets=("$@")
else
  targets=("${all_targets[@]}")
fi
for target in "${targets[@]}"; do
  if [[ ! -f "fuzz/fuzz_targets/$target.rs" ]]; then
    echo "fuzz.sh: no fuzz target \`$target\`; the targets are: ${all_targets[*]}" >&2
    exit 2
  fi
done

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz.sh: no nightly toolchain; installing one"
  if ! rustup toolchain install nightly --profile minimal; then
    echo "fuzz.sh: cargo-fuzz needs a nightly toolchain (sanitizer flags) and" \
      "\`rustup toolchain install nightly --profile minimal\` failed" >&2
    exit 1
  fi
fi
rustup run nightly rustc --version

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
cargo fuzz --version

# cargo fuzz has no --locked: check that fuzz/Cargo.lock needs no change.
cargo +nightly metadata --manifest-path fuzz/Cargo.toml --locked --format-version 1 >/dev/null
# One build of every target (optimised, debug assertions, AddressSanitizer).
cargo +nightly fuzz build --fuzz-dir fuzz

work="$(mktemp -d "${TMPDIR:-/tmp}/shoal-fuzz.XXXXXX")"
trap 'rm -rf "$work"' EXIT
failed=()
for target in "${targets[@]}"; do
  printf '\n==> fuzz %s for %s s\n' "$target" "$seconds"
  corpus="$work/corpus/$target"
  artifacts="$work/artifacts/$target/"
  mkdir -p "$corpus" "$artifacts"
  cp -R "fuzz/corpus/$target/." "$corpus/"
  dict=()
  if [[ -f "fuzz/dictionaries/$target.dict" ]]; then
    dict=("-dict=fuzz/dictionaries/$target.dict")
  fi
  log="$work/$target.log"
  status=0
  cargo +nightly fuzz run --fuzz-dir fuzz "$target" "$corpus" -- \
    -max_total_time="$seconds" -rss_limit_mb="$rss_mb" -timeout=10 \
    -print_final_stats=1 \
    -artifact_prefix="$artifacts" "${dict[@]}" >"$log" 2>&1 || status=$?
  # The last status line: executions, coverage, corpus.
  grep -E '^#[0-9]+' "$log" | tail -n 1 || true
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" || true
  crashes=("$artifacts"*)
  if ((status != 0)) || [[ -e "${crashes[0]}" ]]; then
    tail -n 60 "$log"
    kept="fuzz/target/crashes/$target"
    mkdir -p "$kept"
    for crash in "${crashes[@]}"; do
      [[ -e "$crash" ]] || continue
      cp "$crash" "$kept/"
      echo "fuzz.sh: $target crashed on $kept/$(basename "$crash")" \
        "(reproduce: cargo +nightly fuzz run --fuzz-dir fuzz $target $kept/$(basename "$crash"))" >&2
    done
    failed+=("$target")
  fi
done

if ((${#failed[@]})); then
  echo "fuzz.sh: crashes in: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz.sh: ${#targets[@]} target(s), ${seconds} s each, no crash"
