"""End-to-end harness: build the binaries, start hello-world upstreams and Envoys
on free 127.0.0.1 ports, make requests, stop everything.

Everything here is plain functions and small classes; conftest.py wraps them in
pytest fixtures that stop every process at teardown. Waits are bounded.

Environment knobs:
  ENVOY                  path of the envoy binary (default: .venv/bin/envoy, then PATH)
  SWITCHYARD_SKIP_BUILD  "1": do not run cargo (the binaries must exist)
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, NamedTuple

import requests
import yaml

import ports

ROOT = Path(__file__).resolve().parents[2]
HELLO_WORLD = ROOT / "examples" / "hello-world"
LOCALHOST = "127.0.0.1"


# --------------------------------------------------------------------------- build


# Which build of the filter `render_envoy` renders: "wasm" (the proxy-wasm filter)
# or "native" (the Envoy dynamic module). conftest's `filter_build` fixture sets it
# for the test modules that run against both builds.
FILTER = "wasm"


def filter_stat(name: str) -> str:
    """The /stats name of the filter's counter `name` (`switchyard.error.<code>`,
    `switchyard.jwt.<note>`) with the build in use: the wasm filter's stats are
    under `wasmcustom.`, the native filter's under `dynamicmodulescustom.`."""
    return ("dynamicmodulescustom." if FILTER == "native" else "wasmcustom.") + name


def decision_stat(app: str, deployment: str, decision: str) -> str:
    """The /stats name of the routed-requests counter of (app, deployment,
    decision), with the build in use."""
    return filter_stat(f"switchyard.decision.{app}.{deployment}.{decision}")


@dataclass(frozen=True)
class Binaries:
    wasm: Path  # switchyard_filter.wasm
    native: Path  # libswitchyard_native.so (the filter as an Envoy dynamic module)
    switchyard: Path  # the CLI / control plane
    upstream: Path  # hello-world-upstream
    envoy: str


def target_dir() -> Path:
    """Cargo's target directory (honours CARGO_TARGET_DIR and .cargo/config)."""
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    return Path(json.loads(out)["target_directory"])


def find_envoy() -> str:
    candidates = [os.environ.get("ENVOY"), str(ROOT / ".venv" / "bin" / "envoy"), shutil.which("envoy")]
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return c
    raise RuntimeError("envoy not found: run scripts/install-envoy.sh or set ENVOY")


def cargo(*args: str) -> None:
    proc = subprocess.run(["cargo", *args], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"cargo {' '.join(args)} failed:\n{proc.stderr[-6000:]}")


def build(skip: bool | None = None) -> Binaries:
    """Build both builds of the filter (release) and the native binaries (debug), once."""
    if skip is None:
        skip = os.environ.get("SWITCHYARD_SKIP_BUILD") == "1"
    if not skip:
        # The filter as it ships: cargo, then wasm-opt (scripts/build-wasm.sh).
        proc = subprocess.run(["bash", str(ROOT / "scripts" / "build-wasm.sh"), "-q"], cwd=ROOT,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"scripts/build-wasm.sh failed:\n{proc.stderr[-6000:]}")
        proc = subprocess.run(["bash", str(ROOT / "scripts" / "build-native.sh"), "-q"], cwd=ROOT,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"scripts/build-native.sh failed:\n{proc.stderr[-6000:]}")
        cargo("build", "-p", "switchyard", "-p", "hello-world-upstream")
    t = target_dir()
    return Binaries(
        wasm=t / "wasm32-wasip1" / "release" / "switchyard_filter.wasm",
        native=t / "native" / "libswitchyard_native.so",
        switchyard=t / "debug" / "switchyard",
        upstream=t / "debug" / "hello-world-upstream",
        envoy=find_envoy(),
    )


# --------------------------------------------------------------------------- ports


free_port = ports.free_port
free_ports = ports.free_ports


def wait_port(port: int, timeout: float = 10.0, host: str = LOCALHOST) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")
            time.sleep(0.05)


# --------------------------------------------------------------------------- API credentials


def credential_path(server: str) -> Path:
    """Where `switchyard serve` leaves its admin token for the CLI of this user
    (control-xds/src/credentials.rs): $XDG_CONFIG_HOME/switchyard/credentials/HOST_PORT."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    authority = server.split("://", 1)[-1].split("/", 1)[0]
    key = "".join(c if (c.isascii() and c.isalnum()) or c in ".-" else "_"
                  for c in authority if c not in "[]")
    return Path(base) / "switchyard" / "credentials" / key


def admin_token(server: str) -> str | None:
    """The admin token `switchyard serve` at `server` left for this user (None yet)."""
    try:
        return credential_path(server).read_text().strip() or None
    except FileNotFoundError:
        return None


def create_token(switchyard: Path, server: str, role: str, name: str) -> str:
    """`switchyard token create --role ROLE --name NAME` with the admin credential."""
    p = subprocess.run([str(switchyard), "--server", server, "token", "create", "--role", role,
                        "--name", name], cwd=ROOT, capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        raise RuntimeError(f"token create failed ({p.returncode}): {p.stderr}")
    return p.stdout.strip()


_pull_tokens = 0


def _pull_token_args(switchyard: Path, out: Path, args: list[str]) -> list[str]:
    """For a pull-mode bootstrap (`--pull-from ADDR`) without a token: a new
    pull-role token from that control plane (none when it gives none, e.g. a
    stand-in API), so every pulling Envoy of a test authenticates."""
    global _pull_tokens
    if "--pull-from" not in args or "--pull-token-file" in args:
        return args
    server = "http://" + args[args.index("--pull-from") + 1]
    _pull_tokens += 1
    try:
        token = create_token(switchyard, server, "pull", f"pull-e2e-{os.getpid()}-{_pull_tokens}")
    except (RuntimeError, subprocess.TimeoutExpired):
        return args
    path = Path(out).with_suffix(".pull-token")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(token + "\n")
    return [*args, "--pull-token-file", str(path)]


# --------------------------------------------------------------------------- HTTP


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-cased names
    text: str
    json: Any  # parsed body, or None when it is not JSON

    def __repr__(self) -> str:
        return f"Reply({self.status}, headers={self.headers}, body={self.text[:400]!r})"


def request(method: str, url: str, headers: dict[str, str] | None = None,
            timeout: float = 10.0, **kwargs: Any) -> Reply:
    """One HTTP request (no retries, no redirects)."""
    r = requests.request(method, url, headers=headers, timeout=timeout,
                         allow_redirects=False, **kwargs)
    try:
        body = r.json()
    except ValueError:
        body = None
    return Reply(r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.text, body)


def get(url: str, headers: dict[str, str] | None = None, **kwargs: Any) -> Reply:
    return request("GET", url, headers, **kwargs)


# --------------------------------------------------------------------------- processes


class Process:
    """A background process whose output goes to a log file."""

    def __init__(self, name: str, argv: list[str], log_path: Path):
        self.name, self.argv, self.log_path = name, argv, log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Process":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        log.write(f"\n=== start: {' '.join(self.argv)}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=ROOT)
        log.close()  # the child holds its own descriptor
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_text()[-chars:]


class Processes:
    """Everything a test started; `stop_all` at teardown, newest first."""

    def __init__(self, log_dir: Path):
        self.log_dir = Path(log_dir)
        self.items: list[Any] = []

    def add(self, p: Any) -> Any:
        self.items.append(p)
        return p

    def stop_all(self) -> None:
        for p in reversed(self.items):
            try:
                p.stop()
            except Exception:  # keep stopping the others
                pass
        self.items.clear()


# --------------------------------------------------------------------------- upstreams


class Upstream(Process):
    """A running hello-world-upstream."""

    def __init__(self, binary: Path, component: str, version: str, port: int,
                 log_dir: Path, call_backend: str | None = None):
        self.component, self.version, self.port = component, version, port
        self.addr = f"{LOCALHOST}:{port}"
        self.url = f"http://{self.addr}"
        argv = [str(binary), "--listen", self.addr, "--component", component, "--version", version]
        if call_backend:
            argv += ["--call-backend", call_backend]
        super().__init__(f"{component}-{version}", argv,
                         Path(log_dir) / f"upstream-{component}-{version}-{port}.log")

    def wait_ready(self, timeout: float = 10.0) -> "Upstream":
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise RuntimeError(f"upstream {self.name} exited:\n{self.log_tail()}")
            try:
                if get(self.url + "/healthz", timeout=1).status == 200:
                    return self
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"upstream {self.name} not answering:\n{self.log_tail()}")
            time.sleep(0.05)


def start_upstream(procs: Processes, binary: Path, component: str, version: str,
                   port: int | None = None, call_backend: str | None = None) -> Upstream:
    """Start one hello-world upstream (on a free port unless given) and wait until it answers."""
    up = Upstream(binary, component, version, port or free_port(), procs.log_dir, call_backend)
    procs.add(up.start())
    return up.wait_ready()


def upstream_list(path: Path = HELLO_WORLD / "upstreams.txt") -> list[tuple[str, str, int]]:
    """(component, version, demo port) of every hello-world upstream."""
    rows = []
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            component, version, port = line.split()
            rows.append((component, version, int(port)))
    return rows


# --------------------------------------------------------------------------- resources


def load_resources(path: Path = HELLO_WORLD / "resources.yaml") -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def rewrite_endpoints(docs: Iterable[dict], port_map: dict[int, int]) -> list[dict]:
    """Copy of `docs` with every AppDeployment endpoint 127.0.0.1:OLD → 127.0.0.1:port_map[OLD]."""
    out = copy.deepcopy(list(docs))
    for d in out:
        if d.get("kind") != "AppDeployment":
            continue
        for comp in d["spec"]["components"].values():
            new = []
            for ep in comp["endpoints"]:
                host, _, port = ep.rpartition(":")
                new.append(f"{host}:{port_map.get(int(port), int(port))}")
            comp["endpoints"] = new
    return out


def write_yaml(path: Path, docs: list[dict] | dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(docs, dict):
        path.write_text(yaml.safe_dump(docs, sort_keys=False))
    else:
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


@dataclass
class HelloWorld:
    """The hello-world upstreams running on free ports, and matching resources."""

    upstreams: dict[tuple[str, str], Upstream]  # (component, version) → process
    port_map: dict[int, int]  # demo port → actual port
    resources: list[dict]  # resources.yaml with endpoints rewritten
    resources_path: Path

    def upstream(self, component: str, version: str) -> Upstream:
        return self.upstreams[(component, version)]


def start_hello_world(procs: Processes, bins: Binaries, work_dir: Path,
                      call_backend: str | dict[str, str] | None = None) -> HelloWorld:
    """Start every upstream of upstreams.txt on free ports; write the rewritten resources.

    call_backend: URL passed to every frontend as --call-backend (a str), or a
    map component → URL; None: no backend calls.
    """
    rows = upstream_list()
    ports = free_ports(len(rows))
    started, port_map = {}, {}
    for (component, version, demo_port), port in zip(rows, ports):
        cb = call_backend.get(component) if isinstance(call_backend, dict) else (
            call_backend if component == "frontend" else None)
        up = Upstream(bins.upstream, component, version, port, procs.log_dir, cb)
        procs.add(up.start())
        started[(component, version)] = up
        port_map[demo_port] = port
    for up in started.values():
        up.wait_ready()
    docs = rewrite_endpoints(load_resources(), port_map)
    path = write_yaml(Path(work_dir) / "resources.yaml", docs)
    return HelloWorld(started, port_map, docs, path)


# --------------------------------------------------------------------------- envoy


def admin_address_of(config_path: Path) -> str:
    """host:port of the admin listener in an Envoy bootstrap (YAML or JSON)."""
    cfg = yaml.safe_load(Path(config_path).read_text())
    sa = cfg["admin"]["address"]["socket_address"]
    return f"{sa['address']}:{sa['port_value']}"


class Envoy(Process):
    """An Envoy started from a bootstrap file, with its own dynamic base id."""

    def __init__(self, binary: str, config_path: Path, log_dir: Path, name: str = "envoy",
                 admin: str | None = None, extra_args: list[str] | None = None,
                 log_level: str = "warning", concurrency: int = 1):
        self.config_path = Path(config_path)
        self.admin = admin or admin_address_of(self.config_path)
        self.admin_url = f"http://{self.admin}"
        argv = [binary, "-c", str(self.config_path), "--use-dynamic-base-id",
                "--concurrency", str(concurrency), "-l", log_level, *(extra_args or [])]
        super().__init__(name, argv, Path(log_dir) / f"{name}.log")

    def wait_ready(self, timeout: float = 30.0) -> "Envoy":
        """Wait until admin /ready says LIVE; raise with the log tail otherwise."""
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited ({self.config_path}):\n{self.log_tail()}")
            try:
                r = get(self.admin_url + "/ready", timeout=1)
                last = f"{r.status} {r.text.strip()}"
                if r.status == 200 and r.text.strip() == "LIVE":
                    return self
            except requests.RequestException as e:
                last = str(e)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not ready after {timeout}s (last: {last}):\n"
                                   f"{self.log_tail()}")
            time.sleep(0.1)

    def restart(self, config_path: Path | None = None, timeout: float = 30.0) -> "Envoy":
        """Stop, optionally switch to another bootstrap, start again and wait for LIVE."""
        self.stop()
        if config_path is not None:
            self.config_path = Path(config_path)
            self.argv[self.argv.index("-c") + 1] = str(self.config_path)
            self.admin = admin_address_of(self.config_path)
            self.admin_url = f"http://{self.admin}"
        self.start()
        return self.wait_ready(timeout)

    # admin helpers
    def admin_get(self, path: str, **kwargs: Any) -> Reply:
        return get(self.admin_url + path, **kwargs)

    def stats(self, filter_regex: str | None = None) -> dict[str, int]:
        """Counters and gauges as {name: value} (histograms left out)."""
        params = {"filter": filter_regex} if filter_regex else None
        text = get(self.admin_url + "/stats", params=params).text
        out = {}
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            if value.strip().lstrip("-").isdigit():
                out[name] = int(value)
        return out

    def config_dump(self, resource: str | None = None) -> Any:
        params = {"resource": resource} if resource else None
        return get(self.admin_url + "/config_dump", params=params).json


def start_envoy(procs: Processes, binary: str, config_path: Path, name: str = "envoy",
                timeout: float = 30.0, **kwargs: Any) -> Envoy:
    """Start an Envoy from `config_path` and wait until it is LIVE."""
    e = Envoy(binary, config_path, procs.log_dir, name, **kwargs)
    procs.add(e.start())
    return e.wait_ready(timeout)


def render_envoy(bins: Binaries, config: Path, out: Path, listen: str, admin: str,
                 extra_args: list[str] | None = None) -> Path:
    """`switchyard render envoy` → bootstrap file `out` (static mode)."""
    extra_args = _pull_token_args(bins.switchyard, Path(out), list(extra_args or []))
    argv = [str(bins.switchyard), "render", "envoy", "--config", str(config),
            "--wasm", str(bins.wasm), "--filter", FILTER, "--native", str(bins.native),
            "--listen", listen, "--admin", admin, *extra_args]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr}")
    if "static_resources" not in proc.stdout:
        raise RuntimeError(f"{' '.join(argv)} printed no Envoy bootstrap:\n"
                           f"{proc.stdout[:2000]}\n{proc.stderr[-2000:]}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(proc.stdout)
    return out


# --------------------------------------------------------------------------- static bootstraps


def static_bootstrap(listen_port: int, admin_port: int, clusters: dict[str, list[str]],
                     routes: list[tuple[str, str]] | None = None,
                     http_filters: list[dict] | None = None) -> dict:
    """A minimal static Envoy bootstrap (no Switchyard involved), for harness tests.

    clusters: name → ["127.0.0.1:PORT", ...]; routes: [(path prefix, cluster)],
    default: "/" → the first cluster; http_filters go before the router.
    """
    def endpoint(ep: str) -> dict:
        host, _, port = ep.rpartition(":")
        return {"endpoint": {"address": {"socket_address": {"address": host, "port_value": int(port)}}}}

    routes = routes or [("/", next(iter(clusters)))]
    return {
        "admin": {"address": {"socket_address": {"address": LOCALHOST, "port_value": admin_port}}},
        "static_resources": {
            "listeners": [{
                "name": "ingress",
                "address": {"socket_address": {"address": LOCALHOST, "port_value": listen_port}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                                 "http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "ingress",
                        "route_config": {"name": "local", "virtual_hosts": [{
                            "name": "all", "domains": ["*"],
                            "routes": [{"match": {"prefix": p}, "route": {"cluster": c}}
                                       for p, c in routes],
                        }]},
                        "http_filters": [*(http_filters or []), {
                            "name": "envoy.filters.http.router",
                            "typed_config": {"@type": "type.googleapis.com/"
                                             "envoy.extensions.filters.http.router.v3.Router"},
                        }],
                    },
                }]}],
            }],
            "clusters": [{
                "name": name, "type": "STATIC", "connect_timeout": "1s",
                "load_assignment": {"cluster_name": name,
                                    "endpoints": [{"lb_endpoints": [endpoint(e) for e in eps]}]},
            } for name, eps in clusters.items()],
        },
    }


def wasm_http_filter(wasm_path: Path, configuration: str = "", name: str = "switchyard") -> dict:
    """An envoy.filters.http.wasm entry loading `wasm_path` (V8, plugin config as a string)."""
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": name, "root_id": name,
                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                  "value": configuration},
                "vm_config": {
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": str(wasm_path)}},
                },
            },
        },
    }


def start_switchyard_static(procs: Processes, bins: Binaries, resources_path: Path,
                            work_dir: Path, name: str = "envoy", timeout: float = 30.0) -> Envoy:
    """Render a static bootstrap for `resources_path` on free ports and start it.

    The returned Envoy has `.url` (http://127.0.0.1:LISTEN) besides `.admin_url`.
    """
    listen, admin = free_ports(2)
    cfg = render_envoy(bins, resources_path, Path(work_dir) / f"{name}.yaml",
                       f"{LOCALHOST}:{listen}", f"{LOCALHOST}:{admin}")
    e = start_envoy(procs, bins.envoy, cfg, name, timeout)
    e.url = f"http://{LOCALHOST}:{listen}"
    return e


class Answer(NamedTuple):
    """One request of a [`KeepAliveLoad`]."""
    at: float  # time.monotonic() when it was sent
    status: int
    path: str
    body: str | None  # kf-deployment of a 200, else the start of the body


class KeepAliveLoad:
    """Keep-alive clients looping over `paths` of `url` until the `with` block
    ends (bounded by `limit` s): every answer in `results`, every exception in
    `errors`."""

    def __init__(self, url: str, paths: list[str], clients: int = 3, limit: float = 120.0):
        self.url, self.paths, self.limit = url, paths, limit
        self.results: list[Answer] = []
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(clients)]

    def run(self, i: int) -> None:
        deadline = time.monotonic() + self.limit
        with requests.Session() as s:
            n = i
            while not self.stop.is_set() and time.monotonic() < deadline:
                path = self.paths[n % len(self.paths)]
                n += 1
                started = time.monotonic()
                try:
                    r = s.get(self.url + path, timeout=10)
                    body = (r.json().get("kf", {}).get("kf-deployment") if r.status_code == 200
                            else r.text[:200])
                    self.results.append(Answer(started, r.status_code, path, body))
                except Exception as e:  # noqa: BLE001 - every failure is reported
                    self.errors.append(f"{path} at +{started - self.t0:.2f}s: {e!r}")

    def bad(self) -> list[Answer]:
        return [a for a in self.results if a.status != 200]

    def __enter__(self) -> "KeepAliveLoad":
        self.t0 = time.monotonic()
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(20)
