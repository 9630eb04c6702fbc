"""Pull mode (DESIGN.md "Configuration delivery", for Istio where istiod owns xDS):
a static Envoy whose filter polls `switchyard serve`'s HTTP API for the table and
shares it across worker VMs; releases made with the CLI reach it without xDS."""

from __future__ import annotations

import http.server
import subprocess
import threading
import time
from dataclasses import dataclass

import yaml

import control_plane as cp
import harness

# README (Pull) and filter/src/root.rs: once one worker routes by a new pulled
# table, every worker does within this bound (one 100 ms watch tick, the compile,
# and scheduling slack on a loaded 2-core machine; measured spread ≤ 104 ms).
AGREE_BOUND_S = 0.3


@dataclass
class PullWorld:
    hello: harness.HelloWorld
    plane: cp.ControlPlane
    envoy: harness.Envoy
    base: str  # http://127.0.0.1:PORT

    def get(self, path: str) -> harness.Reply:
        return harness.get(self.base + path)

    def deployment(self, path: str = "/dev/hello") -> str | None:
        r = self.get(path)
        return r.json["kf"]["kf-deployment"] if r.status == 200 else None

    def cli(self, *args: str) -> cp.CliResult:
        return cp.cli(self.plane.bins, self.plane.server, *args)


def start_pull_world(procs, bins, work_dir, concurrency: int = 2) -> PullWorld:
    hello = harness.start_hello_world(procs, bins, work_dir)
    xds, api, unused_listen, listen, admin = harness.free_ports(5)
    plane = cp.ControlPlane(bins, hello.resources_path, work_dir / "state", xds, api,
                            unused_listen, procs.log_dir)
    procs.add(plane.start())
    plane.wait_ready()
    cfg = harness.render_envoy(bins, hello.resources_path, work_dir / "pull.yaml",
                               f"127.0.0.1:{listen}", f"127.0.0.1:{admin}",
                               ["--pull-from", f"127.0.0.1:{api}"])
    # several workers: several VMs that must share one pulled table
    envoy = harness.Envoy(bins.envoy, cfg, procs.log_dir, "envoy-pull", concurrency=concurrency)
    procs.add(envoy.start())
    envoy.wait_ready()
    return PullWorld(hello, plane, envoy, f"http://127.0.0.1:{listen}")


def test_a_pulling_filter_follows_releases(procs, bins, work_dir):
    world = start_pull_world(procs, bins, work_dir)
    assert world.deployment() == "hello-world-main"
    # the rendered bootstrap's node id names this Envoy in its polls
    polled = cp.wait_for("the filter polled", lambda: world.plane.api("/v1/status")["pulling"],
                         timeout=10)
    assert [p["id"] for p in polled] == ["switchyard-static"]
    t0 = time.monotonic()
    r = world.cli("release", "hello-world-v3", "--virtual-env", "team-a")
    assert r.code == 0, r.stderr
    # no ADS Envoy to wait for; the pulling one is reported with its last poll
    assert "live on 0/0 Envoys" in r.stdout, r.stdout
    assert "switchyard-static: pulling (last poll" in r.stdout, r.stdout
    cp.wait_for("the pulled release serves /dev/hello",
                lambda: world.deployment() == "hello-world-v3", timeout=10, interval=0.01)
    first_seen = time.monotonic()
    print(f"\npull mode: release → first response by it: {(first_seen - t0) * 1000:.0f} ms")
    # until the bound, a worker may still have the old table; note the last one seen
    last_old = first_seen
    while time.monotonic() < first_seen + AGREE_BOUND_S:
        if world.deployment() != "hello-world-v3":
            last_old = time.monotonic()
    print(f"pull mode: last old answer {(last_old - first_seen) * 1000:.0f} ms after the first "
          f"new one (bound {AGREE_BOUND_S * 1000:.0f} ms)")
    # after the bound every request, on every worker (new connection each: the
    # kernel spreads them over the workers), sees the new table
    seen = [world.deployment() for _ in range(40)]
    assert seen == ["hello-world-v3"] * 40, seen
    stats = world.envoy.stats("switchyard.pull")
    assert stats.get("wasmcustom.switchyard.pull.ok", 0) >= 1, stats
    # the control plane gone: the last table keeps serving, polls fail and count
    world.plane.kill()
    time.sleep(1.5)
    assert world.deployment() == "hello-world-v3"
    assert world.envoy.stats("switchyard.pull").get("wasmcustom.switchyard.pull.failed", 0) >= 1


def test_a_pulled_cluster_the_bootstrap_lacks_is_cluster_not_ready(procs, bins, work_dir):
    """A deployment published after the bootstrap was rendered has a new component
    version, so a distilled cluster this static Envoy does not have: the filter
    answers 503 cluster_not_ready (JSON) instead of Envoy's empty 503, and every
    route whose cluster exists keeps working."""
    world = start_pull_world(procs, bins, work_dir)
    v9 = {
        "kind": "AppDeployment", "metadata": {"name": "hello-world-v9"},
        "spec": {"app": "hello-world", "version": "v9", "components": {
            # a new frontend version: a new cluster
            "frontend": {"version": "f9a0009",
                         "endpoints": [world.hello.upstream("frontend", "f3a0003").addr],
                         "routes": [{"match": {"pathPrefix": "/hello"}}],
                         "dependencies": ["backend"]},
            # a version the bootstrap has (hello-world-v3's backend)
            "backend": {"version": "b3a0003",
                        "endpoints": [world.hello.upstream("backend", "b3a0003").addr],
                        "routes": [{"match": {"pathPrefix": "/hello/backend"}}]}}},
    }
    r = world.cli("publish", "-f", str(harness.write_yaml(work_dir / "v9.yaml", v9)))
    assert r.code == 0, r.stderr
    explicit = "/dev/hello?kf-dep=hello-world-v9"
    cp.wait_for("v9 pulled", lambda: world.get(explicit).status != 404, timeout=10)
    time.sleep(AGREE_BOUND_S)  # every worker has the table now
    r = world.get(explicit)
    assert r.status == 503 and r.json is not None, r
    assert r.json["error"] == "cluster_not_ready", r
    assert "f9a0009" in r.json["message"], r
    # v9's backend has a cluster here: it routes
    r = world.get("/dev/hello/backend?kf-dep=hello-world-v9")
    assert r.status == 200 and r.json["kf"]["kf-component-version"] == "b3a0003", r

    r = world.cli("release", "hello-world-v9", "--virtual-env", "team-a")
    assert r.code == 0, r.stderr
    cp.wait_for("v9 released", lambda: world.get("/dev/hello").status == 503, timeout=10)
    time.sleep(AGREE_BOUND_S)  # every worker has the table now
    for _ in range(10):
        r = world.get("/dev/hello")
        assert r.status == 503 and r.json["error"] == "cluster_not_ready", r
        # other VEs and deployments keep working
        assert world.deployment("/dev/hello?kf-ve=joe") == "hello-world-main"
        assert world.deployment("/dev/hello?kf-dep=hello-world-v3") == "hello-world-v3"
    stats = world.envoy.stats("switchyard.error")
    assert stats.get("wasmcustom.switchyard.error.cluster_not_ready", 0) >= 11, stats


def test_polls_name_the_envoy_node(procs, bins, work_dir):
    """Every poll carries `x-switchyard-node: <node.id>` so the control plane can
    report pulling Envoys (here a stand-in API that records the headers)."""
    seen: list[str | None] = []

    class Api(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("x-switchyard-node"))
            self.send_response(503)
            self.end_headers()

        def log_message(self, *args):
            pass

    api = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    try:
        listen, admin = harness.free_ports(2)
        cfg = harness.render_envoy(bins, harness.ROOT / "examples/hello-world/resources.yaml",
                                   work_dir / "pull.yaml", f"127.0.0.1:{listen}",
                                   f"127.0.0.1:{admin}",
                                   ["--pull-from", f"127.0.0.1:{api.server_address[1]}"])
        envoy = harness.Envoy(bins.envoy, cfg, procs.log_dir, "envoy-pull", concurrency=2,
                              extra_args=["--service-node", "pull-node-1"])
        procs.add(envoy.start())
        envoy.wait_ready()
        cp.wait_for("a poll", lambda: seen, timeout=10)
        assert set(seen) == {"pull-node-1"}, seen
    finally:
        api.shutdown()


def test_a_refused_pull_token_is_a_failed_poll_and_the_last_table_stays(procs, bins, work_dir):
    """The filter sends its pull-role token (rendered into the bootstrap from
    `--pull-token-file`); once the token is revoked every poll is refused
    (401), counts as failed, and the last pulled table keeps routing."""
    world = start_pull_world(procs, bins, work_dir, concurrency=1)
    r = world.cli("release", "hello-world-v3", "--virtual-env", "team-a")
    assert r.code == 0, r.stderr
    cp.wait_for("v3 pulled", lambda: world.deployment() == "hello-world-v3", timeout=10)
    tokens = world.cli("token", "list", "--output", "json").json["tokens"]
    pull = [t["name"] for t in tokens if t["role"] == "pull"]
    assert len(pull) == 1, tokens
    failed_before = world.envoy.stats("switchyard.pull").get("wasmcustom.switchyard.pull.failed", 0)
    assert world.cli("token", "revoke", pull[0]).code == 0
    r = world.cli("release", "hello-world-v2", "--virtual-env", "team-a")
    assert r.code == 0, r.stderr
    cp.wait_for("refused polls", lambda: world.envoy.stats("switchyard.pull").get(
        "wasmcustom.switchyard.pull.failed", 0) >= failed_before + 2, timeout=10)
    assert [world.deployment() for _ in range(5)] == ["hello-world-v3"] * 5
    assert "poll refused (401)" in world.envoy.log_text()
    assert "API call with an unknown credential refused" in world.plane.log_text()


def test_the_pull_token_can_come_from_the_vm_environment(procs, bins, work_dir):
    """Istio passes secrets to a WasmPlugin through `vmConfig.env`: without
    `pull.token` in its settings the filter sends $SWITCHYARD_PULL_TOKEN of its
    VM (here the bootstrap's `vm_config.environment_variables`)."""
    hello = harness.start_hello_world(procs, bins, work_dir)
    xds, api, unused_listen, listen, admin = harness.free_ports(5)
    plane = cp.ControlPlane(bins, hello.resources_path, None, xds, api, unused_listen,
                            procs.log_dir)
    procs.add(plane.start())
    plane.wait_ready()
    token = harness.create_token(bins.switchyard, plane.server, "pull", "istio-envoy")
    p = subprocess.run([str(bins.switchyard), "render", "envoy", "--config",
                        str(hello.resources_path), "--wasm", str(bins.wasm),
                        "--listen", f"127.0.0.1:{listen}", "--admin", f"127.0.0.1:{admin}",
                        "--pull-from", f"127.0.0.1:{api}"],
                       cwd=harness.ROOT, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    boot = yaml.safe_load(p.stdout)
    assert token not in p.stdout
    for listener in boot["static_resources"]["listeners"]:
        for f in listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]:
            vm = f.get("typed_config", {}).get("config", {}).get("vm_config")
            if vm is not None:
                vm["environment_variables"] = {"key_values": {"SWITCHYARD_PULL_TOKEN": token}}
    cfg = harness.write_yaml(work_dir / "pull-env.yaml", boot)
    envoy = harness.start_envoy(procs, bins.envoy, cfg, "envoy-pull-env")
    cp.wait_for("a poll with the VM's token", lambda: plane.api("/v1/status")["pulling"],
                timeout=10)
    r = cp.cli(bins, plane.server, "release", "hello-world-v3", "--virtual-env", "team-a")
    assert r.code == 0, r.stderr
    url = f"http://127.0.0.1:{listen}/dev/hello"
    cp.wait_for("the pulled release serves /dev/hello",
                lambda: harness.get(url).json["kf"]["kf-deployment"] == "hello-world-v3", timeout=10)
    assert envoy.stats("switchyard.pull").get("wasmcustom.switchyard.pull.failed", 0) == 0
