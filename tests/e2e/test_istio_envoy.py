"""An Envoy 1.40 configured the way istiod and istio-agent would configure the
ingress gateway and a frontend pod's sidecar from the objects `switchyard render
istio` prints — no Kubernetes here, so this test plays istiod. One Envoy carries
both roles (two listeners), which also puts two Switchyard plugins with empty VM
ids on one proxy. How each piece mirrors istiod (istio/istio source):

- The filter: each WasmPlugin becomes the TypedExtensionConfig of
  `pilot/pkg/model/extensions.go` (`buildWasmConfig`, `buildVMConfig`): name
  `<ns>.<name>` (with `~istio-translated-wasmplugin`, the synthetic
  TrafficExtension of `pilot/pkg/config/kube/extensions/translate.go`), root id =
  `pluginName`, **no vm_id**, `pluginConfig` as a JSON StringValue, failStrategy →
  `failure_policy`; istio-agent has replaced the remote code by the local file
  it fetched (`pkg/wasm/convert.go`). The HCM loads it by ECDS
  (`config_discovery`, as `pilot/pkg/networking/core/extension/extensionfilter.go`
  does); istiod serves ECDS over ADS, here the same resource comes from a file.
  STATS phase: after authn/authz, before the router (`listener_builder.go`).
- Routes: each VirtualService http route as `pilot/pkg/networking/core/route/
  route.go` translates it — header exact match, destination subset → cluster
  `outbound|<port>|<subset>|<fqdn>` (`model.BuildSubsetKey`), `headers.request.
  remove` → `request_headers_to_remove`, the subset's consistentHash → the
  route's hash policy, directResponse.
- The sidecar's outbound listener: one HCM for the Services' port, a virtual
  host per Service whose domains are the Service's short and long names (with
  and without port), and istiod's `allow_any` virtual host to the passthrough
  cluster for every other host.
- Clusters: one per DestinationRule subset, named as above, LB policy from the
  subset's trafficPolicy (Maglev with its table size), EnvoyFilter CLUSTER
  patches merged; their endpoints are the pods with that version label (here
  the hello-world processes of that version).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

import control_plane as cp
import harness
import istio
from ports import free_ports

NS = "shop"
KEY = {"kid": "istio-1", "secret": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}
WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
HCM_TYPE = ("type.googleapis.com/envoy.extensions.filters.network."
            "http_connection_manager.v3.HttpConnectionManager")


def ecds_filter(name: str, ecds_file: Path) -> dict:
    return {"name": name, "config_discovery": {
        "config_source": {"path_config_source": {"path": str(ecds_file)},
                          "resource_api_version": "V3"},
        "type_urls": [WASM_TYPE]}}


def hcm(stat_prefix: str, filter_name: str, ecds_file: Path, virtual_hosts: list[dict]) -> dict:
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": HCM_TYPE, "stat_prefix": stat_prefix,
        "route_config": {"name": stat_prefix, "virtual_hosts": virtual_hosts},
        "http_filters": [ecds_filter(filter_name, ecds_file), {
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
    }}


def ecds_resources(objs: list[dict], wasm: Path) -> dict[str, dict]:
    """mode → the TypedExtensionConfig the proxy gets for each Switchyard plugin."""
    out = {}
    for wp in istio.by_kind(objs, "WasmPlugin"):
        # The WasmPlugin as istiod's synthetic TrafficExtension.
        translated = json.loads(json.dumps(wp))
        translated["metadata"]["name"] += "~istio-translated-wasmplugin"
        out[wp["spec"]["pluginConfig"]["settings"]["mode"]] = istio.plugin_ecds(translated, wasm)
    for ef in istio.by_kind(objs, "EnvoyFilter"):
        patches = ef["spec"]["configPatches"]
        ext = next((p["patch"]["value"] for p in patches if p["applyTo"] == "EXTENSION_CONFIG"), None)
        if ext is None:
            continue
        # istiod serves the EXTENSION_CONFIG value as is; istio-agent replaces
        # its remote code by the module it fetched (pkg/wasm/convert.go).
        ext = json.loads(json.dumps(ext))
        vm = ext["typed_config"]["config"]["vm_config"]
        assert "remote" in vm["code"] and "vm_id" not in vm
        vm["code"] = {"local": {"filename": str(wasm)}}
        # The HTTP_FILTER patch loads exactly that resource by ECDS, before the router.
        inserts = [p for p in patches if p["applyTo"] == "HTTP_FILTER"]
        assert inserts and all(p["patch"]["operation"] == "INSERT_BEFORE"
                               and p["patch"]["value"]["name"] == ext["name"]
                               and p["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"]
                               == "envoy.filters.http.router" for p in inserts)
        mode = json.loads(ext["typed_config"]["config"]["configuration"]["value"])["settings"]["mode"]
        out[mode] = ext
    return out


def service_domains(fqdn: str, port: int) -> list[str]:
    """istiod's domains for a Service seen from its own namespace."""
    name, ns = fqdn.split(".")[:2]
    hosts = [fqdn, f"{name}.{ns}.svc", f"{name}.{ns}", name]
    return [d for h in hosts for d in (h, f"{h}:{port}")]


def istio_shaped_bootstrap(objs: list[dict], wasm: Path, endpoints: dict, work: Path,
                           gateway_port: int, sidecar_port: int, admin_port: int,
                           passthrough: tuple[str, int], api_port: int | None = None) -> Path:
    files, names = {}, {}
    exts = ecds_resources(objs, wasm)
    for mode, ext in exts.items():
        names[mode] = ext["name"]
        files[mode] = work / f"ecds-{mode}.yaml"
        files[mode].write_text(yaml.safe_dump({"version_info": "1", "resources": [
            {"@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig", **ext}]}))
    drs = {d["spec"]["host"]: d for d in istio.by_kind(objs, "DestinationRule")}
    hosts = {"_drs": drs}
    services = istio.by_kind(objs, "VirtualService")
    gateway_vs = next(v for v in services if v["spec"].get("gateways"))
    mesh_vs = [v for v in services if not v["spec"].get("gateways")]
    vhosts = []
    for vs in mesh_vs:
        fqdn = vs["spec"]["hosts"][0]
        port = next(r["route"][0]["destination"]["port"]["number"] for r in vs["spec"]["http"] if "route" in r)
        vhosts.append({"name": f"{fqdn}:{port}", "domains": service_domains(fqdn, port),
                       "routes": istio.routes_of(vs, hosts)})
    vhosts.append({"name": "allow_any", "domains": ["*"],
                   "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "PassthroughCluster"}}]})
    clusters = istio.clusters_of(objs, endpoints)
    pull = json.loads(next(iter(exts.values()))["typed_config"]["config"]["configuration"]["value"])[
        "settings"].get("pull")
    if pull:
        # The control plane's Service as istiod names its cluster; its pod is here.
        clusters.append({"name": pull["cluster"], "type": "STATIC", "connect_timeout": "10s",
                         "load_assignment": {"cluster_name": pull["cluster"], "endpoints": [{"lb_endpoints": [
                             {"endpoint": {"address": {"socket_address": {
                                 "address": harness.LOCALHOST, "port_value": api_port}}}}]}]}})
    clusters.append({"name": "PassthroughCluster", "type": "STATIC", "connect_timeout": "10s",
                     "load_assignment": {"cluster_name": "PassthroughCluster", "endpoints": [{"lb_endpoints": [
                         {"endpoint": {"address": {"socket_address": {
                             "address": passthrough[0], "port_value": passthrough[1]}}}}]}]}})

    def listener(name: str, port: int, chain: dict) -> dict:
        return {"name": name, "address": {"socket_address": {"address": harness.LOCALHOST, "port_value": port}},
                "filter_chains": [{"filters": [chain]}]}

    boot = {
        "node": {"id": "router~127.0.0.1~istio-ingressgateway.istio-system~istio-system.svc.cluster.local",
                 "cluster": "istio-ingressgateway"},
        "admin": {"address": {"socket_address": {"address": harness.LOCALHOST, "port_value": admin_port}}},
        "static_resources": {
            "listeners": [
                listener("0.0.0.0_8080", gateway_port, hcm(
                    "outbound_0.0.0.0_8080", names["genesis"], files["genesis"],
                    [{"name": "*:80", "domains": ["*"], "routes": istio.routes_of(gateway_vs, hosts)}])),
                listener("0.0.0.0_80", sidecar_port, hcm(
                    "outbound_0.0.0.0_80", names["internal"], files["internal"], vhosts)),
            ],
            "clusters": clusters,
        },
    }
    return harness.write_yaml(work / "istio-envoy.yaml", boot)


@pytest.fixture(scope="module", params=["wasmplugin", "envoyfilter"])
def mesh(bins, module_procs, tmp_path_factory, request):
    via = request.param
    work = tmp_path_factory.mktemp(f"istio-{via}")
    gateway_port, sidecar_port, admin_port = free_ports(3)
    # The frontends call `http://backend` through their sidecar (outbound port 80).
    hw = harness.start_hello_world(module_procs, bins, work,
                                   call_backend=f"http://{harness.LOCALHOST}:{sidecar_port}")
    canary = [d for d in harness.load_resources(harness.ROOT / "examples" / "canary" / "resources.yaml")
              if d["kind"] in ("Environment", "VirtualEnvironment", "Canary")]
    # v3's backend hashes on tenant-id (Maglev, hash_balance 1.25): its subset,
    # its round-robin twin for requests without the header, the balance patch.
    docs = json.loads(json.dumps(hw.resources))
    for d in docs:
        if d["kind"] == "AppDeployment" and d["metadata"]["name"] == "hello-world-v3":
            d["spec"]["components"]["backend"]["options"] = {
                "loadbalancing": "hash", "hash_header": "tenant-id", "hash_balance": 1.25}
    resources = harness.write_yaml(work / "resources.yaml", docs + canary)
    key = harness.write_yaml(work / "key.yaml", KEY)
    # The filter as an OCI image; the WasmPlugins name it with its manifest
    # digest, and the proxy runs the module istio-agent would unpack from it.
    image = istio.package(bins.switchyard, bins.wasm, work / "oci", "0.1.0")
    objs = istio.render(bins.switchyard, resources, "--namespace", NS, "--context-key-file", str(key),
                        "--url", "oci://registry.example/switchyard-filter:0.1.0",
                        "--sha256", image["manifest_sha256"], "--via", via)
    sha = (istio.by_kind(objs, "WasmPlugin")[0]["spec"]["sha256"] if via == "wasmplugin" else
           istio.by_kind(objs, "EnvoyFilter")[0]["spec"]["configPatches"][0]["patch"]["value"]
           ["typed_config"]["config"]["vm_config"]["code"]["remote"]["sha256"])
    module = istio.unpack_like_istio_agent(work / "oci", "0.1.0", sha, work / "wasm-cache" / "x")
    endpoints = {(f"{c}.{NS}.svc.cluster.local", v): [(harness.LOCALHOST, up.port)]
                 for (c, v), up in hw.upstreams.items()}
    foreign = hw.upstream("backend", "b1a0001")
    boot = istio_shaped_bootstrap(objs, module, endpoints, work, gateway_port, sidecar_port,
                                  admin_port, (harness.LOCALHOST, foreign.port))
    envoy = harness.start_envoy(module_procs, bins.envoy, boot, f"istio-envoy-{via}")
    envoy.url = f"http://{harness.LOCALHOST}:{gateway_port}"
    envoy.sidecar_url = f"http://{harness.LOCALHOST}:{sidecar_port}"
    envoy.image, envoy.module, envoy.work = image, module, work
    return envoy, objs


def versions(r: harness.Reply) -> tuple[str, str]:
    assert r.status == 200, (r.status, r.text)
    return r.json["version"], r.json["backend"]["version"]


def test_genesis_explicit_and_guaranteed_delivery_route_by_subsets(mesh):
    envoy, _ = mesh
    # Genesis: the VE's release, frontend and its backend hop both pinned.
    r = harness.get(envoy.url + "/dev/hello")
    assert versions(r) == ("f1a0001", "b1a0001")
    # Explicit kf-dep: v2 shares frontend f1a0001 but its hop goes to b2a0002.
    r = harness.get(envoy.url + "/dev/hello?kf-dep=hello-world-v2&kf-ve=team-a")
    assert versions(r) == ("f1a0001", "b2a0002")
    r = harness.get(envoy.url + "/dev/hello", headers={"kf-dep": "hello-world-v3"})
    assert versions(r) == ("f3a0003", "b3a0003")
    # The selection header never reaches a component; the filter's metadata does.
    for hop in (r.json, r.json["backend"]):
        assert "x-switchyard-version" not in hop["headers"]
        assert hop["kf"]["kf-deployment"] == "hello-world-v3"


def test_canary_routes_by_its_rules(mesh):
    envoy, _ = mesh
    r = harness.get(envoy.url + "/prod/hello", headers={"x-canary": "true"})
    assert versions(r) == ("f3a0003", "b3a0003")
    assert r.json["kf"]["kf-decision"] == "canary-match:1"
    r = harness.get(envoy.url + "/prod/hello", headers={"x-canary": "never"})
    assert versions(r) == ("f1a0001", "b1a0001")


def test_a_forged_selection_header_changes_nothing(mesh):
    envoy, _ = mesh
    forged = {"x-switchyard-version": "hello-world/frontend/f3a0003/round-robin"}
    r = harness.get(envoy.url + "/dev/hello", headers=forged)
    assert versions(r) == ("f1a0001", "b1a0001")
    # At the sidecar, a call to a component without kf-context is refused,
    # whatever selection header it carries.
    r = harness.get(envoy.sidecar_url + "/backend", headers={"host": "backend", **forged})
    assert r.status == 401 and r.json["error"] == "missing_context"
    r = harness.get(envoy.sidecar_url + "/x", headers={"host": "backend.shop.svc.cluster.local:80"})
    assert r.status == 401 and r.json["error"] == "missing_context"


def test_calls_to_other_hosts_pass_the_sidecar_untouched(mesh):
    envoy, _ = mesh
    r = harness.get(envoy.sidecar_url + "/anything", headers={"host": "postgres.db.svc.cluster.local"})
    assert r.status == 200, r.text
    assert r.json["kf"] == {}


def test_errors_keep_design_codes(mesh):
    envoy, _ = mesh
    r = harness.get(envoy.url + "/dev/nowhere")
    assert r.status == 404 and r.json["error"] == "route_not_found"


def test_the_oci_image_carries_the_exact_module_envoy_runs(mesh, bins):
    envoy, objs = mesh
    image = envoy.image
    built = bins.wasm.read_bytes()
    assert image["wasm_sha256"] == hashlib.sha256(built).hexdigest()
    # istio-agent's unpacked file is byte for byte the built filter...
    assert envoy.module.read_bytes() == built
    assert envoy.module.name == f"{image['wasm_sha256']}.wasm"
    # ... and it is the file this Envoy loaded (both plugins), which routed the
    # requests of the tests above.
    for mode in ("genesis", "internal"):
        ecds = yaml.safe_load((envoy.work / f"ecds-{mode}.yaml").read_text())
        code = ecds["resources"][0]["typed_config"]["config"]["vm_config"]["code"]
        assert code == {"local": {"filename": str(envoy.module)}}
        assert "vm_id" not in ecds["resources"][0]["typed_config"]["config"]["vm_config"]
    assert versions(harness.get(envoy.url + "/dev/hello")) == ("f1a0001", "b1a0001")
    # A wrong digest is refused the way istio-agent refuses it.
    with pytest.raises(ValueError, match="does not match"):
        istio.unpack_like_istio_agent(envoy.work / "oci", "0.1.0", "0" * 64, envoy.work / "x" / "y")


def test_pull_mode_polls_through_istios_outbound_cluster(bins, procs, work_dir):
    """The WasmPlugins pull the table from `switchyard serve` (its Service's
    `outbound|<port>||<fqdn>` cluster); a release reaches the gateway and the
    sidecar without touching any Istio object. The context keys come from the
    control plane too (none in the manifests)."""
    gateway_port, sidecar_port, admin_port, xds, api, unused = free_ports(6)
    hw = harness.start_hello_world(procs, bins, work_dir,
                                   call_backend=f"http://{harness.LOCALHOST}:{sidecar_port}")
    plane = cp.ControlPlane(bins, hw.resources_path, work_dir / "state", xds, api, unused, procs.log_dir)
    procs.add(plane.start())
    plane.wait_ready()
    token = work_dir / "pull.token"
    token.write_text(harness.create_token(bins.switchyard, plane.server, "pull", "istio-e2e") + "\n")
    objs = istio.render(bins.switchyard, hw.resources_path, "--namespace", NS,
                        "--pull-from", f"switchyard.switchyard-system:{api}", "--pull-token-file", str(token),
                        "--url", f"file://{bins.wasm}")
    for wp in istio.by_kind(objs, "WasmPlugin"):
        settings = wp["spec"]["pluginConfig"]["settings"]
        assert settings["pull"]["cluster"] == f"outbound|{api}||switchyard.switchyard-system.svc.cluster.local"
        assert "contextKeys" not in settings
    endpoints = {(f"{c}.{NS}.svc.cluster.local", v): [(harness.LOCALHOST, up.port)]
                 for (c, v), up in hw.upstreams.items()}
    boot = istio_shaped_bootstrap(objs, bins.wasm, endpoints, work_dir, gateway_port, sidecar_port,
                                  admin_port, (harness.LOCALHOST, hw.upstream("backend", "b1a0001").port),
                                  api_port=api)
    envoy = harness.start_envoy(procs, bins.envoy, boot, "istio-pull")
    url = f"http://{harness.LOCALHOST}:{gateway_port}"
    # Once polled, the hop carries the control plane's kf-context.
    cp.wait_for("the pulled keys serve the hop",
                lambda: harness.get(url + "/dev/hello").status == 200, timeout=10)
    assert versions(harness.get(url + "/dev/hello")) == ("f1a0001", "b1a0001")
    r = cp.cli(bins, plane.server, "release", "hello-world-v3", "--virtual-env", "team-a")
    assert r.code == 0, r.stderr
    cp.wait_for("the pulled release serves /dev/hello",
                lambda: versions(harness.get(url + "/dev/hello")) == ("f3a0003", "b3a0003"), timeout=10)
    # The plugins polled (each under its own shared-data keys).
    assert sum(envoy.stats(r"switchyard\.pull\.ok").values()) > 0


def test_hash_subsets_and_the_round_robin_fallback(mesh):
    envoy, objs = mesh
    dr = next(d for d in istio.by_kind(objs, "DestinationRule") if d["metadata"]["name"] == "switchyard-backend")
    maglev = next(s["name"] for s in dr["spec"]["subsets"] if "consistentHash" in s["trafficPolicy"]["loadBalancer"])
    hashed = istio.subset_cluster(80, maglev, "backend.shop.svc.cluster.local")
    twin = istio.subset_cluster(80, "b3a0003-round-robin", "backend.shop.svc.cluster.local")

    def sent(cluster: str) -> int:
        return envoy.stats().get(f"cluster.{cluster}.upstream_rq_total", 0)

    before = sent(hashed), sent(twin)
    r = harness.get(envoy.url + "/dev/hello/backend", headers={"kf-dep": "hello-world-v3", "tenant-id": "t1"})
    assert r.status == 200 and r.json["version"] == "b3a0003"
    assert "tenant-id" in r.json["headers"]  # Istio hashes on it: it is not copied, nor removed
    r = harness.get(envoy.url + "/dev/hello/backend", headers={"kf-dep": "hello-world-v3"})
    assert r.status == 200 and r.json["version"] == "b3a0003"
    assert (sent(hashed), sent(twin)) == (before[0] + 1, before[1] + 1)
    # The balance factor DestinationRule lacks came from the EnvoyFilter patch.
    dump = envoy.config_dump("static_clusters")
    clusters = {c["cluster"]["name"]: c["cluster"] for c in dump["configs"]}
    assert clusters[hashed]["lb_policy"] == "MAGLEV"
    assert clusters[hashed]["common_lb_config"]["consistent_hashing_lb_config"]["hash_balance_factor"] == 125
    assert clusters[twin].get("lb_policy", "ROUND_ROBIN") == "ROUND_ROBIN"
