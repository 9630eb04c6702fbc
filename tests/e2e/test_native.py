"""What is particular to the native filter (the Envoy dynamic module): it refuses
what it cannot do — pull mode — and a bad configuration, with the reason, and
`serve --filter native` delivers it by ECDS. Routing itself runs against both
builds in test_genesis, test_delivery, test_canary and test_paths."""

from __future__ import annotations

import json
import subprocess

import yaml

import control_plane
import harness


def native_bootstrap(bins, work_dir, resources_path, name: str) -> tuple:
    listen, admin = harness.free_ports(2)
    harness.FILTER = "native"
    try:
        cfg = harness.render_envoy(bins, resources_path, work_dir / f"{name}.yaml",
                                   f"127.0.0.1:{listen}", f"127.0.0.1:{admin}")
    finally:
        harness.FILTER = "wasm"
    return cfg, listen


def plugin_of(boot: dict) -> dict:
    hcm = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return hcm["http_filters"][0]["typed_config"]["filter_config"]


def envoy_refuses(bins, path) -> str:
    """Runs Envoy on `path`; it must exit (its only listener's filter refused its
    configuration). Returns its log."""
    proc = subprocess.run([bins.envoy, "-c", str(path), "--use-dynamic-base-id", "--concurrency", "1",
                           "-l", "info"], capture_output=True, text=True, timeout=60)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log[-3000:]
    return log


def test_render_refuses_pull_mode_for_the_native_filter(bins, work_dir, hello_world):
    proc = subprocess.run([str(bins.switchyard), "render", "envoy", "--config",
                           str(hello_world.resources_path), "--filter", "native",
                           "--pull-from", "127.0.0.1:18001"], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "--filter native has no pull mode" in proc.stderr, proc.stderr
    assert "static_resources" not in proc.stdout


def test_the_module_refuses_a_pull_configuration_with_the_reason(bins, work_dir, hello_world):
    cfg, _ = native_bootstrap(bins, work_dir, hello_world.resources_path, "pull")
    boot = yaml.safe_load(cfg.read_text())
    conf = plugin_of(boot)
    plugin = json.loads(conf["value"])
    plugin["settings"]["pull"] = {"cluster": "switchyard_api", "path": "/v1/config", "intervalMs": 1000}
    conf["value"] = json.dumps(plugin)
    cfg.write_text(yaml.safe_dump(boot))
    log = envoy_refuses(bins, cfg)
    assert "Dynamic module ABI version v0.2.0 matched" in log, log[-3000:]
    assert "the native filter has no pull mode (settings.pull)" in log, log[-3000:]


def test_the_module_refuses_an_invalid_configuration_with_the_reason(bins, work_dir, hello_world):
    cfg, _ = native_bootstrap(bins, work_dir, hello_world.resources_path, "bad")
    boot = yaml.safe_load(cfg.read_text())
    conf = plugin_of(boot)
    plugin = json.loads(conf["value"])
    for r in plugin["resources"]:
        if r["kind"] == "AppDeployment" and r["metadata"]["name"] == "hello-world-v2":
            r["spec"]["components"]["backend"]["options"] = {"loadbalancing": "hash"}
    conf["value"] = json.dumps(plugin)
    cfg.write_text(yaml.safe_dump(boot))
    log = envoy_refuses(bins, cfg)
    assert "configuration refused" in log, log[-3000:]
    assert "Hash header must be present when loadbalancing is set to hash." in log, log[-3000:]


def ecds_filter_types(envoy: harness.Envoy) -> dict[str, str]:
    """ECDS filter name → the type of its configuration, as Envoy holds them."""
    dump = envoy.config_dump("ecds_filters")
    return {c["ecds_filter"]["name"]: c["ecds_filter"]["typed_config"]["@type"].rsplit(".", 1)[-1]
            for c in dump.get("configs", [])}


def test_serve_delivers_the_native_filter_by_ecds_and_can_switch_back(procs, bins, work_dir):
    harness.FILTER = "native"
    try:
        world = control_plane.start_world(procs, bins, work_dir, internal=True)
    finally:
        harness.FILTER = "wasm"
    assert ecds_filter_types(world.envoy) == {"switchyard": "DynamicModuleFilter",
                                              "switchyard-internal": "DynamicModuleFilter"}
    # genesis, then the internal hop frontend → backend, both through the module
    r = world.get("/dev/hello")
    assert r.status == 200, r
    assert r.json["backend"]["kf"]["kf-decision"] == "internal", r.json
    # the same listeners take the wasm filter in one ECDS update (a release
    # moves the version after the restart, as in test_control_plane)
    world.wait_acked()
    world.plane.stop()
    world.restart_plane()
    control_plane.wait_for("Envoy reconnected",
                           lambda: (world.envoy_node() or {}).get("connected"), 30)
    assert world.cli("release", "hello-world-v3", "--virtual-env", "team-a").code == 0
    control_plane.wait_for("ECDS carries the wasm filter",
                           lambda: ecds_filter_types(world.envoy)["switchyard"] == "Wasm", 30)
    # (restart_plane serves no internal listener: ask the backend directly)
    assert world.deployment("/dev/hello/backend") == "hello-world-v3"
