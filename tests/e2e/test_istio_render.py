"""`switchyard render istio`: every object it prints validates against Istio's
CRDs (../shared/istio/crds.yaml, strict field validation) for hello-world, the
canary example and a large generated table, in both `--via` forms; the check
rejects a broken object; the output is deterministic; the size limit switches
to pull mode or refuses with a clear message. No Envoy here (fast)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

import harness
import istio

HELLO = harness.ROOT / "examples" / "hello-world" / "resources.yaml"
CANARY = harness.ROOT / "examples" / "canary" / "resources.yaml"
KEY = {"kid": "istio-1", "secret": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}


def generated_table(path: Path, deployments: int, components: int = 4,
                    versions: int | None = None) -> Path:
    """One environment, one VE, `deployments` deployments of `components`
    components, with `versions` distinct versions per component (default: one
    per deployment); every third component hashes (some with a balance factor),
    every fifth is least-connection."""
    docs = [
        {"kind": "Environment", "metadata": {"name": "prod"},
         "spec": {"subPath": "prod", "defaultVirtualEnvironment": "prod"}},
        {"kind": "VirtualEnvironment", "metadata": {"name": "prod"},
         "spec": {"environment": "prod", "release": {"apps": {"shop": "shop-0"}}}},
    ]
    for d in range(deployments):
        comps = {}
        for c in range(components):
            v = d % versions if versions else d
            comp = {"version": f"c{c}-{v:05d}", "endpoints": [f"10.{c}.{v // 250}.{v % 250 + 1}:8080"],
                    "routes": [{"match": {"pathPrefix": f"/c{c}"}}],
                    "dependencies": [f"comp{x}" for x in range(components) if x != c]}
            if c % 5 == 4:
                comp["options"] = {"loadbalancing": "least-connection"}
            elif c % 3 == 1:
                comp["options"] = {"loadbalancing": "hash", "hash_header": "tenant-id",
                                   **({"hash_balance": 1.5} if v % 2 else {})}
            comps[f"comp{c}"] = comp
        docs.append({"kind": "AppDeployment", "metadata": {"name": f"shop-{d}"},
                     "spec": {"app": "shop", "version": f"v{d}", "components": comps}})
    return harness.write_yaml(path, docs)


@pytest.fixture(scope="module")
def switchyard(bins) -> Path:
    return bins.switchyard


@pytest.fixture(scope="module")
def key_file(tmp_path_factory) -> Path:
    return harness.write_yaml(tmp_path_factory.mktemp("key") / "key.yaml", KEY)


@pytest.mark.parametrize("via", ["wasmplugin", "envoyfilter"])
@pytest.mark.parametrize("example", ["hello-world", "canary", "large"])
def test_every_rendered_object_validates_against_istio_crds(switchyard, key_file, tmp_path, via, example):
    config = {"hello-world": HELLO, "canary": CANARY}.get(example) or generated_table(
        tmp_path / "large.yaml", 120)
    variants = [
        ["--context-key-file", str(key_file)],
        ["--pull-from", "switchyard.switchyard-system:18001"],
        ["--pull-from", "switchyard.example.com:18001", "--gateway", "istio-system/main",
         "--sha256", "ab" * 32],
    ]
    for extra in variants:
        objs = istio.render(switchyard, config, "--namespace", "shop", "--via", via, *extra)
        kinds = {o["kind"] for o in objs}
        assert {"VirtualService", "DestinationRule"} <= kinds
        assert ("WasmPlugin" in kinds) == (via == "wasmplugin")
        for o in objs:
            problems = istio.validate(o)
            assert not problems, f"{o['kind']} {o['metadata']['name']}: {problems}"
    if example == "large":
        drs = istio.by_kind(objs, "DestinationRule")
        assert sum(len(d["spec"]["subsets"]) for d in drs) >= 120 * 4


def test_the_check_rejects_broken_objects(switchyard, key_file):
    objs = istio.render(switchyard, HELLO, "--context-key-file", str(key_file))
    dr = copy.deepcopy(istio.by_kind(objs, "DestinationRule")[0])
    dr["spec"]["subsets"][0]["trafficPolicy"]["loadBalancer"] = {"simple": "MAGLEV"}
    assert any("MAGLEV" in p for p in istio.validate(dr))
    vs = copy.deepcopy(istio.by_kind(objs, "VirtualService")[0])
    vs["spec"]["http"][0]["match"][0]["headers"]["x-switchyard-version"] = {"exactly": "x"}
    assert any("exactly" in p for p in istio.validate(vs))
    wp = copy.deepcopy(istio.by_kind(objs, "WasmPlugin")[0])
    wp["spec"]["failStrategy"] = "FAIL_CLOSED"  # Envoy's spelling, not Istio's
    assert istio.validate(wp)
    wp = copy.deepcopy(istio.by_kind(objs, "WasmPlugin")[0])
    wp["spec"]["url"] = "ftp://example.com/x.wasm"
    assert any("url must have schema" in p for p in istio.validate(wp))


def test_output_is_deterministic(switchyard, key_file):
    args = ["--context-key-file", str(key_file), "--namespace", "shop"]
    first = istio.render_text(switchyard, CANARY, *args)
    second = istio.render_text(switchyard, CANARY, *args)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout


def test_hello_world_objects_say_what_the_mesh_does(switchyard, key_file):
    objs = istio.render(switchyard, HELLO, "--namespace", "shop", "--context-key-file", str(key_file),
                        "--gateway-selector", "app=gw", "--version-label", "app.kubernetes.io/version")
    genesis, internal = istio.by_kind(objs, "WasmPlugin")
    assert genesis["spec"]["selector"] == {"matchLabels": {"app": "gw"}}
    assert genesis["spec"]["match"] == [{"mode": "CLIENT"}]
    assert genesis["spec"]["failStrategy"] == "FAIL_CLOSE"
    assert genesis["spec"]["phase"] == "STATS"
    assert genesis["spec"]["pluginConfig"]["settings"]["istio"] is True
    assert genesis["spec"]["pluginConfig"]["settings"]["mode"] == "genesis"
    assert internal["spec"]["pluginConfig"]["settings"]["mode"] == "internal"
    assert "selector" not in internal["spec"]
    assert internal["spec"]["match"] == [{"mode": "CLIENT", "ports": [{"number": 80}]}]
    dr = next(d for d in istio.by_kind(objs, "DestinationRule") if d["metadata"]["name"] == "switchyard-backend")
    assert dr["spec"]["host"] == "backend.shop.svc.cluster.local"
    assert [s["labels"] for s in dr["spec"]["subsets"]] == [
        {"app.kubernetes.io/version": v} for v in ("b1a0001", "b2a0002", "b3a0003")]
    vs = next(v for v in istio.by_kind(objs, "VirtualService") if v["metadata"]["name"] == "switchyard-backend")
    first, last = vs["spec"]["http"][0], vs["spec"]["http"][-1]
    assert first["match"] == [{"headers": {"x-switchyard-version": {"exact": "hello-world/backend/b1a0001/round-robin"}}}]
    assert first["headers"] == {"request": {"remove": ["x-switchyard-version"]}}
    # No header, or a version these objects lack: 503, never some version.
    assert "match" not in last and last["directResponse"]["status"] == 503
    assert json.loads(last["directResponse"]["body"]["string"])["error"] == "cluster_not_ready"


def test_size_limit_switches_to_pull_mode_or_refuses(switchyard, tmp_path):
    # Deployments reuse component versions (distillation): a large table, a
    # bounded number of subsets.
    big = generated_table(tmp_path / "big.yaml", 1500, components=2, versions=100)
    refused = istio.render_text(switchyard, big)
    assert refused.returncode != 0
    assert "inline limit" in refused.stderr and "--pull-from" in refused.stderr, refused.stderr
    objs = istio.render(switchyard, big, "--pull-from", "switchyard.switchyard-system:18001")
    for wp in istio.by_kind(objs, "WasmPlugin"):
        settings = wp["spec"]["pluginConfig"]["settings"]
        assert wp["spec"]["pluginConfig"]["resources"] == []
        assert settings["pull"]["cluster"] == "outbound|18001||switchyard.switchyard-system.svc.cluster.local"
    sidecar = istio.by_kind(objs, "Sidecar")[0]
    assert "switchyard-system/switchyard.switchyard-system.svc.cluster.local" in sidecar["spec"]["egress"][0]["hosts"]
    for o in objs:
        assert not istio.validate(o), o["kind"]


def test_bad_input_is_a_clear_error(switchyard, tmp_path):
    docs = harness.load_resources()
    for d in docs:
        if d["kind"] == "AppDeployment":
            d["spec"]["components"]["backend"]["version"] = "b1a0001-"
            break
    path = harness.write_yaml(tmp_path / "bad.yaml", docs)
    out = istio.render_text(switchyard, path)
    assert out.returncode != 0
    assert "component 'backend': version 'b1a0001-' is not a Kubernetes label value" in out.stderr
    out = istio.render_text(switchyard, HELLO, "--gateway-selector", "nolabel")
    assert out.returncode != 0 and "--gateway-selector must be key=value" in out.stderr


def test_lb_policies_become_subset_traffic_policies(switchyard, key_file, tmp_path):
    table = generated_table(tmp_path / "lb.yaml", 4, components=5)
    objs = istio.render(switchyard, table, "--namespace", "shop", "--context-key-file", str(key_file))
    drs = {d["spec"]["host"].split(".")[0]: d for d in istio.by_kind(objs, "DestinationRule")}
    lbs = {s["name"]: s["trafficPolicy"]["loadBalancer"] for s in drs["comp1"]["spec"]["subsets"]}
    hashed = {n: lb for n, lb in lbs.items() if "consistentHash" in lb}
    # Each hash version has a Maglev subset and its round-robin twin (requests
    # without tenant-id, as Cloud Foundry falls back).
    assert len(hashed) == 4 and sum(lb == {"simple": "ROUND_ROBIN"} for lb in lbs.values()) == 4
    for lb in hashed.values():
        assert lb == {"consistentHash": {"httpHeaderName": "tenant-id", "maglev": {"tableSize": 65537}}}
    assert all(s["trafficPolicy"]["loadBalancer"] == {"simple": "LEAST_REQUEST"}
               for s in drs["comp4"]["spec"]["subsets"])
    # hash_balance 1.5 (odd versions): an EnvoyFilter CLUSTER patch per namespace.
    balance = istio.by_kind(objs, "EnvoyFilter")
    assert {b["metadata"]["namespace"] for b in balance} == {"istio-system", "shop"}
    patched = {(p["match"]["cluster"]["subset"], p["patch"]["value"]["common_lb_config"]
                ["consistent_hashing_lb_config"]["hash_balance_factor"])
               for p in balance[0]["spec"]["configPatches"]}
    assert len(patched) == 2 and {f for _, f in patched} == {150}
    assert all(s in hashed for s, _ in patched)


def test_explain_shows_the_subset_in_istio_mode(switchyard):
    import subprocess
    argv = [str(switchyard), "--output", "json", "explain", "--config", str(HELLO),
            "--istio-namespace", "shop", "/dev/hello/backend?kf-dep=hello-world-v2&kf-ve=team-a"]
    out = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
    assert out["istio"] == {
        "header": "x-switchyard-version: hello-world/backend/b2a0002/round-robin",
        "host": "backend.shop.svc.cluster.local",
        "subset": "b2a0002-round-robin",
        "cluster": "outbound|80|b2a0002-round-robin|backend.shop.svc.cluster.local",
    }


def test_the_oci_image_is_reproducible_and_refuses_non_wasm(bins, tmp_path):
    first = istio.package(bins.switchyard, bins.wasm, tmp_path / "a", "0.1.0")
    second = istio.package(bins.switchyard, bins.wasm, tmp_path / "b", "0.1.0")
    assert first["manifest_sha256"] == second["manifest_sha256"]
    module = istio.unpack_like_istio_agent(tmp_path / "a", "0.1.0", first["manifest_sha256"], tmp_path / "c" / "x")
    assert module.read_bytes() == bins.wasm.read_bytes()
    import subprocess
    out = subprocess.run([str(bins.switchyard), "package", "--wasm", str(HELLO), "--out", str(tmp_path / "d")],
                         capture_output=True, text=True)
    assert out.returncode != 0 and "not a WebAssembly module" in out.stderr
    out = subprocess.run([str(bins.switchyard), "package", "--wasm", str(bins.wasm), "--out", str(tmp_path / "e"),
                          "--tag", "a/b"], capture_output=True, text=True)
    assert out.returncode != 0 and "is not an OCI tag" in out.stderr
