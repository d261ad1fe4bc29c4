// WormHole page. Draws /api/poll; redraws when the server pushes an event (/api/events), never on a
// timer. Builds DOM nodes only (no HTML strings), so peer text can never become markup.
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (id) => document.getElementById(id);
  let state = null;
  let view = "timeline";
  let refreshing = false, again = false;

  function el(tag, attrs, ...kids) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") n.className = v;
      else if (k.startsWith("on")) n.addEventListener(k.slice(2), v);
      else if (k === "text") n.textContent = v;
      else n.setAttribute(k, v);
    }
    for (const k of kids.flat()) if (k !== null && k !== undefined) n.append(k instanceof Node ? k : String(k));
    return n;
  }
  const svg = (tag, attrs) => {
    const n = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, v);
    return n;
  };
  const short = (id) => (id || "").slice(0, 8);
  const ago = (iso) => {
    const t = Date.parse(iso);
    if (!t) return "";
    const s = Math.max(0, (Date.now() - t) / 1000);
    if (s < 60) return Math.floor(s) + "s ago";
    if (s < 3600) return Math.floor(s / 60) + "m ago";
    if (s < 86400) return Math.floor(s / 3600) + "h ago";
    return Math.floor(s / 86400) + "d ago";
  };
  function toast(text, bad) {
    const t = $("toast");
    t.textContent = text;
    t.className = "toast show" + (bad ? " bad" : "");
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => (t.className = "toast"), 3200);
  }

  async function post(path, body) {
    const r = await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body || {}),
    });
    if (r.status === 401) location.href = "/login";
    const j = await r.json().catch(() => ({}));
    if (!r.ok || j.success === false) {
      toast(j.error || "Failed (" + r.status + ")", true);
      throw new Error(j.error || String(r.status));
    }
    refresh();
    return j;
  }

  async function refresh() {
    if (refreshing) { again = true; return; }
    refreshing = true;
    try {
      const r = await fetch("/api/poll", { credentials: "same-origin" });
      if (r.status === 401) { location.href = "/login"; return; }
      state = await r.json();
      draw();
      if (view === "mesh") drawMesh();
      if (view === "agents") drawAgents();
      if (view === "antimatter") drawAntimatter();
    } catch (e) { /* the next event retries */ }
    refreshing = false;
    if (again) { again = false; refresh(); }
  }

  function draw() {
    drawIdentity(state.self || {});
    drawPending(state.pending_requests || []);
    drawConnections(state.connections || []);
    drawDiscovered(state.discovered || {});
    drawTargets(state.connections || []);
    drawFeed();
    drawShards(state.shards || {});
  }

  function drawIdentity(me) {
    $("identity-name").textContent = me.display_name || "…";
    $("identity-id").textContent = me.agent_id || "";
    $("identity-url").textContent = me.url || "";
    $("identity-avatar").textContent = (me.display_name || "?").slice(0, 1).toUpperCase();
    const name = $("name-input");
    if (document.activeElement !== name) name.value = me.display_name || "";
    const bio = $("bio-input");
    if (document.activeElement !== bio) bio.value = me.bio || "";
  }

  function trustChip(score) {
    if (score === null || score === undefined) return el("span", { class: "trust", text: "unscored" });
    return el("span", { class: "trust " + (score > 0 ? "pos" : score < 0 ? "neg" : ""), text: "trust " + Number(score).toFixed(2) });
  }

  function drawPending(list) {
    $("pending-count").textContent = list.length;
    $("pending-list").replaceChildren(...list.map((p) => {
      const pt = p.peer_trust;
      const peers = pt && pt.asked === 0 ? "no peers to ask" : pt ? (pt.answered + "/" + pt.asked + " peers answered" + (pt.score !== null && pt.score !== undefined ? ", avg " + Number(pt.score).toFixed(2) : "")) : "no peers asked";
      return el("li", { class: "item pending-item", "data-request-id": p.request_id, "data-agent-id": p.agent_id },
        el("div", { class: "head" }, el("span", { class: "title", text: p.display_name || short(p.agent_id) }), trustChip(p.our_impression)),
        el("div", { class: "meta" }, el("span", { class: "mono", text: short(p.agent_id) }), el("span", { text: "key: " + p.proven_by }), el("span", { text: peers })),
        p.bio ? el("div", { class: "meta", text: p.bio }) : null,
        el("div", { class: "actions" },
          el("button", { class: "ok small accept", type: "button", onclick: () => post("/accept/" + encodeURIComponent(p.request_id)).then(() => toast("Accepted")) }, "Accept"),
          el("button", { class: "danger small reject", type: "button", onclick: () => post("/reject/" + encodeURIComponent(p.request_id)).then(() => toast("Rejected")) }, "Reject")));
    }));
  }

  function drawConnections(list) {
    $("conn-count").textContent = list.length;
    $("conn-list").replaceChildren(...list.map((c) => {
      const score = c.impression ? c.impression.score : null;
      const input = el("input", { class: "impression-input", type: "number", min: "-1", max: "1", step: "0.1", value: score === null ? "" : String(score), "aria-label": "Impression -1..1" });
      const note = el("input", { class: "impression-note", placeholder: "note", value: c.impression ? c.impression.note : "" });
      return el("li", { class: "item conn", "data-agent-id": c.agent_id },
        el("div", { class: "head" }, el("span", { class: "health " + (c.health_status || "unknown"), title: c.health_status || "unknown" }),
          el("span", { class: "title", text: c.display_name || short(c.agent_id) }), trustChip(score)),
        el("div", { class: "meta" }, el("span", { class: "mono", text: short(c.agent_id) }),
          el("span", { class: "latency", text: c.ping_latency_ms === null || c.ping_latency_ms === undefined ? "ping –" : c.ping_latency_ms + " ms" }),
          el("span", { text: "active " + ago(c.last_activity) }),
          el("span", { text: "↑" + c.messages_sent + " ↓" + c.messages_received })),
        el("div", { class: "actions" }, input, note,
          el("button", { class: "small set-impression", type: "button", onclick: () => {
            const v = parseFloat(input.value);
            if (isNaN(v)) return toast("Impression is a number from -1 to 1", true);
            post("/api/impression", { agent_id: c.agent_id, score: v, note: note.value }).then(() => toast("Impression saved"));
          } }, "Set"),
          el("button", { class: "ghost small", type: "button", onclick: () => { if (confirm("Disconnect " + (c.display_name || short(c.agent_id)) + "?")) post("/disconnect/" + encodeURIComponent(c.agent_id)); } }, "Disconnect")));
    }));
  }

  function drawDiscovered(d) {
    const list = d.peers || d.discovered || [];
    const connected = new Set((state.connections || []).map((c) => c.agent_id));
    $("discovered-list").replaceChildren(...list.filter((p) => !connected.has(p.agent_id) && p.agent_id !== (state.self || {}).agent_id).map((p) =>
      el("li", { class: "item" },
        el("div", { class: "head" }, el("span", { class: "title", text: p.display_name || short(p.agent_id) }),
          el("button", { class: "small", type: "button", onclick: () => post("/connect", { url: p.url }).then((j) => toast(j.status === "connected" ? "Connected" : "Request sent")) }, "Connect")),
        el("div", { class: "meta" }, el("span", { class: "mono", text: p.url || "" })))));
  }

  function drawTargets(conns) {
    const sel = $("compose-target");
    const keep = sel.value;
    const opts = [el("option", { value: "all" }, "Everyone (" + conns.length + ")"), el("option", { value: "fast" }, "Fastest to answer")].concat(
      conns.map((c) => el("option", { value: c.agent_id }, (c.display_name || short(c.agent_id)) + " · " + short(c.agent_id))));
    sel.replaceChildren(...opts);
    if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
  }

  const nameOf = (id) => {
    const c = (state.connections || []).find((x) => x.agent_id === id);
    return c ? c.display_name : short(id);
  };

  // The server decides where a message stands (api.rs `delivery`); the page only shows it.
  const delivery = (m) => m.delivery || "sent";

  function drawFeed() {
    const out = (state.outbox || []).filter((m) => m.message_id);
    const inbox = state.inbox || [];
    const outIds = new Set(out.map((m) => m.message_id));
    const repliesTo = {};
    for (const m of inbox) if (m.in_reply_to && outIds.has(m.in_reply_to)) (repliesTo[m.in_reply_to] = repliesTo[m.in_reply_to] || []).push(m);
    const ourRepliesTo = {};
    for (const m of out) if (m.in_reply_to) (ourRepliesTo[m.in_reply_to] = ourRepliesTo[m.in_reply_to] || []).push(m);
    const items = [];
    for (const m of out) {
      if (m.in_reply_to && inbox.some((i) => i.message_id === m.in_reply_to)) continue; // shown under that message
      items.push({ at: m.created_at, node: outbound(m, repliesTo[m.message_id] || []) });
    }
    for (const m of inbox) {
      if (m.in_reply_to && outIds.has(m.in_reply_to)) continue; // shown under our message
      items.push({ at: m.received_at, node: inbound(m, ourRepliesTo[m.message_id] || []) });
    }
    items.sort((a, b) => (Date.parse(b.at) || 0) - (Date.parse(a.at) || 0));
    $("feed").replaceChildren(...items.map((i) => i.node));
  }

  function outbound(m, inboxReplies) {
    const st = inboxReplies.length ? "answered" : delivery(m);
    const thread = el("div", { class: "thread" });
    const seen = new Set();
    for (const r of m.responses || []) {
      seen.add(r.message_id);
      thread.append(el("div", { class: "reply", "data-from": r.agent_id }, el("div", { class: "head" }, el("span", { class: "who", text: nameOf(r.agent_id) }), el("span", { text: ago(r.received_at) })), el("div", { class: "body", text: r.content })));
    }
    for (const r of inboxReplies) {
      if (seen.has(r.message_id)) continue;
      thread.append(el("div", { class: "reply", "data-from": r.from_agent_id }, el("div", { class: "head" }, el("span", { class: "who", text: r.from_display_name || nameOf(r.from_agent_id) }), el("span", { text: ago(r.received_at) })), el("div", { class: "body", text: r.content })));
    }
    const to = (m.routed_to || []).map(nameOf).join(", ") || "nobody";
    return el("article", { class: "msg out", "data-message-id": m.message_id, "data-status": st },
      el("div", { class: "head" }, el("span", { class: "who", text: "You" }), el("span", { text: "→ " + to }), el("span", { text: ago(m.created_at) }), el("span", { class: "status " + st, text: st })),
      el("div", { class: "body", text: m.content }),
      thread.childElementCount ? thread : null);
  }

  function inbound(m, ours) {
    const form = el("form", { class: "row reply-form" });
    const input = el("input", { placeholder: "Reply…", class: "reply-input", required: "required" });
    form.append(input, el("button", { type: "submit", class: "small" }, "Reply"));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      post("/respond/" + encodeURIComponent(m.message_id), { response: input.value }).then(() => { input.value = ""; toast("Reply sent"); });
    });
    const thread = el("div", { class: "thread" }, ...ours.map((r) => el("div", { class: "reply mine" }, el("div", { class: "head" }, el("span", { class: "who", text: "You" }), el("span", { class: "status " + delivery(r), text: delivery(r) })), el("div", { class: "body", text: r.content }))));
    return el("article", { class: "msg in", "data-message-id": m.message_id },
      el("div", { class: "head" }, el("span", { class: "who", text: m.from_display_name || nameOf(m.from_agent_id) }), el("span", { class: "mono", text: short(m.from_agent_id) }), el("span", { text: ago(m.received_at) }), m.verified ? el("span", { class: "status delivered", text: "verified" }) : null),
      el("div", { class: "body", text: m.content }),
      thread.childElementCount ? thread : null, form);
  }

  function drawShards(s) {
    const list = s.shards || [];
    $("shard-list").replaceChildren(...list.map((sh) => el("article", { class: "msg" },
      el("div", { class: "head" }, el("span", { class: "who", text: sh.shard_id || sh.id || "shard" }), el("span", { text: (sh.tags || []).join(", ") }), el("span", { class: "mono", text: short(sh.author_agent_id || sh.author) })),
      el("div", { class: "body", text: sh.content || "" }))));
    if (!list.length) $("shard-list").replaceChildren(el("p", { class: "dim", text: "No shards yet." }));
  }

  async function drawMesh() {
    const r = await fetch("/api/mesh-topology", { credentials: "same-origin" });
    if (!r.ok) return;
    const t = await r.json();
    const g = $("mesh");
    const pos = {};
    const first = t.nodes.filter((n) => n.degree === 1);
    const second = t.nodes.filter((n) => n.degree === 2);
    pos[t.self_id] = [0, 0];
    first.forEach((n, i) => { const a = (2 * Math.PI * i) / Math.max(1, first.length) - Math.PI / 2; pos[n.id] = [170 * Math.cos(a), 170 * Math.sin(a)]; });
    // A second-degree node sits outside the first peer that knows it.
    const anchor = {};
    for (const e of t.edges) if (e.degree === 2 && !(e.target in anchor) && !(e.target in pos)) anchor[e.target] = e.source;
    second.forEach((n, i) => {
      const p = pos[anchor[n.id]] || [0, -1];
      const base = Math.atan2(p[1], p[0]);
      const a = base + (i % 3 - 1) * 0.35;
      pos[n.id] = [290 * Math.cos(a), 280 * Math.sin(a)];
    });
    const kids = [];
    for (const e of t.edges) {
      const a = pos[e.source], b = pos[e.target];
      if (!a || !b) continue;
      kids.push(svg("line", { x1: a[0], y1: a[1], x2: b[0], y2: b[1], class: "edge-" + e.degree, "data-source": e.source, "data-target": e.target }));
    }
    for (const n of t.nodes) {
      const p = pos[n.id];
      if (!p) continue;
      const grp = svg("g", { class: "node deg-" + n.degree, "data-id": n.id });
      grp.append(svg("circle", { cx: p[0], cy: p[1], r: n.degree === 0 ? 20 : n.degree === 1 ? 14 : 10, class: "n" + n.degree }));
      const label = svg("text", { x: p[0], y: p[1] + (n.degree === 0 ? 38 : 30) });
      label.textContent = n.degree === 0 ? "you" : n.label || short(n.id);
      grp.append(label);
      kids.push(grp);
    }
    g.replaceChildren(...kids);
  }

  async function drawAgents() {
    const r = await fetch("/api/spawn", { credentials: "same-origin" });
    if (!r.ok) return;
    const s = await r.json();
    const box = $("agents-list");
    if (!s.nodes.length) return box.replaceChildren(el("p", { class: "dim", text: "No local node is watched. Start with --agent <project>/.darkmatter." }));
    box.replaceChildren(...s.nodes.map((n) => el("section", { class: "card child-node" },
      el("h2", { text: n.node }),
      el("div", { class: "actions" },
        el("button", { class: "small spawn-on", type: "button", onclick: () => post("/api/spawn/toggle", { node: n.node, spawning: true }).then((j) => toast(j.started ? "Spawning on; " + j.started + " agent(s) started for queued messages" : "Spawning on")) }, "Spawning on"),
        el("button", { class: "small spawn-off", type: "button", onclick: () => post("/api/spawn/toggle", { node: n.node, spawning: false }).then((j) => toast("Spawning off; " + j.live + " agent(s) still running")) }, "Spawning off"),
        el("button", { class: "small sandbox-on", type: "button", onclick: () => post("/api/spawn/sandbox", { node: n.node, on: true }).then(() => toast("Sandbox on for the next agents")) }, "Sandbox on"),
        el("button", { class: "danger small sandbox-off", type: "button", onclick: () => {
          const passphrase = prompt("Running agents without a sandbox: enter the passphrase again");
          if (passphrase !== null) post("/api/spawn/sandbox", { node: n.node, on: false, passphrase }).then(() => toast("Sandbox off for the next agents"));
        } }, "Sandbox off")),
      el("ul", { class: "list" }, ...n.children.map((c) => el("li", { class: "item child", "data-group": String(c.group) },
        el("div", { class: "head" }, el("span", { class: "title mono", text: c.cmdline || "pid " + c.group }), el("span", { class: "badge " + (c.sandboxed ? "on" : "off"), text: c.sandboxed ? "sandboxed" : "no sandbox" })),
        el("div", { class: "meta" }, el("span", { text: "group " + c.group }), el("span", { text: "running " + c.age_s + "s" })),
        el("div", { class: "actions" }, el("button", { class: "danger small kill", type: "button", onclick: () => post("/api/spawn/kill/" + c.group).then(() => { toast("Killed"); drawAgents(); }) }, "Kill"))))),
      n.log_tail ? el("pre", { class: "log", text: n.log_tail }) : null)));
  }

  // Events that move money or trust stand out; the rest is the game's own progress.
  const AM_TONE = { antimatter_sent: "ok", antimatter_kept: "ok", antimatter_started: "ok",
    antimatter_send_failed: "bad", antimatter_fraud: "bad", antimatter_not_routed: "bad",
    antimatter_result_refused: "bad", rate_disagreement: "warn", antimatter_disagreement: "warn",
    antimatter_timeout: "warn", antimatter_no_game: "warn" };

  async function drawAntimatter() {
    const r = await fetch("/api/antimatter", { credentials: "same-origin" });
    if (!r.ok) return;
    const a = await r.json();
    const chip = (label, n) => el("span", { class: "am-chip" }, el("b", { text: String(n) }), " " + label);
    const kinds = Object.entries(a.events || {}).sort((x, y) => y[1] - x[1]);
    $("am-counts").replaceChildren(
      chip("open signals", a.open_signals || 0),
      chip("payments awaiting a start", a.awaited_payments || 0),
      chip("wallets owed a small fee", a.owed_destinations || 0),
      ...kinds.map(([k, n]) => el("span", { class: "am-chip am-" + (AM_TONE[k] || "plain") }, el("b", { text: String(n) }), " " + k)));
    const log = (a.antimatter_log || []).slice().reverse();
    $("am-log").replaceChildren(...log.map((e) => el("li", { class: "item am-event" },
      el("div", { class: "head" },
        el("span", { class: "badge am-" + (AM_TONE[e.type] || "plain"), text: e.type }),
        el("span", { class: "title mono", text: e.signal_id || "" }),
        el("span", { class: "dim small", title: e.timestamp, text: ago(e.timestamp) })),
      e.detail ? el("div", { class: "meta mono", text: e.detail }) : null)));
  }

  function showView(v) {
    view = v;
    document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("active", t.dataset.view === v));
    document.querySelectorAll(".view").forEach((s) => s.classList.toggle("active", s.id === "view-" + v));
    if (v === "mesh") drawMesh();
    if (v === "agents") drawAgents();
    if (v === "antimatter") drawAntimatter();
  }

  function wire() {
    document.querySelectorAll(".tab").forEach((t) => t.addEventListener("click", () => showView(t.dataset.view)));
    $("connect-form").addEventListener("submit", (e) => {
      e.preventDefault();
      post("/connect", { url: $("connect-url").value.trim() }).then((j) => { $("connect-url").value = ""; toast(j.status === "connected" ? "Connected" : "Request sent; waiting for them to accept"); });
    });
    $("name-form").addEventListener("submit", (e) => { e.preventDefault(); post("/api/name", { display_name: $("name-input").value }).then(() => toast("Renamed and announced")); });
    $("bio-form").addEventListener("submit", (e) => { e.preventDefault(); post("/api/bio", { bio: $("bio-input").value }).then(() => toast("Bio saved and announced")); });
    $("compose-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const text = $("compose-text").value;
      if (!text.trim()) return;
      post("/send", { content: text, target: $("compose-target").value }).then(() => { $("compose-text").value = ""; toast("Sent"); });
    });
    $("checkin-btn").addEventListener("click", () => post("/api/checkin").then(() => toast("Asked everyone what they are working on")));
    $("scan-btn").addEventListener("click", () => post("/api/scan").then(() => toast("Scan done")));
    $("logout-btn").addEventListener("click", () => post("/logout").finally(() => (location.href = "/login")));
  }

  function listen() {
    const es = new EventSource("/api/events");
    es.addEventListener("hello", () => { $("live").classList.add("on"); $("live-text").textContent = "live"; refresh(); });
    es.addEventListener("node", () => refresh());
    es.addEventListener("changed", () => refresh());
    es.onerror = () => { $("live").classList.remove("on"); $("live-text").textContent = "reconnecting"; };
  }

  wire();
  refresh();
  listen();
})();
