#!/usr/bin/env python3
"""The etcd store under churn (BENCHMARKS.md, "Store"). Standard library only.

A real 3-member etcd (Debian's etcd 3.4, default quota 2 GiB), one
`switchyard serve --store etcd://…` replica on the hello-world resources
(no Envoy: what is measured is the store), and N releases at full speed
(`POST /v1/release` alternating hello-world-v2 / -v3 in team-a over one
keep-alive connection). Every N/20 releases: each member's database size
(`dbSize`, and `dbSizeInUse`), its alarms, and the state document's size in
etcd. Prints a JSON report: the curve, failed writes, alarms, bytes written per
release (the document's size: a release rewrites it).

    python3 bench/store_bench.py --switchyard target/release/switchyard --releases 10000
"""

import argparse
import base64
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
from ports import free_port  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def etcd_post(port, path, body, timeout=5):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.load(r)


def start_etcd(tmp, n=3):
    bin_ = shutil.which("etcd") or "/usr/bin/etcd"
    ports = [(free_port(), free_port()) for _ in range(n)]
    initial = ",".join(f"m{i}=http://127.0.0.1:{p}" for i, (_, p) in enumerate(ports))
    procs = []
    for i, (c, p) in enumerate(ports):
        log = open(os.path.join(tmp, f"etcd{i}.log"), "w")
        procs.append(subprocess.Popen(
            [bin_, "--name", f"m{i}", "--data-dir", os.path.join(tmp, f"m{i}"),
             "--listen-client-urls", f"http://127.0.0.1:{c}", "--advertise-client-urls", f"http://127.0.0.1:{c}",
             "--listen-peer-urls", f"http://127.0.0.1:{p}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{p}",
             "--initial-cluster", initial, "--initial-cluster-token", f"bench-{ports[0][0]}",
             "--heartbeat-interval", "100", "--election-timeout", "1000", "--log-level", "warn", "--logger", "zap"],
            stdout=log, stderr=subprocess.STDOUT))
    clients = [c for c, _ in ports]
    deadline = time.time() + 60
    while True:
        try:
            if all(etcd_post(c, "/v3/maintenance/status", {}).get("leader") for c in clients):
                return procs, clients
        except OSError:
            pass
        if time.time() > deadline:
            sys.exit("etcd did not start")
        time.sleep(0.2)


def sample(clients, prefix, done, t0):
    sizes = [etcd_post(c, "/v3/maintenance/status", {}) for c in clients]
    alarms = etcd_post(clients[0], "/v3/maintenance/alarm", {"action": "GET"}).get("alarms", [])
    key = base64.b64encode(f"{prefix}/state".encode()).decode()
    kvs = etcd_post(clients[0], "/v3/kv/range", {"key": key}).get("kvs", [])
    doc = len(base64.b64decode(kvs[0]["value"])) if kvs else 0
    return {"releases": done, "s": round(time.time() - t0, 1),
            "db_mib": round(max(int(s["dbSize"]) for s in sizes) / 2**20, 1),
            "db_in_use_mib": round(max(int(s.get("dbSizeInUse", 0)) for s in sizes) / 2**20, 1),
            "revision": int(sizes[0]["header"]["revision"]), "alarms": alarms, "document_bytes": doc}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--switchyard", default="target/debug/switchyard")
    ap.add_argument("--releases", type=int, default=10000)
    ap.add_argument("--out")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="switchyard-store-bench.")
    etcd, clients = start_etcd(tmp)
    prefix = "bench"
    api, xds = free_port(), free_port()
    url = "etcd://" + ",".join(f"127.0.0.1:{c}" for c in clients) + f"/{prefix}"
    log = open(os.path.join(tmp, "serve.log"), "w")
    t_start = time.time()
    serve = subprocess.Popen(
        [args.switchyard, "serve", "--store", url, "--config", os.path.join(ROOT, "examples/hello-world/resources.yaml"),
         "--api-addr", f"127.0.0.1:{api}", "--xds-addr", f"127.0.0.1:{xds}", "--insecure-no-auth",
         "--listen", f"127.0.0.1:{free_port()}"], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    report = {"releases": args.releases, "failed": [], "curve": []}
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{api}/healthz", timeout=2):
                    break
            except OSError:
                if time.time() > deadline or serve.poll() is not None:
                    sys.exit("switchyard serve did not start: " + open(os.path.join(tmp, "serve.log")).read()[-2000:])
                time.sleep(0.1)
        report["start_to_api_s"] = round(time.time() - t_start, 2)
        conn = http.client.HTTPConnection("127.0.0.1", api, timeout=60)
        every = max(1, args.releases // 20)
        t0 = time.time()
        report["curve"].append(sample(clients, prefix, 0, t0))
        for i in range(args.releases):
            dep = "hello-world-v2" if i % 2 == 0 else "hello-world-v3"
            body = json.dumps({"deployment": dep, "virtualEnv": "team-a"})
            try:
                conn.request("POST", "/v1/release", body, {"content-type": "application/json"})
                r = conn.getresponse()
                text = r.read()
                if r.status != 200:
                    report["failed"].append({"i": i, "status": r.status, "body": text[:300].decode(errors="replace")})
            except OSError as e:
                report["failed"].append({"i": i, "error": str(e)})
                conn = http.client.HTTPConnection("127.0.0.1", api, timeout=60)
            if (i + 1) % every == 0:
                report["curve"].append(sample(clients, prefix, i + 1, t0))
                c = report["curve"][-1]
                print(f"{c['releases']:>6} releases {c['s']:>7.1f} s  db {c['db_mib']:>7.1f} MiB "
                      f"(in use {c['db_in_use_mib']:.1f})  document {c['document_bytes']} B  alarms {c['alarms']}",
                      file=sys.stderr)
        took = time.time() - t0
        report["seconds"] = round(took, 1)
        report["releases_per_s"] = round(args.releases / took, 1)
        time.sleep(12)  # one more compaction round
        report["after_12s"] = sample(clients, prefix, args.releases, t0)
        report["bytes_per_release"] = report["curve"][-1]["document_bytes"]
        report["max_db_mib"] = max(c["db_mib"] for c in report["curve"] + [report["after_12s"]])
        report["alarms"] = report["after_12s"]["alarms"]
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(10)
        except subprocess.TimeoutExpired:
            serve.kill()
        for p in etcd:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    report["failed_count"] = len(report["failed"])
    report["failed"] = report["failed"][:5]
    text = json.dumps(report, indent=1)
    if args.out:
        open(args.out, "w").write(text)
    print(text)
    ok = not report["failed_count"] and not report["alarms"] and report["max_db_mib"] <= 256
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
