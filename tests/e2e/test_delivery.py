"""Guaranteed delivery between components (DESIGN.md, "Component to component"):
the frontend calls the backend through Envoy's internal listener, passing on
`kf-context`; each hop is delivered only to the versions of the request's deployment."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
import yaml

import harness


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(claims: dict, secret: bytes, kid: str) -> str:
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    payload = b64url(json.dumps(claims).encode())
    sig = b64url(hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    return f"{header}.{payload}.{sig}"


def context(dep: str, comp: str = "frontend", ttl: int = 20, **over) -> dict:
    return {"env": "dev", "ve": "team-a", "app": "hello-world", "dep": dep, "comp": comp,
            "exp": int(time.time()) + ttl, **over}


def plugin_configs(bootstrap: dict) -> list[dict]:
    """The filters' plugin configurations inside a rendered bootstrap, in place."""
    out = []
    for listener in bootstrap["static_resources"]["listeners"]:
        hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        for f in hcm["http_filters"]:
            typed = f.get("typed_config", {})
            cfg = typed.get("config")
            if cfg and "configuration" in cfg:  # the wasm filter
                out.append(cfg["configuration"])
            elif "filter_config" in typed:  # the native filter
                out.append(typed["filter_config"])
    return out


def set_keys(path, keys: list[tuple[str, bytes]], signing: str) -> None:
    """Rewrites the context keys of every filter in a rendered bootstrap."""
    boot = yaml.safe_load(path.read_text())
    for c in plugin_configs(boot):
        cfg = json.loads(c["value"])
        cfg["settings"]["contextKeys"] = [
            {"kid": kid, "secret": base64.b64encode(secret).decode()} for kid, secret in keys]
        cfg["settings"]["signingKid"] = signing
        c["value"] = json.dumps(cfg)
    path.write_text(yaml.safe_dump(boot))


OLD = ("old", b"o" * 32)
NEW = ("new", b"n" * 32)


def start_envoy(procs, bins, work, hw, name, listen, internal, keys, signing):
    admin = harness.free_port()
    cfg = harness.render_envoy(bins, hw.resources_path, work / f"{name}.yaml",
                               f"127.0.0.1:{listen}", f"127.0.0.1:{admin}",
                               ["--internal-listen", f"127.0.0.1:{internal}"])
    set_keys(cfg, keys, signing)
    e = harness.start_envoy(procs, bins.envoy, cfg, name)
    e.url = f"http://127.0.0.1:{listen}"
    e.internal_url = f"http://127.0.0.1:{internal}"
    return e


@pytest.fixture(scope="module")
def world(module_procs, bins, tmp_path_factory):
    work = tmp_path_factory.mktemp("delivery")
    listen, internal = harness.free_ports(2)
    hw = harness.start_hello_world(module_procs, bins, work,
                                   call_backend=f"http://127.0.0.1:{internal}")
    e = start_envoy(module_procs, bins, work, hw, "delivery", listen, internal, [OLD], "old")
    return {"envoy": e, "hw": hw, "work": work, "procs": module_procs, "bins": bins}


def test_figures_11_and_12_each_deployment_reaches_its_own_backend(world):
    e, hw = world["envoy"], world["hw"]
    v1 = harness.get(e.url + "/dev/hello?kf-dep=hello-world-main")
    v2 = harness.get(e.url + "/dev/hello?kf-dep=hello-world-v2")
    for r in (v1, v2):
        assert r.status == 200, r
        # the same frontend process serves both deployments (distillation)
        assert (r.json["component"], r.json["version"]) == ("frontend", "f1a0001")
        assert r.json["listen"] == hw.upstream("frontend", "f1a0001").addr
    assert (v1.json["backend"]["component"], v1.json["backend"]["version"]) == ("backend", "b1a0001")
    assert (v2.json["backend"]["component"], v2.json["backend"]["version"]) == ("backend", "b2a0002")
    assert v2.json["backend"]["kf"]["kf-deployment"] == "hello-world-v2"
    assert v2.json["backend"]["kf"]["kf-decision"] == "internal"
    # the release (plain URL) follows team-a's release: v1
    plain = harness.get(e.url + "/dev/hello")
    assert plain.json["backend"]["version"] == "b1a0001"


def refused(e, headers: dict) -> tuple[int, str]:
    r = harness.get(e.internal_url + "/backend", headers={"host": "backend", **headers})
    assert r.status != 200, r
    return r.status, r.json["error"]


def test_every_refusal_has_its_code(world):
    e = world["envoy"]
    secret = OLD[1]
    assert refused(e, {}) == (401, "missing_context")
    good = sign(context("hello-world-main"), secret, "old")
    h, p, s = good.split(".")
    tampered = f"{h}.{b64url(json.dumps(context('hello-world-v2')).encode())}.{s}"
    assert refused(e, {"kf-context": tampered}) == (401, "invalid_context_token")
    expired = sign(context("hello-world-main", ttl=-5), secret, "old")
    assert refused(e, {"kf-context": expired}) == (401, "invalid_context_token")
    foreign = sign(context("hello-world-main"), b"f" * 32, "old")
    assert refused(e, {"kf-context": foreign}) == (401, "invalid_context_token")
    unknown_kid = sign(context("hello-world-main"), secret, "nobody")
    assert refused(e, {"kf-context": unknown_kid}) == (401, "invalid_context_token")
    # a target outside the deployment
    r = harness.get(e.internal_url + "/", headers={"host": "payments", "kf-context": good})
    assert (r.status, r.json["error"]) == (403, "component_not_in_deployment")
    # backend does not declare frontend as a dependency
    from_backend = sign(context("hello-world-main", comp="backend"), secret, "old")
    r = harness.get(e.internal_url + "/", headers={"host": "frontend", "kf-context": from_backend})
    assert (r.status, r.json["error"]) == (403, "dependency_not_declared")
    # the good one is delivered, to exactly v1's backend
    r = harness.get(e.internal_url + "/backend", headers={"host": "backend", "kf-context": good})
    assert (r.status, r.json["version"]) == (200, "b1a0001")
    stats = e.stats("switchyard.error")
    assert stats.get(harness.filter_stat("switchyard.error.missing_context"), 0) >= 1, stats


def test_key_rotation(world):
    procs, bins, work, hw = world["procs"], world["bins"], world["work"], world["hw"]
    old_token = sign(context("hello-world-v2"), OLD[1], "old")
    listen, internal = harness.free_ports(2)
    # rotating: both keys verify, the new one signs
    rotating = start_envoy(procs, bins, work, hw, "rotating", listen, internal, [OLD, NEW], "new")
    r = harness.get(rotating.internal_url + "/backend", headers={"host": "backend", "kf-context": old_token})
    assert (r.status, r.json["version"]) == (200, "b2a0002")
    new_token = r.json["kf"]["kf-context"]
    assert json.loads(base64.urlsafe_b64decode(new_token.split(".")[0] + "=="))["kid"] == "new"
    rotating.stop()
    # retired: the old key is gone
    listen, internal = harness.free_ports(2)
    retired = start_envoy(procs, bins, work, hw, "retired", listen, internal, [NEW], "new")
    assert refused(retired, {"kf-context": old_token}) == (401, "invalid_context_token")
    # the re-issued context names backend as the sender: a hop from backend to
    # backend is not declared, but it verifies (403, not 401)
    assert refused(retired, {"kf-context": new_token}) == (403, "dependency_not_declared")
    new_from_frontend = sign(context("hello-world-v2"), NEW[1], "new")
    r = harness.get(retired.internal_url + "/backend",
                    headers={"host": "backend", "kf-context": new_from_frontend})
    assert (r.status, r.json["version"]) == (200, "b2a0002")
