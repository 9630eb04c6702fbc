"""Progressive delivery end to end (issue 11): a Canary with `steps` moves its
weight by itself, judged from the counts the real Envoy reports over LRS to the
real control plane; real `.wasm`, real hello-world upstreams.

The hello-world example's team-a releases hello-world-main (frontend f1a0001);
the canary is hello-world-v3 (its own frontend f3a0003), so both versions have
clusters of their own to be judged by. Step times are short so the module stays
fast; the "rolled back within 3 s" figure is measured by
bench/progressive_bench.py, not asserted here.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from pathlib import Path

import requests

import control_plane as cp
import harness

CANARY = "hello-world-v3-canary"
STABLE, CANARY_DEP = "hello-world-main", "hello-world-v3"


def canary_doc(steps: list[str], **analysis) -> dict:
    return {
        "kind": "Canary",
        "metadata": {"name": CANARY},
        "spec": {
            "virtualEnvironment": "team-a",
            "app": "hello-world",
            "deployment": CANARY_DEP,
            "steps": steps,
            "analysis": analysis,
        },
    }


def apply_canary(world: cp.World, doc: dict) -> None:
    path = harness.write_yaml(world.work / "canary.yaml", [doc])
    r = world.cli("apply", "-f", str(path))
    assert r.code == 0, r.stderr


class Load:
    """Keep-alive GET /dev/hello at about `rate` requests/s in a thread; records
    (monotonic time, status, deployment) of every answer."""

    def __init__(self, url: str, rate: float = 100.0):
        self.url, self.period = url + "/dev/hello", 1.0 / rate
        self.answers: list[tuple[float, int, str | None]] = []
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        s = requests.Session()
        next_at = time.monotonic()
        while not self.stop_flag.is_set():
            try:
                r = s.get(self.url, timeout=5)
                dep = r.headers.get("kf-deployment")
                self.answers.append((time.monotonic(), r.status_code, dep))
            except requests.RequestException:
                self.answers.append((time.monotonic(), 0, None))
            next_at += self.period
            time.sleep(max(0.0, next_at - time.monotonic()))

    def __enter__(self) -> "Load":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_flag.set()
        self.thread.join(10)

    def count(self, pred) -> int:
        return sum(1 for a in list(self.answers) if pred(a))


class Webhook:
    """A receiver of the rollout's webhook POSTs on 127.0.0.1 (a port from ports.py)."""

    def __init__(self):
        events = self.events = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("content-length", 0))
                events.append(json.loads(self.rfile.read(n)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer((harness.LOCALHOST, harness.free_port()), Handler)
        self.url = f"http://{harness.LOCALHOST}:{self.server.server_address[1]}/rollouts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_healthy_rollout_goes_from_1_percent_to_release_unattended(procs, bins, work_dir):
    world = cp.start_world(procs, bins, work_dir)
    apply_canary(world, canary_doc(["1%", "25%", "100%"], stepTime="2s", minRequests=2,
                                   bakeTime="2s"))
    pending = world.plane.canary(CANARY)
    assert (pending["phase"], pending["stable"]) == ("pending", STABLE)
    assert "rollout pending" in world.cli("status").stdout
    with Load(world.url) as load:
        time.sleep(0.5)
        r = world.cli("canary", "start", CANARY)
        assert r.code == 0, r.stderr
        assert "progressing 1%" in r.stdout, r.stdout
        done = world.plane.wait_canary(CANARY, lambda s: s["phase"] in ("succeeded", "aborted"),
                                       "ends", timeout=60)
        time.sleep(0.3)
    assert done["phase"] == "succeeded", done
    phases = [e["phase"] for e in done["events"]]
    assert phases == ["progressing", "progressing", "progressing", "promoting", "succeeded"], phases
    weights = [e["weight"] for e in done["events"]]
    assert weights[:4] == ["1%", "25%", "100%", "100%"], weights
    # the canary is the release now, recorded like any release; the Canary ended
    world.wait_acked()
    assert world.deployment() == CANARY_DEP
    history = world.cli("history", "--virtual-env", "team-a", "-o", "json").json["history"]
    assert (history[-1]["deployment"], history[-1]["previous"]) == (CANARY_DEP, STABLE)
    assert all(d["kind"] != "Canary" for d in world.plane.api("/v1/resources")["resources"])
    # every request was answered 200, and both versions were measured from LRS
    assert load.count(lambda a: a[1] != 200) == 0
    assert load.count(lambda a: a[2] == CANARY_DEP) > 0
    assert done["counts"]["canary"]["requests"] > 0 and done["counts"]["stable"]["requests"] > 0
    # `canary status` shows it
    status = world.cli("canary", "status", CANARY)
    assert status.code == 0 and "succeeded" in status.stdout, status.stdout
    # and `rollback` brings the stable back, as for any release
    assert world.cli("rollback", "--virtual-env", "team-a").code == 0
    assert world.deployment() == STABLE


def test_a_failing_canary_is_rolled_back_and_the_stable_never_fails(procs, bins, work_dir):
    world = cp.start_world(procs, bins, work_dir)
    canary_upstream = world.hello.upstream("frontend", "f3a0003")
    r = requests.post(canary_upstream.url + "/_admin/fail?status=500", timeout=5)
    assert r.json() == {"failStatus": 500}
    hook = Webhook()
    doc = canary_doc(["10%", "50%", "100%"], stepTime="30s", webhooks=[hook.url])
    doc["spec"]["match"] = [{"headers": {"x-canary": "true"}}]
    apply_canary(world, doc)
    with Load(world.url) as load:
        time.sleep(0.5)
        assert world.cli("canary", "start", CANARY).code == 0
        aborted = world.plane.wait_canary(CANARY, lambda s: s["phase"] != "progressing",
                                          "is judged", timeout=30)
        aborted_at = time.monotonic()
        time.sleep(1.0)
    assert aborted["phase"] == "aborted", aborted
    assert aborted["weight"] == "0%"
    assert "analysis failed" in aborted["reason"], aborted["reason"]
    assert aborted["statistic"]["value"] >= aborted["statistic"]["bound"]
    # the stable never failed; the canary's answers were its 500s
    assert load.count(lambda a: a[2] == STABLE and a[1] != 200) == 0
    assert load.count(lambda a: a[1] == 0) == 0
    assert load.count(lambda a: a[2] == CANARY_DEP) > 0
    # once the abort is live nothing reaches the canary (0.5 s margin for the push)
    assert load.count(lambda a: a[0] > aborted_at + 0.5 and a[2] != STABLE) == 0
    # weight 0 and the match rules off: even the header rule no longer matches
    r = world.get("/dev/hello", headers={"x-canary": "true"})
    assert (r.status, r.json["kf"]["kf-deployment"]) == (200, STABLE)
    canary = [d for d in world.plane.api("/v1/resources")["resources"] if d["kind"] == "Canary"][0]
    assert canary["spec"].get("match") is None and canary["spec"]["weight"] == "0%"
    assert world.deployment() == STABLE
    # and Prometheus sees it: the phase, the weight, the canary's 5xx from LRS
    metrics = world.plane.metrics()
    for line in (f'switchyard_canary_phase{{canary="{CANARY}",phase="aborted"}} 1',
                 f'switchyard_canary_weight_ratio{{canary="{CANARY}"}} 0.0',
                 'switchyard_envoys_connected 1', 'switchyard_lrs_envoys_reporting 1'):
        assert line in metrics, (line, metrics)
    errors = [l for l in metrics.splitlines()
              if l.startswith(f'switchyard_canary_errors_total{{canary="{CANARY}",version="canary"}}')]
    assert errors and int(errors[0].split()[-1]) > 0, metrics
    # the webhook got both events: the start and the abort, with the reason
    cp.wait_for("webhook events", lambda: len(hook.events) >= 2, 5)
    hook.close()
    assert [(e["phase"], e["weight"], e["who"]) for e in hook.events] == [
        ("progressing", "10%", "admin (says e2e)"), ("aborted", "0%", "switchyard (analysis)")], \
        hook.events
    assert "analysis failed" in hook.events[1]["reason"] and hook.events[1]["canary"] == CANARY


def test_a_gate_holds_at_50_percent_until_promote(procs, bins, work_dir):
    world = cp.start_world(procs, bins, work_dir)
    apply_canary(world, canary_doc(["1%", "50%", "100%"], stepTime="1s", minRequests=0,
                                   gates=["100%"], bakeTime="1s"))
    with Load(world.url, rate=50) as load:
        assert world.cli("canary", "start", CANARY).code == 0
        gated = world.plane.wait_canary(CANARY, lambda s: s["phase"] == "gated", "gated", 30)
        assert gated["weight"] == "50%"
        time.sleep(2.5)
        still = world.plane.canary(CANARY)
        assert (still["phase"], still["weight"]) == ("gated", "50%")
        r = world.cli("canary", "promote", CANARY)
        assert r.code == 0, r.stderr
        done = world.plane.wait_canary(CANARY, lambda s: s["phase"] in ("succeeded", "aborted"),
                                       "ends", 30)
    assert done["phase"] == "succeeded", done
    assert [e["who"] for e in done["events"] if e["reason"].startswith("promoted by hand")] == \
        ["admin (says e2e)"]
    assert load.count(lambda a: a[1] != 200) == 0
    world.wait_acked()
    assert world.deployment() == CANARY_DEP


def test_a_restart_mid_rollout_resumes_without_skipping_the_step(procs, bins, work_dir):
    world = cp.start_world(procs, bins, work_dir)
    # minRequests: the 50% step needs counts the Envoy reports to the *new*
    # process (its LRS stream reconnects after the restart)
    apply_canary(world, canary_doc(["10%", "50%"], stepTime="3s", minRequests=20, bakeTime="1s"))
    with Load(world.url, rate=50) as load:
        assert world.cli("canary", "start", CANARY).code == 0
        world.plane.wait_canary(CANARY, lambda s: s["weight"] == "50%", "at 50%", 60)
        world.plane.kill()
        restarted = time.time()
        world.restart_plane()
        after = world.plane.canary(CANARY)
        assert (after["phase"], after["weight"]) == ("progressing", "50%"), after
        done = world.plane.wait_canary(CANARY, lambda s: s["phase"] in ("succeeded", "aborted"),
                                       "ends", 30)
    assert done["phase"] == "succeeded", done
    promoting = [e for e in done["events"] if e["phase"] == "promoting"][0]
    # the 50% step's 3 s and 20 requests were counted again from the restart
    assert promoting["atUnixMs"] / 1000 >= restarted + 3 - 0.2, (promoting, restarted)
    assert done["counts"]["canary"]["requests"] >= 20, done["counts"]
    # Envoy kept serving on its last config while the control plane was down
    assert load.count(lambda a: a[1] != 200) == 0
    world.wait_acked()
    assert world.deployment() == CANARY_DEP


def test_the_failure_guard_runs_at_a_gate(procs, bins, work_dir):
    """Flagger's guard does not run while a canary waits at a gate (flagger #1801);
    here a canary that starts failing while gated is aborted all the same."""
    world = cp.start_world(procs, bins, work_dir)
    apply_canary(world, canary_doc(["10%", "50%"], stepTime="1s", minRequests=0, gates=["50%"]))
    with Load(world.url, rate=50) as load:
        assert world.cli("canary", "start", CANARY).code == 0
        gated = world.plane.wait_canary(CANARY, lambda s: s["phase"] == "gated", "gated", 30)
        assert gated["weight"] == "10%"
        up = world.hello.upstream("frontend", "f3a0003")
        requests.post(up.url + "/_admin/fail?status=500", timeout=5)
        aborted = world.plane.wait_canary(CANARY, lambda s: s["phase"] != "gated", "judged", 30)
    assert aborted["phase"] == "aborted", aborted
    assert [e["phase"] for e in aborted["events"]][-2:] == ["gated", "aborted"]
    assert load.count(lambda a: a[2] == STABLE and a[1] != 200) == 0
    world.wait_acked()  # the abort's config version is live on the Envoy
    assert world.deployment() == STABLE
