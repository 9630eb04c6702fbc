"""The docs stay true: the README's tour and the book's walkthrough run against
the demo topology (hello-world upstreams, `switchyard serve`, an Envoy with the
internal listener: control_plane.start_world), and the book's CLI reference is
the binary's own `--help`.

A fenced block marked `sh,check` is runnable: it is run with bash (`set -e`),
the demo's fixed addresses replaced by the test's ports; every command must
succeed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import control_plane as cp
import harness
from harness import ROOT

WALKTHROUGHS = [ROOT / "README.md", ROOT / "docs" / "src" / "walkthrough.md"]
CHECK_BLOCK = re.compile(r"^```sh,check\n(.*?)^```", re.S | re.M)


def runnable_blocks(path) -> list[str]:
    return CHECK_BLOCK.findall(path.read_text())


def test_the_walkthrough_commands_run_against_the_demo_topology(procs, bins, work_dir):
    world = cp.start_world(procs, bins, work_dir, internal=True)
    env = dict(os.environ, SWITCHYARD_SERVER=world.plane.server, USER="docs")
    outputs = {}
    for path in WALKTHROUGHS:
        blocks = runnable_blocks(path)
        assert blocks, f"{path}: no ```sh,check block"
        for block in blocks:
            script = (block.replace("127.0.0.1:8080", f"{harness.LOCALHOST}:{world.plane.listen_port}")
                      .replace("127.0.0.1:15001", world.internal_url.removeprefix("http://"))
                      .replace("target/debug/switchyard", str(bins.switchyard)))
            p = subprocess.run(["bash", "-e", "-x", "-c", script], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=120)
            assert p.returncode == 0, f"{path.name}: exit {p.returncode}\n{p.stderr[-3000:]}"
            assert "error:" not in p.stderr, f"{path.name}:\n{p.stderr[-3000:]}"
            outputs[path.name] = outputs.get(path.name, "") + p.stdout
    # what the README's comments promise: after the release, plain URLs reach v2's backend
    assert "b2a0002" in outputs["README.md"]
    # and both ended with the rollback: hello-world-main again
    assert world.deployment() == "hello-world-main"


def test_the_cli_reference_is_the_binarys_help(bins):
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "cli_reference.py"), str(bins.switchyard)],
                       capture_output=True, text=True, timeout=60, check=True)
    page = (ROOT / "docs" / "src" / "reference" / "cli.md").read_text()
    assert p.stdout == page, ("docs/src/reference/cli.md is out of date: "
                              "python3 scripts/cli_reference.py > docs/src/reference/cli.md")


def test_the_readme_stays_short():
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines <= 250, f"README.md has {lines} lines; move details into the book (docs/)"


def test_completions_and_version(bins):
    """`switchyard completions bash|zsh|fish` cover the real grammar; `--version`."""
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(bins.switchyard), *args], capture_output=True, text=True, timeout=30)
    for shell, marker in (("bash", "complete -F _switchyard"), ("zsh", "#compdef switchyard"),
                          ("fish", "complete -c switchyard")):
        p = run("completions", shell)
        assert p.returncode == 0 and marker in p.stdout, (shell, p.stderr)
        for verb in ("release", "rollback", "canary", "completions"):
            assert verb in p.stdout, (shell, verb)
    bad = run("completions", "powershell")
    assert bad.returncode == 2 and "possible values: bash, zsh, fish" in bad.stderr
    version = run("--version")
    cargo = (ROOT / "Cargo.toml").read_text()
    want = re.search(r'^version = "([^"]+)"', cargo, re.M).group(1)
    assert version.returncode == 0 and version.stdout.strip() == f"switchyard {want}"
