#!/usr/bin/env bash
# Side-by-side regression check of two revisions, measured alternately in one run:
#
#   benches/compare.sh <base-rev> [<new-rev>]     (new defaults to HEAD: committed work only)
#   benches/compare.sh --clean                    (removes the worktrees and builds it made)
#
# Each revision is checked out in a detached git worktree of its own, $DM_COMPARE_DIR/base/src and
# .../new/src (default /tmp/dm-compare), and built in release mode with its own CARGO_TARGET_DIR
# beside it (.../base/target, .../new/target). Both are kept, so a second run rebuilds only what
# changed between the revisions it is given, and re-measures. The measuring code (bench_startup.py
# and the accept-node driver) is this script's own tree's, so both revisions are measured by the
# same code. Comparing a revision with itself shows the noise.
#
# Prints a markdown table, base and new and new/base, of:
#   1. MCP start -> tools/list answered (ms, median), and the darkmatter binary's idle RSS after it
#      (tests/mcp_client/bench_startup.py's one run, alternating base/new run by run);
#   2. signed messages/s on loopback and the single-message median latency of the Rust pair
#      (tests/interop.rs bench_signed_messages with DM_BENCH_ONLY=rust, alternating round by round);
#   3. the accept path's instructions per message: B's whole process under callgrind accepting
#      ACCEPT_SMALL and ACCEPT_LARGE signed messages (benches/accept_node.rs), the difference divided
#      by the difference in messages, so start-up and shutdown cancel out.
#
# Everything runs on loopback; every step is bounded by `timeout`; the nodes stop when their driver
# ends. Tunables (environment): DM_COMPARE_DIR, DM_COMPARE_STARTUP_RUNS (per revision, default 10),
# DM_COMPARE_ROUNDS (interop rounds per revision, default 3), DM_COMPARE_CG_ROUNDS (default 3).
set -euo pipefail

ROOT=${DM_COMPARE_DIR:-/tmp/dm-compare}
STARTUP_RUNS=${DM_COMPARE_STARTUP_RUNS:-10}
ROUNDS=${DM_COMPARE_ROUNDS:-3}
CG_ROUNDS=${DM_COMPARE_CG_ROUNDS:-3}
# Messages per callgrind run; the larger is the inbox size (nothing is consumed).
ACCEPT_SMALL=10
ACCEPT_LARGE=50
# Bounds, in seconds.
BUILD_S=3600
STARTUP_S=60
INTEROP_S=900
CALLGRIND_S=900

REPO=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)

say() { echo "compare: $*" >&2; }
die() { say "$*"; exit 1; }

if [[ ${1:-} == --clean ]]; then
    for d in "$ROOT"/base/src "$ROOT"/new/src; do
        [[ -d $d ]] && git -C "$REPO" worktree remove --force "$d" || true
    done
    git -C "$REPO" worktree prune
    rm -rf "$ROOT"
    exit 0
fi
[[ $# -ge 1 && $# -le 2 ]] || die "usage: benches/compare.sh <base-rev> [<new-rev>] | --clean"
BASE=$(git -C "$REPO" rev-parse --verify "$1^{commit}") || die "no such revision: $1"
NEW=$(git -C "$REPO" rev-parse --verify "${2:-HEAD}^{commit}") || die "no such revision: ${2:-HEAD}"
mkdir -p "$ROOT"
WORK=$(mktemp -d "$ROOT/run.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# ---- builds ---------------------------------------------------------------------------------
# Checks `rev` out in the slot's worktree (made on first use) and builds it in release mode.
build_rev() {
    local slot=$1 rev=$2 dir=$ROOT/$1
    if [[ ! -d $dir/src ]]; then
        git -C "$REPO" worktree add --detach "$dir/src" "$rev" >&2
    else
        git -C "$dir/src" checkout --detach -q "$rev"
    fi
    [[ $(git -C "$dir/src" rev-parse HEAD) == "$rev" ]] || die "$dir/src is not at $rev"
    say "building $slot ${rev:0:12} (log: $dir/build.log)"
    (
        cd "$dir/src"
        export CARGO_TARGET_DIR=$dir/target
        timeout $BUILD_S cargo build --release -p mcp --bin darkmatter
        timeout $BUILD_S cargo test --release -p darkmatter-tests --test interop --no-run --message-format=json \
            | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "interop" and m.get("executable"):
        print(m["executable"])' >"$dir/interop-path"
    ) >"$dir/build.log" 2>&1 || die "build of ${rev:0:12} failed; see $dir/build.log"
    [[ -s $dir/interop-path ]] || die "no interop test binary for ${rev:0:12}"
    for f in "$dir/target/release/darkmatter" "$dir/target/release/smol-node"; do
        [[ -x $f ]] || die "missing $f"
    done
}

build_driver() {
    say "building the accept-node driver from $REPO"
    CARGO_TARGET_DIR=$ROOT/driver-target timeout $BUILD_S \
        cargo build --release --manifest-path "$REPO/Cargo.toml" -p darkmatter-benches --bin accept-node \
        >"$ROOT/driver-build.log" 2>&1 || die "driver build failed; see $ROOT/driver-build.log"
    DRIVER=$ROOT/driver-target/release/accept-node
}

build_rev base "$BASE"
build_rev new "$NEW"
build_driver
bin() { echo "$ROOT/$1/target/release/$2"; }
label() { if [[ $1 == base ]]; then echo "${BASE:0:12}"; else echo "${NEW:0:12}"; fi; }

# ---- 1. MCP start -> tools/list, idle RSS ------------------------------------------------------
say "MCP start-up: $STARTUP_RUNS runs each, alternating"
mkdir -p "$WORK/startup-tmp"
TMPDIR=$WORK/startup-tmp timeout $((STARTUP_S * (STARTUP_RUNS + ROUNDS) * 2)) python3 - \
    "$REPO/tests/mcp_client" "$(bin base darkmatter)" "$(bin new darkmatter)" \
    "$STARTUP_RUNS" "$ROUNDS" >"$WORK/startup.json" <<'EOF'
import json, statistics, sys
sys.path.insert(0, sys.argv[1])
import bench_startup
binaries = {"base": sys.argv[2], "new": sys.argv[3]}
runs, rounds = int(sys.argv[4]), int(sys.argv[5])
ms = {k: [] for k in binaries}
rss = {k: [] for k in binaries}
tools = {}
for _ in range(runs):
    for k, b in binaries.items():
        t, n, _ = bench_startup.one_run(b)
        ms[k].append(t)
        tools[k] = n
for _ in range(rounds):
    for k, b in binaries.items():
        rss[k].append(bench_startup.one_run(b, measure_rss=True)[2])
print(json.dumps({k: {"ms": statistics.median(ms[k]), "ms_all": ms[k], "rss_kib": statistics.median(rss[k]),
                      "rss_all": rss[k], "tools": tools[k]} for k in binaries}))
EOF

# ---- 2. signed messages/s and latency (the interop benchmark, Rust pair) --------------------------
interop() { # slot -> appends "throughput median_ms" to $WORK/interop-<slot>
    local out=$WORK/interop-$1.log
    DM_BENCH_ONLY=rust timeout $INTEROP_S "$(cat "$ROOT/$1/interop-path")" --ignored --nocapture --exact \
        bench_signed_messages_rust_pair_vs_python_pair >"$out" 2>&1 || die "interop bench of $1 $(label "$1") failed: $out"
    local tp lat
    tp=$(grep -oE 'throughput [0-9.]+ msg/s' "$out" | head -1 | awk '{print $2}')
    lat=$(grep -oE 'latency: median [0-9.]+ ms' "$out" | head -1 | awk '{print $3}')
    [[ -n $tp && -n $lat ]] || die "no figures in $out"
    echo "$tp $lat" >>"$WORK/interop-$1"
}
for r in $(seq "$ROUNDS"); do
    for slot in base new; do
        say "interop round $r/$ROUNDS: $slot $(label $slot)"
        interop $slot
    done
done

# ---- 3. accept path instructions (callgrind) -------------------------------------------------
callgrind() { # slot count -> prints the total instructions of B's process
    local f=$WORK/cg-$1-$2-$RANDOM.out
    timeout $CALLGRIND_S "$DRIVER" "$(bin "$1" smol-node)" "$2" \
        valgrind -q --tool=callgrind --callgrind-out-file="$f" >"$f.driver" 2>&1 ||
        die "accept-node on $1 $(label "$1") failed: $(tail -5 "$f.driver")"
    awk '/^totals:/ {print $2}' "$f"
}
for r in $(seq "$CG_ROUNDS"); do
    for slot in base new; do
        say "callgrind round $r/$CG_ROUNDS: $slot $(label $slot)"
        small=$(callgrind $slot $ACCEPT_SMALL)
        large=$(callgrind $slot $ACCEPT_LARGE)
        echo $(((large - small) / (ACCEPT_LARGE - ACCEPT_SMALL))) >>"$WORK/cg-$slot"
    done
done

# ---- the table -----------------------------------------------------------------------------------
python3 - "$WORK" "$BASE" "$NEW" "$STARTUP_RUNS" "$ROUNDS" "$CG_ROUNDS" <<'EOF'
import json, statistics, sys
work, base, new, runs, rounds, cg_rounds = sys.argv[1], sys.argv[2], sys.argv[3], *map(int, sys.argv[4:])
s = json.load(open(f"{work}/startup.json"))
def col(slot, i):
    return [float(l.split()[i]) for l in open(f"{work}/interop-{slot}")]
def cg(slot):
    return [int(l) for l in open(f"{work}/cg-{slot}")]
rows = [
    (f"MCP start -> tools/list answered, ms (median of {runs})", s["base"]["ms"], s["new"]["ms"], ".1f"),
    (f"idle RSS after tools/list, KiB (median of {rounds})", s["base"]["rss_kib"], s["new"]["rss_kib"], ".0f"),
    ("tools listed", s["base"]["tools"], s["new"]["tools"], "d"),
    (f"signed messages/s, loopback, Rust pair (median of {rounds})", statistics.median(col("base", 0)),
     statistics.median(col("new", 0)), ".0f"),
    (f"single-message latency, median ms (median of {rounds})", statistics.median(col("base", 1)),
     statistics.median(col("new", 1)), ".3f"),
    (f"accept path, instructions per message (callgrind, median of {cg_rounds})", statistics.median(cg("base")),
     statistics.median(cg("new")), ",.0f"),
]
print(f"| measure | base `{base[:9]}` | new `{new[:9]}` | new / base |")
print("|---|---:|---:|---:|")
for name, b, n, fmt in rows:
    ratio = f"{n / b:.3f}" if b else "-"
    print(f"| {name} | {format(b, fmt)} | {format(n, fmt)} | {ratio} |")
print()
print("Samples (base; new):")
print(f"- start-up ms: {[round(x, 1) for x in s['base']['ms_all']]}; {[round(x, 1) for x in s['new']['ms_all']]}")
print(f"- idle RSS KiB: {s['base']['rss_all']}; {s['new']['rss_all']}")
print(f"- messages/s: {col('base', 0)}; {col('new', 0)}")
print(f"- latency ms: {col('base', 1)}; {col('new', 1)}")
print(f"- instructions per message: {cg('base')}; {cg('new')}")
EOF
