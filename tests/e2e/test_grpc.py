"""Components that declare `protocol: grpc`: the proxy speaks HTTP/2 to them
(`typed_extension_protocol_options` in the bootstrap, the same in ADS and, in
Istio, `h2UpgradePolicy: UPGRADE` on their subsets). Real gRPC servers (grpcio,
the standard health service `grpc.health.v1.Health/Check`) behind a real Envoy:
genesis on the genesis listener — the gRPC service name is the environment's
subPath, the method the route — and the hop through the internal listener with
`kf-context` as gRPC metadata, pinned to the deployment's version."""

from __future__ import annotations

from concurrent import futures

import grpc
import pytest

import harness
import istio
from ports import free_ports

CHECK = "/grpc.health.v1.Health/Check"
SERVING = b"\x08\x01"  # HealthCheckResponse{status: SERVING}


class HealthServer:
    """A gRPC health service that records the metadata of every call."""

    def __init__(self, name: str, port: int):
        self.name, self.port, self.seen = name, port, []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        handler = grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
            "Check": grpc.unary_unary_rpc_method_handler(self.check)})
        self.server.add_generic_rpc_handlers((handler,))
        self.server.add_insecure_port(f"{harness.LOCALHOST}:{port}")
        self.server.start()

    def check(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self.seen.append(dict(context.invocation_metadata()))
        context.set_trailing_metadata((("x-served-by", self.name),))
        return SERVING


def check(port: int, authority: str | None = None, metadata: tuple = ()) -> tuple[bytes, dict]:
    options = [("grpc.default_authority", authority)] if authority else []
    with grpc.insecure_channel(f"{harness.LOCALHOST}:{port}", options=options) as channel:
        rpc = channel.unary_unary(CHECK)
        response, call = rpc.with_call(b"", metadata=metadata, timeout=5)
        return response, dict(call.trailing_metadata())


@pytest.fixture
def grpc_world(bins, procs, work_dir):
    c1, p1, p2, listen, internal, admin = free_ports(6)
    servers = {n: HealthServer(n, p) for n, p in (("checker-c1", c1), ("peer-p1", p1), ("peer-p2", p2))}

    def deployment(name: str, peer_version: str, peer_port: int) -> dict:
        return {"kind": "AppDeployment", "metadata": {"name": name}, "spec": {
            "app": "health", "version": name, "components": {
                "checker": {"version": "c1", "protocol": "grpc", "endpoints": [f"127.0.0.1:{c1}"],
                            "routes": [{"match": {"pathPrefix": "/Check"}}], "dependencies": ["peer"]},
                "peer": {"version": peer_version, "protocol": "grpc", "endpoints": [f"127.0.0.1:{peer_port}"],
                         "routes": [{"match": {"pathPrefix": "/Peer"}}]},
            }}}

    docs = [
        {"kind": "Environment", "metadata": {"name": "grpc"},
         "spec": {"subPath": "grpc.health.v1.Health", "defaultVirtualEnvironment": "g"}},
        {"kind": "VirtualEnvironment", "metadata": {"name": "g"},
         "spec": {"environment": "grpc", "release": {"apps": {"health": "health-v1"}}}},
        deployment("health-v1", "p1", p1),
        deployment("health-v2", "p2", p2),
    ]
    resources = harness.write_yaml(work_dir / "grpc.yaml", docs)
    cfg = harness.render_envoy(bins, resources, work_dir / "grpc-envoy.yaml", f"127.0.0.1:{listen}",
                               f"127.0.0.1:{admin}", ["--internal-listen", f"127.0.0.1:{internal}"])
    harness.start_envoy(procs, bins.envoy, cfg, "envoy-grpc")
    yield servers, listen, internal, resources
    for s in servers.values():
        s.server.stop(0)


def test_grpc_components_through_both_listeners(grpc_world):
    servers, listen, internal, _ = grpc_world
    # Genesis: the release, then kf-dep as gRPC metadata.
    response, trailers = check(listen)
    assert response == SERVING and trailers["x-served-by"] == "checker-c1"
    assert servers["checker-c1"].seen[-1]["kf-deployment"] == "health-v1"
    response, trailers = check(listen, metadata=(("kf-dep", "health-v2"),))
    assert trailers["x-served-by"] == "checker-c1"
    seen = servers["checker-c1"].seen[-1]
    assert seen["kf-deployment"] == "health-v2" and seen["kf-component"] == "checker"
    context = seen["kf-context"]
    # The hop: kf-context as metadata, the target in :authority → v2's peer only.
    response, trailers = check(internal, authority="peer", metadata=(("kf-context", context),))
    assert response == SERVING and trailers["x-served-by"] == "peer-p2"
    assert servers["peer-p2"].seen[-1]["kf-component"] == "peer"
    assert not servers["peer-p1"].seen
    # Refusals reach a gRPC client as gRPC statuses.
    with pytest.raises(grpc.RpcError) as refused:
        check(internal, authority="peer")
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "missing_context" in (refused.value.details() or "")


def test_istio_subsets_of_grpc_components_upgrade_to_http2(grpc_world, bins):
    *_, resources = grpc_world
    objs = istio.render(bins.switchyard, resources, "--namespace", "health")
    for dr in istio.by_kind(objs, "DestinationRule"):
        for s in dr["spec"]["subsets"]:
            assert s["trafficPolicy"]["connectionPool"] == {"http": {"h2UpgradePolicy": "UPGRADE"}}
        assert not istio.validate(dr)
