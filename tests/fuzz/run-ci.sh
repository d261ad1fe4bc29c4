#!/usr/bin/env bash
# The bounded fuzzing run of CI: builds every target of tests/fuzz, runs each for a fixed time from its
# committed seeds (seeds/<target>/) and known findings (regressions/<target>/), and exits non-zero if
# any run ends in a crash, a leak, an out-of-memory or a per-input timeout. Prints one line per target.
#
# Stable toolchain only: cargo-fuzz's default AddressSanitizer needs `-Zsanitizer`, which stable rustc
# accepts with RUSTC_BOOTSTRAP=1 (set below, for the fuzz build only). FUZZ_SANITIZER=none builds
# without it (faster, but no leak or memory-error detection). FUZZ_TIME_SCALE multiplies every budget
# (e.g. 10 for a longer local run).
set -euo pipefail
cd "$(dirname "$0")/../.."
fuzz_dir=tests/fuzz

# Seconds per target: the end-to-end node targets get most, the small decoders least. Total 215 s, so
# that with start-up the run stays under the 4 minutes CI allows the fuzzers on 2 cores.
targets=(
    "node_requests 50"
    "node_responses 30"
    "node_restore 30"
    "wire_bodies 25"
    "http_head 25"
    "http_head_chunked 25"
    "beacons 20"
    "passport_file 10"
)
# Memory for one fuzzing process (a finding if passed), the longest input tried (a body a few times
# over the seeds' cap), and the time one input may take before it counts as a hang.
rss_limit_mb=2048
max_len=16384
input_timeout_s=10

scale=${FUZZ_TIME_SCALE:-1}
sanitizer=${FUZZ_SANITIZER:-address}
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never

if ! command -v cargo-fuzz >/dev/null; then
    cargo install cargo-fuzz --locked
fi
cargo fuzz build --fuzz-dir "$fuzz_dir" --sanitizer "$sanitizer"

logs=$(mktemp -d)
failed=()
summary=()
for entry in "${targets[@]}"; do
    read -r target seconds <<<"$entry"
    seconds=$((seconds * scale))
    corpus=$fuzz_dir/corpus/$target
    mkdir -p "$corpus"
    dirs=("$corpus" "$fuzz_dir/seeds/$target")
    [ -d "$fuzz_dir/regressions/$target" ] && dirs+=("$fuzz_dir/regressions/$target")
    log=$logs/$target.log
    status=clean
    if ! cargo fuzz run --fuzz-dir "$fuzz_dir" --sanitizer "$sanitizer" "$target" "${dirs[@]}" -- \
        -max_total_time="$seconds" -rss_limit_mb="$rss_limit_mb" -max_len="$max_len" \
        -timeout="$input_timeout_s" -print_final_stats=1 >"$log" 2>&1; then
        status=FINDING
        failed+=("$target")
        echo "----- $target: last lines of its log -----"
        tail -n 60 "$log"
        ls "$fuzz_dir/artifacts/$target" 2>/dev/null | sed "s|^|artifact: $fuzz_dir/artifacts/$target/|" || true
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*$' || echo "?")
    summary+=("$(printf '%-18s %-8s %4ss %10s inputs run, coverage %s' "$target" "$status" "$seconds" "$runs" "$cov")")
done

echo "===== fuzzing summary (sanitizer: $sanitizer) ====="
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzzing found something in: ${failed[*]} (reproduce: cargo fuzz run --fuzz-dir $fuzz_dir <target> <artifact>)"
    exit 1
fi
echo "fuzzing: every target ran its time and found nothing"
