"""Smoke tests of the harness itself: upstreams, a plain static Envoy, a wasm filter."""

from __future__ import annotations

import pytest

import harness


def test_upstream_echoes_request(upstream):
    up = upstream("frontend", "f1a0001")
    r = harness.get(up.url + "/dev/hello?x=1",
                    headers={"KF-Var-Who": "Joe", "kf-ve": "joe", "other": "o"})
    assert r.status == 200, r
    assert r.headers["x-upstream"] == f"frontend/f1a0001@{up.addr}"
    body = r.json
    assert body["component"] == "frontend" and body["version"] == "f1a0001"
    assert body["method"] == "GET" and body["path"] == "/dev/hello?x=1"
    assert body["kf"] == {"kf-var-who": "Joe", "kf-ve": "joe"}
    assert body["vars"] == {"who": "Joe"}
    assert body["headers"]["other"] == "o"
    assert body["listen"] == up.addr


def test_upstream_calls_backend_passing_context(upstream):
    back = upstream("backend", "b1a0001")
    front = upstream("frontend", "f1a0001", call_backend=back.url)
    r = harness.get(front.url + "/dev/hello", headers={"kf-context": "token-1"})
    assert r.status == 200, r
    assert r.json["backend"]["component"] == "backend"
    assert r.json["backend"]["path"] == "/backend"
    assert r.json["backend"]["headers"]["host"] == "backend"
    assert r.json["backend"]["kf"] == {"kf-context": "token-1"}


def test_upstream_can_be_asked_to_fail(upstream):
    up = upstream("backend", "b1a0001")
    assert harness.get(up.url + "/", headers={"x-upstream-status": "503"}).status == 503


def test_envoy_proxies_to_upstream(upstream, envoy, bins, work_dir):
    up = upstream("frontend", "f1a0001")
    listen, admin = harness.free_ports(2)
    cfg = harness.write_yaml(work_dir / "envoy.yaml", harness.static_bootstrap(
        listen, admin, {"hello": [up.addr]}))
    e = envoy(cfg)
    r = harness.get(f"http://127.0.0.1:{listen}/dev/hello?kf-ve=joe", headers={"kf-x": "1"})
    assert r.status == 200, r
    assert r.json["component"] == "frontend"
    assert r.json["path"] == "/dev/hello?kf-ve=joe"
    assert r.json["kf"] == {"kf-x": "1"}
    assert r.headers["x-upstream"].startswith("frontend/f1a0001@")
    assert e.stats("cluster.hello.upstream_rq_200")["cluster.hello.upstream_rq_200"] == 1
    # restart keeps working and the harness waits for LIVE again
    e.restart()
    assert harness.get(f"http://127.0.0.1:{listen}/x").status == 200


def test_two_envoys_at_once(upstream, envoy, work_dir):
    up = upstream("backend", "b1a0001")
    ports = harness.free_ports(4)
    for i in range(2):
        cfg = harness.write_yaml(work_dir / f"envoy{i}.yaml", harness.static_bootstrap(
            ports[2 * i], ports[2 * i + 1], {"b": [up.addr]}))
        envoy(cfg, name=f"envoy{i}")
    for i in range(2):
        assert harness.get(f"http://127.0.0.1:{ports[2 * i]}/").json["component"] == "backend"


def test_hello_world_upstreams(hello_world):
    assert len(hello_world.upstreams) == len(harness.upstream_list())
    for (component, version), up in hello_world.upstreams.items():
        r = harness.get(up.url + "/")
        assert (r.json["component"], r.json["version"]) == (component, version)
    # every endpoint of the rewritten resources is a started upstream
    addrs = {up.addr for up in hello_world.upstreams.values()}
    for doc in hello_world.resources:
        if doc["kind"] == "AppDeployment":
            for comp in doc["spec"]["components"].values():
                assert set(comp["endpoints"]) <= addrs, comp


def exports_proxy_wasm_abi(path) -> bool:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return False
    return b"proxy_abi_version_0_2_1" in data or b"proxy_abi_version_0_2_0" in data


def test_envoy_loads_the_wasm_filter(upstream, envoy, bins, work_dir):
    if not exports_proxy_wasm_abi(bins.wasm):
        pytest.skip(f"{bins.wasm} does not export the proxy-wasm ABI yet")
    up = upstream("frontend", "f1a0001")
    listen, admin = harness.free_ports(2)
    cfg = harness.write_yaml(work_dir / "envoy.yaml", harness.static_bootstrap(
        listen, admin, {"hello": [up.addr]},
        http_filters=[harness.wasm_http_filter(bins.wasm, "{}")]))
    e = envoy(cfg)
    # The filter is loaded (whatever it decides for this request, Envoy answers).
    r = harness.get(f"http://127.0.0.1:{listen}/nowhere")
    assert r.status < 600, r
    assert "wasm" in e.admin_get("/config_dump").text


def test_switchyard_fixture_renders_and_starts(switchyard):
    e = switchyard([{"kind": "VirtualEnvironment", "metadata": {"name": "extra"},
                     "spec": {"environment": "dev",
                              "release": {"apps": {"hello-world": "hello-world-v3"}}}}])
    r = harness.get(e.url + "/dev/hello?kf-ve=extra")
    assert r.status == 200, r
    assert r.json["version"] == "f3a0003"
