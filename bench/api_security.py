#!/usr/bin/env python3
"""What authentication and TLS cost the control plane's HTTP API (issue 12).

Starts `switchyard serve` three ways on the hello-world resources — tokens
(the default), `--insecure-no-auth`, tokens + TLS (a throw-away CA and server
certificate made with openssl) — and times N `GET /v1/status` requests over one
keep-alive connection, and N requests each on a new connection (for TLS: a full
handshake each). Prints one line per variant; no Envoy involved.

    python3 bench/api_security.py --switchyard target/debug/switchyard [-n 500]
"""

import argparse
import http.client
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from ports import free_port  # noqa: E402
from certs import make_ca  # noqa: E402


def serve(args, tmp, name, extra):
    xds, api = free_port(), free_port()
    env = {**os.environ, "XDG_CONFIG_HOME": os.path.join(tmp, "config")}
    log = open(os.path.join(tmp, f"{name}.log"), "w")
    p = subprocess.Popen([args.switchyard, "serve", "--config",
                          os.path.join(ROOT, "examples", "hello-world", "resources.yaml"),
                          "--xds-addr", f"127.0.0.1:{xds}", "--api-addr", f"127.0.0.1:{api}",
                          *extra], stdout=log, stderr=subprocess.STDOUT, env=env)
    cred = os.path.join(tmp, "config", "switchyard", "credentials", f"127.0.0.1_{api}")
    return p, api, cred


def connect(port, tls_ctx):
    if tls_ctx is None:
        return http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    return http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=tls_ctx)


def status(conn, headers):
    conn.request("GET", "/v1/status", headers=headers)
    r = conn.getresponse()
    r.read()
    assert r.status == 200, r.status


def wait_up(port, tls_ctx, headers, deadline=30):
    t0 = time.time()
    while time.time() - t0 < deadline:
        try:
            c = connect(port, tls_ctx)
            status(c, headers)
            c.close()
            return
        except (OSError, AssertionError, http.client.HTTPException):
            time.sleep(0.05)
    sys.exit("switchyard serve did not come up")


def ms(samples):
    s = sorted(samples)
    return (f"mean {statistics.mean(s) * 1e3:.3f} ms, p50 {s[len(s) // 2] * 1e3:.3f}, "
            f"p99 {s[min(len(s) - 1, int(len(s) * 0.99))] * 1e3:.3f}")


def measure(name, port, tls_ctx, headers, n):
    wait_up(port, tls_ctx, headers)
    conn = connect(port, tls_ctx)
    status(conn, headers)
    kept = []
    for _ in range(n):
        t = time.perf_counter()
        status(conn, headers)
        kept.append(time.perf_counter() - t)
    conn.close()
    fresh = []
    for _ in range(n // 5):
        t = time.perf_counter()
        c = connect(port, tls_ctx)
        status(c, headers)
        c.close()
        fresh.append(time.perf_counter() - t)
    print(f"{name:<22} keep-alive: {ms(kept)} | new connection: {ms(fresh)}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--switchyard", default=os.path.join(ROOT, "target", "debug", "switchyard"))
    ap.add_argument("-n", type=int, default=500)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ca = make_ca(os.path.join(tmp, "pki"), "bench-ca")
        cert = ca.issue("api", server_ip="127.0.0.1")
        tls_ctx = ssl.create_default_context(cafile=str(ca.cert))
        variants = [
            ("tokens", [], None),
            ("no auth (loopback)", ["--insecure-no-auth"], None),
            ("tokens + TLS", ["--api-tls-cert", str(cert.cert), "--api-tls-key", str(cert.key)],
             tls_ctx),
        ]
        for name, extra, ctx in variants:
            p, port, cred = serve(args, tmp, name.split()[0], extra)
            try:
                headers = {}
                if "--insecure-no-auth" not in extra:
                    t0 = time.time()
                    while not os.path.exists(cred) and time.time() - t0 < 30:
                        time.sleep(0.05)
                    headers = {"authorization": "Bearer " + open(cred).read().strip()}
                measure(name, port, ctx, headers, args.n)
            finally:
                p.terminate()
                p.wait(10)


if __name__ == "__main__":
    main()
