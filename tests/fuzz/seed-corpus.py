#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (tests/fuzz/seeds/<target>/) from the 0.5.3 captures.

Usage: python3 tests/fuzz/seed-corpus.py [CAPTURES_DIR]
(default: ../shared/reference/captures/ beside the repository). The seeds are committed, so CI never
needs the captures; run this again when the captures change. Hand-made seeds (edge cases the captures
lack) are written by the same script so one command rebuilds every seed directory from scratch.

What each target reads (see the header of its fuzz_targets/*.rs):
- http_head, http_head_chunked (two chunk-seed bytes first): raw HTTP/1.1 requests;
- wire_bodies: one JSON body;
- node_requests: `METHOD PATH\\n<body>` requests joined by `\\n--\\n`;
- node_responses: peers' answers `STATUS\n<body>` joined by `\n--\n` (a connect, then deliveries);
- node_restore: records `[table][key length][key][value length u16 LE][value]`, each value a record
  version byte and postcard, written here by a small postcard encoder (hand-made: no capture has them);
- beacons: one flags byte, then a datagram;
- passport_file: a passport file.
"""

import hashlib
import json
import shutil
import struct
import sys
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
SEEDS = HERE / "seeds"
# A seed larger than this is cut (libFuzzer may still grow inputs to -max_len, set in run-ci.sh): bigger bodies
# only slow each run down (the core refuses oversized bodies before parsing them anyway).
SEED_BYTES_MAX = 8 * 1024
# node_requests reads at most this many requests per input (REQUESTS_MAX in its target).
REQUESTS_PER_SEED_MAX = 8
SEPARATOR = b"\n--\n"
OWNED = [
    "http_head",
    "http_head_chunked",
    "wire_bodies",
    "node_requests",
    "node_responses",
    "node_restore",
    "beacons",
    "passport_file",
]
# Delivery answers paired with each connect answer in node_responses' seeds.
DELIVERIES_PER_SEED_MAX = 3


def compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def read_jsonl(path):
    for line in path.read_text().splitlines():
        if line.strip():
            yield json.loads(line)


def inbound_requests(captures):
    """(method, path with query, headers, body bytes) of every request a peer sent a node."""
    for path in sorted(captures.glob("*.jsonl")):
        for rec in read_jsonl(path):
            if "method" not in rec:
                continue  # an MCP tool call of the driver, not HTTP
            if "path" in rec:  # a fake peer's log: the request as received
                body = (rec.get("raw_body") or "").encode()
                yield path.stem, rec["method"], rec["path"], rec.get("headers") or {}, body
            else:  # the driver's log: the request as sent
                url = urlsplit(rec["url"])
                target = url.path + (f"?{url.query}" if url.query else "")
                body = compact(rec["req"]) if rec.get("req") is not None else b""
                headers = {"Host": url.netloc, "Content-Type": "application/json"}
                if body:
                    headers["Content-Length"] = str(len(body))
                yield path.stem, rec["method"], target, headers, body


def json_bodies(captures):
    """Every JSON body in the captures, requests and answers alike."""
    for path in sorted(captures.glob("*.jsonl")):
        for rec in read_jsonl(path):
            for key in ("raw_body", "resp_raw"):
                if rec.get(key):
                    yield rec[key].encode()
            for key in ("req", "resp"):
                if rec.get(key) is not None:
                    yield compact(rec[key])
            if isinstance(rec.get("result"), str):
                yield rec["result"].encode()


def answers(captures, route):
    """`STATUS\\n<body>` of every answer a peer gave to a call on `route`."""
    for path in sorted(captures.glob("*.jsonl")):
        for rec in read_jsonl(path):
            target = rec.get("path") or urlsplit(rec.get("url") or "").path
            if not target.endswith(route):
                continue
            body = rec["resp_raw"].encode() if rec.get("resp_raw") else compact(rec.get("resp"))
            status = rec.get("status") or rec.get("resp_status") or 200
            yield f"{status}\n".encode() + body


def http_bytes(method, target, headers, body):
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode() + body


class Writer:
    def __init__(self):
        self.seen = {}

    def put(self, target, data):
        data = data[:SEED_BYTES_MAX]
        digest = hashlib.sha1(data).hexdigest()
        if digest in self.seen.setdefault(target, set()):
            return
        self.seen[target].add(digest)
        (SEEDS / target / digest).write_bytes(data)


HAND_HEADS = [
    b"GET /__darkmatter__/status HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /.well-known/darkmatter.json?x=1#f HTTP/1.0\r\n\r\n",
    b"POST /__darkmatter__/message HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n{}",
    b"POST /__darkmatter__/message HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    b"POST /__darkmatter__/message HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    b"GET / HTTP/2.0\r\n\r\n",
    b"get / HTTP/1.1\r\n\r\n",
    b"GET http://a/ HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\nConnection: close\n\n",
    b"\r\n\r\nGET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello",
    b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\nGET /b HTTP/1.1\r\n\r\nPOST /c HTTP/1.1\r\nContent-Length: 1\r\n\r\nx",
]

# The 0.5.3 beacon of the protocol notes, and ours: unsigned as captured, so only a re-signing flag
# (bit 1) takes them past the signature check; bit 2 also moves their time to the node's clock.
BEACONS = [
    b'{"proto":"darkmatter","v":"0.2","agent_id":"4304","port":8100,"ts":1767225600,"accepting":true}',
    compact({"proto": "darkmatter", "v": "0.2", "agent_id": "ab" * 32, "display_name": "lan-peer",
             "public_key_hex": "ab" * 32, "bio": "A DarkMatter mesh agent.", "port": 8101, "status": "active",
             "accepting": True, "ts": 1767225601, "beacon_signature_hex": "00" * 64}),
]

PASSPORTS = [b"07" * 32 + b"\n", b"  " + b"AB" * 32 + b"\r\n", b"0" * 63, b"zz" * 32, "é".encode() * 32]


# ----- postcard, just enough for hand-made records (proto_core::store) -----
def varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def zigzag(n):
    return varint((n << 1) ^ (n >> 63))


def pstr(text):
    data = text.encode()
    return varint(len(data)) + data


def popt(encoded):
    return b"\x00" if encoded is None else b"\x01" + encoded


def pbool(flag):
    return b"\x01" if flag else b"\x00"


def pf64(x):
    return struct.pack("<d", x)


# Table indices in proto_core::Table::ALL order.
PROFILE, CONNECTIONS, PENDING_OUT, IMPRESSIONS, REPLAY, ACCEPTANCES = 0, 1, 3, 6, 7, 12
# A real agent id (node-b of the captures): AgentId must parse as an Ed25519 key.
PEER_ID = "f0d8831fd260c846019922bab31b98b76f471ee9105080357626968c23faddd0"
ISO = "2026-01-01T00:00:00.000000+00:00"
T0_US = 1_767_225_600_000_000


def record(table, key, value):
    k = key.encode()
    return bytes([table, len(k)]) + k + struct.pack("<H", len(value)) + value


def restore_seeds():
    """Each record kind whose layout is simple enough to write by hand, valid and subtly not."""
    profile = b"\x01" + pstr("fuzz") + pstr("bio") + pstr(ISO) + popt(zigzag(T0_US)) + varint(1) + varint(5)
    connection = (b"\x01" + pstr(PEER_ID) + pstr("http://127.0.0.1:8101") + pstr("peer") + pstr("bio") + pstr(ISO)
                  + varint(3) + varint(4) + pstr(ISO) + pbool(True) + pbool(True) + varint(0)
                  + varint(1) + pstr("solana") + pstr("D3PD") + popt(pstr(ISO)) + pbool(True))
    pending_out = b"\x01" + pstr("http://127.0.0.1:8102") + popt(pstr(PEER_ID)) + popt(pstr("req-0000abcd")) \
        + pbool(True) + zigzag(T0_US)
    impression_v2 = b"\x02" + pf64(0.5) + pstr("good") + pstr(ISO) + popt(None) + pbool(True)
    impression_v1 = b"\x01" + pf64(-0.25) + pstr("old") + pstr(ISO) + popt(zigzag(T0_US))
    replay = b"\x01" + zigzag(T0_US + 600_000_000)
    acceptance = b"\x01" + varint(2)
    yield record(PROFILE, "self", profile)
    yield record(CONNECTIONS, PEER_ID, connection)
    yield record(PENDING_OUT, "http://127.0.0.1:8102", pending_out)
    yield record(IMPRESSIONS, PEER_ID, impression_v2) + record(IMPRESSIONS, PEER_ID, impression_v1)
    yield record(REPLAY, "msg-000000000001", replay) + record(ACCEPTANCES, PEER_ID, acceptance)
    yield b"".join([record(PROFILE, "self", profile), record(CONNECTIONS, PEER_ID, connection),
                    record(PENDING_OUT, "http://127.0.0.1:8102", pending_out),
                    record(IMPRESSIONS, PEER_ID, impression_v2), record(REPLAY, "m", replay),
                    record(ACCEPTANCES, PEER_ID, acceptance)])
    # A newer build's profile, an empty value, a version with no upgrade.
    yield record(PROFILE, "self", b"\x09" + profile[1:]) + record(CONNECTIONS, "x", b"")
    yield record(IMPRESSIONS, PEER_ID, b"\x00" + impression_v1[1:])


def write_all(captures):
    for target in OWNED:
        shutil.rmtree(SEEDS / target, ignore_errors=True)
        (SEEDS / target).mkdir(parents=True)
    w = Writer()
    sessions = {}
    for stem, method, target, headers, body in inbound_requests(captures):
        raw = http_bytes(method, target, headers, body)
        w.put("http_head", raw)
        w.put("node_requests", f"{method} {target.split('?')[0]}\n".encode() + body)
        sessions.setdefault(stem, []).append((method, target, raw, body))
    for stem, requests in sessions.items():
        # A whole conversation in order: pipelined on one connection, and handed to one node.
        for start in range(0, len(requests), REQUESTS_PER_SEED_MAX):
            part = requests[start : start + REQUESTS_PER_SEED_MAX]
            w.put("http_head_chunked", bytes([start % 256, 7]) + b"".join(r[2] for r in part))
            lines = [f"{m} {t.split('?')[0]}\n".encode() + b for m, t, _, b in part]
            w.put("node_requests", SEPARATOR.join(lines))
    deliveries = list(dict.fromkeys(answers(captures, "/message")))[:DELIVERIES_PER_SEED_MAX]
    for connect in dict.fromkeys(answers(captures, "/connection_request")):
        w.put("node_responses", connect)
        w.put("node_responses", SEPARATOR.join([connect] + deliveries))
    w.put("node_responses", b"!connection refused")
    for head in HAND_HEADS:
        w.put("http_head", head)
        w.put("http_head_chunked", b"\x03\x09" + head)
    for body in json_bodies(captures):
        w.put("wire_bodies", body)
    for body in BEACONS:
        w.put("wire_bodies", body)
        for flags in range(8):
            w.put("beacons", bytes([flags]) + body)
    for records in restore_seeds():
        w.put("node_restore", records)
    for text in PASSPORTS:
        w.put("passport_file", text)
    for target in OWNED:
        files = list((SEEDS / target).iterdir())
        print(f"{target}: {len(files)} seeds, {sum(f.stat().st_size for f in files)} bytes")


if __name__ == "__main__":
    default = HERE.parent.parent.parent / "shared" / "reference" / "captures"
    write_all(Path(sys.argv[1]) if len(sys.argv) > 1 else default)
