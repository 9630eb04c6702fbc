"""Several `switchyard serve` replicas on etcd (issue 12): a real 3-member etcd
cluster (etcd_cluster.py), 3 real replicas with `--store etcd://…`, 2 real
Envoys whose ADS bootstraps (`switchyard render envoy --ads A,B,C`) list every
replica in their own order (so they start on different replicas), real
hello-world upstreams, and keep-alive load through the Envoys.

Both Envoys listen on the same genesis port (Envoy sets SO_REUSEPORT): the
kernel spreads the load's connections over them, and what each Envoy served is
read from its own stats and config dump.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import yaml

import control_plane as cp
import harness
import certs
from etcd_cluster import EtcdCluster, EtcdTls
from harness import LOCALHOST, ROOT

MAIN, V2, V3 = "hello-world-main", "hello-world-v2", "hello-world-v3"
TYPES = ("CDS", "EDS", "ECDS", "LDS", "RDS")


class Replica(cp.ControlPlane):
    """`switchyard serve --store etcd://…` with its own log; the admin token
    is the one the first replica made (`Replicas.token`)."""

    def __init__(self, world: "Replicas", i: int, xds: int, api: int):
        super().__init__(world.bins, world.hello.resources_path, None, xds, api, world.listen,
                         world.procs.log_dir,
                         extra_args=["--store", world.etcd.url() + world.store_query, "--replica-id", f"r{i}",
                                     *world.serve_args])
        self.world, self.id = world, f"r{i}"
        self.name = f"switchyard-{self.id}"
        self.log_path = world.procs.log_dir / f"{self.name}.log"

    @property
    def token(self) -> str | None:
        return self.world.token or harness.admin_token(self.server)


@dataclass
class Replicas:
    bins: harness.Binaries
    procs: harness.Processes
    work: Path
    etcd: EtcdCluster
    hello: harness.HelloWorld
    listen: int
    replicas: list[Replica] = field(default_factory=list)
    envoys: list[harness.Envoy] = field(default_factory=list)
    token: str | None = None
    serve_args: list[str] = field(default_factory=list)
    store_query: str = ""

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.listen}"

    def start_replica(self, i: int) -> Replica:
        r = self.replicas[i]
        self.procs.add(r.start())
        r.wait_ready(30)
        if self.token is None:
            self.token = harness.admin_token(r.server)
        return r

    def cli(self, replica: Replica, *args: str) -> cp.CliResult:
        env = dict(os.environ, SWITCHYARD_TOKEN=self.token or "")
        argv = [str(self.bins.switchyard), "--server", replica.server, "--who", "e2e", *args]
        t0 = time.monotonic()
        p = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
        return cp.CliResult(p.returncode, p.stdout, p.stderr, time.monotonic() - t0)

    def status(self, replica: Replica) -> dict:
        return replica.api("/v1/status")

    def status_history(self, replica: Replica) -> list[dict]:
        """team-a's release records, oldest first."""
        return replica.api("/v1/history?virtualEnv=team-a")["history"]

    def envoy_on(self, node_id: str, replica: Replica | None = None) -> dict | None:
        """The Envoy `node_id` as `status` (of `replica`, default any alive) shows it."""
        for r in [replica] if replica else [x for x in self.replicas if x.alive()]:
            for n in self.status(r)["envoys"]:
                if n["id"] == node_id and n["connected"]:
                    return n
        return None

    def acked(self, node_id: str, version: str, replica: Replica | None = None) -> dict | None:
        n = self.envoy_on(node_id, replica)
        if n and all(n["types"].get(t, {}).get("ackedVersion") == version for t in TYPES):
            return n
        return None


def render_ads_bootstrap(w: Replicas, path: Path, order: list[Replica], node_id: str) -> Path:
    """`switchyard render envoy --ads A,B,C` (what the README tells users to run)."""
    admin = harness.free_port()
    ads = ",".join(f"{LOCALHOST}:{r.xds_port}" for r in order)
    p = subprocess.run([str(w.bins.switchyard), "render", "envoy", "--ads", ads,
                        "--admin", f"{LOCALHOST}:{admin}", "--node-id", node_id],
                       cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    path.write_text(p.stdout)
    return path


def start_replicas(procs, bins, work: Path, n: int = 3,
                   start_order: tuple[int, ...] | None = None, envoys: bool = True,
                   serve_args: tuple[str, ...] = (), store_query: str = "") -> Replicas:
    """etcd (3 members), upstreams, n replicas (started in `start_order`: the
    first one makes the state and the admin token, and usually leads) and 2
    Envoys: envoy-1 prefers r0, envoy-2 prefers r1. Returns once both Envoys
    serve /dev/hello (without `envoys`: once the replicas run)."""
    etcd = EtcdCluster(procs, work / "etcd", 3).start()
    hello = harness.start_hello_world(procs, bins, work)
    w = Replicas(bins, procs, work, etcd, hello, harness.free_port(), serve_args=list(serve_args),
                 store_query=store_query)
    for i in range(n):
        xds, api = harness.free_ports(2)
        w.replicas.append(Replica(w, i, xds, api))
    order = list(start_order or range(n))
    first = w.start_replica(order[0])
    # the first replica leads (it is alone when it takes the etcd lease)
    cp.wait_for(f"{first.id} leads",
                lambda: [x["id"] for x in w.status(first)["replicas"] if x["leader"]] == [first.id],
                30)
    for i in order[1:]:
        w.start_replica(i)
    if not envoys:
        return w
    r = w.replicas
    orders = [r, r[1:] + r[:1]]
    for k, order in enumerate(orders, start=1):
        boot = render_ads_bootstrap(w, work / f"envoy-{k}.yaml", order, f"envoy-{k}")
        w.envoys.append(harness.start_envoy(procs, bins.envoy, boot, f"envoy-{k}"))
    version = w.status(r[0])["version"]
    for k in (1, 2):
        cp.wait_for(f"envoy-{k} ACKs {version}", lambda k=k: w.acked(f"envoy-{k}", version), 60)
    cp.wait_for("the genesis listener serves /dev/hello",
                lambda: harness.get(w.url + "/dev/hello", timeout=5).status == 200, 30)
    return w


def Load(url: str) -> harness.KeepAliveLoad:
    """Six keep-alive clients on /dev/hello (bounded by 240 s)."""
    return harness.KeepAliveLoad(url, ["/dev/hello"], clients=6, limit=240.0)


def filter_config(envoy: harness.Envoy) -> str:
    """The genesis filter's plugin configuration as this Envoy has it (ECDS)."""
    for c in envoy.config_dump("ecds_filters").get("configs", []):
        cfg = c["ecds_filter"]["typed_config"]["config"]
        if cfg["name"] == "switchyard":
            return cfg["configuration"]["value"]
    return ""


def released_in(envoy: harness.Envoy, deployment: str) -> bool:
    """Whether the Envoy's routing table releases `deployment` in team-a."""
    table = json.loads(filter_config(envoy) or "{}")
    for r in table.get("resources", []):
        if r.get("kind") == "VirtualEnvironment" and r["metadata"]["name"] == "team-a":
            return r["spec"]["release"]["apps"].get("hello-world") == deployment
    return False


def served_by_each_envoy(w: Replicas, deployment: str, timeout: float = 60.0) -> dict[str, int]:
    """New connections to the shared port until each Envoy's stats show that it
    served `deployment`'s frontend (the kernel spreads connections over them)."""
    frontend = {MAIN: "f1a0001", V3: "f3a0003"}[deployment]  # (v2 shares main's frontend)

    def served(e: harness.Envoy) -> int:
        stats = e.stats(frontend)
        return sum(v for k, v in stats.items()
                   if k.startswith("cluster.") and k.endswith(".upstream_rq_total"))

    deadline = time.monotonic() + timeout
    while True:
        counts = {e.name: served(e) for e in w.envoys}
        if all(counts.values()):
            return counts
        if time.monotonic() > deadline:
                raise TimeoutError(f"not every Envoy served {deployment}: {counts}")
        for _ in range(5):
            r = harness.get(w.url + "/dev/hello", timeout=5, headers={"connection": "close"})
            assert r.status == 200 and r.json["kf"].get("kf-deployment") == deployment, r


def test_a_release_through_one_replica_is_served_by_both_envoys(procs, bins, work_dir):
    """(a) Under load: a release through r0 is live on both Envoys (the one on r1
    included: `live` waits for every replica's Envoys), both serve it, and no
    request fails; the time to live is reported."""
    w = start_replicas(procs, bins, work_dir)
    s = w.status(w.replicas[2])
    holders = {n["id"]: n["replica"] for n in s["envoys"]}
    assert holders == {"envoy-1": "r0", "envoy-2": "r1"}, s["envoys"]
    assert sorted(r["id"] for r in s["replicas"]) == ["r0", "r1", "r2"]
    with Load(w.url) as load:
        time.sleep(0.5)
        r = w.cli(w.replicas[0], "-o", "json", "release", V3, "--virtual-env", "team-a")
        assert r.code == 0, r.stderr
        live = r.json["live"]
        assert live["complete"] and live["connected"] == 2, live
        assert {e["id"]: e["replica"] for e in live["envoys"]} == holders, live
        per_envoy = {e["id"]: e["liveAfterMs"] for e in live["envoys"]}
        cp.wait_for("requests see v3", lambda: load.results and load.results[-1].body == V3, 15)
        time.sleep(0.5)
    for e in w.envoys:
        assert released_in(e, V3), e.name
    generation = r.json["generation"]
    for rep in w.replicas:
        cp.wait_for(f"{rep.id} serves generation {generation}",
                    lambda rep=rep: w.status(rep)["servedVersion"] == str(generation), 15)
    counts = served_by_each_envoy(w, V3)
    assert not load.errors, load.errors[:5]
    assert not load.bad(), load.bad()[:5]
    print(f"\n(a) release through r0: live on 2/2 Envoys (on r0 and r1) in "
          f"{live['elapsedMs']} ms (CLI {r.seconds * 1000:.0f} ms; per Envoy, from the start of "
          f"the wait: {per_envoy} ms); {len(load.results)} requests, "
          f"0 failed; v3 served by {counts}")


def test_killing_the_replica_of_an_envoy_fails_no_request(procs, bins, work_dir):
    """(b) kill -9 of the replica envoy-1 is connected to (r0): no request fails,
    envoy-1 reconnects to its next replica, and a later release (through r2)
    reaches it."""
    w = start_replicas(procs, bins, work_dir)
    with Load(w.url) as load:
        time.sleep(0.5)
        t_kill = time.monotonic()
        w.replicas[0].kill()
        def moved():
            # (r0's own entry stays listed until its lease expires)
            n = w.envoy_on("envoy-1", w.replicas[1])
            return n if n and n["replica"] in ("r1", "r2") else None
        n = cp.wait_for("envoy-1 reconnects to another replica", moved, 60, interval=0.1)
        reconnect = time.monotonic() - t_kill
        r = w.cli(w.replicas[2], "-o", "json", "release", V3, "--virtual-env", "team-a")
        assert r.code == 0, r.stderr
        assert r.json["live"]["complete"] and r.json["live"]["connected"] == 2, r.json["live"]
        cp.wait_for("requests see v3", lambda: load.results and load.results[-1].body == V3, 15)
        time.sleep(0.5)
    assert n["replica"] in ("r1", "r2"), n
    assert released_in(w.envoys[0], V3)
    served_by_each_envoy(w, V3)
    assert not load.errors, load.errors[:5]
    assert not load.bad(), load.bad()[:5]
    gone = cp.wait_for("r0 leaves the replica list",
                       lambda: "r0" not in [x["id"] for x in w.status(w.replicas[1])["replicas"]],
                       30)
    print(f"\n(b) kill -9 of envoy-1's replica: envoy-1 on {n['replica']} after "
          f"{reconnect:.1f} s; {len(load.results)} requests, 0 failed; later release live on "
          f"2/2 in {r.json['live']['elapsedMs']} ms; r0 unlisted: {bool(gone)}")


def test_concurrent_releases_through_two_replicas_lose_nothing(procs, bins, work_dir):
    """(c) 50 releases of team-a at once, 25 through r0 and 25 through r1: every
    one is recorded, the history is linear (each record's `previous` is the
    record before it), and every replica and both Envoys end on the last one."""
    w = start_replicas(procs, bins, work_dir)
    before = len(w.cli(w.replicas[0], "-o", "json", "history", "--virtual-env", "team-a")
                 .json["history"])
    results: list[cp.CliResult] = []
    lock = threading.Lock()

    def release(i: int) -> None:
        dep = (V2, V3, MAIN)[i % 3]
        r = w.cli(w.replicas[i % 2], "--no-wait", "-o", "json", "release", dep,
                  "--virtual-env", "team-a")
        with lock:
            results.append(r)

    t0 = time.monotonic()
    threads = [threading.Thread(target=release, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    took = time.monotonic() - t0
    failed = [r for r in results if r.code != 0]
    assert len(results) == 50 and not failed, [r.stderr for r in failed][:3]
    recorded = [rec for r in results for rec in r.json.get("releases", [])]
    history = w.cli(w.replicas[1], "-o", "json", "history", "--virtual-env", "team-a") \
        .json["history"]
    new = history[before:]
    # none lost: every release that changed something is in the history, once
    assert sorted(x["id"] for x in recorded) == sorted(x["id"] for x in new)
    assert len({x["id"] for x in new}) == len(new)
    # linear: each record follows the one before it
    for prev, rec in zip(history, history[1:]):
        assert rec["previous"] == prev["deployment"], (prev, rec)
    final = history[-1]["deployment"]
    generation = max(r.json["generation"] for r in results)
    for rep in w.replicas:
        def agrees(rep=rep):
            s = w.status(rep)
            team_a = next(x for x in s["releases"] if x["virtualEnv"] == "team-a")
            return s["generation"] == generation and team_a["apps"]["hello-world"] == final
        cp.wait_for(f"{rep.id} is at generation {generation} releasing {final}", agrees, 30)
    for e in w.envoys:
        cp.wait_for(f"{e.name} routes by {final}", lambda e=e: released_in(e, final), 30)
    print(f"\n(c) 50 concurrent releases through r0 and r1 in {took:.1f} s: "
          f"{len(recorded)} recorded (the others released what was already released), "
          f"history linear, every replica at generation {generation}, both Envoys on {final}")


def release_until_it_works(w: Replicas, replica: Replica, deployment: str,
                           timeout: float = 90.0) -> cp.CliResult:
    """`release` through `replica` until it succeeds (etcd coming back)."""
    return cp.wait_for(f"a release of {deployment} through {replica.id} succeeds",
                       lambda: (lambda r: r if r.code == 0 else None)(
                           w.cli(replica, "-o", "json", "release", deployment,
                                 "--virtual-env", "team-a")),
                       timeout, interval=0.5)


def test_etcd_members_down_and_back(procs, bins, work_dir):
    """(d) One etcd member of 3 killed: releases and tokens keep working through
    every replica. All of etcd down: the Envoys keep routing by the last
    snapshot, reads answer, writes answer a clear JSON 503; when etcd returns,
    releases work again and reach both Envoys."""
    w = start_replicas(procs, bins, work_dir)
    with Load(w.url) as load:
        time.sleep(0.5)
        # one member of 3 down (the cluster keeps its quorum)
        w.etcd.kill(0)
        r = w.cli(w.replicas[1], "-o", "json", "release", V3, "--virtual-env", "team-a")
        assert r.code == 0, r.stderr
        assert r.json["live"]["complete"] and r.json["live"]["connected"] == 2, r.json["live"]
        # a token made through r0 works on r2
        made = requests.post(w.replicas[0].server + "/v1/tokens",
                             headers=w.replicas[0].headers(),
                             json={"name": "reader", "role": "read"}, timeout=10)
        assert made.status_code == 200, made.text
        token = made.json()["token"]
        seen = requests.get(w.replicas[2].server + "/v1/status",
                            headers={"authorization": f"Bearer {token}"}, timeout=10)
        assert seen.status_code == 200, seen.text

        # every replica has the release (a replica whose watch used the killed
        # member catches up through another one)
        for rep in w.replicas:
            cp.wait_for(f"{rep.id} at generation {r.json['generation']}",
                        lambda rep=rep: w.status(rep)["generation"] == r.json["generation"], 30)

        # all of etcd down
        w.etcd.stop_all()
        down_at = time.monotonic()
        for rep in w.replicas:
            assert w.status(rep)["generation"] == r.json["generation"]
        answers: list = []
        writer = threading.Thread(target=lambda: answers.append(requests.post(
            w.replicas[2].server + "/v1/release",
            headers={**w.replicas[2].headers(), "Idempotency-Key": "d-main"},
            json={"deployment": MAIN, "virtualEnv": "team-a"}, timeout=30)))
        writer.start()
        time.sleep(0.3)
        # reads answer from the last known state while that write waits for etcd
        t_read = time.monotonic()
        assert w.status(w.replicas[2])["generation"] == r.json["generation"]
        read_took = time.monotonic() - t_read
        writer.join(30)
        # the write failed and etcd could not be asked whether it was made:
        # not "nothing changed" (that may be false), but "unknown", with its id
        unknown = answers[0]
        assert unknown.status_code == 503, unknown.text
        assert unknown.json()["error"] == "outcome_unknown", unknown.text
        assert unknown.json()["change"] == "d-main", unknown.text
        time.sleep(1.0)
        served_while_down = [x for x in load.results if x.at > down_at]
        assert served_while_down and all(x.status == 200 and x.body == V3 for x in served_while_down)

        # etcd back: the same change, sent again, is made at most once and
        # answers its real outcome
        w.etcd.restart_all()
        back = time.monotonic()
        retried = cp.wait_for("the retried change answers", lambda: (lambda a: a if a.status_code == 200 else None)(
            requests.post(w.replicas[0].server + "/v1/release",
                          headers={**w.replicas[0].headers(), "Idempotency-Key": "d-main"},
                          json={"deployment": MAIN, "virtualEnv": "team-a"}, timeout=30)), 90, interval=0.5)
        assert retried.json()["change"] == "d-main" and len(retried.json()["releases"]) == 1, retried.text
        r2 = release_until_it_works(w, w.replicas[2], V2)
        recovered = time.monotonic() - back
        cp.wait_for("r1 has d-main's record once",
                    lambda: [h["change"] for h in w.status_history(w.replicas[1])
                             if h.get("change") == "d-main"] == ["d-main"], 15)
        assert r2.json["live"]["complete"] and r2.json["live"]["connected"] == 2, r2.json["live"]
        cp.wait_for("requests see v2", lambda: load.results[-1].body == V2, 15)
        time.sleep(0.5)
    assert not load.errors, load.errors[:5]
    assert not load.bad(), load.bad()[:5]
    for rep in w.replicas:
        cp.wait_for(f"{rep.id} at generation {r2.json['generation']}",
                    lambda rep=rep: w.status(rep)["generation"] == r2.json["generation"], 30)
    assert read_took < 2.0, read_took
    print(f"\n(d) 1 of 3 etcd members down: release live on 2/2 in "
          f"{r.json['live']['elapsedMs']} ms; all etcd down: {len(served_while_down)} requests "
          f"served by the last snapshot, a read during a pending write answered in "
          f"{read_took * 1000:.0f} ms, writes 503 outcome_unknown; etcd back: the retried "
          f"change answered its outcome (made once), a release "
          f"succeeded {recovered:.1f} s after the restart; {len(load.results)} requests, 0 failed")


TRIALS = 50


def test_answers_stay_true_while_the_etcd_majority_dies(procs, bins, work_dir):
    """(f) Releases back to back through two replicas (raw HTTP with an
    Idempotency-Key, and the CLI) while a random majority of etcd is killed
    and started again, TRIALS times. Every answer is true: a release answered
    made is in the history exactly once, under its change id; a change
    answered "nothing changed" is never in it (also later); a change answered
    outcome_unknown, sent again with its key, answers its real outcome and is
    in the history at most once."""
    import random
    rng = random.Random(20)
    # a short store timeout (1 s: the default is 5 s) so that outages outlast
    # some writes and their settling: every kind of answer occurs
    w = start_replicas(procs, bins, work_dir, n=2, envoys=False,
                       serve_args=("--history-limit", "100000"), store_query="?timeout=1s")
    stop = threading.Event()
    answers: list[tuple[str, str, str, int, dict]] = []  # (key, deployment, via, status, body)
    settled: dict[str, dict] = {}  # key → the answer when an unknown one was sent again
    targets = [V2, V3, MAIN]

    def unknown(status: int, body: dict) -> bool:
        return status == 0 or (status == 503 and body.get("error") == "outcome_unknown")

    def post(rep: Replica, key: str, dep: str) -> tuple[int, dict]:
        try:
            a = requests.post(rep.server + "/v1/release",
                              headers={**rep.headers(), "Idempotency-Key": key},
                              json={"deployment": dep, "virtualEnv": "team-a"}, timeout=30)
            return a.status_code, a.json()
        except (requests.RequestException, ValueError) as e:
            return 0, {"error": "no_answer", "message": str(e)}

    def writer() -> None:
        n = 0
        while not stop.is_set():
            rep, dep = w.replicas[n % 2], targets[n % 3]
            if n % 4 == 3:  # the CLI: its own key, retried by itself
                r = w.cli(rep, "-o", "json", "--no-wait", "release", dep, "--virtual-env", "team-a")
                body = r.json if r.code == 0 else {"error": "cli", "message": r.stderr}
                answers.append((body.get("change") or f"cli-{n}", dep, "cli",
                                200 if r.code == 0 else 1, body))
            else:
                key = f"k{n}"
                status, body = post(rep, key, dep)
                answers.append((key, dep, "http", status, body))
                # as the CLI does: an unknown outcome is asked again, with the key
                t_unknown = time.monotonic()
                while unknown(status, body) and time.monotonic() - t_unknown < 45:
                    time.sleep(0.25)
                    status, body = post(w.replicas[(n + 1) % 2], key, dep)
                if not unknown(status, body) and answers[-1][3:] != (status, body):
                    settled[key] = body
            n += 1

    thread = threading.Thread(target=writer)
    t0 = time.monotonic()
    thread.start()
    killed_leader = 0
    try:
        for _ in range(TRIALS):
            time.sleep(rng.uniform(0.05, 0.4))
            before = len(answers)
            leader_port = None
            for m in w.etcd.members:
                try:
                    st = requests.post(m.client_url + "/v3/maintenance/status", json={}, timeout=1).json()
                    if st.get("leader") == st.get("header", {}).get("member_id"):
                        leader_port = m.client_port
                except (requests.RequestException, ValueError):
                    pass
            chosen = w.etcd.kill_majority(rng)
            killed_leader += any(w.etcd.members[i].client_port == leader_port for i in chosen)
            time.sleep(rng.uniform(0.2, 1.5))
            w.etcd.restart_all(60)
            # the writer keeps going: at least one answer per trial
            cp.wait_for("a write answered", lambda: len(answers) > before, 40, interval=0.05)
    finally:
        stop.set()
        thread.join(60)
    took = time.monotonic() - t0
    # late writes (an entry in a dead leader's log) had their chance to land
    time.sleep(2.0)

    # every change answered unknown, sent again with its key: its real outcome
    before_retry = {h.get("change") for h in w.status_history(w.replicas[0])}
    for key, dep, via, status, body in answers:
        if via == "http" and unknown(status, body) and key not in settled:
            status, again = post(w.replicas[0], key, dep)
            assert status == 200, (key, status, again)
            settled[key] = again

    history = w.status_history(w.replicas[0])
    by_change: dict[str, int] = {}
    for h in history:
        if h.get("change"):
            by_change[h["change"]] = by_change.get(h["change"], 0) + 1
    assert all(n == 1 for n in by_change.values()), {k: n for k, n in by_change.items() if n > 1}
    made = nothing = unchanged = cli_failed = 0
    for key, dep, via, status, body in answers:
        if status == 200 and body.get("releases"):
            made += 1
            assert by_change.get(body["change"]) == 1, (key, via, body)
            assert body["releases"][0]["deployment"] == dep, (key, body)
        elif status == 200:
            unchanged += 1
            assert key not in by_change, (key, via, body)
        elif via == "cli":
            cli_failed += 1  # (its key is the CLI's own; it said why on stderr)
        elif unknown(status, body):
            again = settled[key]
            assert by_change.get(key, 0) == (1 if again.get("releases") else 0), (key, again)
        else:
            # refused or unavailable: "nothing changed" must be true
            nothing += 1
            assert key not in by_change, (key, via, status, body)
    assert made >= TRIALS // 2, (made, len(answers))
    print(f"\n(f) {TRIALS} etcd majority kills ({killed_leader} with the leader) in {took:.0f} s: "
          f"{len(answers)} answers — {made} made, {unchanged} unchanged, {len(settled)} "
          f"unknown ({sum(1 for k in settled if k in before_retry)} of them had been made; "
          f"sent again, {sum(1 for a in settled.values() if a.get('releases'))} answer made), {nothing} nothing changed, {cli_failed} CLI failures; every one true by the history "
          f"({len(history)} records, each change at most once)")


def test_every_replica_restarted_state_comes_back_from_etcd(procs, bins, work_dir):
    """(e) Every replica stopped and started again: the Envoys keep routing
    meanwhile, the replicas come back with the state in etcd (not --config),
    and the next release reaches both Envoys."""
    w = start_replicas(procs, bins, work_dir)
    with Load(w.url) as load:
        time.sleep(0.5)
        r = w.cli(w.replicas[0], "-o", "json", "release", V3, "--virtual-env", "team-a")
        assert r.code == 0, r.stderr
        generation = r.json["generation"]
        for rep in w.replicas:
            rep.kill()
        time.sleep(1.0)
        for i in range(len(w.replicas)):
            w.start_replica(i)
        for rep in w.replicas:
            s = w.status(rep)
            team_a = next(x for x in s["releases"] if x["virtualEnv"] == "team-a")
            assert s["generation"] == generation and team_a["apps"]["hello-world"] == V3, s
        for k in (1, 2):
            cp.wait_for(f"envoy-{k} reconnected", lambda k=k: w.acked(f"envoy-{k}", str(generation)),
                        60)
        r2 = w.cli(w.replicas[1], "-o", "json", "release", MAIN, "--virtual-env", "team-a")
        assert r2.code == 0, r2.stderr
        assert r2.json["live"]["complete"] and r2.json["live"]["connected"] == 2, r2.json["live"]
        cp.wait_for("requests see main", lambda: load.results[-1].body == MAIN, 15)
        time.sleep(0.5)
    assert not load.errors, load.errors[:5]
    assert not load.bad(), load.bad()[:5]
    print(f"\n(e) every replica restarted: state back from etcd (generation {generation}); "
          f"{len(load.results)} requests, 0 failed; next release live on 2/2 in "
          f"{r2.json['live']['elapsedMs']} ms")


def test_one_leader_and_it_moves_when_it_dies(procs, bins, work_dir):
    """Singleton work (the canary driver) runs on the one replica holding the
    etcd lease; when it is killed another replica leads within a few seconds."""
    w = start_replicas(procs, bins, work_dir)

    def leaders(rep: Replica) -> list[str] | None:
        ids = [x["id"] for x in w.status(rep)["replicas"] if x["leader"]]
        return ids if len(ids) == 1 else None

    first = cp.wait_for("one leader", lambda: leaders(w.replicas[0]), 30)[0]
    leader = next(x for x in w.replicas if x.id == first)
    others = [x for x in w.replicas if x is not leader]
    # Prometheus sees it too
    assert "switchyard_leader 1" in leader.metrics()
    assert "switchyard_leader 0" in others[0].metrics()
    assert "switchyard_replicas 3" in leader.metrics()
    t0 = time.monotonic()
    leader.kill()
    new = cp.wait_for("another leader", lambda: (lambda l: l if l and l[0] != first else None)(
        leaders(others[0])), 30, interval=0.1)[0]
    took = time.monotonic() - t0
    assert new in [x.id for x in others]
    assert took < 15, took
    print(f"\nleader {first} killed: {new} leads after {took:.1f} s")


CANARY = "hello-world-v3-canary"


def test_the_leader_drives_a_canary_from_every_replicas_envoys(procs, bins, work_dir):
    """The canary driver runs on the leader only, and judges from the load
    reports of every replica's Envoys: here the leader (r2) has no Envoy at all,
    so the rollout can only progress on what r0 and r1 forward."""
    w = start_replicas(procs, bins, work_dir, start_order=(2, 0, 1))

    def leader():
        ids = [x["id"] for x in w.status(w.replicas[0])["replicas"] if x["leader"]]
        return ids[0] if len(ids) == 1 else None

    assert cp.wait_for("one leader", leader, 30) == "r2"
    assert all(n["replica"] != "r2" for n in w.status(w.replicas[2])["envoys"])
    doc = {"kind": "Canary", "metadata": {"name": CANARY},
           "spec": {"virtualEnvironment": "team-a", "app": "hello-world", "deployment": V3,
                    "steps": ["1%", "25%", "100%"],
                    "analysis": {"stepTime": "2s", "minRequests": 2, "bakeTime": "2s"}}}
    path = harness.write_yaml(work_dir / "canary.yaml", [doc])
    r = w.cli(w.replicas[0], "apply", "-f", str(path))
    assert r.code == 0, r.stderr
    with Load(w.url) as load:
        time.sleep(0.5)
        r = w.cli(w.replicas[1], "canary", "start", CANARY)
        assert r.code == 0, r.stderr
        done = cp.wait_for("the rollout ends",
                           lambda: (lambda s: s if s["phase"] in ("succeeded", "aborted") else None)(
                               w.replicas[2].canary(CANARY)), 120, interval=0.2)
        time.sleep(0.3)
    assert done["phase"] == "succeeded", done
    assert done["counts"]["canary"]["requests"] > 0 and done["counts"]["stable"]["requests"] > 0
    assert not load.errors and not load.bad(), (load.errors[:3], load.bad()[:3])
    history = w.cli(w.replicas[0], "-o", "json", "history", "--virtual-env", "team-a") \
        .json["history"]
    assert history[-1]["deployment"] == V3
    print(f"\ncanary driven by r2 (no Envoy of its own) from r0's and r1's load reports: "
          f"{done['counts']['canary']['requests']} canary and "
          f"{done['counts']['stable']['requests']} stable requests counted; succeeded")


def test_etcd_over_tls_with_a_client_certificate(procs, bins, work_dir):
    """(g) An etcd that requires client certificates (`--client-cert-auth`):
    a replica with `?ca=…&cert=…&key=…` keeps its state there and releases;
    etcd refuses a client without a certificate, and a replica without one
    does not start (a clear error, nothing served)."""
    ca = certs.make_ca(work_dir / "certs", "etcd-ca")
    tls = EtcdTls(ca.cert, ca.issue("etcd", server_ip=LOCALHOST), ca.issue("switchyard", client=True))
    etcd = EtcdCluster(procs, work_dir / "etcd", 1, tls=tls).start()
    hello = harness.start_hello_world(procs, bins, work_dir)
    with_cert = (f"?ca={tls.ca}&cert={tls.client.cert}&key={tls.client.key}")

    def replica(name: str, query: str) -> cp.ControlPlane:
        xds, api = harness.free_ports(2)
        rep = cp.ControlPlane(bins, hello.resources_path, None, xds, api, harness.free_port(),
                              procs.log_dir, extra_args=["--store", etcd.url() + query,
                                                         "--insecure-no-auth"])
        rep.name = name
        rep.log_path = procs.log_dir / f"{name}.log"
        return rep

    good = replica("switchyard-tls", with_cert)
    procs.add(good.start())
    good.wait_ready(30)
    r = cp.cli(bins, good.server, "-o", "json", "--no-wait", "release", V2, "--virtual-env", "team-a")
    assert r.code == 0, r.stderr
    assert r.json["releases"][0]["deployment"] == V2, r.json

    # etcd itself refuses a TLS client without a certificate
    member = etcd.members[0]
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(member.client_url + "/health", verify=str(tls.ca), timeout=5)
    # and a replica without one cannot read the state: it stops with an error
    bad = replica("switchyard-no-cert", f"?ca={tls.ca}&timeout=2s")
    procs.add(bad.start())
    cp.wait_for("the replica without a certificate exits", lambda: not bad.alive(), 30)
    assert "unavailable" in bad.log_tail(), bad.log_tail()
    # the good replica still serves its release from etcd
    assert good.api("/v1/history?virtualEnv=team-a")["history"][-1]["deployment"] == V2
    print(f"\n(g) etcd with --client-cert-auth: a replica with ca/cert/key released {V2} "
          f"(stored in etcd over TLS); a client without a certificate refused by etcd; "
          f"a replica without one stopped: {bad.log_tail().strip().splitlines()[-1][:160]}")
