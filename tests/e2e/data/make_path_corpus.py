#!/usr/bin/env python3
"""Writes path_corpus.json: request paths taken from public test suites, each
with its source, for tests/e2e/test_path_corpus.py (issue 22, item 1).

Sources (read when this file was written, 2026-12-07):
- RFC 3986 §5.4.1 and §5.4.2: every reference example resolved against the
  base `http://a/b/c/d;p?q` *by concatenation* (`/b/c/` + reference; a reference
  starting with `/` as is), so that the dot segments reach the server;
- Envoy's test/common/http/path_utility_test.cc (envoyproxy/envoy): every input
  and expected path;
- Istio's tests/integration/security/normalization_test.go (istio/istio): every
  input and expected path, and `/admin%01` … `/admin%ff` as its loop makes them;
- the web-platform-tests URL data, url/resources/urltestdata.json, as vendored by
  servo/rust-url (url/tests/urltestdata.json at 25137be1): the path of every http(s)
  input, every http(s) `pathname`, and each relative input with the base
  `http://example.org/foo/bar` as `/foo/` + input.

Only paths an HTTP/1.1 request line can carry are kept (visible ASCII, no
space); the rest are counted in the file.

  python3 tests/e2e/data/make_path_corpus.py URLTESTDATA.json
"""

import json
import re
import sys
from pathlib import Path

RFC3986 = ["g", "./g", "g/", "/g", "?y", "g?y", "#s", "g#s", "g?y#s", ";x", "g;x", "g;x?y#s",
           "", ".", "./", "..", "../", "../g", "../..", "../../", "../../g",
           "../../../g", "../../../../g", "/./g", "/../g", "g.", ".g", "g..", "..g", "./../g",
           "./g/.", "g/./h", "g/../h", "g;x=1/./y", "g;x=1/../y", "g?y/./x", "g?y/../x",
           "g#s/./x", "g#s/../x"]

ENVOY = ["/xyz", "/x/y/z", "/xyz/.%00../abc", "/xyz/%00.%00./abc", "/xyz/AAAAA%%0000/abc",
         "/a/b/../c", "/a/c", "/a/b/./c", "/a/b/c", "a/b/../c", "/a/b/../../../../c", "/c",
         "/a/..\\c", "/%c0%af", "/%5c%25", "/a/b/%2E%2E/c", "/a/b/%2E./c", "/a/b/%2E/c", "..",
         "/", "/../a/b", "/a/b", "/./a/b", "/A/B/C", "/a/b/%2e%2e/c", "/a/%2F%2f/c", "a//b/c",
         "/a//b/c/", "a//b/c/", "/a", "//a/b/c", "/a/b/c//", "/a/b/c/", "/a///b/c",
         "/a////b/c", "/a//b?a=///c", "/a/b?a=///c", "/a//b?", "/a/b?", "//a/?b", "/a/?b",
         "/abc", "/abc?", "/abc?param=value", "/abc?param=value1&param=value2", "/abc??",
         "/abc??param=value", "/abc#", "/abc#fragment", "/abc#fragment?param=value", "/abc##",
         "/abc#?", "/abc#?param=value", "/abc?#", "/abc?#fragment", "/abc?param=value#",
         "/abc?param=value#fragment"]

ISTIO = ["/", "/app#foo", "/app", "/app/", "/app/../admin", "/admin", "/app//", "/app/%2f",
         "/app%2f/", "/xyz%30..//abc", "/xyz0..//abc", "/xyz0../abc", "/app/%2E./admin",
         "/app\\admin", "/app/admin", "/app/\\/\\/\\admin", "/app//////admin",
         "/%2Fapp%5cadmin%5Cabc", "/%5Capp%2f%5c%2F%2e%2e%2fadmin%5c\\abc",
         "/%5Capp%2f%5c%2F..%2fadmin%5c/abc", "/app//../admin", "/app//../../admin",
         "/app/admin/abc", "/%c0%2e%c0%2e/admin", "/%c0.%c0./admin", "/%c0%2fadmin",
         "/%c0/admin", "/0x2e0x2e/admin", "/0x2e0x2e0x2fadmin", "/0x2e0x2e0x5cadmin",
         "/0x2f0x2fadmin", "/0x5c0x5cadmin", "/%25c0%25ae%25c1%259cadmin",
         "/%25c0%25ae%25c0%25ae/admin", "/%25c0%25afadmin", "/%25c1%259cadmin",
         "/%252e%252e/admin", "/%252e%252e%252fadmin", "/%c1%9cadmin", "/%c0%ae%c0%ae/admin",
         "/%c0%afadmin", "/.../admin", "/..../admin", "/..;/admin", "/;/admin", "/admin;a=b",
         "/admin;a=b/xyz", "/admin,a=b/xyz", "/Admin", "/ADMIN", "/admin%00"]
ISTIO += [f"/admin%{i:02x}" for i in range(1, 0x100)]


def sendable(path: str) -> bool:
    return all(0x21 <= ord(c) <= 0x7E for c in path)


def wpt(data: list) -> list[str]:
    out = []
    for e in data:
        if not isinstance(e, dict) or e.get("failure"):
            continue
        inp, base = e["input"], str(e.get("base") or "")
        m = re.match(r"^\s*https?://[^/?#\\]*([/\\][^?#]*)?(\?[^#]*)?", inp, re.I)
        if m and m.group(1):
            out.append(m.group(1) + (m.group(2) or ""))
        if e.get("protocol") in ("http:", "https:") and e.get("pathname", "").startswith("/"):
            out.append(e["pathname"] + e.get("search", ""))
        if base.startswith("http://example.org/foo/bar") and not re.match(
                r"^[A-Za-z][A-Za-z0-9+.-]*:", inp) and not inp.startswith(("//", "\\\\")):
            out.append(inp if inp.startswith("/") else "/foo/" + inp)
    return out


def main() -> None:
    urltestdata = json.loads(Path(sys.argv[1]).read_text())
    sources = [
        ("RFC 3986 §5.4 (base /b/c/d;p)", [r if r.startswith("/") else "/b/c/" + r for r in RFC3986]),
        ("envoyproxy/envoy test/common/http/path_utility_test.cc", ENVOY),
        ("istio/istio tests/integration/security/normalization_test.go", ISTIO),
        ("web-platform-tests url/resources/urltestdata.json (servo/rust-url 25137be1)",
         wpt(urltestdata)),
    ]
    seen, corpus, dropped = set(), [], 0
    for source, paths in sources:
        for p in paths:
            if p in seen:
                continue
            seen.add(p)
            if sendable(p):
                corpus.append({"path": p, "source": source})
            else:
                dropped += 1
    out = {"about": __doc__.split("\n\n")[0], "not_sendable": dropped, "paths": corpus}
    Path(__file__).with_name("path_corpus.json").write_text(json.dumps(out, indent=0) + "\n")
    print(len(corpus), "paths;", dropped, "not sendable")


if __name__ == "__main__":
    main()
