"""Canary routing through a real Envoy with the real filter (DESIGN.md `Canary`,
step 5), on examples/canary/resources.yaml: the seed's workflow."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import time

import pytest

import harness

CANARY_EXAMPLE = harness.ROOT / "examples" / "canary" / "resources.yaml"
SECRET = b"switchyard-demo-secret-change-me-0123456789"  # the example's demo key


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(claims: dict, secret: bytes = SECRET, kid: str = "demo", alg: str = "HS256") -> str:
    header = b64url(json.dumps({"alg": alg, "typ": "JWT", "kid": kid}).encode())
    payload = b64url(json.dumps(claims).encode())
    signing_input = f"{header}.{payload}".encode()
    sig = b64url(hmac.new(secret, signing_input, hashlib.sha256).digest())
    return f"{header}.{payload}.{sig}"


def claims(**extra) -> dict:
    now = int(time.time())
    return {"iss": "https://auth.example.com", "aud": "hello-world", "iat": now,
            "nbf": now - 5, "exp": now + 600, **extra}


def canary_docs(hw: harness.HelloWorld, **spec_changes) -> list[dict]:
    docs = harness.rewrite_endpoints(harness.load_resources(CANARY_EXAMPLE), hw.port_map)
    for d in docs:
        if d["kind"] == "Canary":
            for k, v in spec_changes.items():
                if v is None:
                    d["spec"].pop(k, None)
                else:
                    d["spec"][k] = v
    return docs


def start(module_procs, bins, work, hw, name, **spec_changes) -> harness.Envoy:
    path = harness.write_yaml(work / f"{name}.yaml", canary_docs(hw, **spec_changes))
    return harness.start_switchyard_static(module_procs, bins, path, work, name)


@pytest.fixture(scope="module")
def world(module_procs, bins, tmp_path_factory):
    work = tmp_path_factory.mktemp("canary")
    hw = harness.start_hello_world(module_procs, bins, work)
    # Rules only (no weight), so a request no rule matches is always stable.
    rules = start(module_procs, bins, work, hw, "rules", weight=None, stickiness=None)
    # The example as written: rules + 5% sticky on claim:sub.
    example = start(module_procs, bins, work, hw, "example")
    # 5% by a header key, for the statistics over many users.
    by_user = start(module_procs, bins, work, hw, "by-user", match=None,
                    stickiness={"key": "header:x-user"})
    return {"rules": rules, "example": example, "by_user": by_user}


def side(e: harness.Envoy, path: str = "/prod/hello", headers: dict | None = None) -> tuple[str, str]:
    r = harness.get(e.url + path, headers=headers)
    assert r.status == 200, r
    return r.json["kf"]["kf-deployment"], r.json["kf"]["kf-decision"]


STABLE, CANARY = "hello-world-main", "hello-world-v3"


def test_header_rule_reaches_canary_and_plain_request_stays_stable(world):
    e = world["rules"]
    assert side(e, headers={"x-version": "v3"}) == (CANARY, "canary-match:0")
    assert side(e, headers={"x-canary": "true"}) == (CANARY, "canary-match:1")
    assert side(e) == (STABLE, "canary-stable")
    assert side(e, headers={"x-version": "v2"}) == (STABLE, "canary-stable")


def test_query_rule_and_exclude_wins(world):
    e = world["rules"]
    assert side(e, "/prod/hello?use_canary=true") == (CANARY, "canary-match:2")
    assert side(e, headers={"x-version": "v3", "x-canary": "never"}) == (STABLE, "canary-stable")


def test_explicit_kf_dep_wins_over_the_canary(world):
    e = world["rules"]
    r = harness.get(e.url + "/prod/hello?kf-dep=hello-world-main", headers={"x-version": "v3"})
    assert r.json["kf"]["kf-deployment"] == STABLE and r.json["kf"]["kf-decision"] == "explicit"


def test_jwt_claims_reach_canary_and_bad_tokens_do_not(world):
    e = world["rules"]
    beta = hs256(claims(sub="user-1", role="beta-tester"))
    assert side(e, headers={"authorization": f"Bearer {beta}"}) == (CANARY, "canary-match:3")
    listed = hs256(claims(sub="user-42"))
    assert side(e, headers={"authorization": f"Bearer {listed}"}) == (CANARY, "canary-match:4")
    forged = hs256(claims(sub="user-1", role="beta-tester"), secret=b"x" * 43)
    expired = hs256({**claims(role="beta-tester"), "exp": int(time.time()) - 3600})
    unsigned = b64url(b'{"alg":"none","typ":"JWT"}') + "." + b64url(json.dumps(claims(role="beta-tester")).encode()) + "."
    for token in (forged, expired, unsigned, "garbage"):
        assert side(e, headers={"authorization": f"Bearer {token}"}) == (STABLE, "canary-stable")
    stats = e.stats("switchyard.jwt")
    assert stats.get(harness.filter_stat("switchyard.jwt.jwt_bad_signature"), 0) >= 1, stats
    assert stats.get(harness.filter_stat("switchyard.jwt.jwt_expired"), 0) >= 1, stats


def test_source_cidr_through_trusted_xff_and_country(world):
    e = world["rules"]
    assert side(e, headers={"x-forwarded-for": "203.0.113.7"}) == (CANARY, "canary-match:5")
    assert side(e, headers={"x-forwarded-for": "198.51.100.7"}) == (STABLE, "canary-stable")
    assert side(e, headers={"x-forwarded-for": "2001:db8::1"}) == (CANARY, "canary-match:5")
    assert side(e, headers={"cf-ipcountry": "NZ"}) == (CANARY, "canary-match:6")
    assert side(e, headers={"cf-ipcountry": "US"}) == (STABLE, "canary-stable")


def test_weight_5_percent_over_2000_users(world):
    e = world["by_user"]
    canary = 0
    with harness.requests.Session() as s:
        for i in range(2000):
            r = s.get(e.url + "/prod/hello", headers={"x-user": f"user-{i}"}, timeout=5)
            assert r.status_code == 200
            if r.json()["kf"]["kf-deployment"] == CANARY:
                assert r.json()["kf"]["kf-decision"] == "canary-weight"
                canary += 1
    assert 60 <= canary <= 140, f"{canary} of 2000 on the canary (want 3–7%)"


def test_a_sticky_user_stays_on_one_side(world):
    e = world["example"]
    # claim:sub stickiness: the same user, fresh token each time
    for user in ("alice", "bob", "carol"):
        sides = {side(e, headers={"authorization": "Bearer " + hs256(claims(sub=user))})[0]
                 for _ in range(200 // 3 + 1)}
        assert len(sides) == 1, f"{user} moved between {sides}"


def test_decision_stats_are_visible(world):
    e = world["rules"]
    side(e, headers={"x-version": "v3"})
    stats = e.stats("switchyard.decision")
    key = harness.decision_stat("hello-world", "hello-world-v3", "canary-match_0")
    assert stats.get(key, 0) >= 1, stats
