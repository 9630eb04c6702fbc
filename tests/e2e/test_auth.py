"""The API's authentication and authorization (README "API authentication"):
bearer tokens with the roles read / release / admin / pull, the admin credential
that `switchyard serve` creates on first start and the CLI finds by itself, JSON
errors for 401/403, and the refusal to serve the API off loopback without
authentication. A real `switchyard serve` and the real CLI."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import time

import requests

import control_plane as cp
import harness
from harness import LOCALHOST, ROOT

RESOURCES = ROOT / "examples" / "hello-world" / "resources.yaml"


def start_plane(procs, bins, work_dir) -> cp.ControlPlane:
    xds, api, listen = harness.free_ports(3)
    plane = cp.ControlPlane(bins, RESOURCES, work_dir / "state", xds, api, listen, procs.log_dir)
    procs.add(plane.start())
    return plane.wait_ready()


def cli(plane: cp.ControlPlane, *args: str, env: dict[str, str] | None = None) -> cp.CliResult:
    """The CLI with the given environment on top of the test's (None: unchanged)."""
    argv = [str(plane.bins.switchyard), "--server", plane.server, "--who", "e2e", *args]
    t0 = time.monotonic()
    p = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60,
                       env={**os.environ, **(env or {})})
    return cp.CliResult(p.returncode, p.stdout, p.stderr, time.monotonic() - t0)


def test_every_call_needs_a_token_of_a_role_that_grants_it(procs, bins, work_dir):
    plane = start_plane(procs, bins, work_dir)
    # the admin credential: in the state (0600), and where the CLI looks (0600)
    state = work_dir / "state"
    admin = (state / "admin.token").read_text().strip()
    assert admin.startswith("syt_") and plane.token == admin
    for f in (state / "admin.token", state / "tokens.json", harness.credential_path(plane.server)):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert admin[4:] not in (state / "tokens.json").read_text()  # only its hash at rest

    # the CLI on this machine needs no flag
    assert cli(plane, "status").code == 0
    # a second server that cannot have the API's port leaves the credential alone
    p = subprocess.run([str(bins.switchyard), "serve", "--config", str(RESOURCES),
                        "--state", str(work_dir / "state-2"), "--api-addr",
                        f"{LOCALHOST}:{plane.api_port}", "--xds-addr",
                        f"{LOCALHOST}:{harness.free_port()}"], cwd=ROOT, capture_output=True,
                       text=True, timeout=30)
    assert p.returncode != 0 and "cannot listen for the API" in p.stderr, p.stderr
    assert plane.token == admin and cli(plane, "status").code == 0

    # without a credential (another user's config dir): 401 in DESIGN's error shape
    elsewhere = {"XDG_CONFIG_HOME": str(work_dir / "other-user")}
    r = cli(plane, "status", "--output", "json", env=elsewhere)
    assert r.code == 1 and set(r.json) == {"error", "message"}, r
    assert r.json["error"] == "unauthenticated"
    assert "SWITCHYARD_TOKEN" in r.json["message"]
    r = cli(plane, "status", "--output", "json", env={"SWITCHYARD_TOKEN": "syt_mistyped"})
    assert (r.code, r.json["error"]) == (1, "unauthenticated"), r
    r = requests.get(plane.server + "/v1/status", timeout=5)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"

    # roles
    reader = harness.create_token(bins.switchyard, plane.server, "read", "dashboard")
    releaser = harness.create_token(bins.switchyard, plane.server, "release", "ci")
    puller = harness.create_token(bins.switchyard, plane.server, "pull", "envoy-1")
    as_reader = {"SWITCHYARD_TOKEN": reader}
    assert cli(plane, "status", env=as_reader).code == 0
    assert cli(plane, "explain", "/dev/hello", env=as_reader).code == 0
    r = cli(plane, "release", "hello-world-v2", "--virtual-env", "team-a", "--no-wait",
            "--output", "json", env=as_reader)
    assert r.code == 1 and r.json["error"] == "forbidden", r
    assert r.json["message"] == ("the token 'dashboard' has role read; "
                                 "POST /v1/release needs release"), r
    token_file = work_dir / "ci.token"
    token_file.write_text(releaser + "\n")
    r = cli(plane, "--token-file", str(token_file), "release", "hello-world-v2",
            "--virtual-env", "team-a", "--no-wait")
    assert r.code == 0, r.stderr
    # the history names the token that made the change; what the client says
    # (`--who`, unverified) only beside it
    r = cli(plane, "history", "--virtual-env", "team-a", "--output", "json")
    assert r.json["history"][-1]["who"] == "ci (says e2e)", r.json
    r = subprocess.run([str(bins.switchyard), "--server", plane.server, "--who", "ci",
                        "--token-file", str(token_file), "rollback", "--virtual-env", "team-a",
                        "--no-wait"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = cli(plane, "history", "--virtual-env", "team-a", "--output", "json")
    assert r.json["history"][-1]["who"] == "ci", r.json
    r = cli(plane, "--token-file", str(token_file), "keys", "rotate", "--output", "json")
    assert r.code == 1 and r.json["error"] == "forbidden", r

    # the secrets: only the pull role gets them, nothing else shows them
    def get(path: str, token: str) -> requests.Response:
        return requests.get(plane.server + path, headers={"authorization": f"Bearer {token}"},
                            timeout=5)
    config = get("/v1/config", puller)
    assert config.status_code == 200
    secrets = [k["secret"] for k in config.json()["settings"]["contextKeys"]]
    assert secrets
    for token in (admin, releaser, reader):
        r = get("/v1/config", token)
        assert r.status_code == 403 and r.json()["error"] == "forbidden", r.text
    assert get("/v1/status", puller).status_code == 403
    shown = get("/v1/status", admin).text + get("/v1/resources", admin).text + \
        get("/v1/tokens", admin).text + cli(plane, "token", "list").stdout
    for secret in (*secrets, admin, reader, releaser, puller):
        assert secret not in shown
    # logs: refusals are logged, credentials never
    log = plane.log_text()
    assert "API call forbidden" in log and "without a credential" in log
    assert 'request=POST /v1/release token=ci role=release' in log
    for secret in (*secrets, admin, reader, releaser, puller):
        assert secret not in log

    # revocation works at once; the last admin token cannot be revoked
    assert cli(plane, "token", "revoke", "dashboard").code == 0
    r = cli(plane, "status", "--output", "json", env=as_reader)
    assert (r.code, r.json["error"]) == (1, "unauthenticated"), r
    r = cli(plane, "token", "revoke", "admin", "--output", "json")
    assert (r.code, r.json["error"]) == (1, "conflict"), r

    # a restart keeps every token (hashes in the state) and the admin credential
    plane.stop()
    procs.add(plane.start())
    plane.wait_ready()
    assert plane.token == admin
    assert cli(plane, "history", env={"SWITCHYARD_TOKEN": releaser}).code == 0
    assert cli(plane, "status", env=as_reader).code == 1


def test_no_auth_off_loopback_is_refused_at_start(bins, work_dir):
    xds, api = harness.free_ports(2)
    p = subprocess.run([str(bins.switchyard), "serve", "--config", str(RESOURCES),
                        "--xds-addr", f"{LOCALHOST}:{xds}", "--api-addr", f"0.0.0.0:{api}",
                        "--insecure-no-auth"], cwd=ROOT, capture_output=True, text=True,
                       timeout=30)
    assert p.returncode != 0
    assert ("refusing to serve the API on 0.0.0.0:%d without authentication" % api) in p.stderr, \
        p.stderr


def test_no_auth_on_loopback_is_allowed(procs, bins, work_dir):
    xds, api, listen = harness.free_ports(3)
    plane = cp.ControlPlane(bins, RESOURCES, None, xds, api, listen, procs.log_dir,
                            extra_args=["--insecure-no-auth"])
    procs.add(plane.start())
    cp.wait_for("the API answers without a credential", lambda: requests.get(
        plane.server + "/v1/status", timeout=1).status_code == 200)


def test_api_hygiene_big_bodies_garbage_and_slow_clients(procs, bins, work_dir):
    plane = start_plane(procs, bins, work_dir)
    auth = plane.headers()
    # a body over the limit: 413 in the JSON error shape
    r = requests.post(plane.server + "/v1/apply", data=b"x" * (8 * 1024 * 1024 + 1),
                      headers={**auth, "content-type": "application/json"}, timeout=30)
    assert (r.status_code, r.json()["error"]) == (413, "body_too_large"), r.text
    # malformed bodies and queries: 400 JSON, nothing changes
    version = plane.api("/v1/status")["version"]
    for path, body in [("/v1/apply", b"\xff\xfe{"), ("/v1/release", b"[1,2]"),
                       ("/v1/explain", b'{"path": 7}'), ("/v1/delete", b"{}")]:
        r = requests.post(plane.server + path, data=body, headers=auth, timeout=5)
        assert (r.status_code, r.json()["error"]) == (400, "bad_request"), (path, r.text)
    r = requests.get(plane.server + "/v1/live?generation=-1", headers=auth, timeout=5)
    assert (r.status_code, r.json()["error"]) == (400, "bad_request"), r.text
    # not HTTP at all
    with socket.create_connection((LOCALHOST, plane.api_port), timeout=5) as s:
        s.sendall(b"\x16\x03\x01\x02\x00garbage\r\n\r\n")
        s.recv(1024)
    assert plane.api("/v1/status")["version"] == version
    # a client that sends half a request and stalls is disconnected (headers
    # within 10 s), and serves nobody's turn meanwhile
    with socket.create_connection((LOCALHOST, plane.api_port), timeout=20) as s:
        s.sendall(b"GET /v1/status HTTP/1.1\r\nhost: x\r\n")
        t0 = time.monotonic()
        assert plane.api("/v1/status")["version"] == version
        data = s.recv(1024)
        waited = time.monotonic() - t0
    assert waited < 15, waited
    assert data == b"" or data.startswith(b"HTTP/1.1 408"), data
    print(f"\nslow client: disconnected after {waited:.1f} s")
    assert plane.alive()
    assert json.loads(requests.get(plane.server + "/healthz", timeout=5).text) == {"ok": True}
    # a flood of refused calls does not flood the log: ≤ 10 lines a second,
    # the next line says how many were left out
    before = plane.log_text().count("without a credential refused")
    t0 = time.monotonic()
    with requests.Session() as s:
        for _ in range(200):
            assert s.get(plane.server + "/v1/status", timeout=5).status_code == 401
    seconds = time.monotonic() - t0
    time.sleep(1.1)
    assert requests.get(plane.server + "/v1/status", timeout=5).status_code == 401
    log = plane.log_text()
    allowed = 10 * (int(seconds) + 3)  # 10 per one-second window the flood touched, + the last
    logged = log.count("without a credential refused") - before
    assert logged <= allowed, (logged, seconds)
    left_out = sum(int(x) for x in re.findall(r"left_out=(\d+)", log))
    assert left_out >= 200 - allowed, (left_out, seconds)
    print(f"\nflood of 200 refused calls in {seconds:.2f} s: {logged} log lines, "
          f"{left_out} counted as left out")
