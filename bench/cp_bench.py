#!/usr/bin/env python3
"""Control-plane benchmarks (BENCHMARKS.md, part 4). Standard library only.

release: `switchyard serve` (small bench table, endpoints on a local upstream) and
  one Envoy on the ADS bootstrap; N times `switchyard release DEP --virtual-env VE`
  alternating between two deployments, timing from the command's start to the
  first response whose `kf-deployment` names DEP (polled over one keep-alive
  connection). Also the CLI's own round trip.
large: `switchyard serve` on the large table without Envoy: time until the API
  answers, serve's RSS, and the time of `release` commands (store validation,
  snapshot build, persistence) at that size.

TODO: 200 ADS client streams receiving one change (needs a small gRPC client).
"""

import argparse
import http.client
import http.server
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request


# Listening ports from below the ephemeral range (see tests/e2e/ports.py).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
from ports import free_port  # noqa: E402


def addr(port):
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


class Ok(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("content-length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, *a):
        pass


def resources_file(table, endpoint, path):
    cfg = json.loads(json.load(open(table))["plugin_config"])
    for r in cfg["resources"]:
        if r["kind"] == "AppDeployment":
            for c in r["spec"]["components"].values():
                c["endpoints"] = [endpoint]
    with open(path, "w") as f:
        f.write("\n---\n".join(json.dumps(r) for r in cfg["resources"]))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if pred():
                return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"timed out waiting for {what}")


def api_up(port):
    # /healthz needs no credential (the CLI finds the admin one serve left)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
        return r.status == 200


def serve(args, config, tmp, xds, api, listen):
    log = open(os.path.join(tmp, "serve.log"), "w")
    return subprocess.Popen(
        [args.switchyard, "serve", "--config", config, "--xds-addr", f"127.0.0.1:{xds}",
         "--api-addr", f"127.0.0.1:{api}", "--wasm", os.path.abspath(args.filter_wasm),
         "--listen", f"127.0.0.1:{listen}"], stdout=log, stderr=subprocess.STDOUT)


def release(args, api, dep, ve):
    """Runs `switchyard release` (it waits until every connected Envoy ACKed);
    returns the "live on N/N Envoys in X ms" it reports: (N/N, X) or None."""
    out = subprocess.run([args.switchyard, "release", dep, "--virtual-env", ve, "--server",
                          f"http://127.0.0.1:{api}"], check=True, capture_output=True, text=True)
    m = re.search(r"live on (\d+/\d+) Envoys in (\d+) ms", out.stdout + out.stderr)
    return (m.group(1), int(m.group(2))) if m else None


def pct(vals, p):
    s = sorted(vals)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def release_latency(args, tmp):
    up = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=up.serve_forever, daemon=True).start()
    config = os.path.join(tmp, "small.yaml")
    resources_file(args.table, f"127.0.0.1:{up.server_address[1]}", config)
    xds, api, listen, admin = free_port(), free_port(), free_port(), free_port()
    cp = serve(args, config, tmp, xds, api, listen)
    envoy = None
    try:
        wait(lambda: api_up(api), 60, "switchyard serve")
        boot = {"node": {"id": "switchyard-envoy", "cluster": "switchyard"},
                "dynamic_resources": {
                    "ads_config": {"api_type": "GRPC", "transport_api_version": "V3",
                                   "grpc_services": [{"envoy_grpc": {"cluster_name": "xds_cluster"}}]},
                    "cds_config": {"resource_api_version": "V3", "ads": {}},
                    "lds_config": {"resource_api_version": "V3", "ads": {}}},
                "static_resources": {"clusters": [{
                    "name": "xds_cluster", "type": "STATIC", "connect_timeout": "1s",
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {"http2_protocol_options": {}}}},
                    "load_assignment": {"cluster_name": "xds_cluster", "endpoints": [
                        {"lb_endpoints": [{"endpoint": {"address": addr(xds)}}]}]}}]},
                "admin": {"address": addr(admin)}}
        bpath = os.path.join(tmp, "bootstrap.json")
        json.dump(boot, open(bpath, "w"))
        envoy = subprocess.Popen([args.envoy, "-c", bpath, "--concurrency", "1",
                                  "--disable-hot-restart", "-l", "warning"],
                                 stdout=open(os.path.join(tmp, "envoy.log"), "w"), stderr=subprocess.STDOUT)
        table = json.load(open(args.table))
        path = table["path"]
        conn = [http.client.HTTPConnection("127.0.0.1", listen, timeout=5)]

        def deployment():
            try:
                conn[0].request("GET", path)
                r = conn[0].getresponse()
                r.read()
                return r.getheader("kf-deployment")
            except (OSError, http.client.HTTPException):
                conn[0].close()
                conn[0] = http.client.HTTPConnection("127.0.0.1", listen, timeout=5)
                time.sleep(0.01)
                return None

        wait(lambda: deployment() is not None, 60, "Envoy to route through the filter")
        ve, app = "env0-ve0", path.split("/")[2]
        deps = [f"{app}-d1", f"{app}-d2"]
        total, cli, live, live_on = [], [], [], set()
        for i in range(args.releases):
            dep = deps[i % 2]
            t0 = time.perf_counter()
            said = release(args, api, dep, ve)
            t1 = time.perf_counter()
            if said:
                live_on.add(said[0])
                live.append(said[1])
            while deployment() != dep:
                if time.perf_counter() - t0 > 30:
                    sys.exit(f"release {i}: {dep} not served after 30 s")
            t2 = time.perf_counter()
            total.append((t2 - t0) * 1e3)
            cli.append((t1 - t0) * 1e3)
        return {"releases": args.releases,
                "to_first_response_ms": {"p50": statistics.median(total), "p99": pct(total, 99),
                                         "min": min(total), "max": max(total)},
                "cli_round_trip_ms": {"p50": statistics.median(cli), "p99": pct(cli, 99)},
                # What the CLI itself reports: "live on N/N Envoys in X ms".
                "cli_live_ms": ({"p50": statistics.median(live), "p99": pct(live, 99), "min": min(live),
                                 "max": max(live), "live_on": sorted(live_on)} if live else None)}
    finally:
        if envoy:
            stop(envoy)
        stop(cp)
        up.shutdown()


def large(args, tmp):
    config = os.path.join(tmp, "large.yaml")
    resources_file(args.large_table, "127.0.0.1:1", config)
    xds, api, listen = free_port(), free_port(), free_port()
    t0 = time.perf_counter()
    cp = serve(args, config, tmp, xds, api, listen)
    try:
        wait(lambda: api_up(api), 600, "switchyard serve (large table)")
        start = time.perf_counter() - t0
        rss_start = rss_kib(cp.pid)
        times = []
        for i in range(args.large_releases):
            t = time.perf_counter()
            release(args, api, f"app0-d{1 + i % 2}", "env0-ve0")
            times.append((time.perf_counter() - t) * 1e3)
        return {"start_to_api_s": start, "rss_mib": rss_start / 1024,
                "rss_after_releases_mib": rss_kib(cp.pid) / 1024,
                "release_ms": {"p50": statistics.median(times), "min": min(times), "max": max(times),
                               "n": len(times)}}
    finally:
        stop(cp)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--switchyard", required=True)
    p.add_argument("--envoy", required=True)
    p.add_argument("--filter-wasm", required=True)
    p.add_argument("--table", required=True)
    p.add_argument("--large-table")
    p.add_argument("--releases", type=int, default=50)
    p.add_argument("--large-releases", type=int, default=5)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="swy-cp-bench-")
    out = {"release": release_latency(args, tmp)}
    print(f"  release → first response: {out['release']}", file=sys.stderr)
    if args.large_table:
        out["large"] = large(args, tmp)
        print(f"  large table: {out['large']}", file=sys.stderr)
    json.dump(out, open(args.out, "w"), indent=1)
    shutil.rmtree(tmp, ignore_errors=True)  # kept (logs) only when a step failed


if __name__ == "__main__":
    main()
