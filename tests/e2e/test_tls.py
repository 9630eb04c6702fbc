"""TLS for the control plane (README "TLS"): `switchyard serve` with a server
certificate for the API and for xDS, and client certificates required on xDS
(mTLS). An Envoy with a certificate from the configured CA gets config; one
without a certificate, and one with a certificate of another CA, are refused at
the handshake and reported (`status`, the log); the CLI works over https.
Certificates are made in the test (certs.py); bootstraps by `switchyard render
envoy --ads ... --xds-tls`."""

from __future__ import annotations

import subprocess

import control_plane as cp
import harness
from certs import make_ca
from harness import LOCALHOST, ROOT


def render_ads(bins, out, xds: int, admin: int, node_id: str, *tls: str):
    argv = [str(bins.switchyard), "render", "envoy", "--ads", f"{LOCALHOST}:{xds}",
            "--admin", f"{LOCALHOST}:{admin}", "--node-id", node_id, *tls]
    p = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    out.write_text(p.stdout)
    return out


def test_only_envoys_with_a_certificate_of_the_ca_get_config(procs, bins, work_dir):
    ca = make_ca(work_dir / "pki", "switchyard-ca")
    server = ca.issue("control-plane", server_ip=LOCALHOST)
    good = ca.issue("envoy-mtls", client=True)
    rogue = make_ca(work_dir / "rogue", "rogue-ca").issue("envoy-rogue", client=True)

    hello = harness.start_hello_world(procs, bins, work_dir)
    xds, api, listen, admin1, admin2, admin3 = harness.free_ports(6)
    plane = cp.ControlPlane(bins, hello.resources_path, work_dir / "state", xds, api, listen,
                            procs.log_dir, extra_args=[
                                "--xds-tls-cert", str(server.cert), "--xds-tls-key", str(server.key),
                                "--xds-client-ca", str(ca.cert),
                                "--api-tls-cert", str(server.cert), "--api-tls-key", str(server.key)])
    plane.server = f"https://{LOCALHOST}:{api}"
    plane.requests_kw = {"verify": str(ca.cert)}
    procs.add(plane.start())
    plane.wait_ready()

    # an Envoy with a client certificate of the CA: configured over mTLS
    xds_tls = ["--xds-tls", "--xds-ca", str(ca.cert)]
    boot = render_ads(bins, work_dir / "mtls.yaml", xds, admin1, "envoy-mtls", *xds_tls,
                      "--xds-cert", str(good.cert), "--xds-key", str(good.key))
    envoy = harness.start_envoy(procs, bins.envoy, boot, "envoy-mtls")
    world = cp.World(bins, procs, work_dir, hello, plane, envoy, work_dir / "state", "envoy-mtls")
    cp.wait_for("the mTLS Envoy serves /dev/hello", lambda: world.deployment() == "hello-world-main",
                timeout=30)

    # one without a client certificate, one with a certificate of another CA
    for name, admin, extra in [("envoy-nocert", admin2, []),
                               ("envoy-rogue", admin3, ["--xds-cert", str(rogue.cert),
                                                        "--xds-key", str(rogue.key)])]:
        b = render_ads(bins, work_dir / f"{name}.yaml", xds, admin, name, *xds_tls, *extra)
        e = harness.Envoy(bins.envoy, b, procs.log_dir, name)  # never LIVE: no config
        procs.add(e.start())

    def refused():
        latest = plane.api("/v1/status")["tlsRefused"]["latest"]
        reasons = [r["reason"] for r in latest if r["listener"] == "xds"]
        no_cert = any("no certificate" in r.lower() for r in reasons)
        unknown = any("unknownissuer" in r.lower().replace(" ", "") for r in reasons)
        return reasons if no_cert and unknown else None
    reasons = cp.wait_for("both handshakes refused and reported", refused, timeout=20)
    print(f"\nrefused xDS handshakes: {sorted(set(reasons))}")
    log = plane.log_text()
    assert "TLS handshake refused" in log and "peer sent no certificates" in log, log[-3000:]
    status = plane.api("/v1/status")
    assert [n["id"] for n in status["envoys"]] == ["envoy-mtls"], status["envoys"]
    human = cp.cli(bins, plane.server, "--ca-cert", str(ca.cert), "status").stdout
    assert "TLS handshakes refused:" in human and "xds from 127.0.0.1:" in human, human
    for name, admin in [("envoy-nocert", admin2), ("envoy-rogue", admin3)]:
        dump = harness.get(f"http://{LOCALHOST}:{admin}/config_dump?resource=dynamic_listeners")
        assert dump.status == 200 and not (dump.json or {}).get("configs"), (name, dump)
        stats = harness.get(f"http://{LOCALHOST}:{admin}/stats?filter=xds_cluster.ssl").text
        assert "ssl.connection_error" in stats, stats

    # the CLI over https with the CA; without it the server is not trusted
    r = cp.cli(bins, plane.server, "--ca-cert", str(ca.cert), "release", "hello-world-v2",
               "--virtual-env", "team-a")
    assert r.code == 0, r.stderr
    assert "live on 1/1 Envoys" in r.stdout, r.stdout
    print(f"release over https, live over mTLS xDS: {r.stdout.strip().splitlines()[-1]}")
    assert world.deployment() == "hello-world-v2"
    r = cp.cli(bins, plane.server, "status", "--output", "json")
    assert r.code == 1 and r.json["error"] == "unreachable", r
    assert "certificate" in r.json["message"].lower() or "issuer" in r.json["message"].lower(), r
    # plain HTTP to the https API gets no answer from the API
    r = cp.cli(bins, f"http://{LOCALHOST}:{api}", "status")
    assert r.code == 1, r


def test_a_pulling_filter_polls_the_api_over_mtls(procs, bins, work_dir):
    """Pull mode against an https API that requires client certificates
    (`serve --api-client-ca`): `render envoy --pull-from ... --pull-ca
    --pull-cert --pull-key` gives the API cluster a TLS transport socket that
    verifies the API and presents the Envoy's certificate; the filter polls with
    its pull token and follows a release. The CLI needs a certificate too."""
    ca = make_ca(work_dir / "pki", "switchyard-ca")
    server = ca.issue("control-plane", server_ip=LOCALHOST)
    envoy_cert = ca.issue("envoy-pull", client=True)
    operator = ca.issue("operator", client=True)
    hello = harness.start_hello_world(procs, bins, work_dir)
    xds, api, unused_listen, listen, admin = harness.free_ports(5)
    plane = cp.ControlPlane(bins, hello.resources_path, work_dir / "state", xds, api,
                            unused_listen, procs.log_dir, extra_args=[
                                "--api-tls-cert", str(server.cert), "--api-tls-key", str(server.key),
                                "--api-client-ca", str(ca.cert)])
    plane.server = f"https://{LOCALHOST}:{api}"
    plane.requests_kw = {"verify": str(ca.cert), "cert": (str(operator.cert), str(operator.key))}
    procs.add(plane.start())
    plane.wait_ready()
    with_tls = ["--ca-cert", str(ca.cert), "--client-cert", str(operator.cert),
                "--client-key", str(operator.key)]
    # without a client certificate the API does not even answer
    r = cp.cli(bins, plane.server, "--ca-cert", str(ca.cert), "status", "--output", "json")
    assert r.code == 1 and r.json["error"] == "unreachable", r
    r = cp.cli(bins, plane.server, *with_tls, "token", "create", "--role", "pull", "--name", "envoy")
    assert r.code == 0, r.stderr
    token_file = work_dir / "pull.token"
    token_file.write_text(r.stdout)
    cfg = harness.render_envoy(bins, hello.resources_path, work_dir / "pull.yaml",
                               f"{LOCALHOST}:{listen}", f"{LOCALHOST}:{admin}",
                               ["--pull-from", f"{LOCALHOST}:{api}", "--pull-ca", str(ca.cert),
                                "--pull-cert", str(envoy_cert.cert), "--pull-key", str(envoy_cert.key),
                                "--pull-token-file", str(token_file)])
    envoy = harness.start_envoy(procs, bins.envoy, cfg, "envoy-pull")
    url = f"http://{LOCALHOST}:{listen}/dev/hello"
    cp.wait_for("a poll over mTLS", lambda: plane.api("/v1/status")["pulling"], timeout=10)
    r = cp.cli(bins, plane.server, *with_tls, "release", "hello-world-v3", "--virtual-env", "team-a")
    assert r.code == 0, r.stderr
    cp.wait_for("the pulled release serves /dev/hello",
                lambda: harness.get(url).json["kf"]["kf-deployment"] == "hello-world-v3", timeout=10)
    assert envoy.stats("switchyard.pull").get("wasmcustom.switchyard.pull.failed", 0) == 0
    refused = plane.api("/v1/status")["tlsRefused"]["latest"]
    assert any(x["listener"] == "api" and "no certificates" in x["reason"] for x in refused), refused


def test_renewed_certificates_and_client_ca_are_used_without_a_restart(procs, bins, work_dir):
    """`serve` follows its PEM files (README "TLS"): a file that makes no valid
    configuration is refused with a log line and the last good one stays; a
    renewed server certificate and a new client CA, written in place, serve the
    next handshakes within a few seconds. An Envoy connected before keeps its
    stream and still gets releases; one with a certificate of the new CA gets
    config."""
    old_ca = make_ca(work_dir / "pki-old", "old-ca")
    new_ca = make_ca(work_dir / "pki-new", "new-ca")
    old_server = old_ca.issue("control-plane", server_ip=LOCALHOST)
    new_server = new_ca.issue("control-plane", server_ip=LOCALHOST)
    old_envoy = old_ca.issue("envoy-old", client=True)
    new_envoy = new_ca.issue("envoy-new", client=True)
    live = work_dir / "live"
    live.mkdir()
    cert, key, clients = live / "tls.pem", live / "tls.key", live / "clients-ca.pem"

    def put(path, content: bytes):  # written in place the way a secret volume swaps it
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(content)
        tmp.replace(path)
    put(cert, old_server.cert.read_bytes())
    put(key, old_server.key.read_bytes())
    put(clients, old_ca.cert.read_bytes())

    hello = harness.start_hello_world(procs, bins, work_dir)
    xds, api, listen, admin1, admin2 = harness.free_ports(5)
    plane = cp.ControlPlane(bins, hello.resources_path, work_dir / "state", xds, api, listen,
                            procs.log_dir, extra_args=[
                                "--xds-tls-cert", str(cert), "--xds-tls-key", str(key),
                                "--xds-client-ca", str(clients),
                                "--api-tls-cert", str(cert), "--api-tls-key", str(key)])
    plane.server = f"https://{LOCALHOST}:{api}"
    plane.requests_kw = {"verify": str(old_ca.cert)}
    procs.add(plane.start())
    plane.wait_ready()

    def status_with(ca) -> cp.CliResult:
        return cp.cli(bins, plane.server, "--ca-cert", str(ca.cert), "status", "--output", "json")

    boot = render_ads(bins, work_dir / "old.yaml", xds, admin1, "envoy-old", "--xds-tls",
                      "--xds-ca", str(old_ca.cert), "--xds-cert", str(old_envoy.cert),
                      "--xds-key", str(old_envoy.key))
    envoy = harness.start_envoy(procs, bins.envoy, boot, "envoy-old")
    world = cp.World(bins, procs, work_dir, hello, plane, envoy, work_dir / "state", "envoy-old")
    cp.wait_for("the Envoy serves /dev/hello", lambda: world.deployment() == "hello-world-main",
                timeout=30)
    assert status_with(old_ca).code == 0 and status_with(new_ca).code == 1

    # a certificate that does not parse: refused, logged, the last good one stays
    put(cert, b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    cp.wait_for("the refused reload is logged",
                lambda: "TLS files not reloaded" in plane.log_text(), timeout=15)
    assert status_with(old_ca).code == 0, "the last good certificate must keep serving"

    # the renewal: key, certificate and client CA of the new CA
    put(key, new_server.key.read_bytes())
    put(cert, new_server.cert.read_bytes())
    put(clients, new_ca.cert.read_bytes())
    cp.wait_for("the API presents the new certificate", lambda: status_with(new_ca).code == 0,
                timeout=15)
    assert status_with(old_ca).code == 1
    assert "TLS certificate reloaded" in plane.log_text()

    # an Envoy with a certificate of the new CA gets config over the new files
    boot = render_ads(bins, work_dir / "new.yaml", xds, admin2, "envoy-new", "--xds-tls",
                      "--xds-ca", str(new_ca.cert), "--xds-cert", str(new_envoy.cert),
                      "--xds-key", str(new_envoy.key))
    harness.start_envoy(procs, bins.envoy, boot, "envoy-new")
    # the Envoy of before kept its stream: both get the release
    r = cp.cli(bins, plane.server, "--ca-cert", str(new_ca.cert), "release", "hello-world-v2",
               "--virtual-env", "team-a")
    assert r.code == 0, r.stdout + r.stderr
    assert "live on 2/2 Envoys" in r.stdout, r.stdout
    assert world.deployment() == "hello-world-v2"
