"""Start-up numbers of the darkmatter binary (standard library only).

python bench_startup.py path/to/darkmatter [runs] [expected_tools]

The same script measures dmagent 0.5.3's `darkmatter` (expected_tools 8) for the side-by-side figures
in BENCHMARKS.md. Discovery, agent spawning and the web UI are off for both, so neither does
background work the other does not.

Prints, as one JSON object: the median and best time from process start to the answer of
tools/list (initialize, notifications/initialized, tools/list written at once), the resident set
size after start-up (1 s idle after tools/list), and the binary's size.
"""

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
LIST = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def one_run(binary, measure_rss=False):
    project = tempfile.mkdtemp(prefix="dm-bench-")
    port = free_port()
    env = {"PATH": os.environ.get("PATH", ""), "HOME": project, "DARKMATTER_HOST": "127.0.0.1",
           "DARKMATTER_PORT": str(port), "DARKMATTER_PUBLIC_URL": f"http://127.0.0.1:{port}",
           "DARKMATTER_ANCHOR_NODES": "", "DARKMATTER_DISCOVERY": "false", "DARKMATTER_AGENT_ENABLED": "false",
           "DARKMATTER_ENTRYPOINT_AUTOSTART": "false"}
    start = time.perf_counter()
    p = subprocess.Popen([binary], cwd=project, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    p.stdin.write(("\n".join(json.dumps(m) for m in (INIT, INITIALIZED, LIST)) + "\n").encode())
    p.stdin.flush()
    tools = None
    for line in p.stdout:
        msg = json.loads(line)
        if msg.get("id") == 2:
            tools = len(msg["result"]["tools"])
            break
    elapsed_ms = (time.perf_counter() - start) * 1000
    rss = None
    if measure_rss:
        time.sleep(1.0)
        rss = rss_kib(p.pid)
    p.stdin.close()
    p.wait(timeout=15)
    return elapsed_ms, tools, rss


def main():
    binary = os.path.abspath(sys.argv[1])
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    expected = int(sys.argv[3]) if len(sys.argv) > 3 else 28
    times = []
    for _ in range(runs):
        ms, tools, _ = one_run(binary)
        assert tools == expected, tools
        times.append(ms)
    _, _, rss = one_run(binary, measure_rss=True)
    print(json.dumps({
        "tools_list_ms_median": round(statistics.median(times), 1),
        "tools_list_ms_best": round(min(times), 1),
        "runs": runs,
        "idle_rss_kib": rss,
        "binary_bytes": os.path.getsize(binary),
    }))


if __name__ == "__main__":
    main()
