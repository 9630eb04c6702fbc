"""pytest fixtures for the end-to-end tests; the work is done in harness.py.

Fixtures:
  bins         (session) the built binaries: bins.wasm, bins.native, bins.switchyard,
               bins.upstream, bins.envoy
  filter_build (module, autouse) "wasm" or "native": the filter the module's Envoys
               load; the modules in BOTH_BUILDS run once with each
  work_dir     a per-test directory for configs and logs (pytest's tmp_path)
  procs        a per-test harness.Processes: everything started through it is
               stopped at teardown (SIGTERM, then SIGKILL)
  module_procs (module) like procs, shared by a test module's tests (for
               module-scoped fixtures that start slow things once)
  upstream     factory: upstream(component, version, port=None, call_backend=None) -> Upstream
  envoy        factory: envoy(config_path, name="envoy", timeout=30, **kw) -> Envoy (LIVE)
  hello_world  all hello-world upstreams on free ports + the rewritten resources
  switchyard   factory: switchyard(extra_docs=(), name="envoy") -> Envoy with .url:
               hello_world's resources (+ extra_docs) rendered by `switchyard render
               envoy` (static mode) and started

On failure, the logs of the processes a test started are printed (pytest shows
them with the test's captured output).
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# `switchyard serve` leaves its admin credential in
# $XDG_CONFIG_HOME/switchyard/credentials/HOST_PORT and the CLI finds it there
# (README "API authentication"): the tests' servers and CLIs share a private
# directory instead of the user's ~/.config.
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="switchyard-e2e-config-")
atexit.register(shutil.rmtree, os.environ["XDG_CONFIG_HOME"], True)
os.environ.pop("SWITCHYARD_TOKEN", None)
os.environ.pop("SWITCHYARD_TOKEN_FILE", None)

import harness  # noqa: E402


@pytest.fixture(scope="session")
def bins() -> harness.Binaries:
    return harness.build()


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def procs(work_dir: Path, request: pytest.FixtureRequest):
    p = harness.Processes(work_dir / "logs")
    yield p
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for item in p.items:
            print(f"\n----- {item.name} log ({item.log_path}) -----\n{item.log_tail(6000)}")
    p.stop_all()


# The test modules that run against both builds of the filter (wasm and the
# native dynamic module): every test in them runs once per build.
BOTH_BUILDS = {"test_genesis", "test_delivery", "test_canary", "test_paths"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.module.__name__ in BOTH_BUILDS and "filter_build" in metafunc.fixturenames:
        metafunc.parametrize("filter_build", ["wasm", "native"], indirect=True, scope="module")


@pytest.fixture(scope="module", autouse=True)
def filter_build(request: pytest.FixtureRequest):
    """The build of the filter this module's Envoys load (harness.FILTER):
    "wasm" unless the module is in BOTH_BUILDS, which runs once per build."""
    harness.FILTER = getattr(request, "param", "wasm")
    yield harness.FILTER
    harness.FILTER = "wasm"


@pytest.fixture(scope="module")
def module_procs(tmp_path_factory: pytest.TempPathFactory, filter_build: str):
    p = harness.Processes(tmp_path_factory.mktemp("module") / "logs")
    yield p
    p.stop_all()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture
def upstream(procs: harness.Processes, bins: harness.Binaries):
    def start(component: str, version: str, port: int | None = None,
              call_backend: str | None = None) -> harness.Upstream:
        return harness.start_upstream(procs, bins.upstream, component, version, port, call_backend)
    return start


@pytest.fixture
def envoy(procs: harness.Processes, bins: harness.Binaries):
    def start(config_path: Path, name: str = "envoy", timeout: float = 30.0, **kw) -> harness.Envoy:
        return harness.start_envoy(procs, bins.envoy, config_path, name, timeout, **kw)
    return start


@pytest.fixture
def hello_world(procs: harness.Processes, bins: harness.Binaries, work_dir: Path) -> harness.HelloWorld:
    return harness.start_hello_world(procs, bins, work_dir)


@pytest.fixture
def switchyard(procs: harness.Processes, bins: harness.Binaries, work_dir: Path,
               hello_world: harness.HelloWorld):
    def start(extra_docs=(), name: str = "envoy") -> harness.Envoy:
        path = hello_world.resources_path
        if extra_docs:
            path = harness.write_yaml(work_dir / f"resources-{name}.yaml",
                                      [*hello_world.resources, *extra_docs])
        return harness.start_switchyard_static(procs, bins, path, work_dir, name)
    return start
