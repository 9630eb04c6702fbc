"""Scoped Envoys (README "Sizing"): an Envoy whose node metadata lists
`switchyard.environments` gets only those environments' clusters and routing
table from the same `switchyard serve`; an Envoy without it gets everything."""

from __future__ import annotations

import json

import yaml

import control_plane as cp
import harness

STG = """\
kind: Environment
metadata: {name: stg}
spec: {subPath: stg, defaultVirtualEnvironment: stg-a}
---
kind: VirtualEnvironment
metadata: {name: stg-a}
spec:
  environment: stg
  release: {apps: {hello-world: hello-world-v3}}
"""


def clusters(envoy: harness.Envoy) -> set[str]:
    dump = envoy.config_dump("dynamic_active_clusters")
    return {c["cluster"]["name"] for c in dump.get("configs", [])}


def filter_config(envoy: harness.Envoy) -> str:
    """The genesis filter's plugin configuration as this Envoy has it (ECDS)."""
    dump = envoy.config_dump("ecds_filters")
    for c in dump.get("configs", []):
        cfg = c["ecds_filter"]["typed_config"]["config"]
        if cfg["name"] == "switchyard":
            return cfg["configuration"]["value"]
    raise AssertionError(f"no switchyard ECDS filter in {json.dumps(dump)[:500]}")


def test_a_scoped_envoy_gets_only_its_environments(procs, bins, work_dir):
    world = cp.start_world(procs, bins, work_dir)
    stg = work_dir / "stg.yaml"
    stg.write_text(STG)
    assert world.cli("apply", "-f", str(stg)).code == 0

    boot = cp.ads_bootstrap(work_dir / "scoped.yaml", world.plane.xds_port, harness.free_port(),
                            node_id="edge-dev")
    cfg = yaml.safe_load(boot.read_text())
    cfg["node"]["metadata"] = {"switchyard.environments": ["dev"]}
    harness.write_yaml(boot, cfg)
    scoped = harness.start_envoy(procs, bins.envoy, boot, "envoy-scoped")
    cp.wait_for("the scoped Envoy has its table", lambda: "hello-world/frontend/f1a0001" in
                " ".join(clusters(scoped)), timeout=30)

    everything, dev_only = clusters(world.envoy), clusters(scoped)
    versions = lambda names: {n.split("/")[2] for n in names}  # noqa: E731
    assert {"f1a0001", "b1a0001", "f3a0003", "b3a0003", "b2a0002"} <= versions(everything)
    # dev releases main (f1, b1) in both VEs; stg's v3 and the unreleased v2 are not dev's
    assert versions(dev_only) == {"f1a0001", "b1a0001"}, dev_only
    table = filter_config(scoped)
    assert '"stg"' not in table and "hello-world-v3" not in table
    assert "hello-world-v3" in filter_config(world.envoy)

    # a release in dev brings its versions to the scoped Envoy too; the CLI waits for both
    r = world.cli("release", "hello-world-v2", "--virtual-env", "team-a")
    assert r.code == 0, r.stderr
    assert "live on 2/2 Envoys" in r.stdout, r.stdout
    assert "b2a0002" in versions(clusters(scoped))
    assert "hello-world-v2" in filter_config(scoped)
