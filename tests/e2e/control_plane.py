"""End-to-end helpers for the control plane: `switchyard serve`, the CLI talking to
it, and Envoys on envoy/bootstrap-ads.yaml (with test ports and node ids).

Plain functions and classes, like harness.py; everything started goes through a
harness.Processes so the test's teardown stops it.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import requests
import yaml

import harness
from harness import LOCALHOST, ROOT

ADS_BOOTSTRAP = ROOT / "envoy" / "bootstrap-ads.yaml"


def ads_bootstrap(path: Path, xds_port: int, admin_port: int, node_id: str = "switchyard-envoy",
                  delta: bool = False) -> Path:
    """envoy/bootstrap-ads.yaml with the test's xDS and admin ports and node id, written to
    `path`; with `delta`, ADS speaks delta xDS (`api_type: DELTA_GRPC`, what
    `switchyard render envoy --ads ... --delta` renders)."""
    cfg = yaml.safe_load(ADS_BOOTSTRAP.read_text())
    if delta:
        cfg["dynamic_resources"]["ads_config"]["api_type"] = "DELTA_GRPC"
    cfg["node"]["id"] = node_id
    cfg["admin"]["address"]["socket_address"]["port_value"] = admin_port
    for c in cfg["static_resources"]["clusters"]:
        if c["name"] == "xds_cluster":
            for ep in c["load_assignment"]["endpoints"][0]["lb_endpoints"]:
                ep["endpoint"]["address"]["socket_address"]["port_value"] = xds_port
    return harness.write_yaml(path, cfg)


class ControlPlane(harness.Process):
    """A running `switchyard serve`."""

    def __init__(self, bins: harness.Binaries, config: Path | None, state_dir: Path | None,
                 xds_port: int, api_port: int, listen_port: int, log_dir: Path,
                 extra_args: list[str] | None = None, wasm: Path | None = None):
        self.bins = bins
        self.xds_port, self.api_port, self.listen_port = xds_port, api_port, listen_port
        self.server = f"http://{LOCALHOST}:{api_port}"
        self.requests_kw: dict[str, Any] = {}  # e.g. verify=CA for an https API
        argv = [str(bins.switchyard), "serve",
                "--xds-addr", f"{LOCALHOST}:{xds_port}", "--api-addr", f"{LOCALHOST}:{api_port}",
                "--wasm", str(wasm or bins.wasm), "--listen", f"{LOCALHOST}:{listen_port}",
                "--filter", harness.FILTER, "--native", str(bins.native)]
        if config is not None:
            argv += ["--config", str(config)]
        if state_dir is not None:
            argv += ["--state", str(state_dir)]
        argv += extra_args or []
        super().__init__("switchyard-serve", argv, Path(log_dir) / "switchyard-serve.log")

    @property
    def token(self) -> str | None:
        """The admin token this server left for the CLI (harness.admin_token)."""
        return harness.admin_token(self.server)

    def headers(self) -> dict[str, str]:
        token = self.token
        return {"authorization": f"Bearer {token}"} if token else {}

    def wait_ready(self, timeout: float = 15.0) -> "ControlPlane":
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise RuntimeError(f"switchyard serve exited:\n{self.log_tail()}")
            try:
                if requests.get(self.server + "/v1/status", headers=self.headers(),
                                timeout=1, **self.requests_kw).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"switchyard serve not answering:\n{self.log_tail()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: a crash, no graceful shutdown."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None

    def api(self, path: str) -> Any:
        """GET `path` of the API with the admin credential; the JSON answer."""
        r = requests.get(self.server + path, headers=self.headers(), timeout=5, **self.requests_kw)
        r.raise_for_status()
        return r.json()

    def metrics(self) -> str:
        """The Prometheus text of `GET /metrics`."""
        r = requests.get(self.server + "/metrics", headers=self.headers(), timeout=5,
                         **self.requests_kw)
        r.raise_for_status()
        return r.text

    def canary(self, name: str) -> dict:
        """A progressive rollout's status (`GET /v1/canaries/NAME`)."""
        return self.api(f"/v1/canaries/{name}")

    def wait_canary(self, name: str, check: Callable[[dict], Any], what: str,
                    timeout: float = 30.0) -> dict:
        """Poll the rollout's status until `check(status)` is truthy; returns the status."""
        def poll():
            s = self.canary(name)
            return s if check(s) else None
        return wait_for(f"Canary {name}: {what}", poll, timeout, interval=0.05)


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str
    seconds: float  # wall time of the call

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


def cli(bins: harness.Binaries, server: str, *args: str, who: str = "e2e") -> CliResult:
    """Run `switchyard --server SERVER --who WHO ARGS...`."""
    argv = [str(bins.switchyard), "--server", server, "--who", who, *args]
    t0 = time.monotonic()
    p = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
    return CliResult(p.returncode, p.stdout, p.stderr, time.monotonic() - t0)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.02) -> Any:
    """Poll `check` until it returns something truthy (exceptions count as not yet)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = check()
            if value:
                return value
            last = value
        except Exception as e:  # noqa: BLE001 - polling: anything is "not yet"
            last = e
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout}s (last: {last!r})")
        time.sleep(interval)


@dataclass
class World:
    """hello-world upstreams, `switchyard serve` and one Envoy on the ADS bootstrap."""

    bins: harness.Binaries
    procs: harness.Processes
    work: Path
    hello: harness.HelloWorld
    plane: ControlPlane
    envoy: harness.Envoy
    state_dir: Path
    node_id: str

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.plane.listen_port}"

    def cli(self, *args: str) -> CliResult:
        return cli(self.bins, self.plane.server, *args)

    def get(self, path: str, **kw: Any) -> harness.Reply:
        return harness.get(self.url + path, timeout=5, **kw)

    def deployment(self, path: str = "/dev/hello") -> str | None:
        """The deployment that served `path` (None unless 200)."""
        r = self.get(path)
        return r.json["kf"].get("kf-deployment") if r.status == 200 else None

    def restart_plane(self, wasm: Path | None = None) -> ControlPlane:
        """A new `switchyard serve` on the same ports and state (the old one must be
        stopped), optionally serving another Wasm path."""
        old = self.plane
        self.plane = ControlPlane(self.bins, self.hello.resources_path, self.state_dir,
                                  old.xds_port, old.api_port, old.listen_port, self.procs.log_dir,
                                  wasm=wasm)
        self.procs.add(self.plane.start())
        return self.plane.wait_ready()

    def envoy_node(self) -> dict | None:
        for n in self.plane.api("/v1/status")["envoys"]:
            if n["id"] == self.node_id:
                return n
        return None

    def wait_acked(self, version: str | None = None, timeout: float = 30.0) -> dict:
        """Wait until the Envoy is connected and has ACKed `version` (default: the
        current one) for every type; returns its status."""
        def check():
            v = version or self.plane.api("/v1/status")["version"]
            n = self.envoy_node()
            if not n or not n["connected"]:
                return None
            types = n["types"]
            ok = all(types.get(t, {}).get("ackedVersion") == v for t in ("CDS", "EDS", "ECDS", "LDS", "RDS"))
            return n if ok else None
        return wait_for(f"Envoy {self.node_id} ACKs", check, timeout)


def start_world(procs: harness.Processes, bins: harness.Binaries, work: Path,
                node_id: str = "switchyard-envoy", internal: bool = False,
                delta: bool = False, concurrency: int = 1) -> World:
    """Upstreams, `switchyard serve --config hello-world --state`, and an Envoy on the
    ADS bootstrap; returns once /dev/hello is served. With `internal`, Envoy also
    gets the internal listener (`World.internal_url`) and frontends call backends
    through it. With `delta`, the Envoy speaks delta xDS; `concurrency` is its
    number of worker threads."""
    xds, api, listen, admin, internal_port = harness.free_ports(5)
    internal_url = f"http://{LOCALHOST}:{internal_port}"
    hello = harness.start_hello_world(procs, bins, work, call_backend=internal_url if internal else None)
    state_dir = work / "state"
    extra = ["--internal-listen", f"{LOCALHOST}:{internal_port}"] if internal else None
    plane = ControlPlane(bins, hello.resources_path, state_dir, xds, api, listen, procs.log_dir,
                         extra_args=extra)
    procs.add(plane.start())
    plane.wait_ready()
    boot = ads_bootstrap(work / "bootstrap-ads.yaml", xds, admin, node_id, delta=delta)
    envoy = harness.start_envoy(procs, bins.envoy, boot, "envoy-ads", concurrency=concurrency)
    world = World(bins, procs, work, hello, plane, envoy, state_dir, node_id)
    world.internal_url = internal_url
    wait_for("the genesis listener serves /dev/hello", lambda: world.deployment() is not None, 30)
    return world
