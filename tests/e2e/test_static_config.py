"""Static mode (envoy/static.yaml style): releases by changing the configuration
Envoy loads, and a configuration the filter refuses."""

from __future__ import annotations

import copy
import json
import subprocess

import yaml

import harness


def release(docs: list[dict], ve: str, deployment: str) -> list[dict]:
    out = copy.deepcopy(docs)
    for d in out:
        if d["kind"] == "VirtualEnvironment" and d["metadata"]["name"] == ve:
            d["spec"].setdefault("release", {}).setdefault("apps", {})["hello-world"] = deployment
    return out


def served(e: harness.Envoy, path: str) -> tuple[str, str]:
    r = harness.get(e.url + path)
    assert r.status == 200, r
    return r.json["kf"]["kf-deployment"], r.json["version"]


def test_releases_follow_the_loaded_configuration(procs, bins, work_dir, hello_world):
    docs = hello_world.resources
    listen, admin = harness.free_ports(2)

    def render(name: str, resources: list[dict]):
        path = harness.write_yaml(work_dir / f"{name}-resources.yaml", resources)
        return harness.render_envoy(bins, path, work_dir / f"{name}.yaml",
                                    f"127.0.0.1:{listen}", f"127.0.0.1:{admin}")

    e = harness.start_envoy(procs, bins.envoy, render("v1", docs), "static")
    e.url = f"http://127.0.0.1:{listen}"
    assert served(e, "/dev/hello") == ("hello-world-main", "f1a0001")

    e.restart(render("v2", release(docs, "team-a", "hello-world-v2")))
    assert served(e, "/dev/hello") == ("hello-world-v2", "f1a0001")
    assert served(e, "/dev/hello/backend") == ("hello-world-v2", "b2a0002")

    e.restart(render("v3", release(docs, "team-a", "hello-world-v3")))
    assert served(e, "/dev/hello") == ("hello-world-v3", "f3a0003")
    # earlier deployments stay reachable explicitly
    assert served(e, "/dev/hello/backend?kf-dep=hello-world-v2&kf-ve=team-a") == ("hello-world-v2", "b2a0002")
    # joe was never released to: still v1
    assert served(e, "/dev/hello?kf-ve=joe") == ("hello-world-main", "f1a0001")


def test_a_configuration_that_fails_validation_is_refused_with_the_reason(procs, bins, work_dir, hello_world):
    listen, admin = harness.free_ports(2)
    cfg = harness.render_envoy(bins, hello_world.resources_path, work_dir / "good.yaml",
                               f"127.0.0.1:{listen}", f"127.0.0.1:{admin}")
    boot = yaml.safe_load(cfg.read_text())
    hcm = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    conf = hcm["http_filters"][0]["typed_config"]["config"]["configuration"]
    plugin = json.loads(conf["value"])
    for r in plugin["resources"]:
        if r["kind"] == "AppDeployment" and r["metadata"]["name"] == "hello-world-v2":
            r["spec"]["components"]["backend"]["options"] = {"loadbalancing": "hash"}
    conf["value"] = json.dumps(plugin)
    bad = work_dir / "bad.yaml"
    bad.write_text(yaml.safe_dump(boot))
    # Envoy refuses to start a static listener whose filter refuses its configuration.
    proc = subprocess.run([bins.envoy, "-c", str(bad), "--use-dynamic-base-id", "--concurrency", "1",
                           "-l", "info"], capture_output=True, text=True, timeout=60)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log[-3000:]
    assert "configuration refused" in log, log[-3000:]
    assert "AppDeployment/hello-world-v2: spec.components.backend.options: " \
           "Hash header must be present when loadbalancing is set to hash." in log, log[-3000:]


def test_lean_metadata_headers(procs, bins, work_dir, hello_world):
    """settings.metadataHeaders: lean sets kf-deployment (and kf-context, vars) only,
    and strips the metadata it no longer overwrites."""
    listen, admin = harness.free_ports(2)
    cfg = harness.render_envoy(bins, hello_world.resources_path, work_dir / "lean.yaml",
                               f"127.0.0.1:{listen}", f"127.0.0.1:{admin}")
    boot = yaml.safe_load(cfg.read_text())
    hcm = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    conf = hcm["http_filters"][0]["typed_config"]["config"]["configuration"]
    plugin = json.loads(conf["value"])
    plugin["settings"]["metadataHeaders"] = "lean"
    conf["value"] = json.dumps(plugin)
    cfg.write_text(yaml.safe_dump(boot))
    e = harness.start_envoy(procs, bins.envoy, cfg, "lean")
    r = harness.get(f"http://127.0.0.1:{listen}/dev/hello",
                    headers={"kf-environment": "forged", "kf-decision": "forged"})
    assert r.status == 200, r
    assert r.json["kf"] == {"kf-deployment": "hello-world-main", "kf-var-who": "Universe"}, r.json["kf"]
    assert e.alive()
