"""Paths cannot escape their environment (DESIGN.md: 400 `invalid_path`).

Two real Envoys with the real .wasm, on the hello-world example plus a second
Environment `stg`:
(a) Switchyard's rendered static config: Envoy itself normalizes the path
    (normalize_path, merge_slashes, escaped slashes rejected);
(b) the same config as a user's HCM that does not normalize: the filter alone
    must route by the resolved path, forward it, and refuse what is ambiguous.

Requests go out through http.client, which sends the path byte for byte
(requests/urllib3 would resolve dot segments on the client side).
"""

from __future__ import annotations

import http.client
import json

import pytest
import yaml

import harness

# A second environment, so that a path can try to cross from one to another.
EXTRA = [
    {"kind": "Environment", "metadata": {"name": "stg"},
     "spec": {"subPath": "stg", "defaultVirtualEnvironment": "qa"}},
    {"kind": "VirtualEnvironment", "metadata": {"name": "qa"},
     "spec": {"environment": "stg", "release": {"apps": {"hello-world": "hello-world-v3"}}}},
]


def without_normalization(rendered: dict) -> dict:
    """The rendered bootstrap as a user's HCM that leaves paths alone."""
    for listener in rendered["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for f in chain["filters"]:
                hcm = f["typed_config"]
                assert hcm["normalize_path"] is True and hcm["merge_slashes"] is True, hcm
                assert hcm["path_with_escaped_slashes_action"] == "REJECT_REQUEST", hcm
                hcm["normalize_path"] = False
                hcm["merge_slashes"] = False
                del hcm["path_with_escaped_slashes_action"]
    return rendered


@pytest.fixture(scope="module")
def envoys(module_procs, bins, tmp_path_factory):
    """(normalizing, plain): two Envoys on the same upstreams and resources."""
    work = tmp_path_factory.mktemp("paths")
    hw = harness.start_hello_world(module_procs, bins, work)
    resources = harness.write_yaml(work / "resources-stg.yaml", [*hw.resources, *EXTRA])
    out = {}
    for name in ("normalizing", "plain"):
        listen, admin = harness.free_ports(2)
        cfg = harness.render_envoy(bins, resources, work / f"{name}.yaml",
                                   f"{harness.LOCALHOST}:{listen}",
                                   f"{harness.LOCALHOST}:{admin}")
        if name == "plain":
            cfg.write_text(yaml.safe_dump(without_normalization(yaml.safe_load(cfg.read_text()))))
        e = harness.start_envoy(module_procs, bins.envoy, cfg, name)
        e.port = listen
        out[name] = e
    return out["normalizing"], out["plain"]


def raw_get(e: harness.Envoy, path: str) -> harness.Reply:
    """GET with `path` sent exactly as written."""
    conn = http.client.HTTPConnection(harness.LOCALHOST, e.port, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        text = r.read().decode("utf-8", "replace")
        headers = {k.lower(): v for k, v in r.getheaders()}
    finally:
        conn.close()
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    return harness.Reply(r.status, headers, text, body)


def served(r: harness.Reply) -> tuple[str, str, str, str]:
    """(environment, deployment, component, path the upstream received) of a 200."""
    assert r.status == 200, r
    kf = r.json["kf"]
    return (kf["kf-environment"], kf["kf-deployment"], r.json["component"], r.json["path"])


def invalid_path(r: harness.Reply) -> bool:
    return r.status == 400 and r.json is not None and r.json.get("error") == "invalid_path"


# Paths whose resolved form names another environment than their first segment.
CROSSINGS = [
    ("/stg/hello/../../dev/hello", ("dev", "hello-world-main", "frontend", "/dev/hello")),
    ("/dev/x/../../stg/hello/backend", ("stg", "hello-world-v3", "backend", "/stg/hello/backend")),
    ("/stg/%2e%2E/dev/hello?q=1", ("dev", "hello-world-main", "frontend", "/dev/hello?q=1")),
    ("/dev/./hello/../hello", ("dev", "hello-world-main", "frontend", "/dev/hello")),
]


@pytest.mark.parametrize("path, want", CROSSINGS)
def test_normalizing_envoy_routes_by_the_resolved_path(envoys, path, want):
    normalizing, _ = envoys
    assert served(raw_get(normalizing, path)) == want


@pytest.mark.parametrize("path, want", CROSSINGS)
def test_filter_alone_routes_by_the_resolved_path(envoys, path, want):
    _, plain = envoys
    assert served(raw_get(plain, path)) == want


def test_normalizing_envoy_refuses_encoded_slashes(envoys):
    normalizing, _ = envoys
    before = normalizing.stats("downstream_rq_failed_path_normalization")
    for path in ("/dev/hello%2F..%2F..%2Fstg/hello", "/dev/hello%5c..%5cbackend"):
        r = raw_get(normalizing, path)
        assert r.status == 400, (path, r)
    after = normalizing.stats("downstream_rq_failed_path_normalization")
    assert sum(after.values()) >= sum(before.values()) + 2, (before, after)


def test_filter_alone_refuses_climbing_and_encoded_slashes(envoys):
    _, plain = envoys
    key = harness.filter_stat("switchyard.error.invalid_path")
    before = plain.stats("switchyard.error").get(key, 0)
    refused = [
        "/../dev/hello",
        "/stg/hello/../../../dev/hello",
        "/%2e%2e/dev/hello",
        "/stg%2f..%2fdev/hello",
        "/dev/hello%2F..%2F..%2Fstg/hello",
        "/dev/hello%5C..%5Cbackend",
        "/stg/..;/dev/hello",
        "/stg/%c0%ae%c0%ae/dev/hello",
        "/dev/hello/%zz",
    ]
    for path in refused:
        r = raw_get(plain, path)
        assert invalid_path(r), (path, r)
        assert r.json["message"], r
    assert plain.stats("switchyard.error").get(key, 0) == before + len(refused)


def test_filter_alone_forwards_the_normalized_path(envoys):
    _, plain = envoys
    assert served(raw_get(plain, "/dev/a/../hello")) == (
        "dev", "hello-world-main", "frontend", "/dev/hello")
    assert served(raw_get(plain, "//dev//hello///backend")) == (
        "dev", "hello-world-main", "backend", "/dev/hello/backend")
    assert served(raw_get(plain, "/d%65v/hello?kf-ve=joe&x=%2F")) == (
        "dev", "hello-world-main", "frontend", "/dev/hello?x=%2F")
    # already normal: forwarded untouched
    assert served(raw_get(plain, "/dev/hello/caf%C3%A9;v=1")) == (
        "dev", "hello-world-main", "frontend", "/dev/hello/caf%C3%A9;v=1")
