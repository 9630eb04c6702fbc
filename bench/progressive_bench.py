#!/usr/bin/env python3
"""Crash → rollback, end to end (BENCHMARKS.md, "Progressive delivery").

Real `switchyard serve`, two Envoys on the ADS bootstrap (LRS to the same
server; both bind the genesis listener with SO_REUSEPORT, so the keep-alive
clients' connections spread over both), the real `.wasm`, the hello-world
upstreams. team-a's stable is hello-world-main; the Canary rolls out
hello-world-v3 with steps [10%, 50%, 100%] and a long step time. Per trial:
start the rollout, let it run 2 s healthy, then switch the canary's frontend to
answer 500 (`POST /_admin/fail?status=500`) at t0 and record

  - abort:       the abort decision's time (its event) − t0
  - last canary: the last response any client got from the canary − t0
                 (after it, no request reaches the canary on any Envoy)
  - failed stable requests (must be 0) and the canary's 500s seen by clients.

Then the canary is healed and the next trial starts it again (`canary start`
restores the match rules and weight). Load: CLIENTS keep-alive clients at
RATE requests/s each.

Last, one healthy rollout, unattended, with steps [1%, 10%, 50%, 100%],
STEP seconds per step (10; 3 with --smoke), minRequests 10 and a bake of STEP
seconds: its duration against step time × steps + bake.

  .venv/bin/python bench/progressive_bench.py [--trials 20] [--smoke]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))
import control_plane as cp  # noqa: E402
import harness  # noqa: E402

CANARY = "bench-canary"
STABLE, CANARY_DEP = "hello-world-main", "hello-world-v3"


class Clients:
    def __init__(self, url: str, clients: int, rate: float):
        self.url, self.period = url + "/dev/hello", 1.0 / rate
        self.answers: list[tuple[float, int, str | None]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(clients)]

    def run(self) -> None:
        s = requests.Session()
        nxt = time.time()
        while not self.stop.is_set():
            try:
                r = s.get(self.url, timeout=5)
                a = (time.time(), r.status_code, r.headers.get("kf-deployment"))
            except requests.RequestException:
                a = (time.time(), 0, None)
            with self.lock:
                self.answers.append(a)
            nxt += self.period
            time.sleep(max(0.0, nxt - time.time()))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(10)

    def since(self, t: float) -> list[tuple[float, int, str | None]]:
        with self.lock:
            return [a for a in self.answers if a[0] >= t]


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q * len(s) + 0.5)) - 1))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--rate", type=float, default=50.0, help="requests/s per client")
    ap.add_argument("--smoke", action="store_true", help="3 trials")
    args = ap.parse_args()
    trials = 3 if args.smoke else args.trials
    bins = harness.build()
    work = Path(tempfile.mkdtemp(prefix="switchyard-progressive-bench."))
    procs = harness.Processes(work / "logs")
    try:
        world = cp.start_world(procs, bins, work, node_id="envoy-1")
        boot2 = cp.ads_bootstrap(work / "envoy-2.yaml", world.plane.xds_port, harness.free_port(), "envoy-2")
        envoy2 = harness.start_envoy(procs, bins.envoy, boot2, "envoy-2")
        doc = {"kind": "Canary", "metadata": {"name": CANARY},
               "spec": {"virtualEnvironment": "team-a", "app": "hello-world", "deployment": CANARY_DEP,
                        "steps": ["10%", "50%", "100%"], "analysis": {"stepTime": "10m", "maxWait": "10m"}}}
        path = harness.write_yaml(work / "canary.yaml", [doc])
        assert world.cli("apply", "-f", str(path)).code == 0
        canary_up = world.hello.upstream("frontend", "f3a0003")
        rows = []
        with Clients(world.url, args.clients, args.rate) as load:
            for trial in range(trials):
                requests.post(canary_up.url + "/_admin/fail?status=0", timeout=5)
                r = world.cli("canary", "start", CANARY)
                assert r.code == 0, r.stderr
                time.sleep(2.0)
                t0 = time.time()
                requests.post(canary_up.url + "/_admin/fail?status=500", timeout=5)
                st = world.plane.wait_canary(CANARY, lambda s: s["phase"] == "aborted", "aborts", 30)
                time.sleep(2.0)
                after = load.since(t0)
                abort_at = [e["atUnixMs"] for e in st["events"] if e["phase"] == "aborted"][-1] / 1000
                canary = [a for a in after if a[2] == CANARY_DEP]
                last = max((a[0] for a in canary), default=t0)
                rows.append({
                    "abort": abort_at - t0,
                    "last": last - t0,
                    "canary_500": sum(1 for a in canary if a[1] == 500),
                    "stable_failed": sum(1 for a in after if a[2] != CANARY_DEP and a[1] != 200),
                    "requests": len(after),
                })
                print(f"trial {trial + 1}: abort {rows[-1]['abort']:.2f} s, last canary response "
                      f"{rows[-1]['last']:.2f} s, canary 500s {rows[-1]['canary_500']}, "
                      f"failed stable {rows[-1]['stable_failed']}", file=sys.stderr)
            requests.post(canary_up.url + "/_admin/fail?status=0", timeout=5)
            step = 3 if args.smoke else 10
            doc["spec"]["steps"] = ["1%", "10%", "50%", "100%"]
            doc["spec"]["analysis"] = {"stepTime": f"{step}s", "minRequests": 10, "bakeTime": f"{step}s"}
            harness.write_yaml(path, [doc])
            assert world.cli("apply", "-f", str(path)).code == 0
            t_start = time.time()
            assert world.cli("canary", "start", CANARY).code == 0
            done = world.plane.wait_canary(CANARY, lambda s: s["phase"] in ("succeeded", "aborted"),
                                           "ends", 30 * step)
            healthy_s = time.time() - t_start
            healthy_after = load.since(t_start)
        per_envoy = [e.stats("http\\..*downstream_rq_completed") for e in (world.envoy, envoy2)]
        ab, la = [r["abort"] for r in rows], [r["last"] for r in rows]
        print(f"trials: {trials}; clients {args.clients} × {args.rate:g} req/s (keep-alive), canary at 10%, "
              f"2 Envoys (requests completed: {[sum(p.values()) for p in per_envoy]})")
        print("| | median | p99 (max) |")
        print("|---|---:|---:|")
        print(f"| 5xx switched on → abort decided | {statistics.median(ab):.2f} s | {pct(ab, 0.99):.2f} s |")
        print(f"| 5xx switched on → last response from the canary (any Envoy) | "
              f"{statistics.median(la):.2f} s | {pct(la, 0.99):.2f} s |")
        print(f"canary 500s seen by clients per trial: median {statistics.median(r['canary_500'] for r in rows)}, "
              f"max {max(r['canary_500'] for r in rows)}; failed stable requests: "
              f"{sum(r['stable_failed'] for r in rows)}")
        print(f"healthy rollout [1% → 10% → 50% → 100%], stepTime {step} s, minRequests 10, bake {step} s, "
              f"{args.clients * args.rate:g} req/s: {done['phase']} in {healthy_s:.1f} s "
              f"(step time × steps + bake = {5 * step} s); non-200 answers during it: "
              f"{sum(1 for a in healthy_after if a[1] != 200)}")
        ok = (pct(la, 0.99) <= 3.0 and sum(r["stable_failed"] for r in rows) == 0
              and done["phase"] == "succeeded")
        return 0 if ok else 1
    finally:
        procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())
