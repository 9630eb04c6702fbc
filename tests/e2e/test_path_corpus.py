"""One truth at the edges (issue 22, item 1): for every path of a corpus taken
from public test suites (tests/e2e/data/path_corpus.json — RFC 3986 §5.4,
Envoy's path_utility_test.cc, Istio's normalization tests, the web-platform-
tests URL data; each entry names its source), `switchyard explain`, the
ADS-served stack (`switchyard serve` + Envoy) and the static bootstrap
(`switchyard render envoy`) give the same answer: status, error code,
environment, deployment, component and the path the upstream receives.

Each corpus path is sent as written, under the `stg` Environment's prefix and
under `/stg/hello` (a route of the frontend),
byte for byte (http.client; requests would resolve dot segments itself), over
one keep-alive connection per stack (a new one after Envoy closes it)."""

from __future__ import annotations

import http.client
import json
from collections import Counter

import pytest

import control_plane as cp
import harness
from test_paths import EXTRA

CORPUS = json.loads((harness.ROOT / "tests" / "e2e" / "data" / "path_corpus.json").read_text())


def requests_of_corpus() -> list[tuple[str, str]]:
    out = []
    for entry in CORPUS["paths"]:
        p = entry["path"]
        if p.startswith("/"):
            out.append((p, entry["source"]))
            out.append(("/stg/hello" + p, entry["source"]))
        out.append(("/stg" + p if p.startswith("/") else "/stg/" + p, entry["source"]))
    return out


class Raw:
    """GETs with the path sent as written, on one keep-alive connection."""

    def __init__(self, port: int):
        self.port, self.conn = port, None

    def get(self, path: str) -> tuple:
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(harness.LOCALHOST, self.port, timeout=10)
            try:
                self.conn.request("GET", path)
                r = self.conn.getresponse()
                text = r.read().decode("utf-8", "replace")
                if r.getheader("connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return answer_of_envoy(r.status, text)
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def answer_of_envoy(status: int, text: str) -> tuple:
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if status == 200 and body and "kf" in body:
        kf = body["kf"]
        return (200, None, kf["kf-environment"], kf["kf-deployment"], body["component"],
                body["path"])
    if status == 400 and text == "":
        # Envoy's own refusal before any filter (`explain` says "rejected_by_envoy")
        return (400, "rejected_by_envoy", None, None, None, None)
    error = body.get("error") if isinstance(body, dict) else f"(not JSON) {text[:60]!r}"
    return (status, error, None, None, None, None)


def answer_of_explain(v: dict) -> tuple:
    if v.get("routed"):
        return (200, None, v["environment"], v["deployment"], v["component"], v["forwardedPath"])
    return (v["status"], v["error"], None, None, None, None)


@pytest.fixture(scope="module")
def stacks(module_procs, bins, tmp_path_factory):
    work = tmp_path_factory.mktemp("path-corpus")
    world = cp.start_world(module_procs, bins, work)
    extra = harness.write_yaml(work / "stg.yaml", EXTRA)
    r = world.cli("apply", "-f", str(extra))
    assert r.code == 0, r.stderr
    resources = harness.write_yaml(work / "resources-stg.yaml",
                                   [*world.hello.resources, *EXTRA])
    listen, admin = harness.free_ports(2)
    cfg = harness.render_envoy(bins, resources, work / "static.yaml",
                               f"{harness.LOCALHOST}:{listen}", f"{harness.LOCALHOST}:{admin}")
    static = harness.start_envoy(module_procs, bins.envoy, cfg, "static-paths")
    cp.wait_for("the ADS stack serves stg", lambda: harness.get(world.url + "/stg/hello").status == 200)
    return world, listen


def test_explain_the_served_stack_and_the_static_bootstrap_agree_on_every_path(stacks):
    world, static_port = stacks
    ads = Raw(world.plane.listen_port)
    static = Raw(static_port)
    headers = {**world.plane.headers(), "content-type": "application/json"}
    paths = requests_of_corpus()
    assert len(CORPUS["paths"]) >= 500, len(CORPUS["paths"])
    disagreements, outcomes, routed = [], Counter(), []
    for path, source in paths:
        r = harness.request("POST", world.plane.server + "/v1/explain", headers=headers,
                            data=json.dumps({"path": path}))
        assert r.status == 200, (path, r)
        want = answer_of_explain(r.json)
        got_ads, got_static = ads.get(path), static.get(path)
        outcomes[(want[0], want[1])] += 1
        if want[0] == 200:
            routed.append(want)
        if not (want == got_ads == got_static):
            disagreements.append((path, source, want, got_ads, got_static))
    print(f"\n{len(paths)} requests from {len(CORPUS['paths'])} corpus paths "
          f"({CORPUS['not_sendable']} not sendable in HTTP/1.1 left out): {dict(outcomes)}")
    for d in disagreements[:40]:
        print("DISAGREE", d)
    assert not disagreements, f"{len(disagreements)} disagreements, first: {disagreements[:3]}"
    assert outcomes[(400, "invalid_path")] > 100, outcomes
    assert outcomes[(200, None)] > 100, outcomes
    # Nothing crossed environments: a 200 is served by the environment the
    # forwarded path names.
    assert all(a[5].split("/")[1] == a[2] for a in routed), routed[:5]
