"""End-to-end test of peer trust, shard thresholds and status context through the official Python MCP client.

Four nodes (A, B, C, D) on 127.0.0.1, each started by its own MCP client. A runs with
DARKMATTER_AUTO_ACCEPT_LOCAL=false: every node here is local, so without that A would accept every
proven request at once and the trust policy would never be consulted. The acceptance policy is the
core default: accept a signed request when peers' combined opinion >= 0.5, reject at <= -0.5, each
decision held for 10 minutes (SPEC §8.4).

  1. A trusts B (0.8); B vouches for C with 0.4 -> C's request at A stays pending and shows B's
     opinion (score 0.4, your_trust_in_them 0.8); B vouches for D with 0.9 -> D's request shows the
     combined 0.9, B's vouch counted 0.8 and when the policy would accept it; A's agent accepts it.
  2. A's shard with trust_threshold 0.5 reaches B (A trusts B 0.8, B trusts A 0.8), not D (A trusts
     D 0); once A raises D to 0.6 (D trusts A) it is pushed to D.
  3. darkmatter_status lists new_context after a message, and none on the next call.
  Also: set_impression(-0.5) starts the negative_since clock (auto-disconnect itself is tested with
  simulated time in tests/trust_shards.rs).

Run: python test_trust_shards.py [path/to/darkmatter]   (or DARKMATTER_BIN=...)
Prints one line per check and "N passed, N failed"; exits non-zero on any failure.
"""

import asyncio
import os
import sys
import tempfile
from contextlib import AsyncExitStack

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_darkmatter as base  # noqa: E402
from test_darkmatter import Node, check, free_ports, until  # noqa: E402

POLL = 5.0  # seconds: bound for every asynchronous effect


async def connected(node, agent_id):
    _, d = await node.call("darkmatter_list_connections")
    return any(x["agent_id"] == agent_id for x in d.get("connections", []))


async def pending_from(node, agent_id):
    _, d = await node.call("darkmatter_list_pending_requests")
    return [r for r in d.get("requests", []) if r.get("agent_id") == agent_id]


async def shard_ids(node, **args):
    _, d = await node.call("darkmatter_view_shards", args)
    return [x.get("shard_id") for x in d.get("shards", [])]


async def main(binary):
    root = tempfile.mkdtemp(prefix="dm-trust-")
    ports = free_ports(4)
    nodes = {}
    for name, port in zip("ABCD", ports):
        project = os.path.join(root, name)
        os.makedirs(project)
        extra = {"DARKMATTER_AUTO_ACCEPT_LOCAL": "false"} if name == "A" else {}
        nodes[name] = Node(name, binary, project, port, ports, extra)
    a, b, c, d = (nodes[n] for n in "ABCD")
    async with AsyncExitStack() as stack:
        for n in (a, b, c, d):
            await n.start(stack)
        id_a, id_b, id_c, id_d = [(await n.ok("darkmatter_get_identity"))["agent_id"] for n in (a, b, c, d)]

        # --- B -> A: pending at A (local auto-accept is off), A accepts ---
        r = await b.ok("darkmatter_connection", {"action": "request", "target_url": a.url})
        check("B->A: pending (A's local auto-accept is off)", r.get("status") == "pending", r)
        reqs = await until(lambda: pending_from(a, id_b), POLL)
        check("B->A: A lists B's request", len(reqs) == 1, reqs)
        if reqs:
            acc = await a.ok("darkmatter_connection", {"action": "accept", "request_id": reqs[0]["request_id"]})
            check("B->A: accepted", acc.get("status") == "connected", acc)
        check("B->A: B lists A", await until(lambda: connected(b, id_a), POLL))

        # --- B <-> C and B <-> D (C and D auto-accept local requests) ---
        for other, oid in ((c, id_c), (d, id_d)):
            r = await b.ok("darkmatter_connection", {"action": "request", "target_url": other.url})
            check(f"B->{other.name}: connected", r.get("status") == "connected", r)
            check(f"B->{other.name}: {other.name} lists B", await until(lambda: connected(other, id_b), POLL))

        await a.ok("darkmatter_set_impression", {"agent_id": id_b, "score": 0.8, "note": "reliable"})
        await b.ok("darkmatter_set_impression", {"agent_id": id_a, "score": 0.8})
        await b.ok("darkmatter_set_impression", {"agent_id": id_c, "score": 0.4, "note": "so-so"})
        await b.ok("darkmatter_set_impression", {"agent_id": id_d, "score": 0.9, "note": "great"})

        # --- 1a. C -> A: B's opinion 0.4 is shown, below the 0.5 policy: stays pending ---
        r = await c.ok("darkmatter_connection", {"action": "request", "target_url": a.url})
        check("C->A: pending", r.get("status") == "pending", r)

        async def c_trust_complete():
            reqs = await pending_from(a, id_c)
            return reqs if reqs and (reqs[0].get("peer_trust") or {}).get("complete") else None

        reqs = await until(c_trust_complete, POLL) or await pending_from(a, id_c)
        pt = (reqs[0].get("peer_trust") or {}) if reqs else {}
        check("C->A: peer_trust complete (1 asked, 1 answered)", pt.get("complete") is True and pt.get("asked") == 1 and pt.get("answered") == 1, reqs)
        check("C->A: peer_trust.score is B's 0.4", pt.get("score") is not None and abs(pt["score"] - 0.4) < 1e-9, pt)
        check("C->A: peer_trust.weight is A's trust in B (0.8)", pt.get("weight") is not None and abs(pt["weight"] - 0.8) < 1e-9, pt)
        ops = pt.get("opinions") or []
        check("C->A: one opinion, from B", len(ops) == 1 and ops[0].get("agent_id") == id_b, ops)
        if ops:
            check("C->A: their_score 0.4", abs(ops[0].get("their_score", 9) - 0.4) < 1e-9, ops)
            check("C->A: your_trust_in_them 0.8", abs(ops[0].get("your_trust_in_them", 9) - 0.8) < 1e-9, ops)
        await asyncio.sleep(0.3)
        check("C->A: not auto-accepted at 0.4 (still pending, not connected)", bool(await pending_from(a, id_c)) and not await connected(a, id_c))

        # --- 1b. D -> A: B's opinion 0.9 >= 0.5: the policy will accept it after its hold (SPEC §8.4,
        # 10 minutes); the listing says so, with how much B's word counted, and the agent accepts now ---
        r = await d.ok("darkmatter_connection", {"action": "request", "target_url": a.url})
        check("D->A: pending at first (local auto-accept off, peers asked)", r.get("status") == "pending", r)

        async def d_trust_complete():
            reqs = await pending_from(a, id_d)
            return reqs if reqs and (reqs[0].get("peer_trust") or {}).get("complete") else None

        reqs = await until(d_trust_complete, POLL) or await pending_from(a, id_d)
        req = reqs[0] if reqs else {}
        pt = req.get("peer_trust") or {}
        check("D->A: combined score is B's 0.9", pt.get("score") is not None and abs(pt["score"] - 0.9) < 1e-9, req)
        ops = pt.get("opinions") or []
        check("D->A: B's opinion counted 0.8 (A's trust in B)", len(ops) == 1 and abs(ops[0].get("counted", 9) - 0.8) < 1e-9, ops)
        check("D->A: B vouched for 2 requesters (C and D), within its budget", len(ops) == 1 and ops[0].get("vouched_for") == 2, ops)
        check("D->A: the listing says when the policy decides", bool(req.get("policy_decides_from")), req)
        check("D->A: the summary names B and what it counted", "B says 0.90, counted 0.80 (100%)" in (req.get("trust_summary") or ""), req)
        check("D->A: held, not yet accepted by policy", not await connected(a, id_d))
        if reqs:
            acc = await a.ok("darkmatter_connection", {"action": "accept", "request_id": req["request_id"]})
            check("D->A: the agent accepts without waiting for the hold", acc.get("status") == "connected", acc)
        check("D->A: D lists A", await until(lambda: connected(d, id_a), POLL))
        check("D->A: no pending request left", not await pending_from(a, id_d))

        # --- 2. shard thresholds ---
        await a.ok("darkmatter_set_impression", {"agent_id": id_d, "score": 0.0})  # B's report nudged it; A's trust in D is 0
        await d.ok("darkmatter_set_impression", {"agent_id": id_a, "score": 0.7})  # D would accept A's shards
        sh = await a.ok("darkmatter_create_shard", {"content": "The build cache lives in target/.", "tags": ["build:cache"], "trust_threshold": 0.5, "summary": "cache"})
        sid = sh.get("shard_id")
        check("create_shard: sent to B only", sh.get("sent_to") == [id_b], sh)
        check("shard: B sees it (A trusts B 0.8, B trusts A 0.8)", await until(lambda: _has(b, sid, tags=["build"]), POLL), sh)
        await asyncio.sleep(0.5)
        check("shard: D does not see it (A trusts D 0)", sid not in await shard_ids(d), await shard_ids(d))
        await a.ok("darkmatter_set_impression", {"agent_id": id_d, "score": 0.6})
        check("shard: D sees it once A trusts D 0.6", await until(lambda: _has(d, sid, author=id_a), POLL), await shard_ids(d))
        check("shard: C (not connected to A) never sees it", sid not in await shard_ids(c))

        # --- 3. new_context in darkmatter_status ---
        await a.ok("darkmatter_status")  # clears what is already there
        sent = await b.ok("darkmatter_send_message", {"content": "context check", "target_agent_id": id_a})
        mid = sent.get("message_id")

        async def in_inbox():
            _, v = await a.call("darkmatter_list_inbox")
            return any(m["message_id"] == mid for m in v.get("messages", []))

        check("message: A received B's message", await until(in_inbox, POLL), sent)
        st = await a.ok("darkmatter_status")
        nc = st.get("new_context")
        check("status: new_context lists the message", isinstance(nc, list) and any(e.get("message_id") == mid and e.get("peer") == id_b for e in nc), nc)
        st2 = await a.ok("darkmatter_status")
        check("status: new_context empty on the second call", st2.get("new_context") == [], st2.get("new_context"))

        # --- negative impression starts the auto-disconnect clock ---
        await a.ok("darkmatter_set_impression", {"agent_id": id_d, "score": -0.5})
        gi = await a.ok("darkmatter_get_impression", {"agent_id": id_d})
        check("impression -0.5: negative_since set", gi.get("score") == -0.5 and bool(gi.get("negative_since")), gi)
        await a.ok("darkmatter_set_impression", {"agent_id": id_d, "score": 0.1})
        gi = await a.ok("darkmatter_get_impression", {"agent_id": id_d})
        check("impression back to 0.1: negative_since cleared", gi.get("negative_since") is None, gi)

    print(f"{len(base.PASSED)} passed, {len(base.FAILED)} failed")
    return 1 if base.FAILED else 0


async def _has(node, sid, **args):
    return sid in await shard_ids(node, **args)


if __name__ == "__main__":
    binary = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("DARKMATTER_BIN", "darkmatter")
    sys.exit(asyncio.run(main(binary)))
