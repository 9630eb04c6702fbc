"""Pull mode (DESIGN.md "Configuration delivery", for Istio where istiod owns xDS):
a static Envoy whose filter polls `switchyard serve`'s HTTP API for the table and
shares it across worker VMs; releases made with the CLI reach it without xDS."""

from __future__ import annotations

import time

import control_plane as cp
import harness


def test_a_pulling_filter_follows_releases(procs, bins, work_dir):
    hello = harness.start_hello_world(procs, bins, work_dir)
    xds, api, unused_listen, listen, admin = harness.free_ports(5)
    plane = cp.ControlPlane(bins, hello.resources_path, work_dir / "state", xds, api,
                            unused_listen, procs.log_dir)
    procs.add(plane.start())
    plane.wait_ready()
    cfg = harness.render_envoy(bins, hello.resources_path, work_dir / "pull.yaml",
                               f"127.0.0.1:{listen}", f"127.0.0.1:{admin}",
                               ["--pull-from", f"127.0.0.1:{api}"])
    # two workers: two VMs that must share one pulled table
    envoy = harness.Envoy(bins.envoy, cfg, procs.log_dir, "envoy-pull", concurrency=2)
    procs.add(envoy.start())
    envoy.wait_ready()
    url = f"http://127.0.0.1:{listen}/dev/hello"

    def deployment() -> str | None:
        r = harness.get(url)
        return r.json["kf"]["kf-deployment"] if r.status == 200 else None

    assert deployment() == "hello-world-main"
    t0 = time.monotonic()
    r = cp.cli(bins, plane.server, "release", "hello-world-v3", "--virtual-env", "team-a")
    assert r.code == 0, r.stderr
    cp.wait_for("the pulled release serves /dev/hello", lambda: deployment() == "hello-world-v3",
                timeout=10, interval=0.05)
    print(f"\npull mode: release → first response by it: {(time.monotonic() - t0) * 1000:.0f} ms")
    # every request afterwards, on either worker, sees the new table
    assert all(deployment() == "hello-world-v3" for _ in range(40))
    stats = envoy.stats("switchyard.pull")
    assert stats.get("wasmcustom.switchyard.pull.ok", 0) >= 1, stats
    # the control plane gone: the last table keeps serving, polls fail and count
    plane.kill()
    time.sleep(1.5)
    assert deployment() == "hello-world-v3"
    assert envoy.stats("switchyard.pull").get("wasmcustom.switchyard.pull.failed", 0) >= 1
