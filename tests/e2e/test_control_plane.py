"""The control plane end to end: a real Envoy on the ADS bootstrap, a real
`switchyard serve`, the real hello-world upstreams, and changes made with the
CLI while Envoy runs (DESIGN.md "Configuration delivery" and "The CLI")."""

from __future__ import annotations

import threading
import time

import pytest
import requests

import control_plane as cp
import harness

MAIN, V2, V3 = "hello-world-main", "hello-world-v2", "hello-world-v3"
FRONTEND = {MAIN: "f1a0001", V2: "f1a0001", V3: "f3a0003"}


@pytest.fixture
def world(procs, bins, work_dir) -> cp.World:
    return cp.start_world(procs, bins, work_dir)


def release_and_time(world: cp.World, deployment: str, ve: str = "team-a") -> float:
    """`switchyard release`, then poll /dev/hello until the new release serves it;
    seconds from the CLI call to the first request served by the new release
    (the CLI process's own run time included)."""
    t0 = time.monotonic()
    r = world.cli("release", deployment, "--virtual-env", ve)
    assert r.code == 0, r.stderr
    cp.wait_for(f"{deployment} serves /dev/hello", lambda: world.deployment() == deployment,
                timeout=10, interval=0.005)
    took = time.monotonic() - t0
    print(f"\nrelease {deployment}: {took * 1000:.0f} ms from the CLI call to the first request "
          f"it served (the CLI itself ran {r.seconds * 1000:.0f} ms)")
    return took


def test_releases_by_the_cli_take_effect_while_envoy_runs(world):
    assert world.deployment() == MAIN
    envoy_pid = world.envoy.proc.pid

    took_v2 = release_and_time(world, V2)
    r = world.get("/dev/hello")
    assert r.json["version"] == FRONTEND[V2]
    assert r.json["kf"]["kf-decision"] == "release"

    took_v3 = release_and_time(world, V3)
    r = world.get("/dev/hello")
    assert (r.json["kf"]["kf-deployment"], r.json["version"]) == (V3, FRONTEND[V3])
    # an explicit deployment is still reachable
    r = world.get("/dev/hello/backend?kf-dep=hello-world-v2&kf-ve=team-a")
    assert r.status == 200, r
    assert (r.json["kf"]["kf-deployment"], r.json["version"]) == (V2, "b2a0002")
    # joe's release did not move
    assert world.deployment("/dev/hello?kf-ve=joe") == MAIN

    assert world.envoy.proc.pid == envoy_pid and world.envoy.alive()  # never restarted
    print(f"\nrelease-to-effect (CLI call → first request served by the new release): "
          f"v2 {took_v2 * 1000:.0f} ms, v3 {took_v3 * 1000:.0f} ms")
    assert took_v2 < 5 and took_v3 < 5


def test_release_under_keep_alive_load_loses_no_request(world):
    """main → v3 (a new frontend cluster) while a keep-alive client loops for ~3 s."""
    results: list[tuple[int, str | None, str | None]] = []
    errors: list[str] = []
    stop = threading.Event()

    def load():
        with requests.Session() as s:
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline and not stop.is_set():
                try:
                    r = s.get(world.url + "/dev/hello", timeout=5)
                    body = r.json() if r.status_code == 200 else {}
                    results.append((r.status_code, body.get("kf", {}).get("kf-deployment"),
                                    body.get("version")))
                except Exception as e:  # noqa: BLE001 - every failure is reported
                    errors.append(repr(e))

    t = threading.Thread(target=load)
    t.start()
    time.sleep(1.0)
    r = world.cli("release", V3, "--virtual-env", "team-a")
    t.join(10)
    stop.set()
    assert r.code == 0, r.stderr
    assert not errors, errors[:5]
    bad = [x for x in results if x[0] != 200]
    assert not bad, bad[:5]
    served = {(d, v) for _, d, v in results}
    assert served <= {(MAIN, FRONTEND[MAIN]), (V3, FRONTEND[V3])}, served
    assert (V3, FRONTEND[V3]) in served, "the new release never served during the load"
    assert results[0][1] == MAIN and results[-1][1] == V3
    print(f"\n{len(results)} requests during the release, none failed")


BAD = """\
kind: AppDeployment
metadata: {name: hello-world-v4}
spec:
  app: hello-world
  version: v4
  components:
    frontend:
      version: f4a0004
      endpoints: ["127.0.0.1:9104"]
      options: {loadbalancing: hash}
      routes:
        - match: {pathPrefix: /hello}
---
kind: VirtualEnvironment
metadata: {name: team-a}
spec:
  environment: dev
  release:
    apps: {hello-world: hello-world-nope}
"""


def test_a_bad_apply_is_refused_with_every_problem_and_envoy_unchanged(world, work_dir):
    before = world.wait_acked()
    version = world.plane.api("/v1/status")["version"]
    dump_before = world.envoy.config_dump("dynamic_active_clusters")
    path = work_dir / "bad.yaml"
    path.write_text(BAD)

    r = world.cli("apply", "-f", str(path))
    assert r.code == 1
    assert "nothing was changed" in r.stderr
    lines = [l for l in r.stderr.splitlines() if l.startswith("  ")]
    assert len(lines) == 2, r.stderr
    assert any(f"{path}:10:" in l and "Hash header must be present" in l for l in lines), r.stderr
    assert any(f"{path}:" in l and "hello-world-nope" in l for l in lines), r.stderr

    j = world.cli("-o", "json", "apply", "-f", str(path))
    assert j.code == 1 and j.json["error"] == "invalid_resources" and len(j.json["problems"]) == 2

    time.sleep(0.5)
    assert world.plane.api("/v1/status")["version"] == version
    assert world.envoy_node()["types"] == before["types"]
    assert world.envoy.config_dump("dynamic_active_clusters") == dump_before
    assert world.deployment() == MAIN


def test_status_shows_releases_and_the_envoy_with_acked_versions(world):
    node = world.wait_acked()
    st = world.cli("-o", "json", "status")
    assert st.code == 0, st.stderr
    s = st.json
    assert {"virtualEnv": "team-a", "environment": "dev", "apps": {"hello-world": MAIN}}.items() \
        <= next(r for r in s["releases"] if r["virtualEnv"] == "team-a").items()
    assert len(s["contextKids"]) == 1
    assert "secret" not in st.stdout
    envoy = next(n for n in s["envoys"] if n["id"] == world.node_id)
    assert envoy["connected"] and envoy["types"]["LDS"]["ackedVersion"] == s["version"]
    assert node["types"]["ECDS"]["lastNack"] is None

    human = world.cli("status")
    assert human.code == 0
    assert world.node_id in human.stdout and "connected" in human.stdout
    assert "hello-world → hello-world-main" in human.stdout
    # the secret never reaches the log either
    state = (world.state_dir / "state.json").read_text()
    import json as _json
    secret = _json.loads(state)["contextKeys"][0]["secret"]
    assert secret not in world.plane.log_text()


def test_envoy_keeps_routing_without_the_control_plane_and_reconnects(world):
    assert world.cli("release", V2, "--virtual-env", "team-a").code == 0
    cp.wait_for("v2 released", lambda: world.deployment() == V2)
    version = world.plane.api("/v1/status")["version"]
    world.wait_acked(version)

    world.plane.kill()  # a crash
    for _ in range(20):
        assert world.deployment() == V2
    time.sleep(1)
    assert world.deployment() == V2

    world.restart_plane()
    status = world.plane.api("/v1/status")
    assert status["version"] == version
    team_a = next(r for r in status["releases"] if r["virtualEnv"] == "team-a")
    assert team_a["apps"] == {"hello-world": V2}
    world.wait_acked(version, timeout=60)  # Envoy reconnected
    assert world.deployment() == V2
    history = world.cli("-o", "json", "history", "--virtual-env", "team-a").json["history"]
    assert [h["deployment"] for h in history] == [MAIN, V2]

    # and changes flow again
    took = release_and_time(world, V3)
    print(f"\nafter reconnect: release-to-effect {took * 1000:.0f} ms")


def test_rollback_restores_the_previous_release(world):
    for dep in (V2, V3):
        assert world.cli("release", dep, "--virtual-env", "team-a").code == 0
    cp.wait_for("v3 released", lambda: world.deployment() == V3)

    r = world.cli("rollback", "--virtual-env", "team-a")
    assert r.code == 0, r.stderr
    assert "rolled back team-a: hello-world → hello-world-v2 (was hello-world-v3)" in r.stdout
    cp.wait_for("v2 restored", lambda: world.deployment() == V2)

    r = world.cli("-o", "json", "rollback", "--virtual-env", "team-a", "--app", "hello-world")
    assert r.code == 0, r.stderr
    assert r.json["releases"][0]["deployment"] == MAIN
    cp.wait_for("main restored", lambda: world.deployment() == MAIN)

    r = world.cli("rollback", "--virtual-env", "team-a")
    assert r.code == 1 and "nothing to roll back" in r.stderr

    history = world.cli("-o", "json", "history", "--virtual-env", "team-a").json["history"]
    # the token that made the change, then what the client said (`--who e2e`)
    assert [(h["action"], h["who"]) for h in history][-2:] == [("rollback", "admin (says e2e)")] * 2


def test_publish_delete_and_explain_through_the_server(world, work_dir):
    v4 = {
        "kind": "AppDeployment", "metadata": {"name": "hello-world-v4"},
        "spec": {"app": "hello-world", "version": "v4", "components": {
            "frontend": {"version": "f3a0003",
                         "endpoints": [world.hello.upstream("frontend", "f3a0003").addr],
                         "routes": [{"match": {"pathPrefix": "/hello"}}]}}},
    }
    path = harness.write_yaml(work_dir / "v4.yaml", v4)
    r = world.cli("publish", "-f", str(path))
    assert r.code == 0 and "created AppDeployment/hello-world-v4" in r.stdout, r.stderr
    cp.wait_for("v4 reachable", lambda: world.deployment("/dev/hello?kf-dep=hello-world-v4") == "hello-world-v4")

    # immutable once versioned
    v4["spec"]["components"]["frontend"]["version"] = "f1a0001"
    harness.write_yaml(path, v4)
    r = world.cli("publish", "-f", str(path))
    assert r.code == 1 and "immutable" in r.stderr

    e = world.cli("explain", "/dev/hello?kf-dep=hello-world-v4")
    assert e.code == 0 and "hello-world-v4" in e.stdout and "kf-dep" in e.stdout, e.stderr
    e = world.cli("-o", "json", "explain", "/nowhere")
    assert e.code == 2 and e.json["error"] == "environment_not_found"

    r = world.cli("delete", "deployment", "hello-world-v4")
    assert r.code == 0, r.stderr
    cp.wait_for("v4 gone", lambda: world.get("/dev/hello?kf-dep=hello-world-v4").status == 404)
    r = world.cli("delete", "deployment", MAIN)  # still released
    assert r.code == 1 and "nothing was changed" in r.stderr


def test_unreachable_server_is_a_clear_error(bins):
    port = harness.free_port()
    r = cp.cli(bins, f"http://127.0.0.1:{port}", "status")
    assert r.code == 1 and "cannot reach switchyard serve" in r.stderr


def test_a_nack_is_reported_and_the_last_good_config_keeps_serving(world, work_dir):
    """Restart the control plane with a Wasm path Envoy cannot load: Envoy NACKs the
    filter's config (ECDS), `status` reports it, and routing goes on as before."""
    world.wait_acked()
    world.plane.stop()
    world.restart_plane(wasm=work_dir / "missing.wasm")
    # a release makes every type's version move; ECDS carries the bad Wasm path
    # (that the release then fails its wait is test_live's subject)
    assert world.cli("--no-wait", "release", V3, "--virtual-env", "team-a").code == 0

    version = world.plane.api("/v1/status")["version"]

    def nacked():
        # the restart alone (same generation as before) is NACKed too: wait for the release's
        n = world.envoy_node()
        nack = n and n["connected"] and n["types"]["ECDS"]["lastNack"]
        return nack if nack and nack["version"] == version else None
    nack = cp.wait_for("Envoy NACKs ECDS", nacked, timeout=30)
    assert nack["message"]
    print(f"\nECDS NACK: {nack['message'][:200]}")

    human = world.cli("status")
    assert "last NACK ECDS" in human.stdout, human.stdout
    # the filter's last good config (release: main) keeps routing
    for _ in range(10):
        assert world.deployment() == MAIN


def test_context_key_rotation_through_the_control_plane(procs, bins, work_dir):
    """`switchyard keys rotate` / `retire`: a context signed with the old key keeps
    working on the internal listener until the old key is retired."""
    import base64
    import json

    world = cp.start_world(procs, bins, work_dir, internal=True)

    def kid_of(token: str) -> str:
        return json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"]

    def hop(token: str) -> harness.Reply:
        return harness.get(world.internal_url + "/backend",
                           headers={"host": "backend", "kf-context": token})

    r = world.get("/dev/hello")
    assert (r.status, r.json["backend"]["version"]) == (200, "b1a0001"), r
    old_token = r.json["kf"]["kf-context"]
    old_kid = world.plane.api("/v1/status")["signingKid"]
    assert kid_of(old_token) == old_kid

    rotated = world.cli("keys", "rotate")
    assert rotated.code == 0, rotated.stderr
    world.wait_acked()
    status = world.plane.api("/v1/status")
    new_kid = status["signingKid"]
    assert new_kid != old_kid and set(status["contextKids"]) == {old_kid, new_kid}
    assert "secret" not in json.dumps(status)
    assert hop(old_token).status == 200, "the old key still verifies"
    new_token = world.get("/dev/hello").json["kf"]["kf-context"]
    assert kid_of(new_token) == new_kid

    refused = world.cli("keys", "retire", new_kid)
    assert refused.code != 0 and "rotate" in refused.stderr
    retired = world.cli("keys", "retire", old_kid)
    assert retired.code == 0, retired.stderr
    world.wait_acked()
    r = hop(old_token)
    assert (r.status, r.json["error"]) == (401, "invalid_context_token")
    assert world.get("/dev/hello").json["backend"]["version"] == "b1a0001"
