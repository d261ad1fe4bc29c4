"""Drives the WormHole page in headless Chromium (Debian's, never a downloaded one) through the
story of tests/wormhole_browser.rs. Every check is on the DOM; screenshots are artifacts to look at.
Arguments come as one JSON object in argv[1]; exits non-zero at the first failed check."""
import json
import os
import sys
import tempfile

from playwright.sync_api import expect, sync_playwright

A = json.loads(sys.argv[1])
SHOTS = A["shots"]
os.makedirs(SHOTS, exist_ok=True)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
expect.set_options(timeout=20_000)


def step(name):
    print("step:", name, flush=True)


def shot(page, name):
    page.screenshot(path=os.path.join(SHOTS, name + ".png"), full_page=False)


with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
    ctx = p.chromium.launch_persistent_context(
        profile, executable_path=A.get("chromium", "/usr/bin/chromium"), headless=True, args=FLAGS,
        viewport={"width": 1280, "height": 800})
    page = ctx.new_page()
    page.on("console", lambda m: print("console:", m.type, m.text, flush=True))
    page.on("pageerror", lambda e: print("pageerror:", e, flush=True))
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    step("login page, token pre-filled from the URL")
    page.goto(A["login_url"])
    shot(page, "01-login")
    page.click("#login-btn")
    expect(page.locator("#identity-name")).to_have_text("Human")
    expect(page.locator("#live")).to_have_class("live on")

    step("a pending request shows how its key was proven; accept it")
    pending = page.locator(f'.pending-item[data-agent-id="{A["carol"]}"]')
    expect(pending).to_be_visible()
    expect(pending).to_contain_text("signed request")
    shot(page, "02-pending")
    pending.locator("button.accept").click()
    expect(page.locator(f'.conn[data-agent-id="{A["carol"]}"]')).to_be_visible()
    expect(pending).to_have_count(0)

    step("connect to bob by URL")
    page.fill("#connect-url", A["bob_url"])
    page.click("#connect-btn")
    bob = page.locator(f'.conn[data-agent-id="{A["bob"]}"]')
    expect(bob).to_be_visible()
    expect(page.locator("#conn-count")).to_have_text("2")

    step("rename: the new name is shown and announced to the connections")
    page.fill("#name-input", "Ada at the browser")
    page.click("#name-btn")
    expect(page.locator("#identity-name")).to_have_text("Ada at the browser")

    step("send bob a message; his reply appears threaded under it")
    page.select_option("#compose-target", A["bob"])
    page.fill("#compose-text", "hello bob, from a browser")
    page.click("#send-btn")
    sent = page.locator(".msg.out", has_text="hello bob, from a browser")
    expect(sent).to_be_visible()
    expect(sent.locator(".thread .reply")).to_contain_text("re: hello bob, from a browser")
    expect(sent).to_have_attribute("data-status", "answered")
    shot(page, "03-timeline")

    step("check in: every connection is asked for a status; bob's answer threads under it")
    page.click("#checkin-btn")
    checkin = page.locator(".msg.out", has_text="What are you working on right now?")
    expect(checkin).to_be_visible()
    expect(checkin.locator(".thread .reply")).to_contain_text("re: What are you working on right now?")

    step("set an impression of bob")
    bob.locator(".impression-input").fill("0.8")
    bob.locator(".impression-note").fill("answers fast")
    bob.locator("button.set-impression").click()
    expect(bob.locator(".trust")).to_have_text("trust 0.80")
    expect(bob.locator(".health")).to_have_class("health healthy", timeout=30_000)
    shot(page, "04-connections")

    step("the mesh view draws bob's peer dave as a second-degree edge")
    page.click("#tab-mesh")
    expect(page.locator(f'#mesh line.edge-2[data-source="{A["bob"]}"][data-target="{A["dave"]}"]')).to_have_count(1)
    expect(page.locator("#mesh line.edge-1")).to_have_count(2)
    expect(page.locator(f'#mesh g.node[data-id="{A["dave"]}"]')).to_be_visible()
    shot(page, "05-mesh")

    step("the spawn panel lists the stand-in agent; Kill ends it")
    page.click("#tab-agents")
    child = page.locator(f'.child[data-group="{A["group"]}"]')
    expect(child).to_be_visible()
    expect(child).to_contain_text("no sandbox")
    shot(page, "06-agents")
    child.locator("button.kill").click()
    expect(child).to_have_count(0)

    step("shards view")
    page.click("#tab-shards")
    expect(page.locator("#view-shards")).to_be_visible()
    shot(page, "07-shards")

    step("a phone-sized viewport")
    page.set_viewport_size({"width": 390, "height": 844})
    page.click("#tab-timeline")
    expect(page.locator("#compose-text")).to_be_visible()
    box = page.locator("#compose-text").bounding_box()
    assert box["width"] <= 390, box
    shot(page, "08-phone")
    assert not errors, errors
    ctx.close()
print("ok", flush=True)
