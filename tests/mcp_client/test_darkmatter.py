"""End-to-end test of the darkmatter binary through the official Python MCP client.

Three nodes (A, B, C) on 127.0.0.1, each started by its own MCP client exactly as an MCP client
starts it (command "darkmatter", DARKMATTER_* environment, its own project directory), plus a
second client in A's project that attaches to A's node.

Run: python test_darkmatter.py [path/to/darkmatter]   (or DARKMATTER_BIN=...)
Prints one line per check and "N passed, N failed"; exits non-zero on any failure.
"""

import asyncio
import json
import os
import socket
import stat
import sys
import tempfile
import time
from contextlib import AsyncExitStack

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

TOOLS = {
    "darkmatter_connection", "darkmatter_list_connections", "darkmatter_list_pending_requests",
    "darkmatter_send_message", "darkmatter_list_inbox", "darkmatter_get_message", "darkmatter_list_messages",
    "darkmatter_get_sent_message", "darkmatter_expire_message", "darkmatter_wait_for_response",
    "darkmatter_get_identity", "darkmatter_update_bio", "darkmatter_set_status", "darkmatter_status",
    "darkmatter_network_info", "darkmatter_discover_local", "darkmatter_discover_domain",
    "darkmatter_set_impression", "darkmatter_get_impression", "darkmatter_create_shard",
    "darkmatter_view_shards", "darkmatter_set_rate_limit",
    "darkmatter_wallet_balances", "darkmatter_wallet_send", "darkmatter_get_balance", "darkmatter_send_sol",
    "darkmatter_send_token", "darkmatter_set_superagent",
}

PASSED, FAILED = [], []


def check(name, cond, detail=""):
    (PASSED if cond else FAILED).append(name)
    print(("ok   " if cond else "FAIL ") + name + ("" if cond else f"  -- {detail}"), flush=True)
    return cond


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


class Node:
    """One MCP session with a darkmatter process."""

    def __init__(self, name, binary, project, port, scan_ports, extra_env=None):
        self.name, self.project, self.port = name, project, port
        self.url = f"http://127.0.0.1:{port}"
        self.notices = []
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": project,
            "DARKMATTER_DISPLAY_NAME": name,
            "DARKMATTER_HOST": "127.0.0.1",
            "DARKMATTER_PORT": str(port),
            "DARKMATTER_PUBLIC_URL": self.url,
            "DARKMATTER_DISCOVERY": "false",
            "DARKMATTER_DISCOVERY_PORTS": ",".join(str(p) for p in scan_ports),
            "DARKMATTER_ANCHOR_NODES": "",
        }
        env.update(extra_env or {})
        self.params = StdioServerParameters(command=binary, args=[], env=env, cwd=project)

    async def start(self, stack):
        r, w = await stack.enter_async_context(stdio_client(self.params))
        self.session = await stack.enter_async_context(ClientSession(r, w, logging_callback=self._on_log))
        started = time.monotonic()
        self.init = await asyncio.wait_for(self.session.initialize(), 20)
        self.init_s = time.monotonic() - started
        return self

    async def _on_log(self, params):
        self.notices.append(params)

    async def call(self, tool, args=None, timeout=30):
        r = await asyncio.wait_for(self.session.call_tool(tool, args or {}), timeout)
        data = r.structured_content
        if data is None:
            data = json.loads(r.content[0].text)
        return bool(r.is_error), data

    async def ok(self, tool, args=None, timeout=30):
        err, data = await self.call(tool, args, timeout)
        check(f"{self.name}: {tool}({short(args)}) succeeds", not err, data)
        return data

    def events(self, kind):
        return [n.data for n in self.notices if isinstance(n.data, dict) and n.data.get("event") == kind]


def short(args):
    s = json.dumps(args or {})
    return s if len(s) < 60 else s[:57] + "..."


async def until(pred, timeout=10.0, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = await pred()
        if v:
            return v
        await asyncio.sleep(step)
    return await pred()


# Invalid arguments for every tool: each must answer a tool error with an "error" text.
INVALID = {
    "darkmatter_connection": {"action": "fly"},
    "darkmatter_list_connections": {"bogus": 1},
    "darkmatter_list_pending_requests": {"bogus": 1},
    "darkmatter_send_message": {"content": "x"},
    "darkmatter_list_inbox": {"bogus": 1},
    "darkmatter_get_message": {},
    "darkmatter_list_messages": {"bogus": 1},
    "darkmatter_get_sent_message": {"message_id": 7},
    "darkmatter_expire_message": {"message_id": "msg-nope"},
    "darkmatter_wait_for_response": {"message_id": "msg-x", "timeout_seconds": -1},
    "darkmatter_get_identity": {"bogus": 1},
    "darkmatter_update_bio": {"bio": ""},
    "darkmatter_set_status": {"status": "asleep"},
    "darkmatter_status": {"bogus": 1},
    "darkmatter_network_info": {"bogus": 1},
    "darkmatter_discover_local": {"bogus": 1},
    "darkmatter_discover_domain": {"domain": "http://x/y"},
    "darkmatter_set_impression": {"agent_id": "a", "score": 2},
    "darkmatter_get_impression": {},
    "darkmatter_create_shard": {"content": "x", "tags": []},
    "darkmatter_view_shards": {"tags": "notalist"},
    "darkmatter_set_rate_limit": {"limit": -5},
}


async def main(binary):
    root = tempfile.mkdtemp(prefix="dm-mcp-")
    pa, pb, pc = free_ports(3)
    scan = [pa, pb, pc]
    dirs = {}
    for n in "ABC":
        dirs[n] = os.path.join(root, n)
        os.makedirs(dirs[n])
    a = Node("A", binary, dirs["A"], pa, scan)
    b = Node("B", binary, dirs["B"], pb, scan, {"DARKMATTER_AUTO_ACCEPT_LOCAL": "false"})
    c = Node("C", binary, dirs["C"], pc, scan)
    async with AsyncExitStack() as stack:
        for n in (a, b, c):
            await n.start(stack)

        # --- initialize and tools/list ---
        init = a.init
        check("initialize: server is darkmatter", init.server_info.name == "darkmatter", init.server_info)
        check("initialize: tools and logging capabilities", init.capabilities.tools is not None and init.capabilities.logging is not None, init.capabilities)
        check("initialize: instructions explain the mesh", bool(init.instructions) and "darkmatter_status" in init.instructions)
        listed = (await a.session.list_tools()).tools
        names = [t.name for t in listed]
        check("tools/list: exactly the 28 tools", set(names) == TOOLS and len(names) == 28, sorted(set(names) ^ TOOLS))
        check("tools/list: every tool has an object input schema", all(t.input_schema.get("type") == "object" for t in listed))
        check("tools/list: every tool has a description and annotations", all(t.description and t.annotations is not None for t in listed))
        ann = {t.name: t.annotations for t in listed}
        check("annotations: status is read-only", ann["darkmatter_status"].read_only_hint is True)
        check("annotations: send_message is open-world, not read-only", ann["darkmatter_send_message"].open_world_hint is True and ann["darkmatter_send_message"].read_only_hint is False)
        check("annotations: connection is destructive", ann["darkmatter_connection"].destructive_hint is True)

        # --- invalid arguments: a clear error for every tool ---
        for tool, args in INVALID.items():
            err, data = await a.call(tool, args)
            check(f"invalid args: {tool} answers an error", err and isinstance(data.get("error"), str) and data["error"], data)

        # --- identity ---
        ida = await a.ok("darkmatter_get_identity")
        idb = (await b.ok("darkmatter_get_identity"))["agent_id"]
        idc = (await c.ok("darkmatter_get_identity"))["agent_id"]
        check("identity: fields", all(k in ida for k in ("agent_id", "public_key_hex", "display_name", "bio", "url", "status", "created_at")), ida)
        check("identity: display name and url from the environment", ida["display_name"] == "A" and ida["url"] == a.url, ida)
        id_a = ida["agent_id"]
        bio = await a.ok("darkmatter_update_bio", {"bio": "I answer questions about weather."})
        check("update_bio: new bio", bio.get("bio") == "I answer questions about weather.", bio)

        # --- discovery ---
        found = await a.ok("darkmatter_discover_local", timeout=30)
        ids = {d.get("agent_id") for d in found.get("discovered", [])}
        check("discover_local: finds B and C on localhost", {idb, idc} <= ids, found)
        dom = await a.ok("darkmatter_discover_domain", {"domain": f"127.0.0.1:{pb}"})
        check("discover_domain: finds B's card", dom.get("agent_id") == idb, dom)
        info = await a.ok("darkmatter_network_info")
        check("network_info: our agent_id", info.get("agent_id") == id_a, info)

        # --- connect: local auto-accept path (A -> C) ---
        r = await a.ok("darkmatter_connection", {"action": "request", "target_url": c.url})
        check("connect A->C: connected at once (local auto-accept)", r.get("status") == "connected" and r.get("agent_id") == idc, r)
        conns = await until(lambda: c_has_peer(c, id_a))
        check("connect A->C: C lists A", conns)

        # --- connect: pending path with accept (C -> B, B does not auto-accept) ---
        r = await c.ok("darkmatter_connection", {"action": "request", "target_url": b.url})
        check("connect C->B: pending", r.get("status") == "pending" and r.get("agent_id") == idb, r)
        got = await until(lambda: asyncio.sleep(0, result=b.events("connection_requested")))
        check("connect C->B: B is notified (notifications/message)", bool(got) and got[0].get("agent_id") == idc, b.notices)
        pend = await b.ok("darkmatter_list_pending_requests")
        reqs = pend.get("requests", [])
        check("pending: B lists C's request", len(reqs) == 1 and reqs[0].get("agent_id") == idc, pend)
        check("pending: request fields", reqs and all(k in reqs[0] for k in ("request_id", "agent_id", "display_name", "url", "bio", "requested_at", "peer_trust")), reqs)
        acc = await b.ok("darkmatter_connection", {"action": "accept", "request_id": reqs[0]["request_id"]})
        check("accept: connected", acc.get("status") == "connected", acc)
        check("accept: C lists B", await until(lambda: c_has_peer(c, idb)))
        lc = await c.ok("darkmatter_list_connections")
        fields = ("agent_id", "display_name", "url", "bio", "connected_at", "messages_sent", "messages_received", "last_activity", "impression")
        check("list_connections: fields", all(all(k in x for k in fields) for x in lc["connections"]), lc)

        # --- message, reply with in_reply_to, wait_for_response ---
        sent = await a.ok("darkmatter_send_message", {"content": "ping?", "target_agent_id": idc})
        m1 = sent.get("message_id")
        check("send: routed to C", sent.get("routed_to") == [idc] and sent.get("failed") == [], sent)
        got = await until(lambda: asyncio.sleep(0, result=c.events("message_received")))
        check("message: C is notified", bool(got) and got[0].get("message_id") == m1, c.notices)
        inbox = await c.ok("darkmatter_list_inbox")
        msgs = inbox.get("messages", [])
        check("inbox: C has the message", any(m["message_id"] == m1 and m["from_agent_id"] == id_a for m in msgs), inbox)
        check("inbox: fields", msgs and all(k in msgs[0] for k in ("message_id", "from_agent_id", "content", "received_at", "verified", "hops_remaining", "in_reply_to")), msgs)
        full = await c.ok("darkmatter_get_message", {"message_id": m1})
        check("get_message: full content, verified", full.get("content") == "ping?" and full.get("verified") is True, full)

        wait = asyncio.create_task(a.call("darkmatter_wait_for_response", {"message_id": m1, "timeout_seconds": 20}, timeout=30))
        await asyncio.sleep(0.3)
        t0 = time.monotonic()
        await a.ok("darkmatter_status")
        check("wait_for_response does not block other calls", time.monotonic() - t0 < 2.0 and not wait.done())
        rep = await c.ok("darkmatter_send_message", {"content": "pong!", "target_agent_id": id_a, "in_reply_to": m1})
        err, res = await wait
        check("wait_for_response: returns the reply", not err and res.get("timed_out") is False and [x["content"] for x in res.get("responses", [])] == ["pong!"], res)
        check("wait_for_response: response fields", res.get("responses") and all(k in res["responses"][0] for k in ("agent_id", "content", "received_at")), res)
        got = await until(lambda: asyncio.sleep(0, result=a.events("message_received")))
        check("reply: A is notified with in_reply_to", any(e.get("in_reply_to") == m1 for e in got), a.notices)
        gs = await a.ok("darkmatter_get_sent_message", {"message_id": m1})
        check("get_sent_message: responses[]", [x["content"] for x in gs.get("responses", [])] == ["pong!"], gs)
        lm = await a.ok("darkmatter_list_messages")
        check("list_messages: status and response count", any(m["message_id"] == m1 and m.get("response_count") == 1 and "status" in m for m in lm.get("messages", [])), lm)
        gm = await c.ok("darkmatter_get_message", {"message_id": m1, "consume": True})
        check("get_message consume: removed from inbox", gm.get("consumed") is True)

        # --- wait_for_response timeout ---
        s3 = await a.ok("darkmatter_send_message", {"content": "anyone?", "target_agent_id": idc})
        t0 = time.monotonic()
        err, res = await a.call("darkmatter_wait_for_response", {"message_id": s3["message_id"], "timeout_seconds": 1})
        check("wait_for_response: timed_out after the timeout", not err and res.get("timed_out") is True and 0.8 < time.monotonic() - t0 < 5, res)

        # --- attach: a second client in A's project shares A's node ---
        a2 = Node("A2", binary, dirs["A"], pa, scan)
        a2.params.env["DARKMATTER_DISPLAY_NAME"] = "A"
        await a2.start(stack)
        id_a2 = (await a2.ok("darkmatter_get_identity"))["agent_id"]
        check("attach: same identity", id_a2 == id_a)
        sock = [f for f in os.listdir(os.path.join(dirs["A"], ".darkmatter")) if f.endswith(".sock")]
        if sock:
            mode = stat.S_IMODE(os.stat(os.path.join(dirs["A"], ".darkmatter", sock[0])).st_mode)
            check("attach: socket is 0600", mode == 0o600, oct(mode))
        s4 = await c.ok("darkmatter_send_message", {"content": "to both sessions", "target_agent_id": id_a})
        in1 = await until(lambda: inbox_ids(a))
        in2 = await inbox_ids(a2)
        check("attach: both sessions see the same inbox", s4["message_id"] in in1 and in1 == in2, (in1, in2))
        got = await until(lambda: asyncio.sleep(0, result=[e for e in a2.events("message_received") if e.get("message_id") == s4["message_id"]]))
        check("attach: the attached session is notified too", bool(got), a2.notices)

        # --- forward through a third node: A -> C -> B ---
        m2 = (await a.ok("darkmatter_send_message", {"content": "who knows B's topic?", "target_agent_id": idc}))["message_id"]
        await until(lambda: inbox_ids(c, want=m2))
        fw = await c.ok("darkmatter_send_message", {"message_id": m2, "target_agent_id": idb, "note": "B knows"})
        check("forward: routed to B", fw.get("routed_to") == [idb], fw)
        check("forward: B received the same message id", await until(lambda: inbox_ids(b, want=m2)))
        fwd = await b.ok("darkmatter_get_message", {"message_id": m2})
        check("forward: one hop used", fwd.get("hops_remaining") == 9 and fwd.get("content") == "who knows B's topic?", fwd)
        upd = await until(lambda: sent_updates(a, m2))
        check("forward: A's sent message records the forward", any(u.get("type") == "forwarded" for u in upd or []), upd)

        # --- expire ---
        ex = await a.ok("darkmatter_expire_message", {"message_id": m2})
        check("expire: status expired", ex.get("status") == "expired", ex)
        err, res = await a.call("darkmatter_wait_for_response", {"message_id": m2, "timeout_seconds": 10})
        check("expire: a wait on it returns at once", not err and res.get("status") == "expired", res)

        # --- trust, rate limits, status, shards ---
        si = await a.ok("darkmatter_set_impression", {"agent_id": idc, "score": 0.8, "note": "helpful"})
        gi = await a.ok("darkmatter_get_impression", {"agent_id": idc})
        check("impression: stored", gi.get("has_impression") is True and gi.get("score") == 0.8 and gi.get("note") == "helpful", gi)
        await a.ok("darkmatter_set_rate_limit", {"agent_id": idc, "limit": 5})
        await a.ok("darkmatter_set_rate_limit", {"limit": 0})
        err, data = await a.call("darkmatter_set_rate_limit", {"agent_id": idb, "limit": 5})
        check("rate limit: refused for an agent we are not connected to", err, data)
        st = await a.ok("darkmatter_status")
        check("status: one-glance fields", all(k in st for k in ("identity", "connections", "inbox", "pending_requests", "suggested_actions")), st)
        bc = await a.ok("darkmatter_send_message", {"content": "broadcast", "broadcast": True, "trust_min": 0.5})
        check("broadcast: to trusted peers only", bc.get("routed_to") == [idc], bc)
        await c.ok("darkmatter_set_impression", {"agent_id": id_a, "score": 0.9})  # the receiver checks its trust in the author too
        sh = await a.ok("darkmatter_create_shard", {"content": "Rain tomorrow in Paris.", "tags": ["weather:forecast"], "trust_threshold": 0.5, "summary": "forecast"})
        check("create_shard: synced to the trusted peer only", sh.get("sent_to") == [idc], sh)
        mine = await a.ok("darkmatter_view_shards", {"author": id_a})
        check("view_shards: own shard by author", any(x["shard_id"] == sh.get("shard_id") for x in mine.get("shards", [])), mine)
        async def c_sees_shard():
            _, v = await c.call("darkmatter_view_shards", {"tags": ["weather"]})
            return any(x["shard_id"] == sh.get("shard_id") for x in v.get("shards", []))
        check("view_shards: the peer received it (tag prefix match)", await until(c_sees_shard), (sh, (await c.call("darkmatter_view_shards", {}))[1]))

        # --- set_status inactive refuses messages ---
        ss = await b.ok("darkmatter_set_status", {"status": "inactive", "duration_minutes": 5})
        check("set_status: inactive with an end time", ss.get("status") == "inactive" and ss.get("inactive_until"), ss)
        err, r = await c.call("darkmatter_send_message", {"content": "are you there?", "target_agent_id": idb})
        check("inactive: message refused", (not err and r.get("routed_to") == [] and r.get("failed")) or err, r)
        ss = await b.ok("darkmatter_set_status", {"status": "active"})
        check("set_status: active again", ss.get("status") == "active", ss)

        # --- disconnect, seen by both sides ---
        dc = await c.ok("darkmatter_connection", {"action": "disconnect", "agent_id": idb})
        check("disconnect: done", dc.get("status") == "disconnected", dc)
        check("disconnect: C no longer lists B", not await c_has_peer(c, idb))
        check("disconnect: B no longer lists C", await until(lambda: no_peer(b, idc)))
        got = await until(lambda: asyncio.sleep(0, result=[e for e in b.events("disconnected") if e.get("agent_id") == idc]))
        check("disconnect: B is notified", bool(got) and got[0].get("by_peer") is True, b.notices)

        # --- reject path ---
        r = await c.ok("darkmatter_connection", {"action": "request", "target_url": b.url})
        reqs = (await until(lambda: pending(b)))
        rj = await b.ok("darkmatter_connection", {"action": "reject", "request_id": reqs[0]["request_id"]})
        check("reject: request gone", rj.get("status") == "rejected" and not await pending(b), rj)

    print(f"{len(PASSED)} passed, {len(FAILED)} failed")
    return 1 if FAILED else 0


async def c_has_peer(node, agent_id):
    _, d = await node.call("darkmatter_list_connections")
    return any(x["agent_id"] == agent_id for x in d.get("connections", []))


async def no_peer(node, agent_id):
    return not await c_has_peer(node, agent_id)


async def pending(node):
    _, d = await node.call("darkmatter_list_pending_requests")
    return d.get("requests", [])


async def inbox_ids(node, want=None):
    _, d = await node.call("darkmatter_list_inbox")
    ids = [m["message_id"] for m in d.get("messages", [])]
    if want is not None:
        return want in ids
    return ids


async def sent_updates(node, message_id):
    _, d = await node.call("darkmatter_get_sent_message", {"message_id": message_id})
    return d.get("updates")


if __name__ == "__main__":
    binary = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("DARKMATTER_BIN", "darkmatter")
    sys.exit(asyncio.run(main(binary)))
