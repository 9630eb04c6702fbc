"""Correct under change (issue 9): new component versions go live with no failed
request on either listener (make-before-break), and every changing command says
when its change is live on every Envoy (`--wait`, the default)."""

from __future__ import annotations

import os
import signal
import time

import pytest

import control_plane as cp
import harness

MAIN, V3 = "hello-world-main", "hello-world-v3"
LISTENERS = ("switchyard_genesis", "switchyard_internal")


def deployment_yaml(name: str, n: int, frontend_port: int, backend_port: int) -> str:
    """An AppDeployment whose frontend and backend have versions never seen
    before (so two new distilled clusters), on the running f1/b1 processes."""
    return f"""\
kind: AppDeployment
metadata: {{name: {name}}}
spec:
  app: hello-world
  version: mbb{n}
  components:
    frontend:
      version: fmbb{n:04d}
      endpoints: ["127.0.0.1:{frontend_port}"]
      routes:
        - match: {{pathPrefix: /hello}}
      vars: [who]
      dependencies: [backend]
    backend:
      version: bmbb{n:04d}
      endpoints: ["127.0.0.1:{backend_port}"]
      routes:
        - match: {{pathPrefix: /hello/backend}}
"""


Load = harness.KeepAliveLoad


def no_cluster(envoy: harness.Envoy) -> dict[str, int]:
    stats = envoy.stats("no_cluster")
    return {l: stats.get(f"http.{l}.no_cluster", 0) for l in LISTENERS}


def test_twenty_new_versions_under_load_fail_no_request(procs, bins, work_dir):
    """Publish + release 20 deployments, each with a new frontend and backend
    version (new clusters), one after another while keep-alive clients call
    /dev/hello (frontend → backend through the internal listener) and
    /dev/hello/backend: no response other than 200, `no_cluster` stays 0 on both
    listeners."""
    world = cp.start_world(procs, bins, work_dir, internal=True)
    world.wait_acked()
    f1 = world.hello.upstream("frontend", "f1a0001").port
    b1 = world.hello.upstream("backend", "b1a0001").port
    before = no_cluster(world.envoy)
    releases = []
    with Load(world.url, ["/dev/hello", "/dev/hello/backend"]) as load:
        time.sleep(0.5)
        for n in range(1, 21):
            name = f"hello-world-mbb{n}"
            path = work_dir / f"{name}.yaml"
            path.write_text(deployment_yaml(name, n, f1, b1))
            # odd ones without waiting: the next change lands while this one is
            # still on its way to Envoy
            wait = ["--no-wait"] if n % 2 else []
            r = world.cli(*wait, "publish", "-f", str(path))
            assert r.code == 0, r.stderr
            r = world.cli(*wait, "release", name, "--virtual-env", "team-a")
            assert r.code == 0, r.stderr
            releases.append(r.seconds)
        cp.wait_for("the last release serves", lambda: world.deployment() == "hello-world-mbb20",
                    timeout=15)
        time.sleep(0.5)
    assert not load.errors, load.errors[:5]
    bad = load.bad()
    served = {x.body for x in load.results if x.status == 200}
    after = no_cluster(world.envoy)
    print(f"\n{len(load.results)} requests during 20 publish+release pairs: "
          f"{len(bad)} not 200; no_cluster {before} → {after}; "
          f"{len(served)} deployments served; release CLI {min(releases) * 1000:.0f}–"
          f"{max(releases) * 1000:.0f} ms")
    assert not bad, bad[:5]
    assert after == before == {l: 0 for l in LISTENERS}
    assert len(served) >= 5, served
    # the frontend's backend call went through the internal listener every time
    stats = world.envoy.stats("switchyard_internal")
    assert stats.get("http.switchyard_internal.downstream_rq_2xx", 0) > 0, stats


def test_release_waits_until_live_and_the_next_request_sees_it(procs, bins, work_dir):
    world = cp.start_world(procs, bins, work_dir)
    world.wait_acked()
    times = []
    for dep in (V3, MAIN, V3, MAIN, V3):
        r = world.cli("release", dep, "--virtual-env", "team-a")
        assert r.code == 0, r.stderr
        assert "live on 1/1 Envoys in" in r.stdout, r.stdout
        # live means live: the very next request is served by the release
        assert world.deployment() == dep
        times.append(int(r.stdout.split("live on 1/1 Envoys in ")[1].split()[0]))
    j = world.cli("-o", "json", "rollback", "--virtual-env", "team-a")
    assert j.code == 0, j.stderr
    live = j.json["live"]
    assert live["complete"] is True and (live["live"], live["connected"]) == (1, 1)
    # (liveAfterMs: when the wait first saw it live)
    assert live["envoys"] == [{"id": world.node_id, "state": "live",
                               "liveAfterMs": live["envoys"][0]["liveAfterMs"]}]
    assert 0 <= live["envoys"][0]["liveAfterMs"] <= live["elapsedMs"]
    assert live["generation"] == j.json["generation"]
    assert world.deployment() == MAIN
    print(f"\nrelease --wait: live on 1/1 Envoys in {times} ms")
    # --no-wait returns without the live report
    r = world.cli("--no-wait", "release", V3, "--virtual-env", "team-a")
    assert r.code == 0 and "live on" not in r.stdout


def test_an_envoy_that_does_not_ack_in_time_is_named_and_the_change_stays(procs, bins, work_dir):
    world = cp.start_world(procs, bins, work_dir)
    world.wait_acked()
    os.kill(world.envoy.proc.pid, signal.SIGSTOP)
    try:
        r = world.cli("--wait", "1s", "release", V3, "--virtual-env", "team-a")
    finally:
        os.kill(world.envoy.proc.pid, signal.SIGCONT)
    assert r.code == 1, r.stdout
    assert f"{world.node_id}: did not ACK in time" in r.stdout, r.stdout
    assert "live on 0/1 Envoys" in r.stdout
    assert "the change itself stays applied" in r.stderr
    status = world.plane.api("/v1/status")
    team_a = next(x for x in status["releases"] if x["virtualEnv"] == "team-a")
    assert team_a["apps"] == {"hello-world": V3}
    cp.wait_for("the Envoy catches up", lambda: world.deployment() == V3, timeout=30)


def test_a_nack_fails_the_wait_naming_the_envoy(world_with_bad_wasm):
    world, r = world_with_bad_wasm
    assert r.code == 1, r.stdout
    assert f"{world.node_id}: NACKed ECDS" in r.stdout, r.stdout
    assert "the change itself stays applied" in r.stderr
    j = world.cli("-o", "json", "release", MAIN, "--virtual-env", "team-a")
    assert j.code == 1
    envoy = j.json["live"]["envoys"][0]
    assert (envoy["id"], envoy["state"], envoy["kind"]) == (world.node_id, "nacked", "ECDS")
    assert envoy["message"]


@pytest.fixture
def world_with_bad_wasm(procs, bins, work_dir):
    """A world whose control plane was restarted with a Wasm path Envoy cannot
    load, and a release made through it."""
    world = cp.start_world(procs, bins, work_dir)
    world.wait_acked()
    world.plane.stop()
    world.restart_plane(wasm=work_dir / "missing.wasm")
    cp.wait_for("Envoy reconnected", lambda: (world.envoy_node() or {}).get("connected"), timeout=30)
    r = world.cli("release", V3, "--virtual-env", "team-a")
    return world, r
