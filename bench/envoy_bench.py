#!/usr/bin/env python3
"""The filter inside Envoy, measured side by side (BENCHMARKS.md, part 2 and 3).

One Envoy (--concurrency 1, 127.0.0.1) with one listener per variant, all routing
to the same direct-response upstream listener in that same Envoy:

  A  Envoy's own header route (cluster_header), no filter: the limit
  C  an empty proxy-wasm filter (bench/wasm-probe, empty config): the wasm floor
  D  Envoy's Lua filter: read two headers, set the cluster header, clear the route cache
  S  the Switchyard filter with the bench table (contextKeys, canaries, JWT keys, vars)
  H  (full run only) the probe doing exactly S's host calls without S's engine
  G  (full run only) the probe reading the header map once
  N  (full run only) S without contextKeys (no kf-context signing)
  L  (full run only) S with settings metadataHeaders: lean, responseHeaders: false
  S-native, L-native  (with --filter-native) S and L with the native filter (the
     Envoy dynamic module, filter/native) instead of the wasm one

wrk loads them in turn (A C D S A C D S ...) with keep-alive; per run the Envoy
process's utime+stime delta (from /proc/PID/stat) is divided by the requests served.
Prints one JSON document with every run and the medians.

Callgrind mode (--callgrind N, the headline instrument): Envoy's own binary runs
under valgrind's callgrind with instrumentation off; per variant, after a warm-up on
one keep-alive connection, instrumentation is switched on and the counters zeroed,
N requests are sent the same way, and the dump's `totals:` ÷ N is the variant's
instructions per request (deterministic: repeats agree within 0.5% on a loaded
machine). Under valgrind only about three wasm VMs instantiate in one Envoy, so the
variants run in groups: A plus at most three wasm variants per Envoy process; A is
measured in every group and "added" is relative to the group's own A.

Footprint mode (--footprint) starts separate Envoys (without / with the filter, 1
and 2 workers) and reports VmRSS after startup and after traffic.

Standard library only.
"""

import argparse
import glob
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

CLUSTER_HEADER = "x-switchyard-cluster"
HASH_HEADER = "x-switchyard-hash-key"
TICK = os.sysconf("SC_CLK_TCK")
# On the shared machine, Envoy and wrk run at a higher priority than the builds
# around them when we may (root); it narrows the spread, it does not remove it.
NICE = ["nice", "-n", "-10"] if os.geteuid() == 0 else []

LUA = """
function envoy_on_request(handle)
  local h = handle:headers()
  local ve = h:get("kf-ve") or "none"
  local app = h:get("x-app") or "none"
  h:replace("x-switchyard-cluster", "upstream")
  handle:clearRouteCache()
end
"""


# Listening ports from below the ephemeral range (see tests/e2e/ports.py).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
from ports import free_port  # noqa: E402


def addr(port):
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def router():
    return {"name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}


# The probe's header names (bench/wasm-probe NAMES), for `fsroute=N`.
PROBE_NAMES = ["kf-environment", "kf-virtual-env", "kf-app", "kf-deployment", "kf-component",
               "kf-component-version", "kf-decision", "kf-var-who", "kf-context"]


def route_config(name, from_filter_state=0):
    # The shape of control-xds/src/render.rs route_config. `from_filter_state=N`:
    # the route also adds N request headers, each from a filter-state value the
    # probe set (`state=N`: wasm.<name>), through Envoy's formatter.
    extra = {}
    if from_filter_state:
        extra["request_headers_to_add"] = [
            {"header": {"key": n, "value": f"%FILTER_STATE(wasm.{n}:PLAIN)%"},
             "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"} for n in PROBE_NAMES[:from_filter_state]]
    return {"name": name, "virtual_hosts": [{"name": name, "domains": ["*"], "routes": [{
        "match": {"prefix": "/"}, **extra,
        "request_headers_to_remove": [CLUSTER_HEADER, HASH_HEADER],
        "route": {"cluster_header": CLUSTER_HEADER,
                  "hash_policy": [{"header": {"header_name": HASH_HEADER}}],
                  "timeout": "30s"}}]}]}


def wasm_filter(name, path, config):
    # The shape of control-xds/src/render.rs wasm_filter.
    return {"name": name, "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"name": name, "root_id": name, "failure_policy": "FAIL_RELOAD",
                   "vm_config": {"vm_id": name, "runtime": "envoy.wasm.runtime.v8",
                                 "code": {"local": {"filename": path}}},
                   "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                     "value": config}}}}


def native_filter(name, path, config):
    # The shape of control-xds/src/native_filter.rs native_filter.
    return {"name": name, "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
        "dynamic_module_config": {"module": {"local": {"filename": path}}, "do_not_close": True},
        "filter_name": name,
        "filter_config": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": config}}}


ROUTE_FIRST_LUA = """
function envoy_on_request(handle)
  handle:metadata():get("x")
end
"""


def lua_filter(code=LUA):
    return {"name": "envoy.filters.http.lua", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
        "default_source_code": {"inline_string": code}}}


def listener(name, port, filters, routes=None):
    return {"name": name, "address": addr(port), "filter_chains": [{"filters": [{
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": name,
            "route_config": routes or route_config(name),
            "http_filters": filters + [router()]}}]}]}


def cluster(name, port):
    return {"name": name, "type": "STATIC", "connect_timeout": "1s", "lb_policy": "ROUND_ROBIN",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": addr(port)}}]}]}}


# Per variant: the filters, and what wrk sends.
def variants(args, s_table, upstream_hdr):
    s_headers = {}
    return {
        "A": ([], "/dev/hello", upstream_hdr),
        "C": ([wasm_filter("probe_c", args.probe_wasm, "")], "/dev/hello", upstream_hdr),
        "D": ([lua_filter()], "/dev/hello", {"kf-ve": "team-a", "x-app": "hello-world"}),
        "S": ([wasm_filter("switchyard", args.filter_wasm, s_table["plugin_config"])],
              s_table["path"], s_headers),
        # S's host calls for this request, without its engine (see BENCHMARKS.md):
        # get_map, source.address, clock, 9 sets (7 kf-* + kf-var-who + kf-context),
        # the cluster header, clear_route_cache, one counter, 3 response headers.
        "H": ([wasm_filter("probe_h", args.probe_wasm,
                           "get,prop,time,set=9,cluster=upstream,clear,metric,resp=3")],
              "/dev/hello", {}),
        "G": ([wasm_filter("probe_g", args.probe_wasm, "get")], "/dev/hello", upstream_hdr),
        # S without contextKeys: no kf-context signing (and one header fewer).
        "N": ([wasm_filter("switchyard_nosign", args.filter_wasm, without_context_keys(s_table))],
              s_table["path"], s_headers),
        # S with the lean header set and no response headers (fewest host calls).
        "L": ([wasm_filter("switchyard_lean", args.filter_wasm, lean(s_table))],
              s_table["path"], s_headers),
        # S and L with the native filter (an Envoy dynamic module).
        "S-native": ([native_filter("switchyard", args.filter_native, s_table["plugin_config"])],
                     s_table["path"], s_headers),
        "L-native": ([native_filter("switchyard_lean", args.filter_native, lean(s_table))],
                     s_table["path"], s_headers),
    }


def probe_variants(args, upstream_hdr):
    """--probe NAME=STEPS: extra probe listeners (bench/wasm-probe's steps)."""
    out = {}
    for spec in args.probe or []:
        name, steps = spec.split("=", 1)
        hdrs = {} if "cluster=" in steps else upstream_hdr
        # `fsroute=N` is the bench's, not the probe's: see route_config.
        fs = [s for s in steps.split(",") if s.startswith("fsroute=")]
        # `send=NAME:VALUE`: a header the client sends (also the bench's).
        for s in steps.split(","):
            if s.startswith("send="):
                k, val = s[5:].split(":", 1)
                hdrs = {**hdrs, k: val}
        # `routefirst`: a Lua filter before the probe resolves the route first
        # (as any earlier filter reading the route does).
        first = [lua_filter(ROUTE_FIRST_LUA)] if "routefirst" in steps.split(",") else []
        steps = ",".join(s for s in steps.split(",")
                         if not s.startswith(("fsroute=", "send=")) and s != "routefirst")
        routes = route_config(f"v{name}", int(fs[0].split("=")[1])) if fs else None
        out[name] = (first + [wasm_filter(f"probe_{name.lower()}", args.probe_wasm, steps)], "/dev/hello",
                     hdrs, routes)
    return out


def lean(s_table):
    cfg = json.loads(s_table["plugin_config"])
    cfg.setdefault("settings", {}).update({"metadataHeaders": "lean", "responseHeaders": False})
    return json.dumps(cfg)


def without_context_keys(s_table):
    cfg = json.loads(s_table["plugin_config"])
    cfg.get("settings", {}).pop("contextKeys", None)
    return json.dumps(cfg)


def upstream_listener(port):
    return listener("upstream", port, [], routes={
        "name": "upstream", "virtual_hosts": [{"name": "upstream", "domains": ["*"], "routes": [{
            "match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}}]}]})


def bootstrap(args, names, s_table, admin_port, ports, upstream_port, upstream_apart=False,
              table_clusters=False):
    upstream_hdr = {CLUSTER_HEADER: "upstream"}
    v = variants(args, s_table, upstream_hdr)
    v.update(probe_variants(args, upstream_hdr))
    listeners = [] if upstream_apart else [upstream_listener(upstream_port)]
    for n in names:
        listeners.append(listener(f"v{n}", ports[n], v[n][0], v[n][3] if len(v[n]) > 3 else None))
    clusters = [cluster("upstream", upstream_port)]
    if table_clusters or {"S", "N", "L", "S-native", "L-native"} & set(names):
        clusters += [cluster(c, upstream_port) for c in s_table["clusters"]]
    return {"admin": {"address": addr(admin_port)},
            "static_resources": {"listeners": listeners, "clusters": clusters}}, v


class Envoy:
    def __init__(self, args, config, workers, tag, prefix=None, ready_s=60):
        self.dir = tempfile.mkdtemp(prefix=f"swy-bench-{tag}-")
        path = os.path.join(self.dir, "envoy.json")
        with open(path, "w") as f:
            json.dump(config, f)
        self.log = open(os.path.join(self.dir, "envoy.log"), "w")
        self.admin = config["admin"]["address"]["socket_address"]["port_value"]
        self.proc = subprocess.Popen(
            (prefix if prefix is not None else NICE) + [args.envoy, "-c", path, "--concurrency", str(workers), "--disable-hot-restart",
             "-l", "warning"], stdout=self.log, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        deadline = time.time() + ready_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"envoy exited: see {self.log.name}\n" + open(self.log.name).read()[-3000:])
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        sys.exit("envoy did not become ready")

    def cpu_ticks(self):
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)

    def rss_kib(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def to_us(text):
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]


def wrk(port, path, headers, seconds, connections):
    cmd = NICE + ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for k, val in headers.items():
        cmd += ["-H", f"{k}: {val}"]
    cmd.append(f"http://127.0.0.1:{port}{path}")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    req = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    lat = {p: to_us(v) for p, v in re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M)}
    return {"requests": req, "non2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": errors.group(1) if errors else "",
            "p50_us": lat.get("50"), "p99_us": lat.get("99")}


def check(port, path, headers):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    with urllib.request.urlopen(req, timeout=120) as r:
        return r.status, dict(r.headers)


def run_side_by_side(args, s_table):
    names = args.variants.split(",")
    ports = {n: free_port() for n in names}
    admin, upstream = free_port(), free_port()
    config, v = bootstrap(args, names, s_table, admin, ports, upstream)
    envoy = Envoy(args, config, 1, "cpu")
    runs = []
    try:
        for n in names:  # every variant answers 200 before anything is measured
            status, hdrs = check(ports[n], v[n][1], v[n][2])
            if status != 200:
                sys.exit(f"variant {n} answered {status}")
            if n in ("S", "N", "S-native") and "kf-deployment" not in {k.lower() for k in hdrs}:
                sys.exit("S did not route through the filter")
            wrk(ports[n], v[n][1], v[n][2], args.warmup, args.connections)
        for rnd in range(args.rounds):
            for n in names:
                t0, c0 = time.time(), envoy.cpu_ticks()
                r = wrk(ports[n], v[n][1], v[n][2], args.duration, args.connections)
                c1, t1 = envoy.cpu_ticks(), time.time()
                r.update(variant=n, round=rnd,
                         cpu_us_per_req=(c1 - c0) / TICK * 1e6 / max(r["requests"], 1),
                         rps=r["requests"] / (t1 - t0))
                if r["non2xx"]:
                    sys.exit(f"variant {n}: {r['non2xx']} non-2xx responses")
                runs.append(r)
                print(f"  round {rnd} {n}: {r['cpu_us_per_req']:.1f} us CPU/req, "
                      f"{r['rps']:.0f} req/s, p50 {r['p50_us']:.0f} us, p99 {r['p99_us']:.0f} us",
                      file=sys.stderr)
    finally:
        envoy.stop()
    return summarize(names, runs)


def summarize(names, runs):
    out = {"runs": runs, "summary": {}}
    by = {n: [r for r in runs if r["variant"] == n] for n in names}
    base = {}
    for key in ("cpu_us_per_req", "rps", "p50_us", "p99_us"):
        base[key] = statistics.median(r[key] for r in by["A"])
    # Per round, a variant's figure relative to A of the same round: the ratio's
    # spread is what the noisy machine leaves after pairing.
    # A runs first in every round; a variant is compared with the mean of this
    # round's A and the next round's A (before and after it), which cancels
    # slow drift of the machine's load.
    a_runs = {r["round"]: r for r in by["A"]}
    a_by_round = {}
    for rnd, r in a_runs.items():
        nxt = a_runs.get(rnd + 1)
        a_by_round[rnd] = r if nxt is None else {
            k: (r[k] + nxt[k]) / 2 for k in ("cpu_us_per_req", "rps", "p50_us", "p99_us")}
    for n in names:
        s = {}
        for key in ("cpu_us_per_req", "rps", "p50_us", "p99_us"):
            vals = [r[key] for r in by[n]]
            ratios = [r[key] / a_by_round[r["round"]][key] for r in by[n]]
            s[key] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals),
                      "ratio_to_A": statistics.median(ratios),
                      "ratio_min": min(ratios), "ratio_max": max(ratios)}
        added = [r["cpu_us_per_req"] - a_by_round[r["round"]]["cpu_us_per_req"] for r in by[n]]
        s["added_cpu_us"] = {"median": statistics.median(added), "min": min(added), "max": max(added)}
        out["summary"][n] = s
    if "S" in names and "C" in names:
        sa = out["summary"]["S"]["added_cpu_us"]["median"]
        ca = out["summary"]["C"]["added_cpu_us"]["median"]
        # Median of S's paired added CPU over median of C's paired added CPU.
        out["s_over_c_added_cpu"] = sa / ca if ca > 0 else float("nan")
        # Per round too, for the spread.
        per_round = []
        for rnd in a_by_round:
            s_r = [r for r in by["S"] if r["round"] == rnd]
            c_r = [r for r in by["C"] if r["round"] == rnd]
            if s_r and c_r:
                a = a_by_round[rnd]["cpu_us_per_req"]
                c_add = c_r[0]["cpu_us_per_req"] - a
                if c_add > 0:
                    per_round.append((s_r[0]["cpu_us_per_req"] - a) / c_add)
        out["s_over_c_per_round"] = per_round
    return out


WASM_VARIANTS = {"C", "S", "H", "G", "N", "L"}


def callgrind_groups(names, per_envoy=3):
    """A plus at most `per_envoy` wasm variants per Envoy process."""
    wasm = [n for n in names if n in WASM_VARIANTS or n.startswith("P")]
    other = [n for n in names if n not in wasm and n != "A"]
    groups = []
    for i in range(0, max(len(wasm), 1), per_envoy):
        groups.append(["A"] + (other if i == 0 else []) + wasm[i:i + per_envoy])
    return groups


class KeepAlive:
    """N requests, one after the other, on one keep-alive HTTP/1.1 connection."""

    def __init__(self, port, path, headers):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.path, self.headers = path, headers

    def send(self, n):
        for _ in range(n):
            self.conn.request("GET", self.path, headers=self.headers)
            r = self.conn.getresponse()
            r.read()
            if r.status != 200:
                sys.exit(f"{self.path}: status {r.status}")

    def close(self):
        self.conn.close()


def callgrind_control(*args):
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True, timeout=300)


def callgrind_totals(dump_dir, pid, before):
    """(all threads, the busiest thread) of the dump just written. Dumps are per
    thread (--separate-threads=yes); the busiest one is Envoy's worker, which
    served the requests (filter, router, and the upstream listener alike)."""
    dumps = [p for p in glob.glob(os.path.join(dump_dir, f"cg.{pid}*")) if p not in before]
    if not dumps:
        sys.exit("callgrind wrote no dump")
    per_thread = []
    for path in dumps:
        with open(path) as f:
            for line in f:
                if line.startswith("totals:") or line.startswith("summary:"):
                    per_thread.append(int(line.split()[1]))
                    break
    if not per_thread:
        sys.exit(f"no totals in {dumps}")
    return sum(per_thread), max(per_thread)


def run_callgrind(args, s_table):
    names = args.variants.split(",")
    if "A" not in names:
        names = ["A"] + names
    n, warm = args.callgrind, args.callgrind_warmup
    results = {}
    for group in callgrind_groups(names):
        ports = {v: free_port() for v in group}
        admin, upstream = free_port(), free_port()
        config, v = bootstrap(args, group, s_table, admin, ports, upstream, args.upstream_apart)
        apart = None
        if args.upstream_apart:
            # The direct-response upstream in its own Envoy, outside valgrind: the
            # count is then only what the measured Envoy does (not the upstream
            # parsing the headers the filter adds).
            apart = Envoy(args, {"admin": {"address": addr(free_port())},
                                 "static_resources": {"listeners": [upstream_listener(upstream)]}},
                          1, "up")
        dump_dir = tempfile.mkdtemp(prefix="swy-cg-")
        prefix = ["valgrind", "--tool=callgrind", "--smc-check=all-non-file", "--instr-atstart=no",
                  "--separate-threads=yes", f"--callgrind-out-file={dump_dir}/cg.%p"]
        envoy = Envoy(args, config, 1, "cg", prefix=prefix, ready_s=600)
        try:
            for name in group:
                status, hdrs = check(ports[name], v[name][1], v[name][2])
                if status != 200:
                    sys.exit(f"variant {name} answered {status}")
                client = KeepAlive(ports[name], v[name][1], v[name][2])
                client.send(warm)
                before = set(glob.glob(os.path.join(dump_dir, "cg.*")))
                callgrind_control("-i", "on", str(envoy.pid))
                callgrind_control("-z", str(envoy.pid))
                client.send(n)
                callgrind_control("-d", str(envoy.pid))
                callgrind_control("-i", "off", str(envoy.pid))
                client.close()
                ir, worker = callgrind_totals(dump_dir, envoy.pid, before)
                per = ir / n
                results.setdefault(name, []).append({"group": group, "ir_per_request": per,
                                                     "worker_ir_per_request": worker / n})
                print(f"  callgrind {name} (group {''.join(group)}): {per / 1e3:.1f} k instructions/request, "
                      f"worker thread {worker / n / 1e3:.1f} k", file=sys.stderr)
        finally:
            envoy.stop()
            if apart:
                apart.stop()
            shutil.rmtree(dump_dir, ignore_errors=True)
    # Added per variant: against the A of the same Envoy process.
    summary = {}
    for name, runs in results.items():
        if name == "A":
            continue
        for r in runs:
            a = next(x for x in results["A"] if x["group"] == r["group"])
            r["added"] = r["ir_per_request"] - a["ir_per_request"]
            r["worker_added"] = r["worker_ir_per_request"] - a["worker_ir_per_request"]
        summary[name] = {k: statistics.mean(r[k] for r in runs)
                         for k in ("ir_per_request", "added", "worker_ir_per_request", "worker_added")}
    summary["A"] = {"ir_per_request": statistics.mean(r["ir_per_request"] for r in results["A"]), "added": 0.0,
                    "worker_ir_per_request": statistics.mean(r["worker_ir_per_request"] for r in results["A"]),
                    "worker_added": 0.0}
    return {"callgrind": {"requests": n, "warmup": warm, "upstream_apart": args.upstream_apart, "runs": results, "summary": summary,
                          "order": [x for x in names if x in summary]}}


def footprint(args, s_table):
    out = []
    # Per worker count: no filter; no filter but the table's clusters (what the
    # control plane would give Envoy anyway); the filter with the table (the wasm
    # one, and with --filter-native the native one).
    kinds = [False, "clusters", True] + (["native"] if args.filter_native else [])
    for workers in (1, 2):
        for with_filter in kinds:
            measured = {True: "S", "native": "S-native"}.get(with_filter, "A")
            names = ["A", measured] if measured != "A" else ["A"]
            ports = {n: free_port() for n in names}
            admin, upstream = free_port(), free_port()
            config, v = bootstrap(args, names, s_table, admin, ports, upstream,
                                  table_clusters=with_filter == "clusters")
            envoy = Envoy(args, config, workers, f"rss{workers}")
            try:
                time.sleep(1.0)
                idle = envoy.rss_kib()
                n = measured
                wrk(ports[n], v[n][1], v[n][2], args.warmup, max(args.connections, 2 * workers))
                time.sleep(0.5)
                loaded = envoy.rss_kib()
            finally:
                envoy.stop()
            out.append({"workers": workers, "filter": with_filter, "rss_idle_kib": idle,
                        "rss_after_traffic_kib": loaded})
            print(f"  rss workers={workers} filter={with_filter}: idle {idle} KiB, "
                  f"after traffic {loaded} KiB", file=sys.stderr)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envoy", required=True)
    p.add_argument("--filter-wasm", required=True)
    p.add_argument("--probe-wasm", required=True)
    p.add_argument("--filter-native", help="libswitchyard_native.so: enables S-native, L-native")
    p.add_argument("--table", required=True, help="JSON from the engine bench's --emit")
    p.add_argument("--variants", default="A,C,D,S")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--connections", type=int, default=10)
    p.add_argument("--footprint", action="store_true")
    p.add_argument("--callgrind", type=int, default=0, metavar="N",
                   help="instructions per request under callgrind, N measured requests per variant")
    p.add_argument("--callgrind-warmup", type=int, default=300)
    p.add_argument("--upstream-apart", action="store_true",
                   help="callgrind: run the upstream listener in a second Envoy, not measured")
    p.add_argument("--probe", action="append", metavar="NAME=STEPS",
                   help="an extra probe variant (NAME starts with P), e.g. P1=get,set=9")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    with open(args.table) as f:
        s_table = json.load(f)
    result = {}
    if args.footprint:
        result["footprint"] = footprint(args, s_table)
    elif args.callgrind:
        result = run_callgrind(args, s_table)
    else:
        result = run_side_by_side(args, s_table)
        result["config"] = {k: getattr(args, k) for k in ("variants", "rounds", "duration", "connections")}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
