"""Paths cannot escape their environment (DESIGN.md: 400 `invalid_path`).

A real Envoy with the real .wasm on Switchyard's rendered static config, on the
hello-world example plus a second Environment `stg`. The rendered connection
manager leaves paths to the filter (no `normalize_path`, no `merge_slashes`,
escaped slashes kept: README "Paths"), so the filter alone routes by the
resolved path, forwards it, and refuses what is ambiguous — what `switchyard
explain` says (test_path_corpus.py checks that on a corpus of public paths).

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


def leaves_paths_to_the_filter(rendered: dict) -> bool:
    """Every rendered HCM leaves the path as the client sent it."""
    hcms = [f["typed_config"] for listener in rendered["static_resources"]["listeners"]
            for chain in listener["filter_chains"] for f in chain["filters"]]
    return bool(hcms) and all(
        h["normalize_path"] is False and h["merge_slashes"] is False
        and h["path_with_escaped_slashes_action"] == "KEEP_UNCHANGED" for h in hcms)


@pytest.fixture(scope="module")
def envoys(module_procs, bins, tmp_path_factory):
    """The rendered static config: the filter is the one normalizer."""
    work = tmp_path_factory.mktemp("paths")
    hw = harness.start_hello_world(module_procs, bins, work)
    resources = harness.write_yaml(work / "resources-stg.yaml", [*hw.resources, *EXTRA])
    listen, admin = harness.free_ports(2)
    cfg = harness.render_envoy(bins, resources, work / "rendered.yaml",
                               f"{harness.LOCALHOST}:{listen}", f"{harness.LOCALHOST}:{admin}")
    assert leaves_paths_to_the_filter(yaml.safe_load(cfg.read_text()))
    e = harness.start_envoy(module_procs, bins.envoy, cfg, "rendered")
    e.port = listen
    return e


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
def test_filter_alone_routes_by_the_resolved_path(envoys, path, want):
    plain = envoys
    assert served(raw_get(plain, path)) == want


def test_filter_alone_refuses_climbing_and_encoded_slashes(envoys):
    plain = envoys
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
        "/stg/..;foo=bar/dev/hello",
        "/stg/x/..;a=b/hello",
        "/stg/hello\\backend",
        "/stg/b/c/../../../../dev/hello",
        "/stg/%c0%ae%c0%ae/dev/hello",
        "/dev/hello/%zz",
    ]
    for path in refused:
        r = raw_get(plain, path)
        assert invalid_path(r), (path, r)
        assert r.json["message"], r
    assert plain.stats("switchyard.error").get(key, 0) == before + len(refused)


def test_filter_alone_forwards_the_normalized_path(envoys):
    plain = envoys
    assert served(raw_get(plain, "/dev/a/../hello")) == (
        "dev", "hello-world-main", "frontend", "/dev/hello")
    assert served(raw_get(plain, "//dev//hello///backend")) == (
        "dev", "hello-world-main", "backend", "/dev/hello/backend")
    assert served(raw_get(plain, "/d%65v/hello?kf-ve=joe&x=%2F")) == (
        "dev", "hello-world-main", "frontend", "/dev/hello?x=%2F")
    # already normal: forwarded untouched
    assert served(raw_get(plain, "/dev/hello/caf%C3%A9;v=1")) == (
        "dev", "hello-world-main", "frontend", "/dev/hello/caf%C3%A9;v=1")
