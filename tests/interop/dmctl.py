"""Line-oriented control of a running dmagent 0.5.3 node, for the interop tests (tests/interop.rs).

    python dmctl.py <node base URL> [<state file>]

Plays the part of the node's user: it opens one MCP session on the node's streamable-HTTP endpoint
(`<url>/mcp`, the official `mcp` 1.x client) and turns one JSON object per line on stdin into tool
calls or local-API requests, answering with one JSON line per request on stdout, in the same shape as
the Rust headless node's control (`{"id":..,"ok":true,"result":..}` / `{"id":..,"ok":false,"error":..}`).
Lines run concurrently (like the Rust control), so a caller may pipeline them. The first stdout line
is `{"ready":true,"tools":[...]}` once the MCP session is initialised.

Commands (`cmd`, then arguments):
  connect {target_url}            darkmatter_connection action=request
  accept {request_id}             darkmatter_connection action=accept
  send {content, target_agent_id?, metadata?}   darkmatter_send_message (no target = every connection)
  inbox                           darkmatter_inbox (list)
  get_message {message_id}        darkmatter_inbox(message_id) - reads and removes it from the queue
  update_bio {bio}                darkmatter_update_bio (broadcasts a signed peer_update)
  status                          darkmatter_status (text)
  get {path}                      GET <url><path> (the node's local API), JSON answer
  post {path, body}               POST <url><path>, answers {"status":..,"body":..}
  state                           the node's persisted state file (connections with pinned keys)
  peer_update_url                 the URL 0.5.3's broadcast_peer_update sends to *local* peers
                                  (NetworkManager._get_lan_ip(), computed by 0.5.3's own code)
"""

import asyncio
import json
import sys

import httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client

# The same code the node uses to pick the URL it announces to local peers.
from darkmatter.network.manager import NetworkManager


def _text(result):
    """The text of a tool result, parsed as JSON when it is JSON."""
    if result.isError:
        raise RuntimeError("tool error: " + " ".join(getattr(c, "text", "") for c in result.content))
    text = "".join(getattr(c, "text", "") for c in result.content)
    try:
        return json.loads(text)
    except ValueError:
        return text


async def run(base: str, state_file: str | None) -> None:
    base = base.rstrip("/")
    out_lock = asyncio.Lock()

    async def emit(obj) -> None:
        async with out_lock:
            sys.stdout.write(json.dumps(obj) + "\n")
            sys.stdout.flush()

    async with streamablehttp_client(base + "/mcp", timeout=60) as (read, write, _), \
            ClientSession(read, write) as session, \
            httpx.AsyncClient(timeout=60) as http:
        await session.initialize()
        tools = [t.name for t in (await session.list_tools()).tools]
        await emit({"ready": True, "tools": tools})

        async def tool(name, args):
            return _text(await session.call_tool(name, args))

        async def handle(line: dict):
            cmd = line.get("cmd")
            if cmd == "connect":
                return await tool("darkmatter_connection", {"params": {"action": "request", "target_url": line["target_url"]}})
            if cmd == "accept":
                return await tool("darkmatter_connection", {"params": {"action": "accept", "request_id": line["request_id"]}})
            if cmd == "send":
                params = {"content": line["content"], "metadata": line.get("metadata") or {}}
                if line.get("target_agent_id"):
                    params["target_agent_id"] = line["target_agent_id"]
                return await tool("darkmatter_send_message", {"params": params})
            if cmd == "inbox":
                return await tool("darkmatter_inbox", {})
            if cmd == "get_message":
                return await tool("darkmatter_inbox", {"message_id": line["message_id"]})
            if cmd == "update_bio":
                return await tool("darkmatter_update_bio", {"params": {"bio": line["bio"]}})
            if cmd == "status":
                return await tool("darkmatter_status", {})
            if cmd == "get":
                r = await http.get(base + line["path"])
                return {"status": r.status_code, "body": r.json()}
            if cmd == "post":
                r = await http.post(base + line["path"], json=line.get("body"))
                try:
                    body = r.json()
                except ValueError:
                    body = r.text
                return {"status": r.status_code, "body": body}
            if cmd == "state":
                if not state_file:
                    raise RuntimeError("no state file given")
                with open(state_file, encoding="utf-8") as f:
                    return json.load(f)
            if cmd == "peer_update_url":
                lan_ip = NetworkManager._get_lan_ip()
                port = line["port"]
                return f"http://{lan_ip}:{port}" if lan_ip != "localhost" else f"http://localhost:{port}"
            raise RuntimeError(f"unknown cmd {cmd!r}")

        async def one(raw: str):
            ident = None
            try:
                line = json.loads(raw)
                ident = line.get("id")
                result = await handle(line)
                answer = {"ok": True, "result": result}
            except Exception as e:  # reported to the caller, never fatal
                answer = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            if ident is not None:
                answer["id"] = ident
            await emit(answer)

        loop = asyncio.get_running_loop()
        tasks = set()
        while True:
            raw = await loop.run_in_executor(None, sys.stdin.readline)
            if not raw:
                break
            if not raw.strip():
                continue
            t = asyncio.create_task(one(raw))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    asyncio.run(run(sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else None))
