#!/usr/bin/env python3
"""Writes the fuzz seeds (fuzz/seeds/<target>/seed-*) from the examples and the
tests' own inputs. Deterministic; rerun after changing the examples:

  .venv/bin/python fuzz/make_seeds.py
"""

import base64
import hashlib
import hmac
import json
import shutil
from pathlib import Path

import yaml

FUZZ = Path(__file__).resolve().parent
ROOT = FUZZ.parent
SEEDS = FUZZ / "seeds"
NOW = 1_795_392_000  # fuzz/src/lib.rs NOW
DEMO = b"switchyard-demo-secret-change-me-0123456789"
CONTEXT_KEY = base64.b64decode("ZnV6ei1jb250ZXh0LWtleS0wMTIzNDU2Nzg5YWJjZGVmZ2hpams=")
CANARY = (ROOT / "examples/canary/resources.yaml").read_text()
HELLO = (ROOT / "examples/hello-world/resources.yaml").read_text()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(header: dict, claims: dict, key: bytes) -> str:
    si = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{si}.{b64(hmac.new(key, si.encode(), hashlib.sha256).digest())}"


def user_token(**extra) -> str:
    claims = {"iss": "https://auth.example.com", "aud": "hello-world", "iat": NOW,
              "nbf": NOW - 5, "exp": NOW + 600, "sub": "user-17", **extra}
    return hs256({"alg": "HS256", "typ": "JWT", "kid": "demo"}, claims, DEMO)


def context(dep="hello-world-main", comp="frontend", ve="prod", env="prod") -> str:
    claims = {"env": env, "ve": ve, "app": "hello-world", "dep": dep, "comp": comp,
              "rel": dep, "exp": NOW + 30}
    return hs256({"alg": "HS256", "typ": "JWT", "kid": "fuzz"}, claims, CONTEXT_KEY)


def request(method, path, source="", **headers) -> str:
    lines = [method, path, source] + [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return "\n".join(lines)


PATHS = ["/", "/dev/hello", "/prod/hello/backend", "/%2e%2e/dev/hello", "/../dev/hello",
         "//dev//hello///backend", "/d%65v/hello", "/dev/./hello/../hello", "/dev/a/../hello",
         "/dev/hello%2F..%2F..%2Fstg/hello", "/dev/hello%5C..%5Cbackend", "/dev/hello/%zz",
         "/dev/hello/caf%C3%A9;v=1", "/stg/%2e%2E/dev/hello", "/stg/%c0%ae%c0%ae/dev/hello",
         "/stg/..;/dev/hello", "/stg/hello/../../../dev/hello", "/a/b/..", "/a/./b/../c",
         "/a//../b", "/x#frag", "/sp ace", "/caf\u00e9", "/dev;x/hello", "/%00", "/%E0%80%AE"]

REQUESTS = [
    request("GET", "/prod/hello"),
    request("GET", "/prod/hello", x_version="v3"),
    request("GET", "/prod/hello?use_canary=true&x=1"),
    request("GET", "/prod/hello", x_canary="never"),
    request("GET", "/prod/hello/backend", authorization=f"Bearer {user_token(role='beta-tester')}"),
    request("GET", "/prod/hello", authorization=f"Bearer {user_token(sub='user-42')}"),
    request("GET", "/prod/hello", "127.0.0.1:4000", x_forwarded_for="203.0.113.9, 10.0.0.1"),
    request("GET", "/prod/hello", "127.0.0.1:4000", x_forwarded_for="2001:db8::1", cf_ipcountry="NZ"),
    request("POST", "/prod/hello", "198.51.100.7:1234", cookie="session=abc; other=1"),
    request("GET", "/dev/hello?kf-dep=hello-world-v2&kf-ve=team-a"),
    request("GET", "/dev/hello?kubefox-virtual-environment=joe", kf_dep="hello-world-v3"),
    request("GET", "/dev/hello/backend", tenant_id="t1", kf_context="forged", kf_app="x"),
    request("GET", "/%2e%2e/dev/hello"),
]

INTERNAL = [
    request("GET", "/any/path", **{"host": "backend", ":authority": "backend", "kf-context": context()}),
    request("GET", "/x", **{":authority": "frontend", "kf-context": context(comp="backend")}),
    request("GET", "/x", **{":authority": "backend"}),
    request("GET", "/x", **{":authority": "backend", "kf-context": context(dep="hello-world-v3")}),
]

JWT = [
    b"\x00" + user_token().encode(),
    b"\x00" + user_token(role="beta-tester", aud=["hello-world", "x"]).encode(),
    b"\x00eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
    b"\x01" + json.dumps({"alg": "ES256", "kid": "es"}).encode() + b"\n"
    + json.dumps({"iss": "https://auth.example.com", "aud": "hello-world", "exp": NOW + 60}).encode()
    + b"\n" + b64(bytes(64)).encode(),
    b"\x01" + json.dumps({"alg": "RS256", "kid": "rs"}).encode() + b"\n{\"exp\": 1}\nAAAA",
    b"\x01" + json.dumps({"alg": "EdDSA", "kid": "ed"}).encode() + b"\n{}\n" + b64(bytes(64)).encode(),
    b"\x01" + json.dumps({"alg": "HS384"}).encode() + b"\n{\"aud\": [\"hello-world\"]}\nxx",
    b"\x02" + b64(json.dumps({"sub": "user-17", "role": "beta-tester"}).encode()).encode(),
]


def as_json(text: str) -> list:
    return [d for d in yaml.safe_load_all(text) if d]


def main():
    shutil.rmtree(SEEDS, ignore_errors=True)
    seeds = {
        "path": [p.encode() for p in PATHS],
        "request": [r.encode() for r in REQUESTS],
        "explain_vs_filter": [r.encode() for r in REQUESTS],
        "internal": [r.encode() for r in INTERNAL],
        "jwt": JWT,
        "plugin_config": [
            json.dumps({"resources": as_json(CANARY)}).encode(),
            json.dumps({"settings": {"mode": "internal", "metadataHeaders": "lean",
                                     "contextKeys": [{"kid": "k", "secret": base64.b64encode(bytes(32)).decode()}]},
                        "resources": as_json(HELLO)}).encode(),
            b'{"settings": {"pull": {"cluster": "api", "intervalMs": 500}}, "resources": []}',
        ],
        "resources": [b"\x00" + CANARY.encode(), b"\x00" + HELLO.encode(),
                      b"\x01" + json.dumps(as_json(CANARY)).encode(),
                      b"\x01" + json.dumps(as_json(HELLO)[0]).encode()],
        "api_bodies": [
            json.dumps({"filename": "r.yaml", "text": CANARY, "who": "fuzz"}).encode(),
            json.dumps({"files": [{"filename": "h.json", "text": json.dumps(as_json(HELLO))}]}).encode(),
            b'{"deployment": "hello-world-v3", "virtualEnv": "prod", "who": "me"}',
            b'{"virtualEnv": "prod", "app": "hello-world"}',
            b'{"kind": "Canary", "name": "hello-world-v3-canary"}',
            b'{"kid": "k1"}',
            json.dumps({"path": "/prod/hello", "headers": [["X-Version", " v3 "]], "source": "203.0.113.1:9"}).encode(),
        ],
    }
    for target, items in seeds.items():
        d = SEEDS / target
        d.mkdir(parents=True)
        for i, data in enumerate(items):
            (d / f"seed-{i:02}").write_bytes(data)
    print(sum(len(v) for v in seeds.values()), "seeds in", SEEDS)


if __name__ == "__main__":
    main()
