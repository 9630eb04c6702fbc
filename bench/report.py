#!/usr/bin/env python3
"""Prints the benchmark results of one scripts/bench.sh run as Markdown tables.

Usage: report.py RESULTS_DIR
Reads engine.txt, callgrind.txt, envoy_callgrind.json, envoy.json, footprint.json,
footprint-large.json, sizes.txt, cp.txt (each optional).
"""

import json
import os
import sys

d = sys.argv[1]


def read(name):
    p = os.path.join(d, name)
    return open(p).read() if os.path.exists(p) else None


def kv(line):
    return dict(f.split("=", 1) for f in line.split() if "=" in f)


engine = read("engine.txt")
if engine:
    rows = [kv(line) for line in engine.splitlines() if line.startswith("case=")]
    cg = {}
    if read("callgrind.txt"):
        for line in read("callgrind.txt").splitlines():
            f = kv(line)
            if "case" in f:
                cg[f["case"]] = f["ir_per_decision"]
    print("### Engine, native (per decision)\n")
    print("| case | table | median ns | min–max ns | allocs | bytes | instructions (callgrind) | decision |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        ir = cg.get(f"{r['table']}/{r['case']}", "")
        print(f"| {r['case']} | {r['table']} | {int(r['ns_median']):,} | {int(r['ns_min']):,}–{int(r['ns_max']):,} "
              f"| {r['allocs']} | {r['bytes']} | {ir} | {r['kind']} |")
    print()

WHAT = {
    "A": "Envoy's own header route, no filter",
    "C": "empty proxy-wasm filter (probe)",
    "D": "Lua: 2 gets, 1 set, clear route cache",
    "S": "**Switchyard, full metadata (DESIGN's default headers)**",
    "H": "probe making S's host calls, no engine",
    "G": "probe: read the header map once",
    "N": "S without `contextKeys` (no `kf-context`)",
    "L": "S with `metadataHeaders: lean`, `responseHeaders: false`",
    "S-native": "**S with the native filter (Envoy dynamic module)**",
    "L-native": "L with the native filter",
}
cg = read("envoy_callgrind.json")
if cg:
    c = json.loads(cg)["callgrind"]
    s = c["summary"]
    print(f"### Envoy, instructions per request (callgrind, one worker; {c['requests']} requests per variant "
          f"after {c['warmup']} warm-up on one keep-alive connection; added = minus the A of the same Envoy)\n")
    print("| variant | what | instructions per request | added vs A | worker thread only | added |")
    print("|---|---|---:|---:|---:|---:|")
    for n in c["order"]:
        v = s[n]
        added = "—" if n == "A" else f"+{v['added'] / 1e3:.1f} k"
        wadded = "—" if n == "A" else f"+{v.get('worker_added', float('nan')) / 1e3:.1f} k"
        print(f"| {n} | {WHAT.get(n, n)} | {v['ir_per_request'] / 1e3:.1f} k | {added} "
              f"| {v.get('worker_ir_per_request', float('nan')) / 1e3:.1f} k | {wadded} |")
    print()
    for n in ("S", "L", "S-native", "L-native"):
        if n in s:
            print(f"{n} added instructions per request: {round(s[n]['added'])}")
            print()
    if "S" in s and "H" in s:
        print(f"In-VM work (S − H) per request: {round(s['S']['added'] - s['H']['added'])} "
              f"(worker thread only: {round(s['S']['worker_added'] - s['H']['worker_added'])})")
    print()

envoy = read("envoy.json")
if envoy:
    e = json.loads(envoy)
    s = e["summary"]
    cfg = e.get("config", {})
    print(f"### Envoy, one worker, side by side ({cfg.get('rounds')} rounds × {cfg.get('duration')} s per variant, "
          f"wrk -t1 -c{cfg.get('connections')}; medians, [min–max] over rounds)\n")
    print("| variant | CPU µs/req | added vs A µs | CPU ratio to A | req/s | req/s ratio | p50 µs | p50 ratio | p99 µs | p99 ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, v in s.items():
        c, a = v["cpu_us_per_req"], v["added_cpu_us"]
        print(f"| {n} | {c['median']:.1f} [{c['min']:.0f}–{c['max']:.0f}] | {a['median']:+.1f} [{a['min']:+.0f}…{a['max']:+.0f}] "
              f"| {c['ratio_to_A']:.2f} [{c['ratio_min']:.2f}–{c['ratio_max']:.2f}] "
              f"| {v['rps']['median']:.0f} | {v['rps']['ratio_to_A']:.2f} "
              f"| {v['p50_us']['median']:.0f} | {v['p50_us']['ratio_to_A']:.2f} "
              f"| {v['p99_us']['median']:.0f} | {v['p99_us']['ratio_to_A']:.2f} |")
    print()
    if "s_over_c_added_cpu" in e:
        pr = e.get("s_over_c_per_round") or []
        spread = f" (per round {min(pr):.2f}–{max(pr):.2f})" if pr else ""
        note = " — smoke run (few rounds): not a measurement" if (cfg.get("rounds") or 0) < 3 else ""
        print(f"S/C added-CPU ratio: {e['s_over_c_added_cpu']:.2f}{spread}{note}\n")

fp = read("footprint.json")
fpl = read("footprint-large.json")
sizes = read("sizes.txt")
if fp or sizes:
    print("### Footprint\n")
    if sizes:
        for line in sizes.splitlines():
            print(f"- {line}")
        print()
    if fp:
        print("| table | workers | filter | RSS idle MiB | RSS after traffic MiB |")
        print("|---|---:|---|---:|---:|")
        for table, doc in (("small", fp), ("large", fpl)):
            if not doc:
                continue
            for r in json.loads(doc)["footprint"]:
                what = {True: "S (wasm)", "native": "S-native", False: "none",
                        "clusters": "none, table's clusters"}[r["filter"]]
                print(f"| {table} | {r['workers']} | {what} | {r['rss_idle_kib']/1024:.1f} "
                      f"| {r['rss_after_traffic_kib']/1024:.1f} |")
        print()

cp = read("cp.txt")
if cp:
    print("### Control plane\n")
    print(cp)
