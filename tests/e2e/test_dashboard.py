"""The dashboard (`/ui/` on the API port) in a real browser: headless Chromium from
Debian driven by Selenium (tests/e2e/browser.py), against the real control plane,
a real Envoy and the hello-world upstreams (control_plane.start_world).

SWITCHYARD_DOCS_SCREENSHOTS=1 writes the three pages' screenshots into
docs/src/images/ (the book's dashboard page shows them); otherwise they go to the
test's directory.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

import browser
import certs
import control_plane as cp
import harness

# Skipped on a developer machine without Chromium; CI (scripts/install-envoy.sh
# installs it) must run them.
pytestmark = pytest.mark.skipif(browser.available() is not None and not os.environ.get("CI"),
                                reason=f"Chromium: {browser.available()}")

HOSTILE = '<img src=x onerror="window.__pwned=1">'
CANARY = "hello-world-v3-canary"


def screenshot_dir(work_dir: Path) -> Path:
    if os.environ.get("SWITCHYARD_DOCS_SCREENSHOTS") == "1":
        return harness.ROOT / "docs" / "src" / "images"
    return work_dir


def screenshot(driver, work_dir: Path, page: str) -> None:
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(screenshot_dir(work_dir) / f"dashboard-{page}.png"))


def css(driver, selector: str):
    return driver.find_elements(By.CSS_SELECTOR, selector)


def released(driver, ve: str, app: str = "hello-world") -> str | None:
    cells = css(driver, f'[data-release="{ve}/{app}"]')
    return cells[0].text if cells else None


def test_sign_in_see_the_release_and_release_through_the_page(procs, bins, work_dir):
    world = cp.start_world(procs, bins, work_dir, internal=True)
    base = world.plane.server
    assert world.deployment() == "hello-world-main"
    with browser.chromium(procs.log_dir) as d:
        browser.sign_in(d, base, world.plane.token)
        assert "admin (admin)" in d.find_element(By.ID, "who-text").text
        browser.wait(d, "team-a's release shown", lambda d: released(d, "team-a") == "hello-world-main")
        # the VE's history: who, when, from what
        team_a = css(d, '[data-ve="team-a"]')[0]
        assert "apply hello-world: — → hello-world-main" in team_a.text
        # shared component versions are marked (f1a0001 is in main and v2)
        main_row = css(d, '[data-deployment="hello-world-main"]')[0]
        assert "frontend f1a0001 ⇄ hello-world-v2" in main_row.text, main_row.text
        # release hello-world-v2 to team-a through the page
        Select(css(d, '[data-release-select="team-a/hello-world"]')[0]).select_by_value("hello-world-v2")
        css(d, '[data-action="release"][data-target="team-a/hello-world"]')[0].click()
        browser.wait(d, "the release reported live",
                     lambda d: "live on 1/1 Envoys" in d.find_element(By.ID, "banner").text)
        assert "release hello-world-v2 to team-a: done" in d.find_element(By.ID, "banner").text
        # Envoy serves it, and the page shows it with its history entry by the token
        assert world.deployment() == "hello-world-v2"
        browser.wait(d, "the new release shown", lambda d: released(d, "team-a") == "hello-world-v2")
        browser.wait(d, "the history entry", lambda d: "release hello-world: hello-world-main → "
                     "hello-world-v2" in css(d, '[data-ve="team-a"]')[0].text)
        history = world.cli("history", "--virtual-env", "team-a", "-o", "json").json["history"]
        assert (history[-1]["deployment"], history[-1]["who"]) == ("hello-world-v2", "admin")
        screenshot(d, work_dir, "overview")
        # roll back through the page
        css(d, '[data-action="rollback"][data-target="team-a/hello-world"]')[0].click()
        browser.wait(d, "the rollback shown", lambda d: released(d, "team-a") == "hello-world-main")
        assert world.deployment() == "hello-world-main"
        # the Envoys page: the connected Envoy, ACKed per type
        d.get(base + "/ui/#envoys")
        row = browser.wait(d, "the Envoy listed", lambda d: css(d, f'[data-envoy="{world.node_id}"]'))[0]
        browser.wait(d, "every type ACKed", lambda d: all(
            c.text.startswith("ACK") for c in css(d, f'[data-envoy="{world.node_id}"] [data-type]')))
        assert {c.get_attribute("data-type") for c in row.find_elements(By.CSS_SELECTOR, "[data-type]")} >= \
            {"CDS", "EDS", "ECDS", "LDS", "RDS"}
        screenshot(d, work_dir, "envoys")


class EvilSite:
    """A page on another origin that posts a release to the API (cross-site)."""

    def __init__(self, api: str):
        page = (f'<form id="f" method="post" action="{api}/v1/release" enctype="text/plain">'
                '<input name=\'{"deployment":"hello-world-v3","virtualEnv":"team-a","x":"\' value=\'"}\'>'
                '</form><script>document.getElementById("f").submit()</script>').encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("content-type", "text/html")
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer((harness.LOCALHOST, harness.free_port()), Handler)
        self.url = f"http://{harness.LOCALHOST}:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_read_token_sees_no_buttons_hostile_vars_are_text_and_no_csrf(procs, bins, work_dir):
    world = cp.start_world(procs, bins, work_dir)
    base = world.plane.server
    read = harness.create_token(bins.switchyard, base, "read", "viewer")
    # a var value is free text: make it HTML
    ve = {"kind": "VirtualEnvironment", "metadata": {"name": "joe"},
          "spec": {"environment": "dev", "release": {"apps": {"hello-world": "hello-world-main"}}},
          "vars": {"who": HOSTILE}}
    assert world.cli("apply", "-f", str(harness.write_yaml(work_dir / "joe.yaml", [ve]))).code == 0
    with browser.chromium(procs.log_dir) as d:
        browser.sign_in(d, base, read)
        assert "viewer (read)" in d.find_element(By.ID, "who-text").text
        browser.wait(d, "the releases shown", lambda d: released(d, "team-a") == "hello-world-main")
        # the hostile var is shown as its characters, and nothing of it ran
        var = css(d, '[data-ve="joe"] [data-var="who"]')[0]
        assert var.text == f"who = {HOSTILE}"
        assert css(d, "#view img") == []
        assert d.execute_script("return window.__pwned") is None
        # no action anywhere for a read token
        assert css(d, "[data-action]") == [] and css(d, "select") == []
        d.get(base + "/ui/#canaries")
        browser.wait(d, "the canary page", lambda d: css(d, "#canaries"))
        assert css(d, "[data-action]") == []
        # the server refuses the change anyway (403), from the page's own origin
        status = d.execute_async_script("""
            const done = arguments[arguments.length - 1];
            fetch('/v1/release', {method: 'POST', headers: {
                'Authorization': 'Bearer ' + sessionStorage.getItem('switchyard.token'),
                'Content-Type': 'application/json'},
              body: JSON.stringify({deployment: 'hello-world-v2', virtualEnv: 'team-a'})})
              .then((r) => done(r.status), (e) => done(String(e)));""")
        assert status == 403
        # the token is in this tab's sessionStorage only: no cookie, no URL, no localStorage
        assert d.get_cookies() == []
        assert read not in d.current_url
        assert d.execute_script("return localStorage.length") == 0
        # a page of another origin posts a release: it arrives without a credential
        evil = EvilSite(base)
        try:
            d.get(evil.url)
            browser.wait(d, "the cross-site post answered", lambda d: "unauthenticated" in d.page_source)
        finally:
            evil.close()
        # sign out: the token is gone
        d.get(base + "/ui/")
        browser.wait(d, "signed in again from the tab", lambda d: d.find_element(By.ID, "who").is_displayed())
        d.find_element(By.ID, "sign-out").click()
        assert d.find_element(By.ID, "sign-in").is_displayed()
        assert d.execute_script("return sessionStorage.getItem('switchyard.token')") is None
    assert world.deployment() == "hello-world-main"
    # and browsers are never allowed to call the API from elsewhere (no CORS grant)
    pre = requests.options(base + "/v1/release", timeout=5, headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert "access-control-allow-origin" not in {k.lower() for k in pre.headers}


def test_a_failing_canary_aborts_on_the_canary_page(procs, bins, work_dir):
    world = cp.start_world(procs, bins, work_dir)
    base = world.plane.server
    releaser = harness.create_token(bins.switchyard, base, "release", "release-desk")
    canary = {"kind": "Canary", "metadata": {"name": CANARY},
              "spec": {"virtualEnvironment": "team-a", "app": "hello-world", "deployment": "hello-world-v3",
                       "steps": ["10%", "50%", "100%"], "analysis": {"stepTime": "60s"}}}
    assert world.cli("apply", "-f", str(harness.write_yaml(work_dir / "canary.yaml", [canary]))).code == 0
    load = harness.KeepAliveLoad(world.url, ["/dev/hello"], clients=1)
    with browser.chromium(procs.log_dir) as d, load:
        browser.sign_in(d, base, releaser)
        d.get(base + "/ui/#canaries")
        card = f'[data-canary="{CANARY}"]'
        browser.wait(d, "the pending canary", lambda d: css(d, card + '[data-phase="pending"]'))
        # start it from the page (a release token has the canary verbs)
        browser.click(d, f'{card} [data-action="start"]')
        browser.wait(d, "progressing", lambda d: css(d, card + '[data-phase="progressing"]'), 30)
        assert browser.text_of(d, f'{card} [data-field="weight"]') == "10%"
        # healthy for a while: both versions' requests are plotted from the LRS counts
        def plotted(d) -> bool:
            lines = css(d, f'{card} svg[aria-label^="requests/s"] path')
            return len(lines) == 2 and all(len(p.get_attribute("d").split("L")) >= 4 for p in lines)
        browser.wait(d, "both versions' requests plotted", plotted, 30)
        # the samples are the control plane's: a page opened now plots the rollout so far
        series = requests.get(f"{base}/v1/canaries/{CANARY}/series", timeout=5,
                              headers={"authorization": f"Bearer {releaser}"}).json()
        samples = series["samples"]
        assert len(samples) >= 4 and samples[-1]["canary"]["requests"] > samples[0]["canary"]["requests"]
        assert [x["atUnixMs"] for x in samples] == sorted(x["atUnixMs"] for x in samples)
        d.refresh()
        browser.wait(d, "plotted at once after a reload", plotted, 3)
        # the canary's frontend starts failing: the analysis aborts it, on the page
        r = requests.post(world.hello.upstream("frontend", "f3a0003").url + "/_admin/fail?status=500", timeout=5)
        assert r.json() == {"failStatus": 500}
        browser.wait(d, "aborted on the page", lambda d: css(d, card + '[data-phase="aborted"]'), 60)
        reason = browser.text_of(d, f'{card} [data-field="reason"]')
        assert "analysis failed" in reason, reason
        assert browser.text_of(d, f'{card} [data-field="weight"]') == "0%"
        statistic = browser.text_of(d, f'{card} [data-field="statistic"]')
        assert statistic.startswith("statistic:") and "of bound" in statistic
        events = browser.text_of(d, f"{card} table.events")
        assert "aborted" in events and "release-desk" in events
        assert css(d, f"{card} [data-action]") == []  # an ended rollout has no buttons
        time.sleep(1.5)  # the plots show the errors and the weight going to 0
        screenshot(d, work_dir, "canaries")
    assert world.deployment() == "hello-world-main"


def spki_sha256(cert: Path) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)) of a PEM certificate."""
    def openssl(*args: str, data: bytes | None = None) -> bytes:
        return subprocess.run(["openssl", *args], input=data, capture_output=True, check=True).stdout
    der = openssl("pkey", "-pubin", "-outform", "der", data=openssl("x509", "-in", str(cert), "-pubkey", "-noout"))
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def test_the_dashboard_over_https(procs, bins, work_dir):
    """With `serve --api-tls-*` the dashboard is served over https like the API."""
    ca = certs.make_ca(work_dir / "pki", "switchyard-ca")
    server = ca.issue("control-plane", server_ip=harness.LOCALHOST)
    hello = harness.start_hello_world(procs, bins, work_dir)
    xds, api, listen = harness.free_ports(3)
    plane = cp.ControlPlane(bins, hello.resources_path, work_dir / "state", xds, api, listen, procs.log_dir,
                            extra_args=["--api-tls-cert", str(server.cert), "--api-tls-key", str(server.key)])
    plane.server = f"https://{harness.LOCALHOST}:{api}"
    plane.requests_kw = {"verify": str(ca.cert)}
    procs.add(plane.start())
    plane.wait_ready()
    page = requests.get(plane.server + "/ui/", verify=str(ca.cert), timeout=5)
    assert page.status_code == 200 and "frame-ancestors 'none'" in page.headers["content-security-policy"]
    with browser.chromium(procs.log_dir, trust_spki=spki_sha256(server.cert)) as d:
        browser.sign_in(d, plane.server, plane.token)
        browser.wait(d, "team-a's release shown", lambda d: released(d, "team-a") == "hello-world-main")
        assert d.current_url.startswith("https://")
