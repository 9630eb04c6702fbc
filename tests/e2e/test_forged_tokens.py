"""A flood of forged JWTs through a real Envoy with the real filter (issue 15):
the canary example plus one key per algorithm family (ES256, ES384, RS256, PS256,
EdDSA, HS256). Forged tokens (right kid, plausible claims, random signature, a
fresh one every request) go to the stable deployment and never fail; tokens
verified before keep routing by their claims throughout; new HMAC tokens are
still verified during the flood; the worker's verification budget says so in
`switchyard.jwt.jwt_unverified`. The CPU side is bench/forged_tokens.py
(BENCHMARKS.md, "Forged tokens")."""

from __future__ import annotations

import http.client
import json
import secrets
import subprocess
import time
from pathlib import Path

import pytest

import harness
from test_canary import CANARY, STABLE, b64url, canary_docs, claims, hs256

# kid → (alg, key file, signature length)
FORGED = {"es": ("ES256", "p256", 64), "es384": ("ES384", "p384", 96),
          "rs": ("RS256", "rsa", 256), "ps": ("PS256", "rsa", 256),
          "ed": ("EdDSA", "ed", 64), "demo": ("HS256", None, 32)}


def openssl(*args: str, data: bytes | None = None) -> bytes:
    return subprocess.run(["openssl", *args], input=data, capture_output=True, check=True).stdout


def make_keys(d: Path) -> dict[str, str]:
    """Private keys in `d`; returns the public PEM per key file name."""
    specs = {"rsa": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
             "p256": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
             "p384": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
             "ed": ["-algorithm", "ED25519"]}
    pems = {}
    for name, spec in specs.items():
        openssl("genpkey", *spec, "-out", str(d / f"{name}.key"))
        pems[name] = openssl("pkey", "-in", str(d / f"{name}.key"), "-pubout").decode()
    return pems


def es256(d: Path, c: dict) -> str:
    """A valid ES256 token (kid es), signed by openssl; DER signature → r || s."""
    si = b64url(json.dumps({"alg": "ES256", "typ": "JWT", "kid": "es"}).encode()) + "." + \
        b64url(json.dumps(c).encode())
    der = openssl("dgst", "-sha256", "-sign", str(d / "p256.key"), data=si.encode())
    i = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
    raw = b""
    for _ in range(2):
        n = der[i + 1]
        raw += der[i + 2:i + 2 + n].lstrip(b"\0").rjust(32, b"\0")
        i += 2 + n
    return f"{si}.{b64url(raw)}"


def forged(kid: str) -> str:
    alg, _, n = FORGED[kid]
    sig = bytearray(secrets.token_bytes(n))
    if alg == "EdDSA":
        sig[63] &= 0x0F  # a signature that gets as far as the curve arithmetic
    header = b64url(json.dumps({"alg": alg, "typ": "JWT", "kid": kid}).encode())
    body = b64url(json.dumps(claims(sub="user-" + secrets.token_hex(4), role="beta-tester")).encode())
    return f"{header}.{body}.{b64url(bytes(sig))}"


@pytest.fixture(scope="module")
def envoy(module_procs, bins, tmp_path_factory):
    work = tmp_path_factory.mktemp("forged")
    hw = harness.start_hello_world(module_procs, bins, work)
    pems = make_keys(work)
    docs = canary_docs(hw, weight=None, stickiness=None)
    for d in docs:
        if d["kind"] == "Environment":
            keys = d["spec"]["jwt"]["keys"]
            for kid, (alg, name, _) in FORGED.items():
                if name:
                    keys.append({"kid": kid, "alg": alg, "pem": pems[name]})
    path = harness.write_yaml(work / "forged.yaml", docs)
    e = harness.start_switchyard_static(module_procs, bins, path, work, "forged")
    e.work = work
    return e


def test_a_flood_of_forged_tokens_goes_to_stable_and_valid_tokens_keep_their_claims(envoy):
    host, port = envoy.url.removeprefix("http://").split(":")
    # One keep-alive connection: one worker, whose budget and cache we exercise.
    conn = http.client.HTTPConnection(host, int(port), timeout=30)

    def side(token: str | None) -> tuple[int, str, str]:
        conn.request("GET", "/prod/hello", headers={"authorization": f"Bearer {token}"} if token else {})
        r = conn.getresponse()
        body = r.read()
        assert r.status == 200, (r.status, body[:300])
        kf = json.loads(body)["kf"]
        return r.status, kf["kf-deployment"], kf["kf-decision"]

    beta = hs256(claims(sub="user-1", role="beta-tester"))
    listed = es256(envoy.work, claims(sub="user-42"))
    # First sight: verified (and remembered).
    assert side(beta) == (200, CANARY, "canary-match:3")
    assert side(listed) == (200, CANARY, "canary-match:4")

    kids = list(FORGED)
    started = time.monotonic()
    flood = 600
    for i in range(flood):
        assert side(forged(kids[i % len(kids)])) == (200, STABLE, "canary-stable"), i
        if i % 20 == 0:
            # Tokens verified before the flood keep routing by their claims…
            assert side(beta) == (200, CANARY, "canary-match:3"), i
            assert side(listed) == (200, CANARY, "canary-match:4"), i
            # …and a new HMAC token is still verified: an HS check costs less
            # than what one request earns.
            fresh = hs256(claims(sub=f"new-{i}", role="beta-tester"))
            assert side(fresh) == (200, CANARY, "canary-match:3"), i
    elapsed = time.monotonic() - started
    conn.close()

    stats = envoy.stats("switchyard")
    jwt = {k.removeprefix("wasmcustom.switchyard.jwt."): v for k, v in stats.items() if ".jwt." in k}
    errors = {k: v for k, v in stats.items() if ".error." in k and v}
    print(f"\n{flood} forged tokens in {elapsed:.1f} s ({flood / elapsed:.0f}/s); jwt notes: {jwt}")
    assert not errors, errors
    # The budget stopped checking most of the dear ones…
    assert jwt.get("jwt_unverified", 0) > flood // 3, jwt
    # …but not all of them, and HMAC ones always.
    assert jwt.get("jwt_bad_signature", 0) >= flood // len(kids), jwt
    assert jwt.get("jwt_unverified", 0) + jwt.get("jwt_bad_signature", 0) == flood, jwt
