"""Delta xDS (README "Configuration delivery"): a real Envoy 1.40 on
`api_type: DELTA_GRPC` (`switchyard render envoy --ads ... --delta`) gets its
config from `switchyard serve` with only changed resources on each push, with the
same make-before-break ordering, cluster removal, live wait, NACK reports and
scoping as state-of-the-world Envoys."""

from __future__ import annotations

import time

import yaml

import control_plane as cp
import harness
from test_live import LISTENERS, MAIN, V3, Load, deployment_yaml, no_cluster
from test_scope import clusters, filter_config

TYPES = ("CDS", "EDS", "ECDS", "LDS", "RDS")


def speaks_delta(world: cp.World) -> bool:
    """Envoy's bootstrap says DELTA_GRPC and the server logged a delta stream."""
    dump = world.envoy.config_dump()
    boot = next(c["bootstrap"] for c in dump["configs"] if c["@type"].endswith("BootstrapConfigDump"))
    api_type = boot["dynamic_resources"]["ads_config"]["api_type"]
    return api_type == "DELTA_GRPC" and "delta" in world.plane.log_text()


def test_render_delta_bootstrap(bins, work_dir):
    r = cp.cli(bins, "http://127.0.0.1:1", "render", "envoy", "--ads", "127.0.0.1:18000", "--delta")
    assert r.code == 0, r.stderr
    boot = yaml.safe_load(r.stdout)
    assert boot["dynamic_resources"]["ads_config"]["api_type"] == "DELTA_GRPC"
    assert boot["dynamic_resources"]["cds_config"] == {"resource_api_version": "V3", "ads": {}}


def test_a_delta_envoy_routes_and_a_release_is_live(procs, bins, work_dir):
    world = cp.start_world(procs, bins, work_dir, delta=True)
    node = world.wait_acked()
    assert speaks_delta(world)
    assert all(node["types"][t]["ackedVersion"] for t in TYPES), node
    for dep in (V3, MAIN):
        r = world.cli("release", dep, "--virtual-env", "team-a")
        assert r.code == 0, r.stderr
        assert "live on 1/1 Envoys in" in r.stdout, r.stdout
        assert world.deployment() == dep
    # a release changes the filter's table, not the listener or its routes: only
    # what changed was sent, yet status has every type at the new version
    status = world.plane.api("/v1/status")
    node = world.wait_acked(status["version"])
    assert {node["types"][t]["ackedVersion"] for t in TYPES} == {status["version"]}


def test_new_versions_and_removed_clusters_under_load_fail_no_request(procs, bins, work_dir):
    """Publish + release deployments with new frontend and backend versions (new
    clusters) and delete the previous one (its clusters go), under keep-alive
    load on both listeners: only 200s, `no_cluster` 0; the deleted deployments'
    clusters are removed from Envoy."""
    world = cp.start_world(procs, bins, work_dir, internal=True, delta=True)
    world.wait_acked()
    f1 = world.hello.upstream("frontend", "f1a0001").port
    b1 = world.hello.upstream("backend", "b1a0001").port
    before = no_cluster(world.envoy)
    rounds = 8
    with Load(world.url, ["/dev/hello", "/dev/hello/backend"]) as load:
        time.sleep(0.5)
        for n in range(1, rounds + 1):
            name = f"hello-world-mbb{n}"
            path = work_dir / f"{name}.yaml"
            path.write_text(deployment_yaml(name, n, f1, b1))
            # The publish is waited for here; publish and release in one push
            # (both without waiting) are test_table_order.py's subject.
            r = world.cli("publish", "-f", str(path))
            assert r.code == 0, r.stderr
            wait = ["--no-wait"] if n % 2 else []
            r = world.cli(*wait, "release", name, "--virtual-env", "team-a")
            assert r.code == 0, r.stderr
            if n > 1:
                r = world.cli(*wait, "delete", "deployment", f"hello-world-mbb{n - 1}")
                assert r.code == 0, r.stderr
        last = f"hello-world-mbb{rounds}"
        cp.wait_for("the last release serves", lambda: world.deployment() == last, timeout=20)
        time.sleep(0.5)
    assert not load.errors, load.errors[:5]
    bad = load.bad()
    served = {x.body for x in load.results if x.status == 200}
    after = no_cluster(world.envoy)
    print(f"\n{len(load.results)} requests during {rounds} publish+release+delete rounds (delta): "
          f"{len(bad)} not 200; no_cluster {before} → {after}; {len(served)} deployments served")
    assert not bad, bad[:5]
    assert after == before == {l: 0 for l in LISTENERS}
    assert len(served) >= 3, served

    def versions() -> set[str]:
        return {c.split("/")[2] for c in clusters(world.envoy) if c.count("/") >= 2}

    gone = {f"fmbb{n:04d}" for n in range(1, rounds)} | {f"bmbb{n:04d}" for n in range(1, rounds)}
    cp.wait_for("deleted deployments' clusters are removed from Envoy",
                lambda: not (versions() & gone), timeout=20)
    assert {f"fmbb{rounds:04d}", f"bmbb{rounds:04d}"} <= versions()
    # and /clusters (the cluster manager itself) agrees
    listing = world.envoy.admin_get("/clusters").text
    assert "fmbb0001" not in listing and f"fmbb{rounds:04d}" in listing


def test_a_scoped_delta_envoy_gets_only_its_environments(procs, bins, work_dir):
    world = cp.start_world(procs, bins, work_dir)
    boot = cp.ads_bootstrap(work_dir / "scoped.yaml", world.plane.xds_port, harness.free_port(),
                            node_id="edge-dev-delta", delta=True)
    cfg = yaml.safe_load(boot.read_text())
    cfg["node"]["metadata"] = {"switchyard.environments": ["dev"]}
    harness.write_yaml(boot, cfg)
    scoped = harness.start_envoy(procs, bins.envoy, boot, "envoy-scoped-delta")
    cp.wait_for("the scoped delta Envoy has its table", lambda: "hello-world/frontend/f1a0001" in
                " ".join(clusters(scoped)), timeout=30)
    versions = lambda names: {n.split("/")[2] for n in names}  # noqa: E731
    assert {"f3a0003", "b2a0002"} <= versions(clusters(world.envoy))
    assert versions(clusters(scoped)) == {"f1a0001", "b1a0001"}, clusters(scoped)
    r = world.cli("release", "hello-world-v2", "--virtual-env", "team-a")
    assert r.code == 0, r.stderr
    assert "live on 2/2 Envoys" in r.stdout, r.stdout
    assert "b2a0002" in versions(clusters(scoped))
    assert "hello-world-v2" in filter_config(scoped)
    assert "f3a0003" not in versions(clusters(scoped))


def test_a_delta_nack_is_reported(procs, bins, work_dir):
    world = cp.start_world(procs, bins, work_dir, delta=True)
    world.wait_acked()
    world.plane.stop()
    world.restart_plane(wasm=work_dir / "missing.wasm")
    cp.wait_for("Envoy reconnected", lambda: (world.envoy_node() or {}).get("connected"), timeout=30)
    r = world.cli("release", V3, "--virtual-env", "team-a")
    assert r.code == 1, r.stdout
    assert f"{world.node_id}: NACKed ECDS" in r.stdout, r.stdout
    nack = world.envoy_node()["types"]["ECDS"]["lastNack"]
    assert nack["message"], nack
    # the last good filter config keeps routing
    assert world.deployment() is not None
