"""Genesis requests through a real Envoy with the Switchyard filter in static mode
(DESIGN.md, "A request's journey"), against the hello-world example."""

from __future__ import annotations

import pytest

import harness

# Extra resources some tests add to the hello-world example.
EXTRA = [
    # a VE without a release
    {"kind": "VirtualEnvironment", "metadata": {"name": "empty"}, "spec": {"environment": "dev"}},
    # another Environment, stripping its subPath, with its own VE
    {"kind": "Environment", "metadata": {"name": "stage"},
     "spec": {"subPath": "stage", "defaultVirtualEnvironment": "stage-a", "stripSubPath": True},
     "vars": {"who": "Stage"}},
    {"kind": "VirtualEnvironment", "metadata": {"name": "stage-a"},
     "spec": {"environment": "stage", "release": {"apps": {"hello-world": "hello-world-main"}}}},
]


@pytest.fixture(scope="module")
def world(module_procs, bins, tmp_path_factory):
    """hello-world upstreams + one Switchyard Envoy, shared by this module's tests."""
    work = tmp_path_factory.mktemp("genesis")
    hw = harness.start_hello_world(module_procs, bins, work)
    path = harness.write_yaml(work / "resources-extra.yaml", [*hw.resources, *EXTRA])
    return hw, harness.start_switchyard_static(module_procs, bins, path, work)


@pytest.fixture
def sy(world):
    envoy = world[1]
    assert envoy.alive(), envoy.log_tail()
    return envoy


@pytest.fixture
def hello_world(world):
    return world[0]


def get(e: harness.Envoy, path: str, headers: dict[str, str] | None = None) -> harness.Reply:
    return harness.get(e.url + path, headers=headers)


def served(r: harness.Reply) -> tuple[str, str, str]:
    """(deployment, component, component version) a 200 reply came from."""
    assert r.status == 200, r
    return (r.json["kf"].get("kf-deployment"), r.json["component"], r.json["version"])


def test_release_of_the_default_ve(sy, hello_world):
    r = get(sy, "/dev/hello")
    assert served(r) == ("hello-world-main", "frontend", "f1a0001")
    kf = r.json["kf"]
    assert kf["kf-environment"] == "dev"
    assert kf["kf-virtual-env"] == "team-a"
    assert kf["kf-app"] == "hello-world"
    assert kf["kf-component"] == "frontend"
    assert kf["kf-component-version"] == "f1a0001"
    assert kf["kf-decision"] == "release"
    assert r.json["vars"] == {"who": "Universe"}
    assert r.json["path"] == "/dev/hello"  # forwarded whole
    # the cluster-selection headers are for Envoy only
    assert not [h for h in r.json["headers"] if h.startswith("x-switchyard-")], r.json["headers"]
    assert r.json["listen"] == hello_world.upstream("frontend", "f1a0001").addr
    # response headers, on by default
    assert r.headers["kf-deployment"] == "hello-world-main"
    assert r.headers["kf-virtual-env"] == "team-a"
    assert r.headers["kf-component-version"] == "f1a0001"


def test_ve_vars_override_environment_vars(sy):
    r = get(sy, "/dev/hello?kf-ve=joe")
    assert served(r) == ("hello-world-main", "frontend", "f1a0001")
    assert r.json["kf"]["kf-virtual-env"] == "joe"
    assert r.json["vars"] == {"who": "Joe"}


def test_explicit_deployment_and_distillation(sy, hello_world):
    r = get(sy, "/dev/hello?kf-dep=hello-world-v2&kf-ve=team-a")
    assert served(r) == ("hello-world-v2", "frontend", "f1a0001")
    assert r.json["kf"]["kf-decision"] == "explicit"
    # v2's frontend is the same upstream as main's
    assert r.json["listen"] == hello_world.upstream("frontend", "f1a0001").addr
    r = get(sy, "/dev/hello/backend?kf-dep=hello-world-v2")
    assert served(r) == ("hello-world-v2", "backend", "b2a0002")
    r = get(sy, "/dev/hello", headers={"kf-dep": "hello-world-v3"})
    assert served(r) == ("hello-world-v3", "frontend", "f3a0003")
    assert r.json["listen"] == hello_world.upstream("frontend", "f3a0003").addr


def test_longest_route_wins(sy):
    assert served(get(sy, "/dev/hello/backend"))[1:] == ("backend", "b1a0001")
    assert served(get(sy, "/dev/hello/other"))[1:] == ("frontend", "f1a0001")


def test_selectors_are_removed_before_forwarding(sy):
    r = get(sy, "/dev/hello?a=1&kf-dep=hello-world-v2&kubefox-virtual-environment=joe&b=2",
            headers={"kf-ve": "team-a", "kubefox-app-deployment": "hello-world-v3"})
    # long query beats long header beats short query beats short header
    assert served(r)[0] == "hello-world-v3"
    assert r.json["kf"]["kf-virtual-env"] == "joe"
    path = r.json["path"]
    assert "kf-dep" not in path and "kubefox" not in path, path
    assert path.startswith("/dev/hello?") and "a=1" in path and "b=2" in path, path
    for h in ("kf-ve", "kf-dep", "kubefox-app-deployment", "kubefox-virtual-environment"):
        assert h not in r.json["headers"], h


@pytest.mark.parametrize("query, headers, want", [
    ("?kubefox-app-deployment=hello-world-v2&kf-dep=hello-world-v3", {}, "hello-world-v2"),
    ("?kf-dep=hello-world-v3", {"kubefox-app-deployment": "hello-world-v2"}, "hello-world-v2"),
    ("?kf-dep=hello-world-v3", {"kf-dep": "hello-world-v2"}, "hello-world-v3"),
    ("", {"kf-dep": "hello-world-v2"}, "hello-world-v2"),
])
def test_selector_precedence(sy, query, headers, want):
    assert served(get(sy, "/dev/hello" + query, headers))[0] == want


def test_inbound_kf_headers_cannot_be_forged(sy):
    r = get(sy, "/dev/hello", headers={
        "kf-deployment": "hello-world-v3", "kf-var-who": "Mallory", "kf-context": "forged",
        "kf-decision": "canary-match:0", "kf-anything": "x",
    })
    assert served(r) == ("hello-world-main", "frontend", "f1a0001")
    kf = r.json["kf"]
    assert r.json["vars"] == {"who": "Universe"}
    assert kf["kf-decision"] == "release"
    assert "kf-anything" not in kf
    assert kf.get("kf-context") != "forged"


def test_strip_sub_path(sy):
    r = get(sy, "/stage/hello?x=1")
    assert served(r) == ("hello-world-main", "frontend", "f1a0001")
    assert r.json["path"] == "/hello?x=1"
    assert r.json["kf"]["kf-environment"] == "stage"
    assert r.json["vars"] == {"who": "Stage"}


@pytest.mark.parametrize("path, status, code", [
    ("/nope/hello", 404, "environment_not_found"),
    ("/dev/hello?kf-ve=nobody", 404, "virtual_environment_not_found"),
    ("/dev/hello?kf-dep=nothing", 404, "deployment_not_found"),
    ("/dev/nowhere", 404, "route_not_found"),
    ("/dev/hello?kf-ve=empty", 503, "no_release"),
    ("/dev/hello?kf-ve=stage-a", 400, "invalid_context"),
])
def test_errors(sy, path, status, code):
    r = get(sy, path)
    assert r.status == status, r
    assert r.json is not None and r.json["error"] == code, r
    assert isinstance(r.json.get("message"), str) and r.json["message"], r
    assert "x-upstream" not in r.headers  # never reached an upstream
