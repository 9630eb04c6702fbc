"""A real etcd cluster for the replica tests: N members of Debian's `etcd`
(3.4, `etcd-server`; scripts/install-envoy.sh installs it when missing) on
127.0.0.1 ports from ports.py, each with a temporary data directory.

    cluster = EtcdCluster(procs, work_dir / "etcd", members=3).start()
    cluster.url("switchyard")   # etcd://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/switchyard
    cluster.kill(0)             # kill -9 of one member
    cluster.kill_majority(rng)  # kill -9 of a random majority (often with the leader)
    cluster.stop_all(); cluster.restart_all()

Every member goes through the test's harness.Processes, so teardown stops them.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import requests

import certs
import harness
from harness import LOCALHOST


def etcd_binary() -> str:
    found = shutil.which("etcd") or ("/usr/bin/etcd" if Path("/usr/bin/etcd").exists() else None)
    if not found:
        raise RuntimeError("etcd not found: run scripts/install-envoy.sh (installs etcd-server)")
    return found


@dataclass(frozen=True)
class EtcdTls:
    """Clients reach the members over TLS and must present a certificate
    issued by `ca` (`--client-cert-auth`); `server` is the members' own."""
    ca: Path
    server: "certs.Pair"
    client: "certs.Pair"


class EtcdMember(harness.Process):
    def __init__(self, name: str, client_port: int, peer_port: int, data_dir: Path,
                 initial_cluster: str, token: str, log_dir: Path, tls: EtcdTls | None = None):
        self.client_port, self.peer_port = client_port, peer_port
        self.tls = tls
        self.client_url = f"{'https' if tls else 'http'}://{LOCALHOST}:{client_port}"
        argv = [etcd_binary(), "--name", name, "--data-dir", str(data_dir),
                "--listen-client-urls", self.client_url, "--advertise-client-urls", self.client_url,
                "--listen-peer-urls", f"http://{LOCALHOST}:{peer_port}",
                "--initial-advertise-peer-urls", f"http://{LOCALHOST}:{peer_port}",
                "--initial-cluster", initial_cluster, "--initial-cluster-state", "new",
                "--initial-cluster-token", token,
                # a loaded test machine: be patient before electing a new leader
                "--heartbeat-interval", "100", "--election-timeout", "1000",
                "--log-level", "warn", "--logger", "zap"]
        if tls:
            argv += ["--cert-file", str(tls.server.cert), "--key-file", str(tls.server.key),
                     "--client-cert-auth", "--trusted-ca-file", str(tls.ca)]
        super().__init__(name, argv, Path(log_dir) / f"{name}.log")

    def kill(self) -> None:
        """SIGKILL: a crash."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def healthy(self) -> bool:
        try:
            kw = {"verify": str(self.tls.ca), "cert": (str(self.tls.client.cert), str(self.tls.client.key))} \
                if self.tls else {}
            r = requests.get(self.client_url + "/health", timeout=1, **kw)
            return r.status_code == 200 and r.json().get("health") == "true"
        except (requests.RequestException, ValueError):
            return False


class EtcdCluster:
    def __init__(self, procs: harness.Processes, work: Path, members: int = 3,
                 tls: EtcdTls | None = None):
        self.procs = procs
        ports = harness.free_ports(2 * members)
        names = [f"etcd{i}" for i in range(members)]
        initial = ",".join(f"{n}=http://{LOCALHOST}:{ports[2 * i + 1]}" for i, n in enumerate(names))
        work.mkdir(parents=True, exist_ok=True)
        token = f"switchyard-test-{ports[0]}"  # one cluster: the same token for every member
        self.members = [EtcdMember(n, ports[2 * i], ports[2 * i + 1], work / f"{n}.data", initial,
                                   token, procs.log_dir, tls) for i, n in enumerate(names)]

    def url(self, prefix: str = "switchyard") -> str:
        hosts = ",".join(f"{LOCALHOST}:{m.client_port}" for m in self.members)
        return f"etcd://{hosts}/{prefix}"

    def start(self, timeout: float = 60.0) -> "EtcdCluster":
        for m in self.members:
            if not m.alive():
                self.procs.add(m.start())
        return self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = 60.0) -> "EtcdCluster":
        """Until every running member answers /health (the cluster has a leader)."""
        deadline = time.monotonic() + timeout
        while True:
            running = [m for m in self.members if m.alive()]
            if running and all(m.healthy() for m in running):
                return self
            for m in self.members:
                if m.proc is not None and not m.alive():
                    raise RuntimeError(f"{m.name} exited:\n{m.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError("etcd not healthy:\n" + "\n".join(m.log_tail(1500) for m in self.members))
            time.sleep(0.1)

    def kill(self, i: int) -> None:
        self.members[i].kill()

    def kill_majority(self, rng) -> list[int]:
        """kill -9 of a random majority of the members; returns their indexes."""
        n = len(self.members)
        chosen = sorted(rng.sample(range(n), n // 2 + 1))
        for i in chosen:
            self.members[i].kill()
        return chosen

    def stop_all(self) -> None:
        for m in self.members:
            m.kill()

    def restart_all(self, timeout: float = 60.0) -> "EtcdCluster":
        """Start every stopped member again on its data directory."""
        return self.start(timeout)
