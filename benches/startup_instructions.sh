#!/usr/bin/env bash
# Instructions one MCP session costs the `darkmatter` binary, from exec to exit: start the node,
# answer initialize and tools/list, then stdin closes and it shuts down. Counted by callgrind, so the
# figure does not depend on the machine's load (timed start-up on a shared 2-core machine does).
#
#   benches/startup_instructions.sh <darkmatter binary> [rounds]     (prints one total per round)
#
# Discovery, spawning and anchors are off, as in tests/mcp_client/bench_startup.py.
set -euo pipefail
bin=$(readlink -f "$1"); rounds=${2:-3}
for _ in $(seq "$rounds"); do
    proj=$(mktemp -d /tmp/dm-cg-XXXX)
    port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
    printf '%s\n' \
        '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"0"}}}' \
        '{"jsonrpc":"2.0","method":"notifications/initialized"}' \
        '{"jsonrpc":"2.0","id":2,"method":"tools/list"}' > "$proj/in.txt"
    (cd "$proj" && env -i PATH="$PATH" HOME="$proj" DARKMATTER_HOST=127.0.0.1 DARKMATTER_PORT="$port" \
        DARKMATTER_PUBLIC_URL="http://127.0.0.1:$port" DARKMATTER_ANCHOR_NODES= DARKMATTER_DISCOVERY=false \
        DARKMATTER_AGENT_ENABLED=false timeout 300 valgrind -q --tool=callgrind --callgrind-out-file=cg.out \
        "$bin" < in.txt > out.txt 2>/dev/null)
    grep -q '"id":2' "$proj/out.txt" || { echo "tools/list was not answered" >&2; exit 1; }
    callgrind_annotate "$proj/cg.out" 2>/dev/null | grep -m1 'PROGRAM TOTALS' | awk '{print $1}'
    rm -rf "$proj"
done
